"""Live numbers of the running server, fed to console queries (``queries.LiveStats``).

The runtime bumps plain integer attributes on the hot path (no locks: one
event loop thread); the query methods turn them into what ``show service``,
``queues``, ``states``, ``socks`` and ``nodes`` print.  Invariant: nothing
here does I/O or blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perlbal import queries
from perlbal.balance import PoolView
from perlbal.graph import Pool, Service
from perlbal.runtime.timeline import Timeline

if TYPE_CHECKING:
    from perlbal.runtime.backends import BackendManager
    from perlbal.runtime.reproxy_manager import ReproxyManager


@dataclass
class SockInfo:
    cls: str
    desc: str
    opened: float
    state: str = ""
    service: str = ""


class RuntimeStats(queries.LiveStats):
    """Counters and registries kept by the runtime."""

    def __init__(self) -> None:
        #: SERVER workers: which one this process is (0: the supervisor), of how many
        self.worker_id = 0
        self.worker_count = 1
        self.total_requests = 0
        self.node_requests: dict[str, int] = {}
        self.node_last_response: dict[str, float] = {}
        self.node_connects: dict[str, int] = {}
        self.node_failures: dict[str, int] = {}
        # Perl's %Perlbal::BackendHTTP::NodeStats, keys as Perl names them, in the
        # order Perl first sets them (``nodes`` prints this; management owns it)
        self.node_table: dict[str, dict[str, object]] = {}
        #: the runtime's BackendManager: queues, pending connects, bored backends
        self.manager: "BackendManager | None" = None
        #: reproxy connections and caches (perlbal.runtime.reproxy makes it on first use)
        self.reproxy: "ReproxyManager | None" = None
        self.socks: dict[int, SockInfo] = {}
        self._next_sock = 1000
        # --- beyond Perl: counters for /metrics (metrics.py renders them) ---
        #: SERVER metrics = off turns the per-request counting below off
        self.metrics_enabled = True
        self.started = time.time()
        self.service_requests: dict[str, int] = {}
        self.service_responses: dict[tuple[str, int], int] = {}  # (service, status)
        self.service_bytes_in: dict[str, int] = {}  # from clients
        self.service_bytes_out: dict[str, int] = {}  # to clients
        self.node_bytes_out: dict[tuple[str, str], int] = {}  # (pool, ipport): to the node
        self.node_bytes_in: dict[tuple[str, str], int] = {}  # (pool, ipport): from the node
        self.accepted: dict[str, int] = {}  # connections accepted per listening service
        self.refused_max_connections = 0
        self.tls_handshake_failures = 0
        #: per-second samples of the last 15 minutes, for the web UI's graphs (timeline.py)
        self.timeline = Timeline()

    # --- registry of open sockets (for socks/states) ---------------------------

    def open_sock(self, cls: str, desc: str, service: str = "", state: str = "") -> int:
        self._next_sock += 1
        self.socks[self._next_sock] = SockInfo(cls, desc, time.time(), state, service)
        return self._next_sock

    def close_sock(self, key: int) -> None:
        self.socks.pop(key, None)

    def set_state(self, key: int, state: str) -> None:
        info = self.socks.get(key)
        if info is not None:
            info.state = state

    # --- LiveStats ------------------------------------------------------------

    def requests(self) -> int:
        return self.total_requests

    def pool_view(self, pool: Pool) -> PoolView:
        """The pool's balancing and health state in this worker (runtime.health)."""
        manager = self.manager
        if manager is None:
            return PoolView()
        st = manager.services.get(next((s.name for s in manager.runtime.graph.services.values()
                                        if s.pool_name == pool.name), ""))
        book = manager.health
        out = book.out_of(pool.name) or {}
        view = PoolView(available=manager.available(pool, st, time.monotonic()),
                        load=dict(manager.load), notes={n: h.note() for n, h in out.items()},
                        turn=manager.turns.get(pool.name, 0))
        for n in pool.nodes:
            health = book.nodes.get((pool.name, n.ipport))
            if health is None:
                continue
            view.nodes[n.ipport] = {
                "checks": health.checks, "checks_failed": health.checks_failed,
                "last_check": health.last_check, "ejections": health.ejections,
                "history": [(time.strftime("%H:%M:%S", time.localtime(when)), what)
                            for when, what in health.history]}
        return view

    def node_stats(self) -> dict[str, dict[str, object]]:
        return {ipport: dict(row) for ipport, row in self.node_table.items()}

    # --- node events, named after the Perl code that counts them ----------------

    def _node(self, ipport: str) -> dict[str, object]:
        return self.node_table.setdefault(ipport, {})

    def _bump(self, ipport: str, key: str) -> None:
        row = self._node(ipport)
        count = row.get(key, 0)
        row[key] = (count if isinstance(count, int) else 0) + 1

    def node_attempt(self, ipport: str) -> None:
        """BackendHTTP::new: a connection to the node is being attempted."""
        self._bump(ipport, "attempts")
        self._node(ipport)["lastattempt"] = int(time.time())

    def node_connected(self, ipport: str) -> None:
        """BackendHTTP::event_write while connecting: the connect succeeded."""
        self.node_connects[ipport] = self.node_connects.get(ipport, 0) + 1
        self._bump(ipport, "connects")
        self._node(ipport)["lastconnect"] = int(time.time())

    def node_verified(self, ipport: str) -> None:
        """BackendHTTP::verify_success (then next_request(1), which stamps lastresponse)."""
        self._bump(ipport, "verifies")
        self._node(ipport)["lastresponse"] = int(time.time())

    def node_response(self, ipport: str, status: int) -> None:
        """BackendHTTP::handle_response: a rolling window of the last 500 codes."""
        row = self._node(ipport)
        codes = row.setdefault("responsecodes", [])
        assert isinstance(codes, list)
        codes.append(status)
        del codes[:-500]

    def node_request_done(self, ipport: str) -> None:
        """BackendHTTP::next_request: one more response finished."""
        self._bump(ipport, "requests")
        self._node(ipport)["lastresponse"] = int(time.time())

    # --- beyond Perl: per-service and per-node traffic (for /metrics) -------------

    def request_done(self, service: str, status: int, bytes_in: int, bytes_out: int) -> None:
        """One client request answered (or abandoned: status 0) by ``service``."""
        self.service_requests[service] = self.service_requests.get(service, 0) + 1
        key = (service, status)
        self.service_responses[key] = self.service_responses.get(key, 0) + 1
        self.service_bytes_in[service] = self.service_bytes_in.get(service, 0) + bytes_in
        self.service_bytes_out[service] = self.service_bytes_out.get(service, 0) + bytes_out

    def node_traffic(self, pool: str, ipport: str, sent: int, received: int) -> None:
        """Bytes exchanged with a backend node since the connection was last counted."""
        key = (pool, ipport)
        self.node_bytes_out[key] = self.node_bytes_out.get(key, 0) + sent
        self.node_bytes_in[key] = self.node_bytes_in.get(key, 0) + received

    def sockets(self) -> list[queries.SockRow]:
        now = time.time()
        return [queries.SockRow(fd=key, age=int(now - info.opened), cls=info.cls, desc=info.desc)
                for key, info in sorted(self.socks.items())]

    def states(self, service: str | None) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for info in self.socks.values():
            if service is not None and info.service != service:
                continue
            if not info.state:
                continue
            per = out.setdefault(info.cls, {})
            per[info.state] = per.get(info.state, 0) + 1
        return out

    def queue(self, service: str, queue: str) -> tuple[int, int]:
        st = self.manager.services.get(service) if self.manager is not None else None
        if st is None:
            return (0, 0)
        high, normal, low = st.queues
        waiting = high if queue == "highpri" else low if queue == "lowpri" else normal
        if not waiting:
            return (0, 0)
        return (int(time.time() - waiting[0].since), len(waiting))

    def service_stats(self, svc: Service) -> queries.ServiceStats:
        st = self.manager.services.get(svc.name) if self.manager is not None else None
        if st is None:
            return queries.ServiceStats()
        now = time.time()
        pending = [(ipport, state, int(now - since)) for ipport, (state, since) in st.pending.items()]
        out = queries.ServiceStats(waiting_clients=st.waiting, pending_connects=pending,
                                   bored_backends=len(st.bored))
        self._reproxy_cache_stats(svc, out)
        return out

    def _reproxy_cache_stats(self, svc: Service, out: queries.ServiceStats) -> None:
        """The X-REPROXY-CACHE-FOR cache numbers ``show service`` prints."""
        if self.reproxy is None:
            return
        cache = self.reproxy.caches.get(svc.name)
        counts = self.reproxy.cache_stats.get(svc.name)
        out.cache_size = len(cache) if cache is not None else 0
        if counts is not None:
            out.requests, out.cache_hits = counts.requests, counts.hits

    def reproxy_state(self) -> list[str]:
        return self.reproxy.dump_state() if self.reproxy is not None else []

    def backends(self) -> dict[str, int]:
        """MANAGE_backends: open backend connections per node (not a running total)."""
        out: dict[str, int] = {}
        for info in self.socks.values():
            if info.cls == "Perlbal::BackendHTTP":
                ipport = info.desc.split()[0] if info.desc else ""
                out[ipport] = out.get(ipport, 0) + 1
        return out
