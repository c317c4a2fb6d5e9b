"""Byte-exact rendering of the responses Perl Perlbal 1.80 generates itself.

Perl speaks HTTP/1.0 to every client (``setup_keepalive`` forces it), takes its
reason phrases from the ``$HTTPCode`` table in HTTPHeaders.pm (falling back to
an empty phrase, so ``HTTP/1.0 405 `` ends in a space), and builds error pages
in ``ClientHTTPBase::_simple_response`` as ``<h1>CODE - PHRASE</h1>\\n`` plus an
optional message.  Recorded from the live server::

    HTTP/1.0 404 Not Found\\r\\n
    Content-Type: text/html\\r\\n
    Content-Length: 25\\r\\n
    Server: Perlbal\\r\\n
    Connection: close\\r\\n
    \\r\\n
    <h1>404 - Not Found</h1>\\n

Public API::

    reason_phrase(status) -> str
    status_line(status, reason=None) -> bytes
    render_head(status, headers, reason=None) -> bytes
    simple_response(status, message=None, *, keep_alive=False, idle_timeout=30,
                    server_tokens=True, head_request=False) -> bytes
    keep_alive_headers(keep_alive, idle_timeout) -> list[Header]
    file_response_head(status, *, date, last_modified, content_type, size,
                       range_start=None, range_end=None, keep_alive=False,
                       idle_timeout=30, server_tokens=True) -> bytes

Invariants: output is always ``HTTP/1.0``; header order is Perl's insertion
order; ``Server: Perlbal`` appears only when ``server_tokens`` is on; 204 and
304 never carry a body, Content-Type or Content-Length.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Mapping

from perlbal.http.fields import UnsafeField, render_fields
from perlbal.http.head import Header

__all__ = [
    "HTTP_CODE_ENGLISH",
    "SERVER_TOKEN",
    "reason_phrase",
    "status_line",
    "render_head",
    "simple_response",
    "keep_alive_headers",
    "file_response_head",
]

#: The value of the Server header Perl sends when server_tokens is on.
SERVER_TOKEN = "Perlbal"

#: Perl's $HTTPCode table, phrase for phrase (note "Bad request", "Permanent
#: Redirect" for 301, "Request range not satisfiable").
HTTP_CODE_ENGLISH: Mapping[int, str] = MappingProxyType(
    {
        200: "OK",
        204: "No Content",
        206: "Partial Content",
        301: "Permanent Redirect",
        302: "Found",
        304: "Not Modified",
        400: "Bad request",
        403: "Forbidden",
        404: "Not Found",
        416: "Request range not satisfiable",
        500: "Internal Server Error",
        501: "Not Implemented",
        503: "Service Unavailable",
    }
)


_REASON = re.compile("[\t\x20-\x7e\x80-\xff]*")


def reason_phrase(status: int) -> str:
    """Perl's phrase for ``status``; "" for codes outside its table."""
    return HTTP_CODE_ENGLISH.get(status, "")


def status_line(status: int, reason: str | None = None) -> bytes:
    """``HTTP/1.0 <status> <reason>\\r\\n``; an empty/None reason uses Perl's table.

    A relayed backend reply keeps the backend's own phrase (Perl's
    ``_codetext``), which is why ``reason`` can be given.
    """
    phrase = reason if reason else reason_phrase(status)
    if not 100 <= status <= 999 or not _REASON.fullmatch(phrase):
        raise UnsafeField("status line cannot be written")
    return b"HTTP/1.0 %d %s\r\n" % (status, phrase.encode("latin-1"))


def render_head(status: int, headers: list[Header] | tuple[Header, ...], reason: str | None = None) -> bytes:
    """A whole response head: status line, fields in order, empty line.
    Raises :class:`UnsafeField` for a field that could split the head."""
    return status_line(status, reason) + render_fields(headers) + b"\r\n"


def keep_alive_headers(keep_alive: bool, idle_timeout: int) -> list[Header]:
    """What ``setup_keepalive`` appends: Connection, and Keep-Alive when persisting.

    A zero ``idle_timeout`` (persist_client_idle_timeout) leaves Keep-Alive out.
    """
    if not keep_alive:
        return [("Connection", "close")]
    headers: list[Header] = [("Connection", "keep-alive")]
    if idle_timeout:
        headers.append(("Keep-Alive", f"timeout={idle_timeout}, max=100"))
    return headers


def simple_response(
    status: int,
    message: str | None = None,
    *,
    keep_alive: bool = False,
    idle_timeout: int = 30,
    server_tokens: bool = True,
    head_request: bool = False,
) -> bytes:
    """Perl's ``_simple_response``: the full bytes of a generated status page.

    ``keep_alive`` is the outcome of persist_client and the client's wish
    (see :func:`perlbal.http.proxyheaders.client_keep_alive`); these pages
    always carry a length, so nothing else matters.  For HEAD requests the
    head still announces the body's length but the body is not sent.
    """
    headers: list[Header] = []
    body = b""
    if status not in (204, 304):
        phrase = reason_phrase(status)
        text = f"<h1>{status}" + (f" - {phrase}" if phrase else "") + "</h1>\n" + (message or "")
        body = text.encode("utf-8")
        headers.append(("Content-Type", "text/html"))
        headers.append(("Content-Length", str(len(body))))
    if server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    headers.extend(keep_alive_headers(keep_alive, idle_timeout))
    head = render_head(status, headers)
    return head if head_request else head + body


def file_response_head(
    status: int,
    *,
    date: str,
    last_modified: str,
    content_type: str,
    size: int,
    range_start: int | None = None,
    range_end: int | None = None,
    keep_alive: bool = False,
    idle_timeout: int = 30,
    server_tokens: bool = True,
) -> bytes:
    """The head ``_serve_request`` sends for a regular file (200, 206, 304 or 416).

    ``date`` and ``last_modified`` are already formatted HTTP dates.  The
    header order mirrors Perl's: for 416 the Content-Range/Content-Length
    pair comes first because Perl sets it before Date.
    """
    return render_head(status, file_response_headers(
        status, date=date, last_modified=last_modified, content_type=content_type, size=size,
        range_start=range_start, range_end=range_end, keep_alive=keep_alive,
        idle_timeout=idle_timeout, server_tokens=server_tokens))


def file_response_headers(
    status: int,
    *,
    date: str,
    last_modified: str,
    content_type: str,
    size: int,
    range_start: int | None = None,
    range_end: int | None = None,
    keep_alive: bool = False,
    idle_timeout: int = 30,
    server_tokens: bool = True,
) -> list[Header]:
    """The header fields of :func:`file_response_head`, for plugins to modify."""
    headers: list[Header] = []
    if status == 416:
        headers.append(("Content-Range", f"bytes */{size}" if size else "*"))
        headers.append(("Content-Length", "0"))
    headers.append(("Date", date))
    if server_tokens:
        headers.append(("Server", SERVER_TOKEN))
    headers.append(("Last-Modified", last_modified))
    headers.append(("Accept-Ranges", "bytes"))
    if status in (200, 206):
        headers.append(("Content-Type", content_type))
        if status == 206:
            if range_start is None or range_end is None:
                raise ValueError("a 206 head needs range_start and range_end")
            headers.append(("Content-Range", f"bytes {range_start}-{range_end}/{size}"))
            headers.append(("Content-Length", str(range_end - range_start + 1)))
        else:
            headers.append(("Content-Length", str(size)))
    headers.extend(keep_alive_headers(keep_alive, idle_timeout))
    return headers
