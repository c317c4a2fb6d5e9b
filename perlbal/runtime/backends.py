"""Backend connections at run time: node choice, connect, verify, idle keep-alive cache.

Perl's Pool/Service/BackendHTTP bookkeeping, in one place:

- node choice is ``balance_method random`` (Pool::get_backend_endpoint); a
  pool's nodefile is re-read when older than ``NODEFILE_RELOAD_FREQ`` seconds;
- a node whose connect fails or times out (``CONNECT_TIMEOUT``, Perl's 5 s
  pending-connect limit) is skipped for ``DEAD_NODE_SECONDS`` (Perl's
  ``note_bad_backend_connect($be, 1)``); one request tries each node at most
  once, preferring live ones;
- ``verify_backend``: a new connection first gets ``OPTIONS <path> HTTP/1.0``
  with ``Connection: keep-alive``; a reply that will not keep the connection
  open fails it, and that node is then not verified for 60 s (Perl's %NoVerify);
- ``persist_backend``: a connection whose reply allowed reuse is parked as
  idle for its (service, node); at most ``backend_persist_cache`` spares per
  service are kept, and a connection that served ``max_backend_uses``
  requests (0: no limit) is closed instead.

Invariants: a connection is owned by exactly one request or sits in exactly
one idle list, never both; a connection that saw any error is closed, never
parked; nothing here writes to clients.
"""

from __future__ import annotations

import random
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketStream

from perlbal import queries
from perlbal.graph import Node, Pool, Service
from perlbal.http import BackendProtocolError, ResponseHeadReader, backend_keep_alive

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

CONNECT_TIMEOUT = 5.0
DEAD_NODE_SECONDS = 1.0
NODEFILE_RELOAD_FREQ = 3.0
NOVERIFY_SECONDS = 60.0
VERIFY_TIMEOUT = 15.0  # Perl: "shouldn't still be connecting/verifying ~15 seconds after create"


@dataclass(eq=False)
class BackendConn:
    stream: SocketStream
    ipport: str
    service: str
    uses: int = 0
    created: float = field(default_factory=time.monotonic)
    sock_id: int = 0
    reused: bool = False

    async def close(self) -> None:
        try:
            await self.stream.aclose()
        except Exception:
            pass


class BackendManager:
    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.idle: dict[str, deque[BackendConn]] = {}  # service name -> idle connections
        self.down_until: dict[str, float] = {}
        self.noverify: dict[str, float] = {}

    # --- nodes ------------------------------------------------------------------

    def _refresh_nodefile(self, pool: Pool) -> None:
        if not pool.nodefile:
            return
        now = time.time()
        if now - pool.nodefile_checked < NODEFILE_RELOAD_FREQ:
            return
        pool.nodefile_checked = now
        try:
            queries.load_nodefile(pool, self.runtime.interp.env)
        except Exception:  # a vanished or unreadable nodefile keeps the old nodes
            pass

    def _pick(self, pool: Pool, tried: set[str]) -> Node | None:
        nodes = [n for n in pool.nodes if n.ipport not in tried]
        if not nodes:
            return None
        now = time.monotonic()
        alive = [n for n in nodes if self.down_until.get(n.ipport, 0.0) <= now]
        return random.choice(alive or nodes)

    # --- acquiring ----------------------------------------------------------------

    async def take_idle(self, svc: Service, pool: Pool) -> BackendConn | None:
        idle = self.idle.get(svc.name)
        if not idle:
            return None
        live = self.runtime.live
        while idle:
            conn = idle.pop()  # most recently used: warmest, least likely timed out
            live.bored[svc.name] = len(idle)
            if conn.stream.extra(anyio.abc.SocketAttribute.raw_socket).fileno() == -1:
                self._forget(conn)
                continue
            if any(n.ipport == conn.ipport for n in pool.nodes):
                conn.reused = True
                live.set_state(conn.sock_id, "sending_req")
                return conn
            await self.discard(conn)  # its node left the pool
        return None

    async def connect(self, svc: Service, pool: Pool, tried: set[str]) -> BackendConn | None:
        """A new connection to some untried node of ``pool``, or None when all failed."""
        self._refresh_nodefile(pool)
        live = self.runtime.live
        while True:
            node = self._pick(pool, tried)
            if node is None:
                return None
            ipport = node.ipport
            tried.add(ipport)
            pending = live.pending.setdefault(svc.name, [])
            entry = (ipport, "connecting", time.time())
            live.node_attempt(ipport)
            pending.append(entry)
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    stream = await anyio.connect_tcp(node.ip, node.port)
            except (OSError, TimeoutError):
                self.down_until[ipport] = time.monotonic() + DEAD_NODE_SECONDS
                live.node_failures[ipport] = live.node_failures.get(ipport, 0) + 1
                continue
            finally:
                if entry in pending:
                    pending.remove(entry)
            try:
                stream.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
            live.node_connected(ipport)
            conn = BackendConn(stream, ipport, svc.name)
            conn.sock_id = live.open_sock("Perlbal::BackendHTTP", f"{ipport}", svc.name, "sending_req")
            if svc.get("verify_backend", False) and not self._noverify(ipport):
                if not await self._verify(svc, conn):
                    self.noverify[ipport] = time.monotonic() + NOVERIFY_SECONDS
                    self._forget(conn)
                    await conn.close()
                    tried.discard(ipport)  # Perl spawns another connection to it, unverified
                    continue
                live.node_verified(ipport)
            return conn

    def _noverify(self, ipport: str) -> bool:
        until = self.noverify.get(ipport)
        if until is None:
            return False
        if until < time.monotonic():
            del self.noverify[ipport]
            return False
        return True

    async def _verify(self, svc: Service, conn: BackendConn) -> bool:
        path = svc.get("verify_backend_path", "*")
        self.runtime.live.set_state(conn.sock_id, "verifying_backend")
        request = f"OPTIONS {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".encode("latin-1")
        reader = ResponseHeadReader()
        try:
            with anyio.fail_after(VERIFY_TIMEOUT):
                await conn.stream.send(request)
                head = None
                while head is None:
                    data = await conn.stream.receive(65536)
                    head = reader.feed(data)
                if not backend_keep_alive(head, "OPTIONS"):
                    return False
                # the reply body (if any) is read and thrown away, as Perl does
                remaining = head.content_length or 0
                remaining -= len(reader.leftover)
                while remaining > 0:
                    remaining -= len(await conn.stream.receive(65536))
                return remaining == 0
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError,
                BackendProtocolError):
            return False

    # --- releasing ---------------------------------------------------------------

    def _forget(self, conn: BackendConn) -> None:
        self.runtime.live.close_sock(conn.sock_id)

    async def release(self, svc: Service, conn: BackendConn, reusable: bool) -> None:
        """Park ``conn`` for reuse when allowed, else close it."""
        max_uses = svc.get("max_backend_uses", 0)
        cache = svc.get("backend_persist_cache", 2)
        idle = self.idle.setdefault(svc.name, deque())
        if (reusable and svc.get("persist_backend", False) and not self.runtime.draining
                and not (isinstance(max_uses, int) and max_uses > 0 and conn.uses >= max_uses)
                and isinstance(cache, int) and len(idle) < max(cache, 0)):
            self.runtime.live.set_state(conn.sock_id, "bored")
            idle.append(conn)
            self.runtime.live.bored[svc.name] = len(idle)
            return
        self._forget(conn)
        await conn.close()

    async def discard(self, conn: BackendConn) -> None:
        self._forget(conn)
        await conn.close()

    async def close_all(self) -> None:
        for idle in self.idle.values():
            while idle:
                await self.discard(idle.pop())
