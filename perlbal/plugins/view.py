"""The one view of a request a plugin gets: ``RequestView``.

Hooks carry it as ``hook.ctx``.  It is a Protocol: the runtime's
``RequestContext`` is the implementation, and plugins see only what is listed
here -- the request, its per-request ``scratch``, the ways to answer, and the
few things of the running server a stock plugin needs, as methods -- so
``perlbal/plugins`` imports nothing of ``perlbal.runtime`` and a third-party
plugin is typed against a stable surface (mitmproxy's lesson: a narrow,
typed view, not the proxy's internals).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from perlbal.graph import Service
from perlbal.http.head import RequestHead

if TYPE_CHECKING:
    from perlbal.plugins import PluginRegistry

__all__ = ["RequestView", "QueueStats"]

#: (normal queue length, its oldest wait in s, high-priority length, its oldest wait)
QueueStats = tuple[int, int, int, int]


class RequestView(Protocol):
    """One request, as a plugin sees it."""

    #: the service whose plugin chain runs (a selector's hooks see the selector)
    service: Service
    #: the request head; a plugin may replace it (``dataclasses.replace``)
    head: RequestHead
    #: per-request plugin state, Perl's ``$client->{scratch}``
    scratch: dict[str, Any]
    peer_ip: str
    peer_port: int
    #: something of the response reached the client
    response_started: bool
    #: the keep-alive decision of the last send_simple / send_full_response
    last_keep_alive: bool

    @property
    def keep_alive(self) -> bool:
        """persist_client and the client's wish, before the response is known."""
        ...

    async def send(self, data: bytes, *, more: bool = False) -> None:
        """Write bytes to the client."""
        ...

    async def send_simple(self, status: int, message: str | None = None,
                          *, keep_alive: bool | None = None) -> bool:
        """Perl's ``_simple_response``; returns the keep-alive decision announced."""
        ...

    async def send_full_response(self, status: int, headers: list[tuple[str, str]] | tuple[
            tuple[str, str], ...] = (), body: bytes | None = b"", *,
            keep_alive: bool | None = None) -> bool:
        """Perl's ``send_full_response``: a status, headers and a body."""
        ...

    async def send_file(self, fh: BinaryIO, offset: int, count: int) -> None:
        """``count`` bytes of an open file from ``offset``, the server's zero-copy way."""
        ...

    def observed_ip(self) -> str | None:
        """The first X-Forwarded-For address when the peer is a trusted upstream
        proxy (Perl's observed_ip_string), else None."""
        ...

    def trusted_peer(self) -> bool:
        """The peer is a trusted upstream proxy (trusted_upstream_proxies / always_trusted)."""
        ...

    def local_port(self) -> int:
        """The port the client connected to."""
        ...

    def is_tls(self) -> bool:
        """The client connection is TLS."""
        ...

    def queue_stats(self) -> QueueStats:
        """This service's backend queues now (Queues' X-Queue-* headers)."""
        ...

    def service_named(self, name: str) -> Service | None:
        """Another service of the running configuration."""
        ...

    async def adopt(self, svc: Service) -> bool:
        """Perl's ``$svc->adopt_base_client``: hand the request to ``svc``'s role
        handler; returns its keep-alive verdict (LazyCDN's fallback)."""
        ...

    def plugin_registry(self) -> "PluginRegistry | None":
        """The running interpreter's plugins (for ``hooks.fire``)."""
        ...
