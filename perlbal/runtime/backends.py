"""Backend connections at run time: Perl's Service queues, spawn_backends and boredom.

Per service (Perl's Service.pm, request_backend_connection / spawn_backends /
register_boredom / get_client):

- a request first takes a *bored* connection (idle keep-alive, or a
  connect-ahead spare); otherwise it waits in the service's high-priority,
  normal or low-priority queue (``Waiter``), in arrival order;
- ``spawn_backends`` (``backendconnect.py``) opens ``waiting + connect_ahead - (bored + pending)``
  new connections, at most one pending connect per node and 10 at once, each
  in its own task; a node whose connect fails or times out (``CONNECT_TIMEOUT``,
  Perl's 5 s) is not tried again for ``DEAD_NODE_SECONDS`` (Perl's
  ``note_bad_backend_connect($be, 1)``), and the queued clients keep waiting
  for another node or for that one to come back;
- a connection that becomes free (connected, verified, or done with a reply
  that allows reuse) goes to ``get_client``: high-priority first (unless
  queue relief picks the normal queue: ``queue_relief_size`` waiting and a
  ``queue_relief_chance`` percent draw), then normal, then low; with nobody
  waiting it is kept bored, but at most ``backend_persist_cache`` used ones
  (beyond Perl, the extra ones are closed only after ``backend_persist_linger``
  idle seconds, not between two requests of a busy service);
- ``verify_backend``: a new connection first gets ``OPTIONS <path> HTTP/1.0``;
  a reply that will not keep the connection open fails it, and that node is
  then not verified for 60 s (Perl's %NoVerify);
- ``max_backend_uses`` (0: no limit) closes a connection after that many
  requests; a node's nodefile is re-read when older than 3 s (``perlbal.nodefile``).

Beyond Perl, ``balance_method`` (``perlbal.balance``; docs/balancing.md):
with ``random`` (Perl's) all of the above holds as it is.  With any other
method the node is chosen *per request*, when it asks for a connection
(``choose`` over the available nodes: not out by ``runtime.health``, not just
refused a connect), and the request then takes a bored connection *to that
node* or waits for one: a freed connection goes to the first waiter balanced
to its node (or to no node), and ``spawn_backends`` opens connections to the
nodes waiters are balanced to.  A waiter whose node refuses a connect, leaves
the pool or goes out is balanced again.  ``load`` counts, per node, the
requests balanced to it and not finished (waiting or holding a connection):
least_conn and two_choices read it, ``show pool`` and /metrics show it.

Invariants: a connection is owned by one request, or sits in one bored list,
or is handed to one waiter's slot, never two of these; a connection that saw
any error is closed, never parked; nothing here writes to clients.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perlbal import balance
from perlbal.graph import Pool, Service
from perlbal.runtime.health import HealthBook
from perlbal.runtime import aio
from perlbal.runtime.aio import FastStream, PeerGone, Slot
from perlbal.runtime.backendconnect import BackendConn as BackendConn, Spawner

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

SPARE_MAX_AGE = 5.0  # Perl: a connect-ahead spare never used is closed after 5 s ("too_old_bored")

HIGH, NORMAL, LOW = 0, 1, 2


@dataclass(eq=False)
class Waiter:
    """One client waiting for a backend connection (Perl: an entry of waiting_clients)."""

    slot: Slot[BackendConn]
    since: float
    priority: int = NORMAL
    #: the node the balance method chose (None: any connection, Perl's random)
    node: str | None = None
    #: the request's hash key (balance_method hash), to balance it again
    key: str | None = None
    #: the waiter holds one count of ``node`` in BackendManager.load
    counted: bool = False


@dataclass
class ServiceBackends:
    """The run-time backend state of one service."""

    bored: deque[BackendConn] = field(default_factory=deque)
    queues: tuple[deque[Waiter], deque[Waiter], deque[Waiter]] = field(
        default_factory=lambda: (deque(), deque(), deque()))
    pending: dict[str, tuple[str, float]] = field(default_factory=dict)  # ipport -> (state, since)
    no_spawn: dict[str, float] = field(default_factory=dict)  # ipport -> monotonic retry time
    retry_timer: aio.Timer | None = None
    trim_timer: aio.Timer | None = None  # closes bored connections beyond the cache

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


class BackendManager:
    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.services: dict[str, ServiceBackends] = {}
        self.spawner = Spawner(self)
        #: requests balanced to each node (ip:port) and not finished, in this worker
        self.load: dict[str, int] = {}
        #: per pool: round_robin's and least_conn's turn; hash rings by pool generation
        self.turns: dict[str, int] = {}
        self.rings: dict[str, tuple[int, balance.HashRing]] = {}
        self.health = HealthBook()

    def state(self, name: str) -> ServiceBackends:
        st = self.services.get(name)
        if st is None:
            st = self.services[name] = ServiceBackends()
        return st

    # --- nodes ------------------------------------------------------------------

    def _pool(self, svc: Service) -> Pool | None:
        return self.runtime.graph.pools.get(svc.pool_name or "")

    # --- balancing (beyond Perl: perlbal.balance) ------------------------------------

    def available(self, pool: Pool, st: ServiceBackends | None, now: float) -> list[str]:
        """The nodes a request may be balanced to: not out (health), not just
        refused a connect; else those not out; else every node (never none)."""
        out = self.health.out_of(pool.name)
        nodes = [n.ipport for n in pool.nodes]
        no_spawn = st.no_spawn if st is not None else None
        if out is None and not no_spawn:
            return nodes
        inside = [n for n in nodes if out is None or n not in out]
        if no_spawn:
            ready = [n for n in inside if no_spawn.get(n, 0.0) <= now]
            if ready:
                return ready
            # every node in refuses connects: one that is out but answers is better
            ready = [n for n in nodes if no_spawn.get(n, 0.0) <= now]
            if ready:
                return ready
        return inside or nodes

    def ring(self, pool: Pool) -> balance.HashRing:
        cached = self.rings.get(pool.name)
        if cached is None or cached[0] != pool.generation:
            cached = (pool.generation, balance.HashRing.build([n.ipport for n in pool.nodes]))
            self.rings[pool.name] = cached
        return cached[1]

    def choose(self, pool: Pool, st: ServiceBackends | None, key: str | None) -> str:
        """The node a request of a non-random pool goes to (``balance.choose``)."""
        method = pool.balance_method
        turn = self.turns.get(pool.name, 0)
        self.turns[pool.name] = turn + 1
        return balance.choose(method, self.available(pool, st, time.monotonic()), self.load,
                              key=key, ring=self.ring(pool) if method == "hash" else None,
                              turn=turn)

    def _count(self, ipport: str, delta: int) -> None:
        self.load[ipport] = self.load.get(ipport, 0) + delta

    def _uncount(self, conn: BackendConn) -> None:
        if conn.counted:
            conn.counted = False
            self._count(conn.ipport, -1)

    def _hand(self, waiter: Waiter, conn: BackendConn) -> None:
        """Give ``conn`` to ``waiter``; the waiter's count of its node moves to the connection."""
        if waiter.counted and waiter.node == conn.ipport:
            waiter.counted = False
            conn.counted = True
        elif not conn.counted:
            conn.counted = True
            self._count(conn.ipport, 1)
        waiter.slot.set(conn)

    def _rebalance(self, svc: Service, pool: Pool, st: ServiceBackends, ipport: str) -> None:
        """Waiters balanced to ``ipport`` (it refused a connect, left the pool or is
        out) are balanced again over what is available now."""
        now = time.monotonic()
        for queue in st.queues:
            for waiter in list(queue):
                if waiter.node != ipport or waiter.slot.is_set():
                    continue
                node = self.choose(pool, st, waiter.key)
                if node == ipport:
                    continue
                if waiter.counted:
                    self._count(ipport, -1)
                    self._count(node, 1)
                waiter.node = node
                conn = self._take_bored_to(svc, pool, st, node, now)
                if conn is not None:  # an idle connection to the new node: at once
                    queue.remove(waiter)
                    self._hand(waiter, conn)

    # --- acquiring ----------------------------------------------------------------

    def _usable(self, conn: BackendConn, svc: Service, pool: Pool, now: float) -> bool:
        """May a bored ``conn`` serve a request?  (If not, it is closed.)"""
        if conn.stream.closed or conn.stream.at_eof or conn.stream.buffered:
            # Perl closes an idle backend that says anything: bytes from a
            # backend nobody asked (a late reply to a smuggled request) must
            # never reach the next client
            pass
        elif not self._in_pool(pool, conn.ipport):
            pass
        elif not conn.uses and conn.created < now - SPARE_MAX_AGE and not svc.tunables.verify_backend:
            pass
        else:
            return True
        self._forget(conn)
        conn.stream.abort()
        return False

    def take_bored(self, svc: Service, pool: Pool, node: str | None = None) -> BackendConn | None:
        """Perl's first step of request_backend_connection: a usable bored connection
        (beyond Perl: to ``node``, when the balance method chose one)."""
        st = self.services.get(svc.name)
        if st is None or not st.bored:
            return None
        bored = st.bored
        now = time.monotonic()
        if node is not None:
            return self._take_bored_to(svc, pool, st, node, now)
        out = self.health.out.get(pool.name)
        while bored:
            conn = bored.pop() if bored[-1].uses else bored.popleft()
            if not self._usable(conn, svc, pool, now):
                continue
            if out and conn.ipport in out and len(out) < len(pool.nodes):
                self._forget(conn)  # its node is down or ejected (runtime.health)
                conn.stream.abort()
                continue
            conn.reused = conn.uses > 0
            self.runtime.live.set_state(conn.sock_id, "sending_req")
            return conn
        return None

    def _take_bored_to(self, svc: Service, pool: Pool, st: ServiceBackends, node: str,
                       now: float) -> BackendConn | None:
        # the newest used connection to the node, else its oldest spare (as above)
        found: BackendConn | None = None
        for conn in reversed(st.bored):
            if conn.ipport == node and conn.uses:
                found = conn
                break
        if found is None:
            for conn in st.bored:
                if conn.ipport == node:
                    found = conn
                    break
        if found is None:
            return None
        st.bored.remove(found)
        if not self._usable(found, svc, pool, now):
            return self._take_bored_to(svc, pool, st, node, now)
        found.reused = found.uses > 0
        self.runtime.live.set_state(found.sock_id, "sending_req")
        return found

    @staticmethod
    def _in_pool(pool: Pool, ipport: str) -> bool:
        for node in pool.nodes:
            if node.ipport == ipport:
                return True
        return False

    async def acquire(self, svc: Service, pool: Pool, priority: int, timeout: float | None,
                      client: FastStream | None, head: balance.HeadView | None = None,
                      peer_ip: str = "") -> BackendConn | None:
        """A connection for one request: bored, or after waiting in the queue.

        ``head`` and ``peer_ip`` give balance_method hash its key.  None when
        ``timeout`` passed first; ``PeerGone`` when ``client`` went away.
        """
        node: str | None = None
        key: str | None = None
        if pool.balance_method != "random" and pool.nodes:
            if pool.balance_method == "hash" and head is not None:
                key = balance.request_key(pool.tunables.hash_key, head, peer_ip)
            node = self.choose(pool, self.services.get(svc.name), key)
        conn = self.take_bored(svc, pool, node)
        if conn is not None:
            conn.counted = True
            self._count(conn.ipport, 1)
            if svc.tunables.connect_ahead:
                self.spawn_backends(svc)
            return conn
        waiter = Waiter(Slot(), time.time(), priority, node, key, counted=node is not None)
        if node is not None:
            self._count(node, 1)
        st = self.state(svc.name)
        st.queues[priority].append(waiter)
        self.spawn_backends(svc)
        timer = waiter.slot.expire_after(timeout) if timeout else None
        try:
            # a client that leaves the queue fails the slot with PeerGone
            if client is not None and not client.fail_on_end(waiter.slot):
                raise PeerGone
            return await waiter.slot.wait()
        except TimeoutError:
            return None
        except BaseException:
            handed = waiter.slot.value()
            if handed is not None:
                self.register_boredom(svc, handed)  # handed over too late: pass it on
            raise
        finally:
            if waiter.counted and waiter.node is not None:
                waiter.counted = False
                self._count(waiter.node, -1)
            if timer is not None:
                timer.cancel()
            if client is not None:
                client.forget(waiter.slot)
            queue = st.queues[priority]
            if waiter in queue:
                queue.remove(waiter)
            waiter.slot.close()

    def _get_client(self, svc: Service, st: ServiceBackends, ipport: str) -> Waiter | None:
        """The next waiter (Perl's get_client) that may take a connection to ``ipport``."""
        high, normal, low = st.queues
        hp_first = True
        relief_size = svc.tunables.queue_relief_size
        if relief_size > 0 and len(normal) >= relief_size:
            chance = svc.tunables.queue_relief_chance
            if random.random() * 100 < chance:
                hp_first = False
        order = (high, normal, low) if hp_first else (normal, high, low)
        for queue in order:
            while queue and queue[0].slot.is_set():
                queue.popleft()
            if not queue:
                continue
            first = queue[0]
            if first.node is None or first.node == ipport:
                return queue.popleft()
            for waiter in queue:  # balanced waiters: the first one for this node
                if not waiter.slot.is_set() and (waiter.node is None or waiter.node == ipport
                                                 or self._may_move(waiter, ipport)):
                    queue.remove(waiter)
                    return waiter
        return None

    def _may_move(self, waiter: Waiter, ipport: str) -> bool:
        """May a waiter balanced to another node take a free connection to ``ipport``?

        Not with hash (a key has one node); with the other methods, when
        ``ipport`` has no more requests in flight than the waiter's node: the
        request goes where the method would send it now, without waiting for
        a connection of its own node (which is then balanced again here)."""
        node = waiter.node
        if node is None or waiter.key is not None or not waiter.counted:
            return False
        load = self.load
        if load.get(ipport, 0) > load.get(node, 0) - 1:
            return False
        waiter.counted = False  # the count moves with the waiter (see _hand)
        self._count(node, -1)
        return True

    def register_boredom(self, svc: Service, conn: BackendConn) -> None:
        """A free connection: give it to the next waiting client, or keep it bored."""
        self._uncount(conn)
        st = self.state(svc.name)
        live = self.runtime.live
        waiter = self._get_client(svc, st, conn.ipport)
        if waiter is not None:
            self._hand(waiter, conn)
            conn.reused = conn.uses > 0
            live.set_state(conn.sock_id, "sending_req")
            if st.waiting or svc.tunables.connect_ahead:
                self.spawn_backends(svc)
            return
        cache = _int(svc.tunables.backend_persist_cache)
        if conn.uses and len(st.bored) >= cache:
            linger = _int(svc.tunables.backend_persist_linger)
            if linger <= 0:  # Perl: closed at once ("too_many_bored")
                self._forget(conn)
                conn.stream.abort()
                return
            self._trim_later(svc, st, linger)
        conn.bored_since = time.monotonic()
        live.set_state(conn.sock_id, "bored")
        st.bored.append(conn)

    def _trim_later(self, svc: Service, st: ServiceBackends, linger: float) -> None:
        """Close the used bored connections beyond backend_persist_cache once
        they have been idle ``linger`` seconds.  Perl closes them at once, so a
        busy service whose queue runs empty for a moment closes connections it
        reopens the next moment (a connect per request or two, and a TIME_WAIT
        socket each); here they go only when traffic has really dropped."""
        if st.trim_timer is not None:
            return

        def trim() -> None:
            st.trim_timer = None
            cache = _int(svc.tunables.backend_persist_cache)
            now = time.monotonic()
            # the oldest idle first: take_bored reuses the newest used ones
            for conn in [c for c in st.bored if c.uses]:
                if len(st.bored) <= cache:
                    return
                if now - conn.bored_since >= linger:
                    st.bored.remove(conn)
                    self._forget(conn)
                    conn.stream.abort()
            if len(st.bored) > cache and any(c.uses for c in st.bored):
                self._trim_later(svc, st, linger)

        st.trim_timer = aio.call_later(linger, trim)

    # --- spawning (backendconnect.py) --------------------------------------------

    def spawn_backends(self, svc: Service) -> None:
        """Open as many connections as waiting clients and connect_ahead call for."""
        self.spawner.spawn(svc)


    def _forget(self, conn: BackendConn) -> None:
        self.runtime.live.close_sock(conn.sock_id)

    def _count_traffic(self, conn: BackendConn, pool_name: str | None) -> None:
        """Bytes to/from the node since last counted (metrics: per pool and node)."""
        live = self.runtime.live
        stream = conn.stream
        if live.metrics_enabled and (stream.bytes_in != conn.counted_in
                                     or stream.bytes_out != conn.counted_out):
            live.node_traffic(pool_name or "", conn.ipport, stream.bytes_out - conn.counted_out,
                              stream.bytes_in - conn.counted_in)
            conn.counted_in, conn.counted_out = stream.bytes_in, stream.bytes_out

    def note_reply(self, svc: Service, conn: BackendConn, status: int) -> None:
        """A reply head from ``conn``'s node: passive health (max_fails) counts it."""
        pool = self._pool(svc)
        if pool is not None and pool.params:
            failed = status in self.health.fail_statuses(pool)
            self.health.note_traffic(pool, conn.ipport, failed, f"status {status}")

    def release(self, svc: Service, conn: BackendConn, reusable: bool) -> None:
        """Done with ``conn``: back to the queue/bored list when allowed, else closed."""
        self._uncount(conn)
        self._count_traffic(conn, svc.pool_name)
        max_uses = svc.tunables.max_backend_uses
        if (reusable and not conn.dedicated and svc.tunables.persist_backend
                and not self.runtime.draining
                and not (max_uses > 0 and conn.uses >= max_uses)
                and not conn.stream.closed):
            pool = self._pool(svc)
            if pool is not None and self._in_pool(pool, conn.ipport):
                self.register_boredom(svc, conn)
                return
        self.discard(conn)
        st = self.services.get(svc.name)
        if st is not None and st.waiting:
            self.spawn_backends(svc)

    def discard(self, conn: BackendConn) -> None:
        self._uncount(conn)
        owner = self.runtime.graph.services.get(conn.service)
        self._count_traffic(conn, owner.pool_name if owner is not None else None)
        self._forget(conn)
        conn.stream.abort()

    def close_all(self) -> None:
        for st in self.services.values():
            while st.bored:
                self.discard(st.bored.pop())
            for timer in (st.retry_timer, st.trim_timer):
                if timer is not None:
                    timer.cancel()
            st.retry_timer = st.trim_timer = None

