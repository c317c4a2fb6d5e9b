"""The one size limit that caps a request body, whoever reads it (issue 24 item 4).

Every body reader -- a web_server PUT, a buffered upload's spool, the proxy's
in-memory read of a chunked body, the stream to a backend, the bodies plugins
are handed (put_writeout, proxy_read_request) -- reads through
``RequestContext.body_chunks``, which asks ``body_limit`` here and refuses
(413, before the piece that crosses it is handed on) a body past it.  The
limit is the smallest of those that apply:

* ``max_chunked_request_size``: a chunked body's decoded size (Perl's
  ClientProxy::handle_chunked_upload and ClientHTTP::handle_put_chunked);
* ``max_put_size``: a web_server PUT.  Perl compares it with Content-Length
  only (the 400 "Content-length of N is invalid." is answered before the body
  is read, ``webserver._put``); a chunked PUT here is held to it as well
  (docs/migrating.md);
* ``max_content_length`` (MaxContentLength, on the service or the selector
  the request came through): Perl's plugin refuses an announced
  Content-Length (``plugins/maxcontentlength.decide``, 413 before the body);
  a chunked body announces none, and is held to it here as it arrives.

Invariant: a Content-Length body is refused before it is read when it is too
long (the checks named above), so only a chunked body can cross a limit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from perlbal.graph import Service
from perlbal.http import RequestHead
from perlbal.tunables import MaxContentLengthTunables

__all__ = ["BodyLimit", "body_limit"]


@dataclass(frozen=True)
class BodyLimit:
    """A body may be ``size`` decoded bytes at most; ``parameter`` set it."""

    size: int
    parameter: str
    #: the refusal's page text
    reason: str


def body_limit(svc: Service, head: RequestHead,
               listener: Service | None = None) -> BodyLimit | None:
    """The smallest limit on this request's body (None: no limit)."""
    found: list[BodyLimit] = []

    def add(size: int, parameter: str, reason: str | None = None) -> None:
        if size > 0:
            found.append(BodyLimit(size, parameter, reason or
                                   f"request body larger than {parameter} ({size} bytes)"))

    if head.chunked:
        add(svc.tunables.max_chunked_request_size, "max_chunked_request_size")
    if svc.role == "web_server" and head.method == "PUT":
        add(svc.tunables.max_put_size, "max_put_size")
    for owner in (svc, listener):
        if owner is not None and "MaxContentLength" in owner.plugin_order:
            # (Perl's page text: "Content too long.")
            add(MaxContentLengthTunables(owner.params).max_content_length,
                "max_content_length", "Content too long.")
    return min(found, key=lambda limit: limit.size) if found else None
