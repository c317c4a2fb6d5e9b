"""Client connections: the accept loop, one task per connection, and their count.

Invariants:
- every accepted connection is one task (``clientconn.serve_client``), a plain
  task in ``aio.TaskSet`` rather than a task-group child (about 2 KB less per
  connection); the role is looked up per request, so ``SET role``/``SET pool``
  apply next time;
- the peer's address is taken from ``accept`` once, an IPv4-mapped one
  unmapped (``perlbal.http.peer``), and rides on the stream (``FastStream.peer``);
- a TLS listener's handshake (and a PROXY protocol header before it,
  ``proxyproto.py``) is done before the connection loop sees a byte;
- while ``limited`` (open clients of non-management listeners) is at SERVER
  max_connections, new clients get ``admission.refuse``; management
  connections have a budget of their own of the same size (``management``),
  so the console stays reachable when clients fill the server, and idle
  consoles cannot exhaust descriptors either;
- between requests a keep-alive client may be parked (``parking.py``): it
  stays counted in ``active`` and ``limited`` until it is closed.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING

import anyio

from perlbal.http.peer import client_address
from perlbal.runtime import admission, proxyproto
from perlbal.runtime.aio import FastStream, TaskSet, wrap_accepted
from perlbal.runtime.listeners import Listener
from perlbal.runtime.parking import Parking

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

__all__ = ["Clients"]


class Clients:
    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.tasks = TaskSet()
        self.parking = Parking(self)
        self.active = 0
        self.limited = 0  # open clients of non-management listeners
        self.management = 0  # open connections of management listeners
        self._idle: anyio.Event | None = None
        #: closed client connections whose transport may still write their last
        #: bytes (a graceful shutdown waits for them); pruned as it grows
        self._flushing: set[FastStream] = set()
        self._flushing_prune_at = 64

    @property
    def max_connections(self) -> int:
        """SERVER max_connections (0: no limit on open client connections)."""
        return max(0, self.runtime.graph.settings.max_connections or 0)

    async def accept_loop(self, lst: Listener) -> None:
        if lst.closed:
            return
        lst.scope = anyio.CancelScope()
        with lst.scope:
            while True:
                try:
                    sock, accepted = lst.sock.accept()
                except (BlockingIOError, InterruptedError):
                    await anyio.wait_readable(lst.sock)
                    continue
                except OSError as exc:
                    if lst.closed or lst.sock.fileno() == -1:
                        return
                    log.warning("accept on %s failed: %s", lst.service, exc)
                    await anyio.sleep(0.05)
                    continue
                self._admit(lst, sock, accepted)

    def drain_backlog(self, lst: Listener) -> int:
        """A graceful stop is about to close ``lst``: take the connections the
        kernel already completed for it (closing the socket would reset them,
        and a balancer that sent a request on one cannot retry it) and serve
        them like any in flight.  Returns how many were waiting."""
        taken = 0
        while not lst.closed:
            try:
                sock, accepted = lst.sock.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                break
            self._admit(lst, sock, accepted)
            taken += 1
        return taken

    def _admit(self, lst: Listener, sock: socket.socket, accepted: tuple[str, int]) -> None:
        live = self.runtime.live
        sock.setblocking(False)
        # ::ffff:a.b.c.d (a dual-stack [::] listener) is a.b.c.d from here on
        peer = client_address(accepted)
        live.accepted[lst.service] = live.accepted.get(lst.service, 0) + 1
        limit = self.max_connections
        opened = self.management if lst.management else self.limited
        if limit and opened >= limit:
            live.refused_max_connections += 1
            if admission.busy():
                sock.close()
                return
            self.tasks.start(admission.refuse(sock, lst.tls, limit))
        elif lst.management:  # never parked: done when the task is
            self.management += 1
            self.tasks.start(self._run(sock, peer, lst.service, lst.tls, False),
                             self._management_closed)
        else:
            self.tasks.start(self._run(sock, peer, lst.service, lst.tls, True))

    def _management_closed(self) -> None:
        self.management -= 1

    async def _run(self, sock: socket.socket, peer: tuple[str, int], service_name: str,
                   tls: ssl.SSLContext | None = None, limited: bool = False) -> None:
        from perlbal.runtime.clientconn import serve_client

        runtime = self.runtime
        self.active += 1
        self.limited += limited
        stream: FastStream | None = None
        park = False
        try:
            svc = runtime.graph.services.get(service_name)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sndbuf = svc.tunables.client_sndbuf_size if svc is not None else 0
            if sndbuf > 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            proxied = None
            if svc is not None and svc.tunables.proxy_protocol:
                try:  # before TLS and HTTP: the balancer's header (runtime/proxyproto.py)
                    proxied = (await proxyproto.read_header(
                        sock, svc, peer[0], lambda: runtime.draining)).client
                except proxyproto.ProxyRefused:
                    return
            if tls is not None:
                timeout = svc.tunables.idle_timeout if svc is not None else 30
                try:
                    stream = await wrap_accepted(sock, tls, float(timeout or 60)
                                                 if isinstance(timeout, int) else 60.0)
                except (ssl.SSLError, TimeoutError, ConnectionError):
                    runtime.live.tls_handshake_failures += 1
                    return
            else:
                stream = await wrap_accepted(sock)
            stream.peer, stream.proxied_peer = peer, proxied
            park = await serve_client(runtime, stream, service_name)
        except OSError:
            pass
        except Exception:  # isolation: one connection never takes the server down
            log.exception("client connection on %s failed", service_name)
        finally:
            if not (park and stream is not None
                    and self.parking.park(stream, service_name, limited)):
                await self.closed(stream, sock, limited)

    async def resume(self, stream: FastStream, service_name: str, limited: bool) -> None:
        """A parked keep-alive client sent something: serve it again."""
        from perlbal.runtime.clientconn import serve_client

        park = False
        try:
            park = await serve_client(self.runtime, stream, service_name, resumed=True)
        except OSError:
            pass
        except Exception:
            log.exception("client connection on %s failed", service_name)
        finally:
            if not (park and self.parking.park(stream, service_name, limited)):
                await self.closed(stream, None, limited)

    async def closed(self, stream: FastStream | None, sock: socket.socket | None,
                     limited: bool) -> None:
        self.active -= 1
        self.limited -= limited
        if stream is not None:
            await stream.aclose()
            if stream.flushing:
                self._note_flushing(stream)
        elif sock is not None:
            sock.close()
        self.note_closed()

    def note_closed(self) -> None:
        if self._idle is not None and not self.active:
            self._idle.set()

    def _note_flushing(self, stream: FastStream) -> None:
        flushing = self._flushing
        flushing.add(stream)
        if len(flushing) > self._flushing_prune_at:  # amortized: halves at most each time
            self._flushing = {s for s in flushing if s.flushing}
            self._flushing_prune_at = max(64, 2 * len(self._flushing))

    async def drain(self) -> None:
        """Graceful shutdown: until every connection has closed and its last
        bytes left (a reply handed to a slow client's transport is not sent yet
        when its handler returns: ending the loop then would drop the tail of
        a download, #15 defect 6)."""
        # connections just taken from a backlog (drain_backlog) count themselves
        # in ``active`` in their task's first step: one checkpoint lets those
        # tasks, scheduled before us, take it (the loop runs ready tasks in order)
        await anyio.lowlevel.checkpoint()
        while self.active:
            self._idle = anyio.Event()
            await self._idle.wait()
        for stream in list(self._flushing):
            await stream.wait_flushed()
