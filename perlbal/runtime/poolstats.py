"""SERVER workers: the console's and web UI's live numbers for the whole server.

A worker answers the supervisor's ``report`` message with ``snapshot``: the
numbers the console commands print (``nodes``, ``show pool``, ``show
service``, ``queues``, ``socks``, ``states``, ``backends``, ``reproxy_state``)
as JSON.  In the supervisor, ``PooledStats`` is the ``LiveStats`` the
interpreter reads: its own numbers (the management connections) plus every
current worker's latest report, summed or merged:

- counts are summed (requests, a node's attempts/connects/requests, queue
  lengths, waiting clients, sockets by state, requests in flight per node);
- a time stamp (``lastattempt``, ``lastresponse``...) is the latest of any
  worker, a queue's oldest wait the longest;
- lists are joined (pending connects, socket rows, response codes: the last
  500 kept, as Perl keeps);
- node health (``show pool``, ``nodes``' state) is the supervisor's, since
  it runs the checks.

Lifetime counters of a worker that ended (a crash, an older generation) are
kept in ``departed`` so totals never go back; its gauges go with it.
``Workers.refresh`` asks every worker just before a console command or a
page is answered, so the numbers are current, not a second old.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from perlbal import queries
from perlbal.balance import PoolView
from perlbal.graph import Pool, Service

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["snapshot", "PooledStats", "COUNTERS"]

_QUEUES = ("normal", "highpri", "lowpri")
#: node table keys that count (summed); the others starting with "last" are times
COUNTERS = ("attempts", "connects", "verifies", "requests")


def snapshot(runtime: "Runtime") -> dict[str, Any]:
    """This worker's live numbers, JSON-ready (see the module docstring)."""
    live = runtime.live
    services: dict[str, Any] = {}
    queues: dict[str, Any] = {}
    for name, svc in runtime.graph.services.items():
        if svc.role not in ("reverse_proxy", "web_server"):
            continue
        st = live.service_stats(svc)
        services[name] = {"waiting": st.waiting_clients,
                          "pending": [list(p) for p in st.pending_connects],
                          "bored": st.bored_backends, "requests": st.requests,
                          "cache_size": st.cache_size, "cache_hits": st.cache_hits}
        queues[name] = {q: list(live.queue(name, q)) for q in _QUEUES}
    now = time.time()
    socks = [[int(now - info.opened), info.cls, info.desc, info.state, info.service]
             for info in live.socks.values()]
    manager = runtime.backends
    return {
        "requests": live.total_requests,
        "nodes": live.node_stats(),
        "node_used": {name: dict(pool.node_used) for name, pool in runtime.graph.pools.items()},
        "services": services, "queues": queues, "socks": socks,
        "load": {k: v for k, v in manager.load.items() if v},
        "reproxy": live.reproxy_state(),
        "clients": runtime.clients.active,
        "timeline": live.timeline.unreported(),
    }


def _add_nodes(into: dict[str, dict[str, object]], table: dict[str, Any]) -> None:
    for ipport, row in table.items():
        if not isinstance(row, dict):
            continue
        mine = into.setdefault(str(ipport), {})
        for key, value in row.items():
            old = mine.get(key)
            if isinstance(value, list):
                joined = (old if isinstance(old, list) else []) + value
                mine[key] = joined[-500:]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                if old is None:
                    mine[key] = value
                elif key in COUNTERS and isinstance(old, (int, float)):
                    mine[key] = old + value
                elif isinstance(old, (int, float)):
                    mine[key] = max(old, value)
            elif old is None:
                mine[key] = value


def departed_counters(report: dict[str, Any]) -> dict[str, Any]:
    """What of a worker's last report stays counted after it ended."""
    nodes = {ipport: {k: v for k, v in row.items() if k in COUNTERS}
             for ipport, row in dict(report.get("nodes") or {}).items() if isinstance(row, dict)}
    return {"requests": report.get("requests", 0), "nodes": nodes,
            "node_used": report.get("node_used") or {}}


def add_departed(into: dict[str, Any], report: dict[str, Any]) -> None:
    gone = departed_counters(report)
    into["requests"] = int(into.get("requests", 0)) + int(gone["requests"])
    table: dict[str, dict[str, object]] = into.setdefault("nodes", {})
    _add_nodes(table, gone["nodes"])
    used: dict[str, dict[str, int]] = into.setdefault("node_used", {})
    for pool, counts in dict(gone["node_used"]).items():
        mine = used.setdefault(pool, {})
        for ipport, count in dict(counts).items():
            mine[ipport] = mine.get(ipport, 0) + int(count)


class PooledStats(queries.LiveStats):
    """The supervisor's LiveStats: its own numbers and every worker's, merged."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime

    @property
    def metrics_enabled(self) -> bool:
        return self.runtime.live.metrics_enabled

    @metrics_enabled.setter
    def metrics_enabled(self, value: bool) -> None:
        self.runtime.live.metrics_enabled = value

    def _reports(self) -> list[dict[str, Any]]:
        return [r.live for r in self.runtime.workers.reports.values()]

    def update_node_used(self) -> None:
        """``show pool`` and ``show service`` read ``Pool.node_used``: the supervisor
        (which balances nothing) keeps there the sum over every worker."""
        departed = self.runtime.workers.departed.get("node_used", {})
        for name, pool in self.runtime.graph.pools.items():
            for ipport in list(pool.node_used):
                total = int(departed.get(name, {}).get(ipport, 0))
                for report in self._reports():
                    total += int(dict(report.get("node_used", {}).get(name, {})).get(ipport, 0))
                pool.node_used[ipport] = total

    def requests(self) -> int:
        return (self.runtime.live.requests()
                + int(self.runtime.workers.departed.get("requests", 0))
                + sum(int(r.get("requests", 0)) for r in self._reports()))

    def node_stats(self) -> dict[str, dict[str, object]]:
        table = self.runtime.live.node_stats()
        _add_nodes(table, self.runtime.workers.departed.get("nodes", {}))
        for report in self._reports():
            _add_nodes(table, dict(report.get("nodes") or {}))
        return table

    def sockets(self) -> list[queries.SockRow]:
        rows = self.runtime.live.sockets()
        key = max((r.fd for r in rows), default=1000)
        for report in self._reports():
            for age, cls, desc, _state, _service in report.get("socks", []):
                key += 1
                rows.append(queries.SockRow(fd=key, age=int(age), cls=str(cls), desc=str(desc)))
        return rows

    def states(self, service: str | None) -> dict[str, dict[str, int]]:
        out = self.runtime.live.states(service)
        for report in self._reports():
            for _age, cls, _desc, state, svc in report.get("socks", []):
                if not state or (service is not None and svc != service):
                    continue
                per = out.setdefault(str(cls), {})
                per[str(state)] = per.get(str(state), 0) + 1
        return out

    def queue(self, service: str, queue: str) -> tuple[int, int]:
        age, count = self.runtime.live.queue(service, queue)
        for report in self._reports():
            their = report.get("queues", {}).get(service, {}).get(queue)
            if their:
                age, count = max(age, int(their[0])), count + int(their[1])
        return (age, count)

    def service_stats(self, svc: Service) -> queries.ServiceStats:
        out = self.runtime.live.service_stats(svc)
        for report in self._reports():
            st = report.get("services", {}).get(svc.name)
            if not st:
                continue
            out.waiting_clients += int(st["waiting"])
            out.pending_connects += [(str(a), str(b), int(c)) for a, b, c in st["pending"]]
            out.bored_backends += int(st["bored"])
            out.requests += int(st["requests"])
            out.cache_size += int(st["cache_size"])
            out.cache_hits += int(st["cache_hits"])
        return out

    def backends(self) -> dict[str, int]:
        out = self.runtime.live.backends()
        for report in self._reports():
            for _age, cls, desc, _state, _service in report.get("socks", []):
                if cls == "Perlbal::BackendHTTP":
                    ipport = str(desc).split()[0] if desc else ""
                    out[ipport] = out.get(ipport, 0) + 1
        return out

    def reproxy_state(self) -> list[str]:
        lines = self.runtime.live.reproxy_state()
        for report in self._reports():
            lines += [str(line) for line in report.get("reproxy", [])]
        return lines

    def load(self) -> dict[str, int]:
        """Requests in flight per node, over every worker."""
        out: dict[str, int] = {}
        for report in self._reports():
            for ipport, count in dict(report.get("load") or {}).items():
                out[ipport] = out.get(ipport, 0) + int(count)
        return out

    def clients(self) -> int:
        return self.runtime.clients.active + sum(int(r.get("clients", 0))
                                                 for r in self._reports())

    def pool_view(self, pool: Pool) -> PoolView:
        view = self.runtime.live.pool_view(pool)  # the checks are the supervisor's
        view.load = self.load()
        return view
