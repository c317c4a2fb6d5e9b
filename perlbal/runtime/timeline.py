"""A ring of per-second samples for the web UI's live graphs (the last 15 minutes).

The request path only counts: ``request`` (a client request answered by a
service, from accesslog.finish) and ``node_reply`` (a reply head from a pool
node, or the 502/504 a node's failure became, from proxyreply.relay_reply)
bump the integers of the second in progress and keep its durations in a small
reservoir.  Once a second ``run`` (a task of the runtime) closes that second
into a sample and appends it to the ring: per service and per pool node the
requests, 5xx and p50/p99 latency of that second, plus what is true at that
moment: queue depths, backend connections in use and idle, node states.
``/timeline`` (management.py) serves the ring; ``webui/app.js`` draws it.

Invariants:
- at most ``CAPACITY`` (900) samples are kept (a deque with maxlen), each a
  dict per service and per pool node: memory does not grow with uptime;
- at most ``RESERVOIR`` durations per service or node per second (reservoir
  sampling beyond that): a busy second costs no more memory than a quiet one;
- requests and 5xx are counted, never sampled: a sample's counts add up to the
  same counters /metrics shows for those seconds;
- nothing here does I/O; a failing tick is logged and the next one runs.
  With ``SERVER workers`` each worker keeps its own ring and sends its new
  samples with its reports; the supervisor ``absorb``s them into its ring
  (requests and 5xx summed, p50/p99 the largest, gauges summed).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from perlbal.graph import Graph
    from perlbal.runtime.context import ServerHandle
    from perlbal.runtime.stats import RuntimeStats

log = logging.getLogger("perlbal.runtime")

CAPACITY = 900  # samples: 15 minutes at one a second
RESERVOIR = 256  # durations kept per service or node per second
_QUEUES = ("normal", "highpri", "lowpri")


@dataclass
class _Second:
    """What one service or node did during the second in progress."""

    requests: int = 0
    errors: int = 0  # 5xx
    seen: int = 0  # durations offered to the reservoir
    durations: list[float] = field(default_factory=list)

    def add(self, status: int, seconds: float | None) -> None:
        self.requests += 1
        if 500 <= status <= 599:
            self.errors += 1
        if seconds is None:
            return
        self.seen += 1
        if len(self.durations) < RESERVOIR:
            self.durations.append(seconds)
        else:  # Algorithm R: each duration of the second kept with equal chance
            slot = random.randrange(self.seen)
            if slot < RESERVOIR:
                self.durations[slot] = seconds

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.durations)
        return {"requests": self.requests, "5xx": self.errors,
                "p50": _percentile(ordered, 0.50), "p99": _percentile(ordered, 0.99)}


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile, in milliseconds (None: nothing measured)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q)
    return round(ordered[int(rank) - 1] * 1000, 3)


class Timeline:
    """The ring and the second in progress; one per process (``RuntimeStats.timeline``)."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.samples: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._services: dict[str, _Second] = {}
        self._nodes: dict[tuple[str, str], _Second] = {}  # (pool, ip:port)
        #: SERVER workers: workers' samples of seconds this ring has not closed yet
        self._early: dict[int, list[dict[str, Any]]] = {}
        #: a worker: the newest sample already sent to the supervisor
        self.reported = 0

    # --- the request path ----------------------------------------------------------

    def request(self, service: str, status: int, seconds: float) -> None:
        second = self._services.get(service)
        if second is None:
            second = self._services[service] = _Second()
        second.add(status, seconds)

    def node_reply(self, pool: str, ipport: str, status: int, seconds: float | None) -> None:
        """A node's reply head after ``seconds`` (None: no reply, ``status`` is ours)."""
        key = (pool, ipport)
        second = self._nodes.get(key)
        if second is None:
            second = self._nodes[key] = _Second()
        second.add(status, seconds)

    # --- once a second -----------------------------------------------------------------

    def tick(self, graph: "Graph", live: "RuntimeStats", now: float) -> dict[str, Any]:
        """Close the second in progress into a sample (appended to the ring)."""
        services_done, self._services = self._services, {}
        nodes_done, self._nodes = self._nodes, {}
        conns = _backend_connections(live)
        services: dict[str, Any] = {}
        for name, svc in sorted(graph.services.items()):
            if svc.role not in ("reverse_proxy", "web_server", "selector"):
                continue
            entry = (services_done.pop(name, None) or _Second()).summary()
            if svc.role == "reverse_proxy":
                entry["queue"] = [live.queue(name, q)[1] for q in _QUEUES]
                in_use, idle = conns["service"].get(name, (0, 0))
                entry["in_use"], entry["idle"] = in_use, idle
            services[name] = entry
        nodes: dict[str, Any] = {}
        for pool_name, pool in sorted(graph.pools.items()):
            states = node_states(graph, live, pool_name)
            for node in pool.nodes:
                ipport = node.ipport
                entry = (nodes_done.pop((pool_name, ipport), None) or _Second()).summary()
                in_use, idle = conns["node"].get(ipport, (0, 0))
                entry.update(pool=pool_name, node=ipport, in_use=in_use, idle=idle,
                             state=states.get(ipport, "up"))
                nodes[f"{pool_name} {ipport}"] = entry
        second = int(now)
        sample = {"t": second, "services": services, "nodes": nodes}
        self.samples.append(sample)
        for theirs in self._early.pop(second, []):
            _merge(sample, theirs)
        for t in [t for t in self._early if t < second]:
            del self._early[t]  # a second this ring never had: nothing to add it to
        return sample

    def since(self, after: int) -> list[dict[str, Any]]:
        """Samples newer than ``after`` (a sample's ``t``), oldest first."""
        return [s for s in self.samples if s["t"] > after]

    def unreported(self) -> list[dict[str, Any]]:
        """A worker: the samples closed since the last call (sent with a report)."""
        new = self.since(self.reported)
        if new:
            self.reported = new[-1]["t"]
        return new

    def absorb(self, samples: list[dict[str, Any]]) -> None:
        """The supervisor: add a worker's samples to the same seconds of this ring."""
        for theirs in samples:
            t = int(theirs.get("t", 0))
            mine = next((s for s in reversed(self.samples) if s["t"] == t), None)
            if mine is not None:
                _merge(mine, theirs)
            elif not self.samples or t > self.samples[-1]["t"]:
                self._early.setdefault(t, []).append(theirs)


def _bigger(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _merge(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """One second of another process added into ``mine``."""
    for kind in ("services", "nodes"):
        table: dict[str, Any] = mine.setdefault(kind, {})
        for key, entry in dict(theirs.get(kind) or {}).items():
            into = table.get(key)
            if into is None:
                table[key] = dict(entry)
                continue
            for field_name, value in entry.items():
                old = into.get(field_name)
                if field_name in ("p50", "p99"):
                    into[field_name] = _bigger(old, value)
                elif field_name == "queue" and isinstance(old, list):
                    into[field_name] = [a + b for a, b in zip(old, value)]
                elif field_name == "state":
                    if old in (None, "up"):
                        into[field_name] = value
                elif isinstance(value, int) and isinstance(old, int):
                    into[field_name] = old + value


def _backend_connections(live: "RuntimeStats") -> dict[str, dict[str, tuple[int, int]]]:
    """(in use, idle) backend connections per service and per node.  Idle: bored,
    waiting for a client; in use: connected and serving one (connecting ones are
    neither: ``pending`` in the console)."""
    manager = live.manager
    idle_ids = ({conn.sock_id for st in manager.services.values() for conn in st.bored}
                if manager is not None else set())
    out: dict[str, dict[str, list[int]]] = {"service": {}, "node": {}}
    for sock_id, info in live.socks.items():
        if info.cls != "Perlbal::BackendHTTP" or info.state == "connecting" or not info.desc:
            continue
        column = 1 if sock_id in idle_ids else 0
        for kind, key in (("service", info.service), ("node", info.desc.split()[0])):
            if key:
                out[kind].setdefault(key, [0, 0])[column] += 1
    return {kind: {k: (v[0], v[1]) for k, v in table.items()} for kind, table in out.items()}


def node_states(graph: "Graph", live: "RuntimeStats", pool_name: str) -> dict[str, str]:
    """A word per node of the pool that is not plainly up: what the pool's health
    view says (``down``, ``ejected``, ...: the first word of its note), else
    ``down`` while a failed connect keeps the node out (Perl's dead-node
    backoff, ``no_spawn``)."""
    pool = graph.pools.get(pool_name)
    if pool is None:
        return {}
    # health checks and max_fails (runtime.health): "down since ...", "ejected ..."
    states = {ipport: note.split()[0] for ipport, note in live.pool_view(pool).notes.items()
              if note.split()}
    now = time.monotonic()
    users = {s.name for s in graph.services.values() if s.pool_name == pool_name}
    manager = live.manager
    for name, st in (manager.services.items() if manager is not None else ()):
        if name in users:
            for ipport, retry_at in st.no_spawn.items():
                if retry_at > now:
                    states.setdefault(ipport, "down")
    return states


async def run(runtime: "ServerHandle") -> None:
    """Tick at each whole second until cancelled (the runtime's task group ends)."""
    timeline = runtime.live.timeline
    while True:
        now = time.time()
        await anyio.sleep(1.0 - now % 1.0)
        try:
            timeline.tick(runtime.graph, runtime.live, time.time())
        except Exception:  # the graphs must never take the server down
            log.exception("timeline sample failed")
