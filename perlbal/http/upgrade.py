"""Protocol upgrades (WebSocket and the like) through the reverse proxy: the heads.

RFC 9110 section 7.8: a client asks with ``Upgrade`` and a ``Connection:
upgrade`` token on an HTTP/1.1 request; a server that agrees answers ``101
Switching Protocols`` and both ends speak the new protocol on the same
connection from the byte after that head.  Perl Perlbal has no such thing (it
speaks HTTP/1.0 to backends, where Upgrade means nothing).  Here:

* ``wants_upgrade(head)``: whether a client's request asks to switch;
* ``backend_upgrade_head(...)``: the request for the backend, HTTP/1.1, with
  the service's usual rewrites (X-Forwarded-For and friends, HEADER rules) and
  the client's ``Upgrade`` kept, ``Connection: Upgrade``;
* ``client_switch_head(reply)``: the backend's 101 for the client, fields as
  the backend sent them (``Sec-WebSocket-Accept`` and the rest) but hop-by-hop
  ones other than Upgrade/Connection dropped.

The byte tunnel itself is ``perlbal.runtime.tunnel``.  Invariant: every field
is checked when rendered (``render_fields``).
"""

from __future__ import annotations

import re

from perlbal.http.fields import Header, render_fields
from perlbal.http.head import RequestHead, ResponseHead
from perlbal.http.proxyheaders import backend_request_headers, backend_request_line, set_header

__all__ = ["wants_upgrade", "backend_upgrade_head", "client_switch_head"]

_UPGRADE_TOKEN = re.compile(r"(?:^|,)\s*upgrade\s*(?:,|$)", re.IGNORECASE)
# hop-by-hop fields never relayed with a 101 (Upgrade and Connection are set anew)
_DROPPED = frozenset({"keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                      "content-length"})


def wants_upgrade(head: RequestHead) -> bool:
    """An HTTP/1.1 request with Upgrade and a Connection ``upgrade`` token."""
    return (head.http_version >= (1, 1) and bool(head.get("Upgrade"))
            and _UPGRADE_TOKEN.search(head.get("Connection") or "") is not None
            and not head.chunked and not head.content_length)


def backend_upgrade_head(head: RequestHead, *, client_ip: str, trusted: bool, blind_proxy: bool,
                         enable_reproxy: bool, remove: tuple[str, ...] | list[str] = (),
                         insert: tuple[Header, ...] | list[Header] = ()) -> bytes:
    headers = backend_request_headers(
        head.headers, client_ip=client_ip, trusted=trusted, blind_proxy=blind_proxy,
        persist_backend=False, enable_reproxy=enable_reproxy, remove=remove, insert=insert)
    headers = set_header(headers, "Connection", "Upgrade")
    headers = set_header(headers, "Upgrade", head.get("Upgrade"))
    line = backend_request_line(head.method, head.target).replace(b" HTTP/1.0\r\n", b" HTTP/1.1\r\n")
    return line + render_fields(headers) + b"\r\n"


def client_switch_head(reply: ResponseHead) -> bytes:
    headers = [(k, v) for k, v in reply.headers if k.lower() not in _DROPPED]
    reason = reply.reason or "Switching Protocols"
    return (b"HTTP/1.1 101 " + reason.encode("latin-1") + b"\r\n" + render_fields(headers)
            + b"\r\n")
