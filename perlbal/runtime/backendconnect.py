"""Opening backend connections: Perl's spawn_backends, the connect and the verify_backend handshake.

``Spawner.spawn`` (``BackendManager.spawn_backends``) opens
``waiting + connect_ahead - (bored + pending)`` new connections, at most one
pending connect per node and ``MAX_CONNECTS_AT_ONCE`` at once, each in its
own task of the runtime's task group; with a balance method other than
``random``, to the nodes the waiters are balanced to.  A node whose connect
fails or times out (``CONNECT_TIMEOUT``, Perl's 5 s) is not tried again for
``DEAD_NODE_SECONDS`` (Perl's ``note_bad_backend_connect($be, 1)``); its
waiters keep waiting for another node (balanced again when a method chose
it) or for that one to come back (``_retry_later``).

``verify_backend``: a new connection first gets ``OPTIONS <path> HTTP/1.0``
(plugins' backend_write_verify / backend_readable_verify may answer for the
core); a reply that will not keep the connection open fails it, and that
node is then not verified for ``NOVERIFY_SECONDS`` (Perl's %NoVerify).

A connection that opened (and passed) goes to the manager's
``register_boredom`` (``backends.py``): to the next waiter, or the bored list.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from perlbal import nodefile
from perlbal.graph import Node, Pool, Service
from perlbal.http import BackendProtocolError, BackendSide, backend_keep_alive
from perlbal.plugins.hooks import BackendReadableVerify, BackendWriteVerify, fire_backend
from perlbal.runtime import aio
from perlbal.runtime.aio import FastStream, open_connection

if TYPE_CHECKING:
    from perlbal.runtime.backends import BackendManager, ServiceBackends

log = logging.getLogger("perlbal.runtime")

__all__ = ["BackendConn", "Spawner", "CONNECT_TIMEOUT", "DEAD_NODE_SECONDS"]

CONNECT_TIMEOUT = 5.0
DEAD_NODE_SECONDS = 1.0
NOVERIFY_SECONDS = 60.0
VERIFY_TIMEOUT = 15.0  # Perl: "shouldn't still be connecting/verifying ~15 seconds after create"
MAX_CONNECTS_AT_ONCE = 10


@dataclass(eq=False)
class BackendConn:
    stream: FastStream
    ipport: str
    service: str
    uses: int = 0
    created: float = field(default_factory=time.monotonic)
    sock_id: int = 0
    reused: bool = False
    #: carries one client's requests only (a PROXY protocol header named that client)
    dedicated: bool = False
    counted_in: int = 0  # stream bytes already added to the node's byte counters
    counted_out: int = 0
    bored_since: float = 0.0  # monotonic time it last became idle
    counted: bool = False  # its request is counted in BackendManager.load

    async def close(self) -> None:
        self.stream.abort()


class Spawner:
    """One service manager's connection opener (see the module docstring)."""

    def __init__(self, manager: "BackendManager") -> None:
        self.manager = manager
        self.noverify: dict[str, float] = {}
        self.down_logged: set[str] = set()  # nodes whose outage was logged

    def spawn(self, svc: Service) -> None:
        """Open as many connections as waiting clients and connect_ahead call for."""
        tg = self.manager.runtime.task_group
        pool = self.manager._pool(svc)
        if tg is None or pool is None:
            return
        nodefile.refresh(pool)
        st = self.manager.state(svc.name)
        now = time.monotonic()
        waiting = st.waiting
        if waiting and pool.balance_method != "random":
            waiting -= self._spawn_balanced(svc, pool, st, tg, now)
        needed = waiting + svc.tunables.connect_ahead
        to_create = needed - (len(st.bored) + len(st.pending))
        to_create = min(to_create, len(pool.nodes) - len(st.pending), MAX_CONNECTS_AT_ONCE)
        if to_create <= 0:
            return
        out = self.manager.health.out_of(pool.name)
        candidates = [n for n in pool.nodes
                      if n.ipport not in st.pending and st.no_spawn.get(n.ipport, 0.0) <= now
                      and (out is None or n.ipport not in out or len(out) >= len(pool.nodes))]
        if not candidates:
            self._retry_later(svc, st)
            return
        for _ in range(to_create):
            if not candidates:
                break
            node = random.choice(candidates)
            candidates.remove(node)
            st.pending[node.ipport] = ("connecting", time.time())
            tg.start_soon(self._connect, svc, node)
        if len(candidates) == 0 and to_create > 0 and st.waiting > len(st.pending):
            self._retry_later(svc, st)

    def _spawn_balanced(self, svc: Service, pool: Pool, st: ServiceBackends, tg: TaskGroup,
                        now: float) -> int:
        """Connections to the nodes waiters are balanced to (one pending connect per
        node, as Perl); returns how many waiters are balanced to a node."""
        wants: dict[str, int] = {}
        for queue in st.queues:
            for waiter in queue:
                if waiter.node is not None and not waiter.slot.is_set():
                    wants[waiter.node] = wants.get(waiter.node, 0) + 1
        out = self.manager.health.out_of(pool.name)
        refused = False
        for ipport in wants:
            if ipport in st.pending:
                continue
            node = next((n for n in pool.nodes if n.ipport == ipport), None)
            if node is None or (out is not None and ipport in out
                                and len(out) < len(pool.nodes)):
                self.manager._rebalance(svc, pool, st, ipport)  # gone from the pool, or out
                continue
            if st.no_spawn.get(ipport, 0.0) > now:
                refused = True
                continue
            st.pending[ipport] = ("connecting", time.time())
            tg.start_soon(self._connect, svc, node)
        if refused:
            self._retry_later(svc, st)
        return sum(wants.values())

    def _retry_later(self, svc: Service, st: ServiceBackends) -> None:
        """Perl's register_callback($retry_time): spawn again when a dead node may be back."""
        if st.retry_timer is not None or not st.no_spawn:
            return
        delay = max(min(st.no_spawn.values()) - time.monotonic(), 0.05)

        def fire() -> None:
            st.retry_timer = None
            self.spawn(svc)

        st.retry_timer = aio.call_later(delay, fire)

    async def _connect(self, svc: Service, node: Node) -> None:
        st = self.manager.state(svc.name)
        live = self.manager.runtime.live
        ipport = node.ipport
        conn: BackendConn | None = None
        try:
            sndbuf = 0
            live.node_attempt(ipport)  # Perl's NodeStats, printed by ``nodes``
            with anyio.fail_after(CONNECT_TIMEOUT):
                stream = await open_connection(node.ip, node.port, sndbuf=sndbuf)
            live.node_connected(ipport)
            if ipport in self.down_logged:
                self.down_logged.discard(ipport)
                log.warning("backend %s answers again", ipport)
            conn = BackendConn(stream, ipport, svc.name)
            conn.sock_id = live.open_sock("Perlbal::BackendHTTP", ipport, svc.name, "connecting")
            pool = self.manager._pool(svc)
            # (a PROXY header must be a connection's first bytes: no OPTIONS before it)
            sends_proxy = pool is not None and pool.tunables.send_proxy_protocol in ("v1", "v2")
            if (svc.tunables.verify_backend and not self._noverify(ipport)
                    and not sends_proxy):
                st.pending[ipport] = ("verifying_backend", time.time())
                if not await self._verify(svc, conn):
                    log.warning("backend %s failed verify_backend (OPTIONS %s) for service %s",
                                ipport, svc.tunables.verify_backend_path, svc.name)
                    self.noverify[ipport] = time.monotonic() + NOVERIFY_SECONDS
                    self.manager._forget(conn)
                    conn.stream.abort()
                    conn = None
                else:
                    live.node_verified(ipport)
        except (OSError, TimeoutError) as exc:
            if ipport not in self.down_logged:  # once per outage, not per retry
                self.down_logged.add(ipport)
                log.warning("backend %s (pool of service %s) is unreachable: %s; requests "
                            "go to other nodes until it answers again", ipport, svc.name,
                            exc.strerror if isinstance(exc, OSError) and exc.strerror
                            else "connect timed out")
            st.no_spawn[ipport] = time.monotonic() + DEAD_NODE_SECONDS
            live.node_failures[ipport] = live.node_failures.get(ipport, 0) + 1
            pool = self.manager._pool(svc)
            if pool is not None:
                self.manager.health.note_traffic(pool, ipport, True, "a failed connect")
                if pool.balance_method != "random":
                    self.manager._rebalance(svc, pool, st, ipport)
            if conn is not None:
                self.manager._forget(conn)
                conn.stream.abort()
                conn = None
        finally:
            st.pending.pop(ipport, None)
        if conn is not None and (not self.manager.runtime.draining or st.waiting):
            # (while draining too, when a request already waits for it: a graceful
            # shutdown finishes what it accepted, and that request was accepted)
            self.manager.register_boredom(svc, conn)
        elif conn is not None:
            self.manager._forget(conn)
            conn.stream.abort()
        self.spawn(svc)

    def _noverify(self, ipport: str) -> bool:
        until = self.noverify.get(ipport)
        if until is None:
            return False
        if until < time.monotonic():
            del self.noverify[ipport]
            return False
        return True

    async def _verify(self, svc: Service, conn: BackendConn) -> bool:
        path = svc.tunables.verify_backend_path
        self.manager.runtime.live.set_state(conn.sock_id, "verifying_backend")
        request = f"OPTIONS {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode("latin-1")
        side = BackendSide("OPTIONS")
        # plugins' backend_write_verify / backend_readable_verify (Perl's
        # BackendHTTP event_write and event_read_waiting_options), bounded by
        # the verify timeout like the core's own exchange
        registry = getattr(self.manager.runtime.interp, "plugins", None) if svc.plugin_order else None
        try:
            if registry is not None:
                hook = BackendWriteVerify(svc, conn.stream, conn.ipport)
                with anyio.fail_after(VERIFY_TIMEOUT):
                    if await fire_backend(hook, registry):
                        return hook.verified
            await conn.stream.send(request)
            head = None
            first = registry is not None
            while head is None:
                data = await conn.stream.receive(timeout=VERIFY_TIMEOUT)
                if first:
                    first = False
                    readable = BackendReadableVerify(svc, conn.stream, conn.ipport, data=data)
                    with anyio.fail_after(VERIFY_TIMEOUT):
                        if await fire_backend(readable, registry):
                            return readable.verified
                side.receive_data(data)
                head = side.next_head()
            if not backend_keep_alive(head, "OPTIONS"):
                return False
            # the reply body (if any) is read and thrown away, as Perl does
            while (piece := side.next_body()) != b"":
                if piece is None:
                    side.receive_data(await conn.stream.receive(timeout=VERIFY_TIMEOUT))
            return side.ended_cleanly
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError,
                anyio.ClosedResourceError, BackendProtocolError):
            return False

    # --- releasing ---------------------------------------------------------------
