"""Sans-IO HTTP pieces for Perlbal: strict heads, chunking, ranges, proxy headers, reproxy.

Nothing here touches a socket, a clock or another perlbal module: bytes and
header lists go in, parsed values, header lists and bytes come out.  The
runtime owns all I/O.  Each submodule's docstring lists its API and the
invariants it keeps; the most used names are re-exported here.

Failures: :class:`HttpError` (a client request to refuse, with status) and
:class:`BackendProtocolError` (a backend reply not to trust).
"""

from perlbal.http.chunked import ChunkedDecoder, encode_chunk, encode_last_chunk
from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import (
    DEFAULT_MAX_HEAD_SIZE,
    Header,
    HeadReader,
    RequestHead,
    ResponseHead,
    ResponseHeadReader,
    parse_request_head,
    parse_response_head,
)
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
    "BackendProtocolError",
    "ChunkedDecoder",
    "DEFAULT_MAX_HEAD_SIZE",
    "HeadReader",
    "Header",
    "HttpError",
    "RangeResult",
    "ReproxyCacheFor",
    "ReproxyTarget",
    "RequestHead",
    "ResponseHead",
    "ResponseHeadReader",
    "SERVER_TOKEN",
    "backend_keep_alive",
    "backend_request_headers",
    "backend_request_line",
    "client_keep_alive",
    "client_response_headers",
    "encode_chunk",
    "encode_last_chunk",
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
    "parse_response_head",
    "reason_phrase",
    "render_head",
    "reproxy_request_head",
    "set_header",
    "simple_response",
    "status_line",
    "strip_hop_by_hop",
]
