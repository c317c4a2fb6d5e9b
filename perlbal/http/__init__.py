"""Sans-IO HTTP pieces for Perlbal on h11: connections, policy, ranges, proxy headers, reproxy.

Nothing here touches a socket, a clock or another perlbal module: bytes and
header lists go in, parsed values, header lists and bytes come out.  The
runtime owns all I/O.  Each submodule's docstring lists its API and the
invariants it keeps; the most used names are re-exported here.

Failures: :class:`HttpError` (a client request to refuse, with status) and
:class:`BackendProtocolError` (a backend reply not to trust).
"""

from perlbal.http.connection import BackendSide, ClientSide, parse_request_head
from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import Header, RequestHead, ResponseHead
from perlbal.http.policy import DEFAULT_MAX_HEAD_SIZE, PERL_MAX_HEAD_SIZE, Limits
from perlbal.http.proxyheaders import (
    backend_keep_alive,
    backend_request_headers,
    backend_request_line,
    client_keep_alive,
    client_response_headers,
    forwarding_headers,
    munge_headers,
    set_header,
    strip_hop_by_hop,
)
from perlbal.http.ranges import RangeResult, evaluate_range, evaluate_ranges
from perlbal.http.reproxy import (
    ReproxyCacheFor,
    ReproxyTarget,
    parse_reproxy_cache_for,
    parse_reproxy_expected_size,
    parse_reproxy_file,
    parse_reproxy_urls,
    reproxy_request_head,
)
from perlbal.http.responses import (
    SERVER_TOKEN,
    file_response_head,
    reason_phrase,
    render_head,
    simple_response,
    status_line,
)

__all__ = [
    "BackendSide",
    "ClientSide",
    "Limits",
    "PERL_MAX_HEAD_SIZE",
    "BackendProtocolError",
    "DEFAULT_MAX_HEAD_SIZE",
    "Header",
    "HttpError",
    "RangeResult",
    "ReproxyCacheFor",
    "ReproxyTarget",
    "RequestHead",
    "ResponseHead",
    "SERVER_TOKEN",
    "backend_keep_alive",
    "backend_request_headers",
    "backend_request_line",
    "client_keep_alive",
    "client_response_headers",
    "evaluate_range",
    "evaluate_ranges",
    "file_response_head",
    "forwarding_headers",
    "munge_headers",
    "parse_reproxy_cache_for",
    "parse_reproxy_expected_size",
    "parse_reproxy_file",
    "parse_reproxy_urls",
    "parse_request_head",
    "reason_phrase",
    "render_head",
    "reproxy_request_head",
    "set_header",
    "simple_response",
    "status_line",
    "strip_hop_by_hop",
]
