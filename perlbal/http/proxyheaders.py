"""Header rewriting on the proxy path, as Perl Perlbal 1.80 does it (plus hop-by-hop hygiene).

All functions are pure: they take an ordered header list and return a new
one; the input is never mutated.  "Setting" a header follows Perl's
``HTTPHeaders::header($name, $value)``: an existing field keeps its position
and the case of its name and gets the new value (later duplicates are
dropped, since Perl merged them into the first), a missing one is appended,
and ``None`` removes every occurrence.

What Perl does, and what we match (BackendHTTP::assign_client,
ClientHTTPBase::setup_keepalive, Service::munge_headers):

* to the backend: HTTP/1.0 request line; ``Connection: keep-alive`` when
  persist_backend is on, else ``close``; ``X-Proxy-Capabilities:
  reproxy-file`` when enable_reproxy is on; then forwarding headers; then
  ``HEADER <svc> remove/insert`` (removals first, then insertions);
* forwarding: a trusted peer's X-Forwarded-For gets ``, <peer ip>`` appended
  (not even that under blind_proxy), X-Host / X-Forwarded-Host pass through;
  an untrusted peer's X-Forwarded-For is replaced by its IP and its X-Host /
  X-Forwarded-Host are deleted;
* forwarding, beyond Perl (``forwarded_headers = sanitize``, the default; issue
  24 item 10): when the caller passes ``listener`` (the scheme and port the
  client connected to), an untrusted peer's X-Forwarded-Proto,
  X-Forwarded-Port and Forwarded go too, and X-Forwarded-Proto /
  X-Forwarded-Port are set from the listener, so a plain-HTTP client cannot
  claim to have come over TLS; a trusted peer's are kept as it sent them, and
  only the missing ones are set (none under blind_proxy).  Without
  ``listener`` (``forwarded_headers = perl``) the client's pass as Perl passes
  them;
* to the client: HTTP/1.0 status line; keep-alive only if persist_client is
  on, the client asked (HTTP/1.0 needs ``keep-alive``, any ``close`` refuses),
  and the length is known (Content-Length, 204, 304 or a HEAD request); then
  ``Connection: keep-alive`` + ``Keep-Alive: timeout=N, max=100`` or
  ``Connection: close`` with Keep-Alive removed.  Perl adds no Server header
  to relayed responses (only to pages it makes; see responses.py).

Where we are stricter than Perl: Perl forwards the other hop-by-hop fields
(Keep-Alive, TE, Upgrade, fields named in Connection...) verbatim in both
directions; with ``strip_hop_by_hop=True`` (the default) we drop them
(RFC 9110 section 7.6.1).  Transfer-Encoding is among them: the runtime
decodes chunked bodies and must send a Content-Length instead.

A sender may nominate further fields as hop-by-hop by naming them in
Connection, but not every field: ``Connection: close, Host, Authorization``
must not strip the request's Host or credentials (security issue #19).  The
names in ``CONNECTION_PROTECTED`` -- fields with end-to-end meaning that the
backend or the proxy itself relies on (target, credentials, framing and
representation, conditional and range requests, the forwarding chain) -- are
never removed because Connection names them; any other nominated field is.

Public API::

    set_header(headers, name, value) -> list[Header]
    remove_headers(headers, names) -> list[Header]
    strip_hop_by_hop(headers, keep=()) -> list[Header]
    forwarding_headers(headers, client_ip, *, trusted, blind_proxy, listener=None)
        -> list[Header]
    munge_headers(headers, remove, insert) -> list[Header]
    backend_request_headers(headers, *, client_ip, trusted, blind_proxy,
        persist_backend, enable_reproxy, remove=(), insert=(),
        strip_hop_by_hop=True, listener=None) -> list[Header]
    backend_request_line(method, target) -> bytes
    client_keep_alive(request, response_headers, status, *, persist_client) -> bool
    backend_keep_alive(response, request_method) -> bool
    client_response_headers(headers, *, keep_alive, idle_timeout=30,
        strip_hop_by_hop=True) -> list[Header]
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from perlbal.http.fields import UnsafeField, is_token
from perlbal.http.head import CLOSE_TOKEN, KEEP_ALIVE_TOKEN, Header, RequestHead, ResponseHead, header_get
from perlbal.http.responses import keep_alive_headers

__all__ = [
    "HOP_BY_HOP",
    "CONNECTION_PROTECTED",
    "connection_nominated",
    "set_header",
    "remove_headers",
    "strip_hop_by_hop",
    "forwarding_headers",
    "munge_headers",
    "backend_request_headers",
    "backend_request_line",
    "client_keep_alive",
    "backend_keep_alive",
    "client_response_headers",
]

Headers = Sequence[Header]

#: RFC 9110 section 7.6.1 plus the de-facto Keep-Alive and Proxy-Connection, and
#: HTTP2-Settings (RFC 7540 section 3.2.1: it belongs to an h2c upgrade, which is
#: never relayed, perlbal.http.upgrade).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "http2-settings",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    }
)


#: Fields a Connection header may NOT nominate for removal (see the module docstring):
#: RFC 9110's end-to-end request/representation fields plus the forwarding
#: headers Perlbal itself reads and writes.
CONNECTION_PROTECTED = frozenset(
    {
        "host",
        "authorization",
        "proxy-authorization",
        "cookie",
        "content-length",
        "content-type",
        "content-encoding",
        "content-range",
        "content-md5",
        "transfer-encoding",
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "expect",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-host",
        "x-real-ip",
        "forwarded",
        "x-proxy-capabilities",
    }
)


def connection_nominated(headers: Headers) -> set[str]:
    """Lower-cased field names the Connection header(s) nominate as hop-by-hop,
    less the ``CONNECTION_PROTECTED`` ones (which always travel end to end)."""
    named: set[str] = set()
    for key, value in headers:
        if key.lower() == "connection":
            named.update(token.strip(" \t").lower() for token in value.split(","))
    named.discard("")
    return named - CONNECTION_PROTECTED


def set_header(headers: Headers, name: str, value: str | None) -> list[Header]:
    """Perl's ``header($name, $value)`` on an ordered list (see module docstring)."""
    wanted = name.lower()
    result: list[Header] = []
    placed = False
    for key, old in headers:
        if key.lower() != wanted:
            result.append((key, old))
        elif value is not None and not placed:
            result.append((key, value))
            placed = True
    if value is not None and not placed:
        result.append((name, value))
    return result


def remove_headers(headers: Headers, names: Iterable[str]) -> list[Header]:
    """Drop every field whose name is in ``names`` (case-insensitive)."""
    doomed = {name.lower() for name in names}
    return [(key, value) for key, value in headers if key.lower() not in doomed]


def strip_hop_by_hop(headers: Headers, keep: Iterable[str] = ()) -> list[Header]:
    """Remove hop-by-hop fields and every unprotected field named in Connection.

    ``keep`` names fields to leave in place (used to keep Connection's
    position so that it can be overwritten where Perl would have put it).
    """
    doomed = (HOP_BY_HOP | connection_nominated(headers)) - {name.lower() for name in keep}
    return [(key, value) for key, value in headers if key.lower() not in doomed]


# Keyword arguments below are named like this function; keep a second handle on it.
_strip_hop_by_hop = strip_hop_by_hop


def _forwarded_for(headers: Headers, client_ip: str) -> str:
    """A trusted peer's X-Forwarded-For with ``client_ip`` appended."""
    existing = header_get(headers, "X-Forwarded-For") or ""
    # Perl splits on /,\s*/ and re-joins with ", "; empty members are dropped.
    hops = [hop for hop in re.split(r",\s*", existing) if hop]
    return ", ".join([*hops, client_ip])


def forwarding_headers(headers: Headers, client_ip: str, *, trusted: bool, blind_proxy: bool,
                       listener: tuple[str, int] | None = None) -> list[Header]:
    """X-Forwarded-For / X-Host / X-Forwarded-Host as BackendHTTP::assign_client sets
    them; with ``listener`` the scheme and port fields too (see the module docstring)."""
    return _set_many(headers, _forwarding_updates(headers, client_ip, trusted=trusted,
                                                  blind_proxy=blind_proxy, listener=listener))


def _forwarding_updates(headers: Headers, client_ip: str, *, trusted: bool, blind_proxy: bool,
                        listener: tuple[str, int] | None) -> dict[str, tuple[str, str | None]]:
    """The forwarding fields to set (lower-cased name -> (name, value or None to
    remove)), for ``_set_many``."""
    updates: dict[str, tuple[str, str | None]] = {}
    if trusted:
        if blind_proxy:
            return updates
        updates["x-forwarded-for"] = ("X-Forwarded-For", _forwarded_for(headers, client_ip))
        if listener is not None:  # the upstream proxy's own claims stand; fill in the rest
            scheme, port = listener
            if header_get(headers, "X-Forwarded-Proto") is None:
                updates["x-forwarded-proto"] = ("X-Forwarded-Proto", scheme)
            if header_get(headers, "X-Forwarded-Port") is None:
                updates["x-forwarded-port"] = ("X-Forwarded-Port", str(port))
        return updates
    updates["x-forwarded-for"] = ("X-Forwarded-For", client_ip)
    updates["x-host"] = ("X-Host", None)
    updates["x-forwarded-host"] = ("X-Forwarded-Host", None)
    if listener is not None:
        updates["forwarded"] = ("Forwarded", None)
        updates["x-forwarded-proto"] = ("X-Forwarded-Proto", listener[0])
        updates["x-forwarded-port"] = ("X-Forwarded-Port", str(listener[1]))
    return updates


def munge_headers(headers: Headers, remove: Iterable[str], insert: Iterable[Header]) -> list[Header]:
    """``HEADER <service> remove|insert`` as Service::munge_headers applies them.

    Every removal runs first, then each insertion sets (replaces in place or
    appends) its field.  Note that Perl's console lowercases the whole
    ``HEADER`` command line, so names inserted from a config arrive lowercase
    (recorded: ``x-added: 1``); that is the interpreter's business, not ours.
    """
    result = remove_headers(headers, remove)
    for name, value in insert:
        result = set_header(result, name, value)
    return result


def backend_request_headers(
    headers: Headers,
    *,
    client_ip: str,
    trusted: bool,
    blind_proxy: bool,
    persist_backend: bool,
    enable_reproxy: bool,
    remove: Iterable[str] = (),
    insert: Iterable[Header] = (),
    strip_hop_by_hop: bool = True,
    listener: tuple[str, int] | None = None,
) -> list[Header]:
    """The header list Perlbal sends to a backend for a client's request.

    The same as ``strip_hop_by_hop`` (keeping Connection), then setting
    Connection, X-Proxy-Capabilities and the forwarding headers (``listener``:
    see ``forwarding_headers``), then ``munge_headers`` -- but the settings are
    made in one pass (this runs for every proxied request)."""
    result = _strip_hop_by_hop(headers, keep=("connection",)) if strip_hop_by_hop else headers
    updates: dict[str, tuple[str, str | None]] = {
        "connection": ("Connection", "keep-alive" if persist_backend else "close")}
    if enable_reproxy:
        updates["x-proxy-capabilities"] = ("X-Proxy-Capabilities", "reproxy-file")
    updates.update(_forwarding_updates(result, client_ip, trusted=trusted,
                                       blind_proxy=blind_proxy, listener=listener))
    result = _set_many(result, updates)
    return munge_headers(result, remove, insert) if remove or insert else result


def _set_many(headers: Headers, updates: dict[str, tuple[str, str | None]]) -> list[Header]:
    """``set_header`` for each of ``updates`` (lower-cased name -> (name, value))
    in turn, in one pass: the names differ, so one setting never sees another."""
    result: list[Header] = []
    placed: set[str] = set()
    for key, value in headers:
        lower = key.lower()
        update = updates.get(lower)
        if update is None:
            result.append((key, value))
        elif update[1] is not None and lower not in placed:
            result.append((key, update[1]))
            placed.add(lower)
    for lower, (name, new_value) in updates.items():
        if new_value is not None and lower not in placed:
            result.append((name, new_value))
    return result


# a request target as h11 accepts it: visible ASCII, no space
_TARGET = re.compile("[\x21-\x7e]+")


def backend_request_line(method: str, target: str) -> bytes:
    """Perl always talks HTTP/1.0 to backends ("FIXME: use 1.1").  Raises
    UnsafeField when a rewritten method or target could split the line."""
    if not is_token(method) or not _TARGET.fullmatch(target):
        raise UnsafeField("request line cannot be written")
    return f"{method} {target} HTTP/1.0\r\n".encode("latin-1")


def _length_known(response_headers: Headers, status: int, request_method: str) -> bool:
    return (
        header_get(response_headers, "Content-Length") is not None
        or status in (204, 304)
        or request_method == "HEAD"
    )


def client_keep_alive(
    request: RequestHead, response_headers: Headers, status: int, *, persist_client: bool
) -> bool:
    """Perl's ``persist_client && req_keep_alive(res)``: keep the client connection?"""
    return (
        persist_client
        and request.wants_keep_alive
        and _length_known(response_headers, status, request.method)
    )


def backend_keep_alive(response: ResponseHead, request_method: str) -> bool:
    """Perl's ``res_keep_alive``: may the backend connection be reused after this reply?"""
    connection = (response.get("Connection") or "").lower()
    if CLOSE_TOKEN.search(connection):
        return False
    if response.http_version < (1, 1):
        return bool(KEEP_ALIVE_TOKEN.search(connection)) and _length_known(
            response.headers, response.status, request_method
        )
    return True


def client_response_headers(
    headers: Headers, *, keep_alive: bool, idle_timeout: int = 30, strip_hop_by_hop: bool = True
) -> list[Header]:
    """A backend's reply headers made ready for the client (``setup_keepalive``).

    Connection and Keep-Alive are overwritten in place when present, as Perl
    does (recorded: a backend's ``Keep-Alive: timeout=5`` became
    ``Keep-Alive: timeout=30, max=100`` at the same position).
    """
    wanted = dict(keep_alive_headers(keep_alive, idle_timeout))
    result = (_strip_hop_by_hop(headers, keep=("connection", "keep-alive"))
              if strip_hop_by_hop else headers)
    return _set_many(result, {"connection": ("Connection", wanted["Connection"]),
                              "keep-alive": ("Keep-Alive", wanted.get("Keep-Alive"))})
