"""Protocol upgrades (WebSocket and the like) through the reverse proxy: the heads.

RFC 9110 section 7.8: a client asks with ``Upgrade`` and a ``Connection:
upgrade`` token on an HTTP/1.1 request; a server that agrees answers ``101
Switching Protocols`` and both ends speak the new protocol on the same
connection from the byte after that head.  Perl Perlbal has no such thing (it
speaks HTTP/1.0 to backends, where Upgrade means nothing).  Here:

* ``relayed_protocols(head, allowed)``: of the protocols a client's request
  asks to switch to, those we relay (the service's ``upgrade_protocols``);
  empty when the request is to be served as an ordinary one;
* ``backend_upgrade_head(...)``: the request for the backend, HTTP/1.1, with
  the service's usual rewrites (X-Forwarded-For and friends, HEADER rules),
  ``Upgrade`` naming only the relayed protocols, ``Connection: Upgrade``;
* ``switch_refusal(reply, relayed)``: why a backend's 101 must not be relayed
  (None when it may);
* ``client_switch_head(reply)``: the backend's 101 for the client, fields as
  the backend sent them (``Sec-WebSocket-Accept`` and the rest) but hop-by-hop
  ones other than Upgrade/Connection dropped.

Security (issue 24 item 2): a tunnel is opaque to routing, ACCESS rules,
HEADER rules and every plugin, so only protocols the operator listed are ever
relayed.  ``h2c`` never is, even when listed: after an h2c switch every
HTTP/2 stream would reach the backend unrouted and unfiltered (RFC 9113
section 3.1 retired the mechanism anyway); nor is HTTP itself (``HTTP/2.0``,
``h2``), for the same reason.  A protocol the service does not
relay costs the client its Upgrade, never its request: the runtime's
hop-by-hop stripping drops ``Upgrade`` and ``HTTP2-Settings`` (and every
field Connection names), and the request is an ordinary one.  A backend that
answers 101 anyway, or switches to a protocol we did not offer it, gets the
client a 502.

The byte tunnel itself is ``perlbal.runtime.tunnel``.  Invariant: every field
is checked when rendered (``render_fields``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from perlbal.http.backend import UNOFFERED_SWITCH
from perlbal.http.fields import Header, render_fields
from perlbal.http.head import RequestHead, ResponseHead
from perlbal.http.proxyheaders import backend_request_headers, backend_request_line, set_header

__all__ = ["NEVER_RELAYED", "wants_upgrade", "relayed_protocols", "backend_upgrade_head",
           "switch_refusal", "client_switch_head"]

#: protocol names never relayed, whatever upgrade_protocols says (see the module
#: docstring): h2c, and HTTP itself in any version or name (``HTTP/2.0``, ``h2``),
#: whose requests on the tunnel would all bypass routing in the same way
NEVER_RELAYED = frozenset({"h2c", "h2", "http"})

_UPGRADE_TOKEN = re.compile(r"(?:^|,)\s*upgrade\s*(?:,|$)", re.IGNORECASE)
# hop-by-hop fields never relayed with a 101 (Upgrade and Connection are set anew)
_DROPPED = frozenset({"keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
                      "content-length"})


def wants_upgrade(head: RequestHead) -> bool:
    """An HTTP/1.1 request with Upgrade and a Connection ``upgrade`` token."""
    return (head.http_version >= (1, 1) and bool(head.get("Upgrade"))
            and _UPGRADE_TOKEN.search(head.get("Connection") or "") is not None
            and not head.chunked and not head.content_length)


def _protocols(value: str | None) -> list[str]:
    """The protocols of an Upgrade field value (RFC 9110 section 7.8:
    ``protocol-name ["/" protocol-version]``, comma-separated)."""
    return [token.strip(" \t") for token in (value or "").split(",") if token.strip(" \t")]


def _listed(protocol: str, allowed: Sequence[str]) -> bool:
    """``protocol`` is one of ``allowed`` (case-insensitive); a listed name without a
    version stands for every version of it.  ``NEVER_RELAYED`` names never are."""
    name = protocol.split("/", 1)[0].lower()
    if name in NEVER_RELAYED:
        return False
    lowered = protocol.lower()
    return any(entry.lower() in (lowered, name) for entry in allowed)


def relayed_protocols(head: RequestHead, allowed: Sequence[str]) -> tuple[str, ...]:
    """The protocols of the client's Upgrade that we relay, in its order; empty
    when the request does not ask to switch or asks only for others."""
    if not wants_upgrade(head):
        return ()
    return tuple(p for p in _protocols(head.get("Upgrade")) if _listed(p, allowed))


def backend_upgrade_head(head: RequestHead, protocols: Sequence[str], *, client_ip: str,
                         trusted: bool, blind_proxy: bool, enable_reproxy: bool,
                         remove: tuple[str, ...] | list[str] = (),
                         insert: tuple[Header, ...] | list[Header] = (),
                         listener: tuple[str, int] | None = None) -> bytes:
    """The backend's HTTP/1.1 request asking to switch to ``protocols`` (from
    ``relayed_protocols``); ``listener`` as ``backend_request_headers`` takes it."""
    headers = backend_request_headers(
        head.headers, client_ip=client_ip, trusted=trusted, blind_proxy=blind_proxy,
        persist_backend=False, enable_reproxy=enable_reproxy, remove=remove, insert=insert,
        listener=listener)
    headers = set_header(headers, "Connection", "Upgrade")
    headers = set_header(headers, "Upgrade", ", ".join(protocols))
    line = backend_request_line(head.method, head.target).replace(b" HTTP/1.0\r\n", b" HTTP/1.1\r\n")
    return line + render_fields(headers) + b"\r\n"


def switch_refusal(reply: ResponseHead, relayed: Sequence[str]) -> str | None:
    """Why the backend's 101 ``reply`` must not reach the client (it gets 502), or
    None.  RFC 9110 section 7.8: a 101 names in Upgrade the protocol(s) switched
    to, which must be among those the request offered: here ``relayed``, what
    we sent the backend."""
    if not relayed:
        return UNOFFERED_SWITCH
    switched = _protocols(reply.get("Upgrade"))
    if not switched:
        return "101 Switching Protocols without an Upgrade field naming the protocol"
    for protocol in switched:
        if not any(protocol.lower() == offered.lower()
                   or protocol.split("/", 1)[0].lower() == offered.lower() for offered in relayed):
            return (f"101 Switching Protocols to {protocol!r}, which was not offered "
                    f"(offered: {', '.join(relayed)})")
    return None


def client_switch_head(reply: ResponseHead) -> bytes:
    headers = [(k, v) for k, v in reply.headers if k.lower() not in _DROPPED]
    reason = reply.reason or "Switching Protocols"
    return (b"HTTP/1.1 101 " + reason.encode("latin-1") + b"\r\n" + render_fields(headers)
            + b"\r\n")
