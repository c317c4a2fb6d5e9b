"""Prometheus text exposition (format 0.0.4) of the running server, served at /metrics.

The management service's HTTP side answers ``GET /metrics`` with this page
(Perl Perlbal has nothing like it; its ``stats``/``nodes`` console commands
are the nearest).  Everything is read from ``RuntimeStats`` and the graph when
the page is asked for; nothing here runs on the request path.  The traffic
counters (requests, responses by status, bytes per service and per pool/node)
are kept while ``SERVER metrics`` is on (the default).

Invariants: counters only grow (``_total``); every family has one ``# HELP``
and one ``# TYPE`` line before its samples; label values are escaped as the
format requires (backslash, double quote, newline).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from perlbal import PERL_COMPAT_VERSION
from perlbal.runtime.aio import OPEN_PROTOCOLS
from perlbal.runtime.relay import LIVE_BUFFERS

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["render", "collect", "parse_families", "families_data",
           "merge", "Family", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass
class Family:
    name: str
    kind: str
    doc: str
    samples: list[Sample]


FamilyAdder = Callable[[str, str, str, Iterable[Sample]], None]


class _Page:
    def __init__(self) -> None:
        self.families: list[Family] = []

    def family(self, name: str, kind: str, doc: str, samples: Iterable[Sample]) -> None:
        self.families.append(Family(name, kind, doc, list(samples)))


def _text(families: list[Family]) -> str:
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {fam.doc}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            if labels:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{fam.name}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{fam.name} {_number(value)}")
    return "\n".join(lines) + "\n"


# --- SERVER workers: one page for every worker ----------------------------

#: the same in every process: the supervisor's value is shown, not a sum
_SHARED = frozenset({"perlbal_info", "perlbal_uptime_seconds", "perlbal_metrics_enabled",
                     "perlbal_max_connections",
                     # the active checks run once, in the supervisor, and it counts
                     # every worker's ejections as they are passed on
                     "perlbal_node_health_checks_total", "perlbal_node_ejections_total"})
#: the largest over the workers
_LARGEST = frozenset({"perlbal_queue_oldest_seconds"})
#: the smallest: a node is up only while every process has it in
_SMALLEST = frozenset({"perlbal_node_up"})


def families_data(runtime: "Runtime") -> list[Any]:
    """This worker's families as JSON-ready lists, for the supervisor to add up."""
    return [[f.name, f.kind, f.doc, [[list(map(list, labels)), value] for labels, value
                                     in f.samples]] for f in collect(runtime)]


def parse_families(data: Any) -> list[Family]:
    """The inverse of ``families_data``; ValueError for anything malformed."""
    try:
        return [Family(str(name), str(kind), str(doc),
                       [(tuple((str(k), str(v)) for k, v in labels), float(value))
                        for labels, value in samples])
                for name, kind, doc, samples in data]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad metrics snapshot: {exc}") from None


def merge(own: list[Family], others: Iterable[list[Family]]) -> list[Family]:
    """The supervisor's families with the workers' added in: counters and
    gauges summed per label set, except the shared ones (the supervisor's),
    the oldest queue age (the largest) and node_up (the smallest).  Families
    or label sets only a worker has are added after the supervisor's."""
    merged = {f.name: Family(f.name, f.kind, f.doc, list(f.samples)) for f in own}
    order = [f.name for f in own]
    for families in others:
        for fam in families:
            into = merged.get(fam.name)
            if into is None:
                merged[fam.name] = Family(fam.name, fam.kind, fam.doc, list(fam.samples))
                order.append(fam.name)
                continue
            if fam.name in _SHARED:
                continue
            index = {labels: i for i, (labels, _value) in enumerate(into.samples)}
            for labels, value in fam.samples:
                i = index.get(labels)
                if i is None:
                    index[labels] = len(into.samples)
                    into.samples.append((labels, value))
                elif fam.name in _LARGEST:
                    into.samples[i] = (labels, max(into.samples[i][1], value))
                elif fam.name in _SMALLEST:
                    into.samples[i] = (labels, min(into.samples[i][1], value))
                else:
                    into.samples[i] = (labels, into.samples[i][1] + value)
    return [merged[name] for name in order]


def _by(key: str, table: dict[str, int]) -> list[Sample]:
    return [(((key, name),), value) for name, value in sorted(table.items())]


def _by_node(table: dict[tuple[str, str], int]) -> list[Sample]:
    return [((("pool", pool), ("node", node)), value)
            for (pool, node), value in sorted(table.items())]


def _per_pool(table: dict[tuple[str, str], int]) -> list[Sample]:
    sums: dict[str, int] = {}
    for (pool, _node), value in table.items():
        sums[pool] = sums.get(pool, 0) + value
    return _by("pool", sums)


def _node_counter(node_table: dict[str, dict[str, object]], key: str) -> list[Sample]:
    out: list[Sample] = []
    for ipport, row in sorted(node_table.items()):
        value = row.get(key, 0)
        out.append(((("node", ipport),), value if isinstance(value, int) else 0))
    return out


def _buffers() -> list[Sample]:
    relay = sum(buf.size for buf in list(LIVE_BUFFERS))
    unread = unsent = 0
    for proto in list(OPEN_PROTOCOLS):
        if proto.lost:
            continue
        unread += proto.size
        transport = proto.transport
        if transport is not None and not transport.is_closing():
            unsent += transport.get_write_buffer_size()
    return [((("kind", "relay"),), relay), ((("kind", "socket_unread"),), unread),
            ((("kind", "socket_unsent"),), unsent)]


def _health(runtime: "Runtime", fam: "FamilyAdder") -> None:
    """Beyond Perl: balancing and node health (runtime.health), per pool and node."""
    manager = runtime.backends
    book = manager.health
    up: list[Sample] = []
    checks: list[Sample] = []
    ejections: list[Sample] = []
    for name, pool in sorted(runtime.graph.pools.items()):
        out = book.out_of(name) or {}
        for n in pool.nodes:
            labels = (("pool", name), ("node", n.ipport))
            up.append((labels, 0 if n.ipport in out else 1))
            health = book.nodes.get((name, n.ipport))
            if health is not None and health.checks:
                checks.append((labels + (("result", "pass"),),
                               health.checks - health.checks_failed))
                checks.append((labels + (("result", "fail"),), health.checks_failed))
            if health is not None and health.ejections:
                ejections.append((labels, health.ejections))
    fam("perlbal_node_up", "gauge", "1 while a pool's node is in, 0 while it is down "
        "(failed health checks) or ejected (max_fails).", up)
    fam("perlbal_node_in_flight", "gauge", "Requests balanced to a node and not finished "
        "(waiting for or holding a connection).",
        _by("node", {k: v for k, v in manager.load.items() if v or k in live_nodes(runtime)}))
    fam("perlbal_node_health_checks_total", "counter", "Active health checks of a pool's "
        "node, by result.", checks)
    fam("perlbal_node_ejections_total", "counter", "Times a pool's node was ejected by "
        "max_fails.", ejections)


def live_nodes(runtime: "Runtime") -> set[str]:
    return {n.ipport for pool in runtime.graph.pools.values() for n in pool.nodes}


def render(runtime: "Runtime") -> str:
    """The /metrics page; with SERVER workers, the supervisor's numbers and every
    worker's added up (``Workers.refresh`` asked them just before)."""
    families = collect(runtime)
    workers = runtime.workers
    if workers.supervising:
        reports = workers.reports
        families = merge(families, [workers.departed_families,
                                    *(r.families for r in reports.values())])
        families.insert(1, Family("perlbal_workers", "gauge", "Worker processes running "
                                  "(SERVER workers; an older generation's that still "
                                  "drains included); this page adds up their numbers.",
                                  [((), len(reports))]))
    return _text(families)


def collect(runtime: "Runtime") -> list[Family]:
    """This process's families."""
    live = runtime.live
    graph = runtime.graph
    page = _Page()
    fam = page.family
    fam("perlbal_info", "gauge", "Version of Perl Perlbal this server follows.",
        [((("version", PERL_COMPAT_VERSION),), 1)])
    fam("perlbal_uptime_seconds", "gauge", "Seconds since the server started.",
        [((), int(time.time() - live.started))])
    fam("perlbal_metrics_enabled", "gauge", "1 while SERVER metrics is on (traffic counters "
        "are kept).", [((), 1 if live.metrics_enabled else 0)])
    # --- clients ---
    fam("perlbal_connections_open", "gauge", "Client connections open now.",
        [((), runtime.active_connections)])
    fam("perlbal_connections_accepted_total", "counter", "Client connections accepted, by "
        "listening service.", _by("service", live.accepted))
    limit = runtime.max_connections
    if limit:
        fam("perlbal_max_connections", "gauge", "SERVER max_connections.", [((), limit)])
    fam("perlbal_connections_refused_total", "counter", "Client connections refused, by "
        "reason.", [((("reason", "max_connections"),), live.refused_max_connections)])
    fam("perlbal_tls_handshake_failures_total", "counter", "TLS handshakes that failed or "
        "timed out.", [((), live.tls_handshake_failures)])
    fam("perlbal_requests_total", "counter", "Client requests read, all services.",
        [((), live.total_requests)])
    fam("perlbal_service_requests_total", "counter", "Client requests answered, by the "
        "service that answered.", _by("service", live.service_requests))
    fam("perlbal_service_responses_total", "counter", "Responses by service and status "
        "(code 0: none was sent).",
        [((("service", svc), ("code", str(code))), value)
         for (svc, code), value in sorted(live.service_responses.items())])
    fam("perlbal_service_received_bytes_total", "counter", "Bytes received from clients, "
        "by service.", _by("service", live.service_bytes_in))
    fam("perlbal_service_sent_bytes_total", "counter", "Bytes sent to clients, by service.",
        _by("service", live.service_bytes_out))
    # --- backends ---
    fam("perlbal_pool_sent_bytes_total", "counter", "Bytes sent to a pool's nodes.",
        _per_pool(live.node_bytes_out))
    fam("perlbal_pool_received_bytes_total", "counter", "Bytes received from a pool's nodes.",
        _per_pool(live.node_bytes_in))
    fam("perlbal_node_sent_bytes_total", "counter", "Bytes sent to a backend node.",
        _by_node(live.node_bytes_out))
    fam("perlbal_node_received_bytes_total", "counter", "Bytes received from a backend node.",
        _by_node(live.node_bytes_in))
    fam("perlbal_node_requests_total", "counter", "Requests sent to a backend node.",
        _by("node", live.node_requests))
    node_table = live.node_stats()
    fam("perlbal_node_connect_attempts_total", "counter", "Connections attempted to a node.",
        _node_counter(node_table, "attempts"))
    fam("perlbal_node_connect_failures_total", "counter", "Connections to a node that failed "
        "or timed out.", _by("node", live.node_failures))
    fam("perlbal_node_open_connections", "gauge", "Backend connections open to a node.",
        _by("node", live.backends()))
    _health(runtime, fam)
    # --- queues (reverse proxies) ---
    depth: list[Sample] = []
    oldest: list[Sample] = []
    pending: list[Sample] = []
    idle: list[Sample] = []
    for name, svc in sorted(graph.services.items()):
        if svc.role != "reverse_proxy":
            continue
        for queue in ("normal", "highpri", "lowpri"):
            age, count = live.queue(name, queue)
            depth.append(((("service", name), ("queue", queue)), count))
            oldest.append(((("service", name), ("queue", queue)), age))
        stats = live.service_stats(svc)
        pending.append(((("service", name),), len(stats.pending_connects)))
        idle.append(((("service", name),), stats.bored_backends))
    fam("perlbal_queue_depth", "gauge", "Clients waiting for a backend connection.", depth)
    fam("perlbal_queue_oldest_seconds", "gauge", "Age of the longest-waiting client.", oldest)
    fam("perlbal_pending_backend_connects", "gauge", "Backend connections being opened.",
        pending)
    fam("perlbal_idle_backends", "gauge", "Idle (bored) backend connections ready for "
        "clients.", idle)
    # --- memory ---
    by_class: dict[str, int] = {}
    for row in live.sockets():
        by_class[row.cls] = by_class.get(row.cls, 0) + 1
    fam("perlbal_sockets_open", "gauge", "Sockets open, by Perl class name (as 'socks').",
        _by("class", by_class))
    fam("perlbal_buffer_bytes", "gauge", "Bytes held in buffers: responses read ahead of "
        "clients (relay), received and not yet read, written and not yet sent.", _buffers())
    return page.families
