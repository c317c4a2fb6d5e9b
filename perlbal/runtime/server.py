"""The running server: the interpreter's ``Effects``, one anyio task group over all of it.

``Runtime`` wires four parts, each in its own module, and answers the
interpreter (``start_listener``, ``stop_listener``, ``spawn_backends``,
``shutdown``, ``stats``):

- ``listeners.py``: the listening sockets (bound at once, so a console
  ``ENABLE`` answers with Perl's error text; served when ``serve`` runs);
- ``clients.py``: the accept loop and one task per client connection, with
  SERVER max_connections;
- ``parking.py``: idle keep-alive clients held with no task between requests;
- ``workers.py``: SERVER workers = N (the supervisor: forks and restarts
  the workers, passes them console lines and health, DNS and upload
  changes, adds up their numbers; ``workerside.py`` is a worker's side).

Backend connections are ``backends.py``'s, reached as ``runtime.backends``.

Invariants: ``shutdown`` may be called from inside the event loop (console)
or before it runs; graceful shutdown stops accepting, lets persistent clients
finish their current request (and their last bytes leave), and gives up after
``timeout`` seconds.
"""

from __future__ import annotations

import logging
import time

import anyio
from anyio.abc import TaskGroup

from perlbal import queries
from perlbal.graph import Graph, Service
from perlbal.interp import Interpreter
from perlbal.runtime import context, dnspools, metrics, timeline
from perlbal.runtime.backends import BackendManager
from perlbal.runtime.clients import Clients
from perlbal.runtime.listeners import Listener, Listeners, parse_listen
from perlbal.runtime.poolstats import PooledStats
from perlbal.runtime.stats import RuntimeStats
from perlbal.runtime.workers import Workers

log = logging.getLogger("perlbal.runtime")

__all__ = ["Runtime", "parse_listen"]


class Runtime:
    """Effects for a live server; create, attach an interpreter, then ``await serve()``."""

    owns_process = True  # (Effects) rlimits, nice, log level are this process's

    def __init__(self) -> None:
        self._interp: Interpreter | None = None
        self.live = RuntimeStats()
        self.sockets = Listeners(self)
        self.clients = Clients(self)
        self.workers = Workers(self)
        self.backends = BackendManager(self)
        self.live.manager = self.backends
        #: SERVER workers: what the supervisor's console reads (every worker's numbers)
        self.pooled = PooledStats(self)
        self._tg: TaskGroup | None = None
        self._shutdown: anyio.Event | None = None
        #: the graceful drain under way (SIGINT during it cuts it short)
        self._drain_scope: anyio.CancelScope | None = None
        self.shutdown_requested: tuple[bool, int | None] | None = None
        self.draining = False  # graceful shutdown: no more keep-alive
        self._spawn_later: list[Service] = []

    # --- wiring ---------------------------------------------------------------

    def attach(self, interp: Interpreter) -> None:
        self._interp = interp

    @property
    def interp(self) -> Interpreter:
        if self._interp is None:
            raise RuntimeError("Runtime used before an interpreter was attached")
        return self._interp

    @property
    def graph(self) -> Graph:
        return self.interp.graph

    @property
    def task_group(self) -> TaskGroup | None:
        """The runtime-wide task group (None before ``serve`` and after it ended)."""
        return self._tg

    # what the console, the web UI and /metrics read
    @property
    def listeners(self) -> dict[str, Listener]:
        return self.sockets.open

    @property
    def active_connections(self) -> int:
        return self.clients.active

    @property
    def max_connections(self) -> int:
        return self.clients.max_connections

    @property
    def worker_count(self) -> int:
        return self.workers.count

    # --- Effects ----------------------------------------------------------------

    def start_listener(self, svc: Service) -> str | None:
        return self.sockets.start(svc)

    def stop_listener(self, svc: Service) -> None:
        self.sockets.stop(svc)

    def spawn_backends(self, svc: Service) -> None:
        # connect_ahead (Perl's spawn_backends on ENABLE / SET connect_ahead)
        if self.workers.supervising:
            return  # the supervisor proxies nothing: its workers open their own
        if self._tg is not None:
            self.backends.spawn_backends(svc)
        elif svc not in self._spawn_later:
            self._spawn_later.append(svc)

    def shutdown(self, graceful: bool, timeout: int | None) -> None:
        if not graceful and self.shutdown_requested is not None and self.shutdown_requested[0]:
            # stop now while a graceful stop drains (SIGINT after SIGTERM): cut the drain
            # short; whatever is still in flight is closed as on an immediate stop
            self.shutdown_requested = (False, None)
            if self._drain_scope is not None:
                self._drain_scope.cancel()
            return
        self.shutdown_requested = (graceful, timeout)
        self.draining = True
        if self._shutdown is not None:
            self._shutdown.set()

    def handler_for(self, role: str | None) -> "context.Handler | None":
        from perlbal.runtime.clientconn import handler_for

        return handler_for(role)

    def queue_stats(self, service: str) -> tuple[int, int, int, int]:
        """(normal length, its oldest wait, high-priority length, its oldest wait)."""
        from perlbal.runtime.backends import HIGH, NORMAL

        queues = self.backends.state(service).queues
        now = time.time()  # (a waiter's since is wall-clock time, as Perl's)

        def length_and_age(index: int) -> tuple[int, int]:
            queue = queues[index]
            return (len(queue), int(now - queue[0].since)) if queue else (0, 0)

        return (*length_and_age(NORMAL), *length_and_age(HIGH))

    def stats(self) -> queries.LiveStats:
        return self.pooled if self.workers.supervising else self.live

    async def refresh_numbers(self) -> None:
        """SERVER workers: fetch every worker's numbers now (before a console
        command or a page shows them)."""
        if self.workers.supervising:
            await self.workers.refresh()
            self.pooled.update_node_used()

    # --- process ----------------------------------------------------------------

    def loop_options(self) -> dict[str, object]:
        """anyio backend options: uvloop when it is installed (optional, never required)."""
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return {}
        return {"use_uvloop": True}

    def start_workers(self) -> int:
        """SERVER workers = N: fork the others (``workers.py``); this process's worker id."""
        return self.workers.start()

    def reap_workers(self, timeout: float = 40.0) -> None:
        self.workers.reap(timeout)

    def become_worker(self) -> None:
        """Just forked as a worker (workerside.py): what belonged to the supervisor's
        event loop starts afresh; the graph and the health book are kept."""
        health = self.backends.health
        stats = RuntimeStats()
        stats.worker_id, stats.worker_count = self.live.worker_id, self.live.worker_count
        stats.metrics_enabled = self.live.metrics_enabled
        self.live = stats
        self.clients = Clients(self)
        self.backends = BackendManager(self)
        self.backends.health = health
        health.on_change = None
        self.live.manager = self.backends
        for pool in self.graph.pools.values():  # the supervisor's sums: count afresh
            pool.node_used = {ipport: 0 for ipport in pool.node_used}
        self._tg = None
        self._shutdown = None
        self.shutdown_requested = None
        self.draining = False
        self._spawn_later = []

    def listening(self) -> bool:
        return self.sockets.any()

    # --- serving ----------------------------------------------------------------

    async def serve(self) -> None:
        """Run until ``shutdown``; returns when everything is closed."""
        self._shutdown = anyio.Event()
        if self.shutdown_requested is not None:
            self._shutdown.set()
        clients = self.clients
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self.sockets.begin(tg)
            workers = self.workers
            if workers.role != "worker":  # once per server: in the supervisor if any
                if workers.supervising:
                    self.backends.health.on_change = workers.health_changed
                # beyond Perl: active health checks of pools with health_check_uri
                tg.start_soon(self.backends.health.run, self)
                # beyond Perl: pools fed by DNS (dns_name) kept current (dnspools.py)
                tg.start_soon(dnspools.run, self,
                              workers.nodes_changed if workers.supervising else None)
            # beyond Perl: a sample a second for the web UI's live graphs (timeline.py)
            tg.start_soon(timeline.run, self)
            workers.begin(tg)
            if not workers.supervising:
                for svc in self._spawn_later:
                    self.backends.spawn_backends(svc)
                for svc in list(self.graph.services.values()):
                    # Perl's enable: connect_ahead spares are opened as soon as a service runs
                    if (svc.enabled and svc.role == "reverse_proxy"
                            and svc.tunables.connect_ahead):
                        self.backends.spawn_backends(svc)
            self._spawn_later.clear()
            await self._shutdown.wait()
            workers.stop(*(self.shutdown_requested or (False, None)))
            graceful, timeout = self.shutdown_requested or (False, None)
            self.sockets.close_all(graceful)
            clients.parking.close_all()  # idle keep-alive clients: nothing in flight
            if graceful:
                with anyio.move_on_after(timeout if timeout else None) as drain:
                    self._drain_scope = drain
                    await clients.drain()
                self._drain_scope = None
            clients.tasks.cancel_all()
            tg.cancel_scope.cancel()
        self._tg = None
        self.sockets.end()
        await clients.tasks.wait_cancelled(5)
        clients.parking.close_all()
        self.backends.close_all()
