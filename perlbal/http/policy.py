"""What we refuse (or tolerate) beyond h11, in one place: the HTTP policy layer.

h11 parses and frames every message (``perlbal.http.connection``).  It is
deliberately lenient on a few points, and Perlbal sits at the edge, so each
rule below either tightens h11 where two parsers could disagree about a
message's length (request smuggling, a reply cut short passed off as whole),
or turns h11's event into the head Perl Perlbal's handlers expect.  Each rule
names the RFC section or the attack it answers; tests/http/test_policy.py and
tests/hostile/ hold one test per rule.

Requests (raise :class:`HttpError`, after which the connection is closed):

* R1 head size: at most ``max_head_size`` bytes (default 16 KiB, as Node's
  ``--max-http-header-size``; HAProxy's 16 KiB buffer; Perl's 100 KB by
  ``SET max_request_head_size``), enforced as soon as it is crossed, also
  when the whole head arrives in one read (h11 only bounds an incomplete
  head): 414 when the request line alone is too long (RFC 9112 section 3),
  else 431 (RFC 6585 section 5).
* R2 at most ``max_header_count`` fields (431): Apache's LimitRequestFields.
* R3 Content-Length *and* Transfer-Encoding: refused (RFC 9112 section 6.1
  lets a server reject it; it is the classic CL.TE smuggling shape).  h11
  would let Transfer-Encoding win.
* R4 HTTP/2+ request lines get 505; HTTP/1.x with x > 1 is served as
  HTTP/1.1 (RFC 9110 section 2.5), Host rule included.
* R5 CONNECT gets 405: this is a reverse proxy.
* R6 absolute-form targets (RFC 9112 section 3.2.2): any ``http`` or
  ``https`` URI, IP literals included, is rewritten as Perl rewrites
  ``http://name[:port]`` (path kept, the URI's host wins over Host,
  lower-cased, without its port); userinfo, an empty host and other schemes
  get 400; any other target must be origin-form or ``OPTIONS *``.
* R7 Host: at most one (h11), well-formed, and present on HTTP/1.1.
* R8 a negative Content-Length gets Perl's wording and page.
* R9 Transfer-Encoding on an HTTP/1.0 request: RFC 9112 section 6.1 says
  its framing is faulty; it gets 400 as nginx answers
  (:func:`http10_chunked_refusal`), except on Perl's two chunked-upload paths,
  which its own tests drive with HTTP/1.0 (t/22-chunked-put.t: a web_server
  PUT; t/52-chunked-upload.t: a reverse_proxy with buffer_uploads).  There
  the chunked body is read as Perl does, then the connection closes.
* R11 no control character but HTAB in a field value (RFC 9110 section 5.5);
  h11 accepts anything but NUL and whitespace there, and a backend or log
  reader might not.
* R10 a chunked body's trailer may not carry framing or routing fields
  (Content-Length, Transfer-Encoding, Host, Trailer): RFC 9110 section 6.5.1
  forbids acting on them, and a parser that merged them would frame differently.
  Other trailer fields are dropped (backends are spoken to in HTTP/1.0).

Tolerated, as RFC 9112 allows and Perl Perlbal and nginx accept: bare LF line
ends (section 2.2), empty lines before a request line (section 2.2), obs-fold
replaced by a space (section 5.2); every head we emit is re-rendered with CRLF.

Responses (raise :class:`BackendProtocolError`; the backend is closed):

* B1 head size at most Perl's 100 KB; B2 field count at most 256.
* B3 Content-Length and Transfer-Encoding together: refused (502).
* B4 a status line that is not HTTP/1.x: refused.
* B5 Transfer-Encoding on an HTTP/1.0 reply: decoded, then not reused.

Invariant: no message text from a peer reaches an error reason (they are shown
in HTML pages), and no h11 exception escapes this module unmapped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import h11

from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import Header, RequestHead, ResponseHead, index_headers

__all__ = [
    "Limits",
    "DEFAULT_LIMITS",
    "BACKEND_LIMITS",
    "DEFAULT_MAX_HEAD_SIZE",
    "PERL_MAX_HEAD_SIZE",
    "request_head",
    "response_head",
    "request_error",
    "head_too_large",
    "response_error",
    "check_trailers",
    "http10_chunked_refusal",
]

#: R1's default: Node's max-http-header-size, HAProxy's default buffer.
DEFAULT_MAX_HEAD_SIZE = 16384
#: Perl's MAX_HTTP_HEADER_LENGTH (Perlbal/Socket.pm): "100k, arbitrary".
PERL_MAX_HEAD_SIZE = 102400


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    max_header_count: int = 100


DEFAULT_LIMITS = Limits()
BACKEND_LIMITS = Limits(PERL_MAX_HEAD_SIZE, 256)

# R6: absolute-form (RFC 9112 section 3.2.2): an http or https URI (RFC 9110
# sections 4.2.1-4.2.2, the scheme in any case) whose authority is a reg-name,
# an IPv4 address or a bracketed IPv6 literal (R7's Host forms; no IPvFuture),
# with an optional port; userinfo and an empty host are matched only to be refused
_ABSOLUTE_URI = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<path>/[^?#]*)?"
    r"(?P<query>\?[^#]*)?")
_URI_HOST = re.compile(r"(?P<host>[A-Za-z0-9._~!$&'()*+,;=%-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?")
_HOST_VALUE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[0-9]{0,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{0,5})?")
# h11 takes any byte but NUL and whitespace in a value; RFC 9110 section 5.5 does not
_CONTROL = re.compile("[\x01-\x08\x0e-\x1f\x7f]")
_NEGATIVE_LENGTH = re.compile(rb"(?:^|\n)content-length[ \t]*:[ \t]*-[0-9]", re.IGNORECASE)

# h11's messages can quote peer bytes; these fixed reasons replace them (the
# first matching prefix wins).  Status None: h11's own error_status_hint.
_H11_REQUEST_REASONS: tuple[tuple[str, int | None, str], ...] = (
    ("illegal request line", 400, "malformed request line"),
    ("no request line", 400, "malformed request line"),
    ("illegal header line", 400, "malformed header line"),
    ("continuation line at start", 400, "malformed header line"),
    ("Found multiple Host", 400, "duplicate Host header"),
    ("Missing mandatory Host", 400, "HTTP 1.1 requires host header"),
    ("conflicting Content-Length", 400, "conflicting Content-Length values"),
    ("bad Content-Length", 400, "malformed Content-Length"),
    ("Only Transfer-Encoding: chunked", 501, "unsupported Transfer-Encoding"),
    ("multiple Transfer-Encoding", 501, "unsupported Transfer-Encoding"),
    ("illegal chunk header", 400, "malformed chunked body"),
    ("illegal chunk", 400, "malformed chunked body"),
    ("Receive buffer too long", 431, "request head too large"),
)


def request_error(exc: h11.ProtocolError, head_start: bytes = b"") -> HttpError:
    """The refusal to answer for an h11 error on a client's bytes.

    ``head_start``: the first bytes of the head, to give R8's wording.
    """
    text = str(exc)
    if text.startswith("bad Content-Length") and _NEGATIVE_LENGTH.search(head_start):
        return HttpError(400, "Invalid request: Content-Length < 0")  # R8, Perl's words
    for prefix, status, reason in _H11_REQUEST_REASONS:
        if text.startswith(prefix):
            return HttpError(status or exc.error_status_hint, reason, perl_closes_silently=True)
    return HttpError(400, "malformed request", perl_closes_silently=True)


def head_too_large(first_line_complete: bool) -> HttpError:
    """R1: 414 when the request line alone passed the limit, else 431."""
    if not first_line_complete:
        return HttpError(414, "request line too long", perl_closes_silently=True)
    return HttpError(431, "request head too large", perl_closes_silently=True)


def response_error(exc: h11.ProtocolError) -> BackendProtocolError:
    text = str(exc)
    for prefix, _status, reason in _H11_REQUEST_REASONS:
        if text.startswith(prefix):
            return BackendProtocolError(reason.replace("request", "reply"))
    if text.startswith("illegal status line"):
        return BackendProtocolError("malformed status line")
    return BackendProtocolError("malformed reply")


_FORBIDDEN_TRAILERS = frozenset({b"content-length", b"transfer-encoding", b"host", b"trailer"})


def check_trailers(event: h11.EndOfMessage) -> None:
    """R10: refuse a trailer that names a framing or routing field."""
    for name, _value in event.headers:
        if name in _FORBIDDEN_TRAILERS:
            raise HttpError(400, "framing field in chunked trailer", perl_closes_silently=True)


def _fields(event: h11.Request | h11.Response | h11.InformationalResponse,
            error: type[Exception]) -> list[Header]:
    fields = [(name.decode("ascii"), value.decode("latin-1"))
              for name, value in event.headers.raw_items()]
    if _CONTROL.search("".join([value for _name, value in fields])):  # R11
        if error is HttpError:
            raise HttpError(400, "control character in header value", perl_closes_silently=True)
        raise BackendProtocolError("control character in header value")
    return fields


def _version(raw: bytes) -> tuple[int, int]:
    return (raw[0] - 48, raw[2] - 48)  # h11 guarantees b"D.D"


def request_head(event: h11.Request, limits: Limits = DEFAULT_LIMITS) -> tuple[RequestHead, bool]:
    """R2-R9 applied to h11's request: the head, and whether the connection
    must close after this request whatever the keep-alive rules say (R9)."""
    if len(event.headers) > limits.max_header_count:
        raise HttpError(431, "too many header fields")
    version = _version(event.http_version)
    if version[0] != 1:
        raise HttpError(505, "HTTP version not supported")  # R4
    if version[1] > 1:
        version = (1, 1)
    headers = _fields(event, HttpError)
    index = index_headers(headers)
    method = event.method.decode("ascii")
    target = event.target.decode("ascii")
    lengths = index.get("content-length")
    chunked = "transfer-encoding" in index  # h11: then it is exactly "chunked"
    if chunked and lengths:
        raise HttpError(400, "both Content-Length and Transfer-Encoding",
                        perl_closes_silently=True)  # R3
    hosts = index.get("host", [])
    if method == "CONNECT":
        raise HttpError(405, "CONNECT is not supported: this is a reverse proxy")  # R5
    if target[:1] != "/" and not (target == "*" and method == "OPTIONS"):
        target, host = _origin_form(target)  # R6
        headers = _set_host(headers, host)
        index = index_headers(headers)
        hosts = [host]
    if hosts and hosts[0] and not _HOST_VALUE.fullmatch(hosts[0]):
        raise HttpError(400, "malformed Host header", perl_closes_silently=True)  # R7
    if version >= (1, 1) and not (hosts and hosts[0]):
        raise HttpError(400, "HTTP 1.1 requires host header", perl_closes_silently=True)
    content_length = int(lengths[0]) if lengths else None  # h11: <= 20 digits, merged
    head = RequestHead(method, target, version, tuple(headers), content_length, chunked)
    object.__setattr__(head, "by_name", index)
    return head, chunked and version < (1, 1)


def _origin_form(target: str) -> tuple[str, str]:
    """R6: an absolute-form target as (origin-form target, Host).

    RFC 9112 section 3.2.2: a server MUST accept absolute-form, and the
    target's authority replaces any Host field.  As Perl's HTTPHeaders.pm
    does for the ``http://name[:port]`` URIs it rewrites, the Host becomes
    the host lower-cased without its port (IPv6 literals keep their
    brackets), and an empty path becomes ``/``.  Refused (400): another
    scheme, an empty host (RFC 9110 section 4.2.1: MUST reject), userinfo
    (RFC 9110 section 4.2.4: treat as an error), a malformed authority,
    and anything that is not a URI at all."""
    absolute = _ABSOLUTE_URI.fullmatch(target)
    if absolute is None or absolute["scheme"].lower() not in ("http", "https"):
        raise HttpError(400, "malformed request target", perl_closes_silently=True)
    authority = absolute["authority"]
    if "@" in authority:
        raise HttpError(400, "userinfo in request target", perl_closes_silently=True)
    host = _URI_HOST.fullmatch(authority)
    if host is None:
        raise HttpError(400, "malformed request target", perl_closes_silently=True)
    return (absolute["path"] or "/") + (absolute["query"] or ""), host["host"].lower()


def http10_chunked_refusal(head: RequestHead, role: str | None,
                           buffer_uploads: bool) -> HttpError | None:
    """R9: the refusal of an HTTP/1.0 chunked request by the service that would
    serve it (``role``; ``buffer_uploads`` its parameter), None to serve it.

    Served only where Perl has a chunked-upload path that its tests send as
    HTTP/1.0: ClientHTTP::handle_put_chunked (a web_server PUT) and
    ClientProxy::handle_chunked_upload (only with buffer_uploads on)."""
    if not head.chunked or head.http_version >= (1, 1):
        return None
    if (role == "web_server" and head.method == "PUT") or \
            (role == "reverse_proxy" and buffer_uploads):
        return None
    return HttpError(400, "chunked body on an HTTP/1.0 request")


def _set_host(headers: list[Header], host: str) -> list[Header]:
    for position, (name, _value) in enumerate(headers):
        if name.lower() == "host":
            return headers[:position] + [(name, host)] + headers[position + 1:]
    return headers + [("Host", host)]


def response_head(event: h11.Response | h11.InformationalResponse,
                  limits: Limits = BACKEND_LIMITS) -> ResponseHead:
    """B2-B4 applied to h11's response."""
    if len(event.headers) > limits.max_header_count:
        raise BackendProtocolError("too many header fields")
    version = _version(event.http_version)
    if version[0] != 1:
        raise BackendProtocolError("unsupported HTTP version in status line")  # B4
    headers = _fields(event, BackendProtocolError)
    index = index_headers(headers)
    lengths = index.get("content-length")
    chunked = "transfer-encoding" in index
    if chunked and lengths:
        raise BackendProtocolError("both Content-Length and Transfer-Encoding")  # B3
    reason = event.reason.decode("latin-1").strip(" \t")
    head = ResponseHead(event.status_code, reason, version, tuple(headers),
                        int(lengths[0]) if lengths else None, chunked)
    object.__setattr__(head, "by_name", index)
    return head
