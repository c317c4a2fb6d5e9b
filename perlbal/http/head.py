"""Strict parsing of HTTP/1.x message heads (requests from clients, replies from backends).

Perlbal sits at the edge, so this module refuses every ambiguity that lets two
HTTP parsers disagree about where a message ends (request smuggling), rather
than guessing like Perl Perlbal 1.80's ``HTTPHeaders->new`` did.

Public API::

    parse_request_head(raw, *, max_head_size=102400, max_header_count=100) -> RequestHead
    parse_response_head(raw, *, max_head_size=102400, max_header_count=100) -> ResponseHead
    HeadReader(max_head_size=..., max_header_count=...).feed(data) -> RequestHead | None
    ResponseHeadReader(...).feed(data) -> ResponseHead | None
    RequestHead.get(name) / .get_all(name) / .content_length / .chunked / .wants_keep_alive
    ResponseHead.get(name) / .get_all(name) / .content_length / .chunked / .has_body(method)

Headers are kept as an ordered tuple of ``(name, value)`` pairs of ``str``
(field-line validation lives in :mod:`perlbal.http.fields`).
Names keep the case the peer sent; values are decoded as latin-1 so that any
byte round-trips unchanged (``value.encode("latin-1")`` gives the wire bytes).

Invariants of a successfully parsed head:

* every line ended in CRLF; no bare CR or LF, no obs-fold continuation lines;
* every name is an RFC 9110 token directly followed by ``:``; no value holds a
  control character other than HTAB; values have surrounding OWS stripped;
* at most one of Content-Length / Transfer-Encoding is present; every
  Content-Length member is the same non-negative decimal of at most 18 digits;
* a request's Transfer-Encoding is exactly ``chunked`` (one field, HTTP/1.1);
  a response's codings end in ``chunked``;
* an HTTP/1.1 request has exactly one non-empty, well-formed Host (Perl: "HTTP
  1.1 requires host header"); no request has two Host fields;
* the head, CRLFCRLF included, is at most ``max_head_size`` bytes.  The default
  is Perl's ``MAX_HTTP_HEADER_LENGTH`` (102400, Perlbal/Socket.pm); Perl drops
  the connection there, we answer 431.

Client faults raise :class:`HttpError` (400, 431 or 505); backend faults raise
:class:`BackendProtocolError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, Sequence, TypeVar

from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.fields import (
    TOKEN_CHARS,
    ErrorFactory,
    Header,
    header_get,
    header_get_all,
    parse_field_lines,
)

__all__ = [
    "DEFAULT_MAX_HEAD_SIZE",
    "DEFAULT_MAX_HEADER_COUNT",
    "Header",
    "RequestHead",
    "ResponseHead",
    "HeadReader",
    "ResponseHeadReader",
    "parse_request_head",
    "parse_response_head",
    "parse_field_lines",
    "header_get",
    "header_get_all",
]

#: Perl's MAX_HTTP_HEADER_LENGTH (Perlbal/Socket.pm): "100k, arbitrary".
DEFAULT_MAX_HEAD_SIZE = 102400
#: Perl has no count limit; 100 is Apache's LimitRequestFields default.
DEFAULT_MAX_HEADER_COUNT = 100

# A LF not preceded by CR, or a CR not followed by LF.
_BARE_CR_OR_LF = re.compile(rb"(?<!\r)\n|\r(?!\n)")
_REQUEST_LINE = re.compile(rb"([" + TOKEN_CHARS + rb"]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3}) ([\t\x20-\x7e\x80-\xff]*)")
# Perl's absolute-URI rewrite (HTTPHeaders.pm): the path is kept, the host wins over Host:.
_ABSOLUTE_HTTP_URI = re.compile(r"http://([^/:]+?)(?::\d+)?(/.*)?")
_HOST_VALUE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+(?::[0-9]{0,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{0,5})?")
_DECIMAL = re.compile(r"[0-9]+")
# Perl's req_keep_alive / res_keep_alive match these words anywhere in Connection
KEEP_ALIVE_TOKEN = re.compile(r"\bkeep-alive\b")
CLOSE_TOKEN = re.compile(r"\bclose\b")
_MAX_CONTENT_LENGTH_DIGITS = 18  # 10**18 bytes is an exabyte; longer is an overflow attempt
_CRLF = b"\r\n"
_TERMINATOR = b"\r\n\r\n"

def _client_error(reason: str) -> Exception:
    # Perl closes the connection on any unparsable head ("parse_header_failure").
    return HttpError(400, reason, perl_closes_silently=True)


def _backend_error(reason: str) -> Exception:
    return BackendProtocolError(reason)


def _index_headers(headers: Sequence[Header]) -> dict[str, list[str]]:
    """Lower-cased field name -> its values in arrival order."""
    index: dict[str, list[str]] = {}
    for key, value in headers:
        lower = key.lower()
        found = index.get(lower)
        if found is None:
            index[lower] = [value]
        else:
            found.append(value)
    return index


def _check_line_endings(block: bytes, error: ErrorFactory) -> None:
    pairs = block.count(_CRLF)
    if block.count(b"\r") == pairs and block.count(b"\n") == pairs:
        return  # every CR and LF is in a CRLF (three C-speed counts beat the regex)
    match = _BARE_CR_OR_LF.search(block)
    if match is not None:
        kind = "bare LF" if block[match.start() : match.start() + 1] == b"\n" else "bare CR"
        raise error(f"{kind} line ending in message head")


def _content_length(values: list[str], error: ErrorFactory, negative: ErrorFactory) -> int | None:
    if not values:
        return None
    if len(values) == 1:  # the usual case, without the splitting below
        value = values[0]
        if value.isascii() and value.isdigit() and len(value.lstrip("0")) <= _MAX_CONTENT_LENGTH_DIGITS:
            return int(value)
    members = [member.strip(" \t") for value in values for member in value.split(",")]
    for member in members:
        if member.startswith("-") and _DECIMAL.fullmatch(member[1:]):
            raise negative("Invalid request: Content-Length < 0")
        if not _DECIMAL.fullmatch(member):
            raise error("malformed Content-Length")
        if len(member.lstrip("0")) > _MAX_CONTENT_LENGTH_DIGITS:
            raise error("Content-Length too large")
    lengths = {int(member) for member in members}
    if len(lengths) != 1:
        raise error("conflicting Content-Length values")
    return lengths.pop()


def _split_head(raw: bytes, max_head_size: int, error: ErrorFactory, too_big: ErrorFactory) -> list[bytes]:
    if len(raw) > max_head_size:
        raise too_big("message head too large")
    if not raw.endswith(_TERMINATOR):
        raise error("message head does not end with CRLF CRLF")
    block = raw[: -len(_TERMINATOR)]
    if _TERMINATOR in block:
        raise error("empty line inside message head")
    _check_line_endings(block, error)
    return block.split(_CRLF)


class _FieldLookups:
    """``get``/``get_all`` for both heads, answered from their ``by_name``
    index (built while parsing, or at the first lookup after a
    ``dataclasses.replace``)."""

    __slots__ = ()
    headers: tuple[Header, ...]
    by_name: dict[str, list[str]] | None

    def _names(self) -> dict[str, list[str]]:
        index = self.by_name
        if index is None:
            index = _index_headers(self.headers)
            object.__setattr__(self, "by_name", index)
        return index

    def get(self, name: str) -> str | None:
        """The value of ``name``, duplicates joined with ", " as Perl's HTTPHeaders merges them."""
        values = self._names().get(name.lower())
        return ", ".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._names().get(name.lower(), ()))


@dataclass(frozen=True, slots=True)
class RequestHead(_FieldLookups):
    """A validated client request head.

    ``target`` is the request target as Perl sees it: an absolute
    ``http://host[:port]/path`` is reduced to its path, and its host (lower
    cased) replaces the Host header, as Perl's HTTPHeaders does.
    """

    method: str
    target: str
    http_version: tuple[int, int]
    headers: tuple[Header, ...]
    content_length: int | None
    chunked: bool

    #: lower-cased name -> values, built at parse time or on the first lookup
    #: (not an __init__ argument, so dataclasses.replace never copies a stale one)
    by_name: dict[str, list[str]] | None = field(default=None, init=False, compare=False,
                                                 repr=False)

    @property
    def version_string(self) -> str:
        return f"{self.http_version[0]}.{self.http_version[1]}"

    @property
    def wants_keep_alive(self) -> bool:
        """The client's half of Perl's ``req_keep_alive``.

        HTTP/1.0 must ask with a ``keep-alive`` token; any ``close`` token
        refuses.  Perl matches these with ``\\b...\\b`` regexes over the
        whole Connection value, and so do we.
        """
        connection = (self.get("Connection") or "").lower()
        if self.http_version < (1, 1) and not KEEP_ALIVE_TOKEN.search(connection):
            return False
        return not CLOSE_TOKEN.search(connection)


@dataclass(frozen=True, slots=True)
class ResponseHead(_FieldLookups):
    """A validated backend response head.  ``reason`` may be empty."""

    status: int
    reason: str
    http_version: tuple[int, int]
    headers: tuple[Header, ...]
    content_length: int | None
    chunked: bool

    #: lower-cased name -> values, built at parse time or on the first lookup
    #: (not an __init__ argument, so dataclasses.replace never copies a stale one)
    by_name: dict[str, list[str]] | None = field(default=None, init=False, compare=False,
                                                 repr=False)

    def has_body(self, request_method: str) -> bool:
        """Whether a body follows (RFC 9112 section 6.3; Perl's ``content_length``)."""
        if request_method == "HEAD":
            return False
        return not (100 <= self.status <= 199 or self.status in (204, 304))


def _too_big_request(reason: str) -> Exception:
    return HttpError(431, reason, perl_closes_silently=True)


def _too_many_fields(reason: str) -> Exception:
    return HttpError(431, reason)


def _negative_length(reason: str) -> Exception:
    # Perl answers this one (ClientProxy::handle_request) instead of closing silently.
    return HttpError(400, reason)


def parse_request_head(
    raw: bytes,
    *,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
) -> RequestHead:
    """Parse the bytes of one request head, up to and including the empty line."""
    lines = _split_head(raw, max_head_size, _client_error, _too_big_request)
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise _client_error("malformed request line")
    version = (int(match.group(3)), int(match.group(4)))
    if version not in ((1, 0), (1, 1)):
        raise HttpError(505, "HTTP version not supported")
    method = match.group(1).decode("ascii")
    target = match.group(2).decode("ascii")
    headers = parse_field_lines(lines[1:], _client_error, max_header_count, _too_many_fields)
    index = _index_headers(headers)

    content_length = _content_length(index.get("content-length", []), _client_error,
                                     _negative_length)
    transfer_encodings = index.get("transfer-encoding", [])
    chunked = False
    if transfer_encodings:
        if version < (1, 1):
            raise _client_error("Transfer-Encoding on an HTTP/1.0 request")
        if content_length is not None:
            raise _client_error("both Content-Length and Transfer-Encoding")
        if len(transfer_encodings) != 1 or transfer_encodings[0].lower() != "chunked":
            # Only exactly "chunked" is understood; anything else (lists,
            # "xchunked", repeated fields) is where parsers disagree.
            raise _client_error("unsupported Transfer-Encoding")
        chunked = True

    hosts = index.get("host", [])
    if len(hosts) > 1:
        raise _client_error("duplicate Host header")
    absolute = None if target[:1] == "/" else _ABSOLUTE_HTTP_URI.fullmatch(target)
    if absolute is not None:
        target = absolute.group(2) or "/"
        headers = _set_host(headers, absolute.group(1).lower())
        hosts = [absolute.group(1).lower()]
        index = _index_headers(headers)
    if method == "CONNECT":
        raise HttpError(405, "CONNECT is not supported: this is a reverse proxy")
    if not (target.startswith("/") or (target == "*" and method == "OPTIONS")):
        raise _client_error("malformed request target")
    if hosts and hosts[0] and not _HOST_VALUE.fullmatch(hosts[0]):
        raise _client_error("malformed Host header")
    if version >= (1, 1) and not (hosts and hosts[0]):
        raise _client_error("HTTP 1.1 requires host header")
    head = RequestHead(method, target, version, tuple(headers), content_length, chunked)
    object.__setattr__(head, "by_name", index)
    return head


def _set_host(headers: list[Header], host: str) -> list[Header]:
    for index, (name, _value) in enumerate(headers):
        if name.lower() == "host":
            return headers[:index] + [(name, host)] + headers[index + 1 :]
    return headers + [("Host", host)]


def parse_response_head(
    raw: bytes,
    *,
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
) -> ResponseHead:
    """Parse the bytes of one backend response head, up to and including the empty line."""
    lines = _split_head(raw, max_head_size, _backend_error, _backend_error)
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        # Perl also insists on the space after the code ("Bogus response line").
        raise _backend_error("malformed status line")
    version = (int(match.group(1)), int(match.group(2)))
    if version[0] != 1:
        raise _backend_error("unsupported HTTP version in status line")
    status = int(match.group(3))
    if status < 100:
        raise _backend_error("status code out of range")
    reason = match.group(4).decode("latin-1").strip(" \t")
    headers = parse_field_lines(lines[1:], _backend_error, max_header_count)
    index = _index_headers(headers)
    content_length = _content_length(index.get("content-length", []), _backend_error,
                                     _backend_error)
    codings = [
        coding.strip(" \t").lower()
        for value in index.get("transfer-encoding", ())
        for coding in value.split(",")
    ]
    chunked = False
    if codings:
        if content_length is not None:
            raise _backend_error("both Content-Length and Transfer-Encoding")
        if version < (1, 1):
            raise _backend_error("Transfer-Encoding on an HTTP/1.0 response")
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            raise _backend_error("response transfer-coding does not end in chunked")
        chunked = True
    response = ResponseHead(status, reason, version, tuple(headers), content_length, chunked)
    object.__setattr__(response, "by_name", index)
    return response


HeadT = TypeVar("HeadT", RequestHead, ResponseHead)


class _Reader(Generic[HeadT]):
    """Accumulate bytes until CRLFCRLF, refusing oversize and bare line ends early."""

    _skip_leading_crlf = False

    def __init__(
        self,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
        max_header_count: int = DEFAULT_MAX_HEADER_COUNT,
    ) -> None:
        self.max_head_size = max_head_size
        self.max_header_count = max_header_count
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already searched
        self._skipped = 0  # leading CRLF bytes thrown away (they count toward the limit)
        self._leftover = b""
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    @property
    def leftover(self) -> bytes:
        """Bytes that arrived after the head: body or pipelined data."""
        return self._leftover

    def _error(self, reason: str) -> Exception:
        raise NotImplementedError

    def _too_big(self) -> Exception:
        raise NotImplementedError

    def _parse(self, raw: bytes) -> HeadT:
        raise NotImplementedError

    def feed(self, data: bytes) -> HeadT | None:
        """Add bytes; return the parsed head once complete, else None."""
        if self._done:
            raise RuntimeError("head already complete; use .leftover and a new reader")
        if not self._buffer and not self._skipped and type(data) is bytes:
            # the usual case: the whole head in the first read; no copying
            end = data.find(_TERMINATOR)
            if 0 < end and end + len(_TERMINATOR) <= self.max_head_size and data[:2] != _CRLF:
                head_end = end + len(_TERMINATOR)
                self._leftover = data[head_end:]
                self._done = True
                return self._parse(data[:head_end])
        self._buffer += data
        if self._skip_leading_crlf:
            # RFC 9112 section 2.2; also Perl's ditch_leading_rn after a POST body.
            while self._buffer[:2] == _CRLF:
                del self._buffer[:2]
                self._skipped += 2
                self._scanned = 0
        start = max(0, self._scanned - 3)
        end = self._buffer.find(_TERMINATOR, start)
        limit = self.max_head_size - self._skipped
        if end == -1:
            bare = _BARE_CR_OR_LF.search(self._buffer, max(0, self._scanned - 1))
            if bare is not None and not (
                bare.start() == len(self._buffer) - 1 and self._buffer[-1:] == b"\r"
            ):
                raise self._error("bare CR or LF line ending in message head")
            self._scanned = len(self._buffer)
            if len(self._buffer) >= limit:
                raise self._too_big()
            return None
        head_end = end + len(_TERMINATOR)
        if head_end > limit:
            raise self._too_big()
        raw = bytes(self._buffer[:head_end])
        self._leftover = bytes(self._buffer[head_end:])
        self._buffer = bytearray()
        self._done = True
        return self._parse(raw)


class HeadReader(_Reader[RequestHead]):
    """Incremental reader of one client request head (raises HttpError)."""

    _skip_leading_crlf = True

    def _error(self, reason: str) -> Exception:
        return _client_error(reason)

    def _too_big(self) -> Exception:
        return _too_big_request("request head too large")

    def _parse(self, raw: bytes) -> RequestHead:
        return parse_request_head(raw, max_head_size=len(raw), max_header_count=self.max_header_count)


class ResponseHeadReader(_Reader[ResponseHead]):
    """Incremental reader of one backend response head (raises BackendProtocolError)."""

    def _error(self, reason: str) -> Exception:
        return _backend_error(reason)

    def _too_big(self) -> Exception:
        return _backend_error("response head too large")

    def _parse(self, raw: bytes) -> ResponseHead:
        return parse_response_head(raw, max_head_size=len(raw), max_header_count=self.max_header_count)
