"""Console commands that report rather than configure, with Perl's exact formats.

``show``, ``nodes``, ``socks``, ``states``, ``queues``, ``proc``, ``uptime``,
``dumpconfig``, ``server`` and friends.  Live numbers come from a
``LiveStats`` object supplied by the runtime (``Effects.stats()``); the base
class here answers for a graph with no sockets (check, explain, tests), so
every command has one implementation whatever is behind it.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perlbal import PERL_COMPAT_VERSION
from perlbal.balance import PoolView
from perlbal.graph import Pool, Service
from perlbal.grammar import ast
from perlbal.params import REGISTRY, Kind, Param, ParamError, ParamValue

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter


@dataclass
class SockRow:
    fd: int
    age: int
    cls: str  # Perl class name, e.g. Perlbal::ClientProxy
    desc: str  # as_string
    write_buf: int = 0
    open_file: bool = False


@dataclass
class ServiceStats:
    waiting_clients: int = 0
    pending_connects: list[tuple[str, str, int]] = field(default_factory=list)
    bored_backends: int = 0
    requests: int = 0
    cache_size: int = 0
    cache_hits: int = 0


class LiveStats:
    """Numbers only a running server has; the base class is an idle server."""

    #: SERVER metrics = on|off (beyond Perl): keep the /metrics traffic counters
    metrics_enabled = True

    def requests(self) -> int:
        return 0

    def node_stats(self) -> dict[str, dict[str, object]]:
        return {}

    def sockets(self) -> list[SockRow]:
        return []

    def states(self, service: str | None) -> dict[str, dict[str, int]]:
        return {}

    def queue(self, service: str, queue: str) -> tuple[int, int]:
        """(age of the oldest waiting client in seconds, count) of one queue."""
        return (0, 0)

    def service_stats(self, svc: Service) -> ServiceStats:
        return ServiceStats()

    def backends(self) -> dict[str, int]:
        return {}

    def noverify(self) -> dict[str, int]:
        return {}

    def obj_counts(self) -> dict[str, tuple[int, int]]:
        return {}

    def reproxy_state(self) -> list[str]:
        return []

    def worker_note(self) -> str | None:
        """With SERVER workers > 1: a line saying whose numbers a reply shows."""
        return None

    def pool_view(self, pool: Pool) -> PoolView:
        """Beyond Perl: the pool's balancing and health state (idle: all up, none busy)."""
        return PoolView()


def _whose_numbers(it: "Interpreter", call: "Call") -> None:
    """Replies made of live numbers start by naming the worker that answered
    when there are several (Perl has one process, so its replies never do)."""
    note = it.effects.stats().worker_note()
    if note:
        call.out(note)


# --- show ----------------------------------------------------------------------


def show(it: "Interpreter", node: ast.Show, call: "Call") -> bool:
    graph = it.graph
    if node.what == "service" and node.name is not None:
        svc = graph.services.get(node.name)
        if svc is None:
            return call.err("Unknown service")
        _whose_numbers(it, call)
        call.out(*service_info(it, svc))
        return call.end()
    if node.what == "pool":
        if node.name:
            pool = graph.pools.get(node.name)
            if pool is None:
                return call.err(f"pool '{node.name}' does not exist")
            _whose_numbers(it, call)  # node_used: requests this worker sent
            for n in pool.nodes:
                call.out(f"{n.ipport} {pool.node_used.get(n.ipport, '')}")
            if beyond_perl_pool(pool):
                call.out(*pool_health_lines(pool, it.effects.stats().pool_view(pool)))
        else:
            for name in sorted(graph.pools):
                pool = graph.pools[name]
                call.out(f"{name} nodes {len(pool.nodes)}", f"{name} services {pool.use_count}")
        return call.end()
    for name in sorted(graph.services):
        svc = graph.services[name]
        state = "ENABLED" if svc.enabled else "DISABLED"
        call.out(f"{name} {svc.listen or 'not_listening'} {state}")
    return call.end()


def service_info(it: "Interpreter", svc: Service) -> list[str]:
    """Perl's Service::stats_info, line for line."""
    stats = it.effects.stats().service_stats(svc)
    lines = [f"SERVICE {svc.name}", f"     listening: {svc.listen or '--'}",
             f"          role: {svc.role or ''}"]
    if svc.role in ("reverse_proxy", "web_server"):
        lines.append(f"  pend clients: {stats.waiting_clients}")
        lines.append(f"  pend backend: {len(stats.pending_connects)}")
        for ipport, state, age in sorted(stats.pending_connects):
            lines.append(f"   {ipport} - {state} - {age}s")
    if svc.role == "reverse_proxy":
        maxsize = svc.extra.get("reproxy_cache_maxsize")
        if isinstance(maxsize, int) and maxsize:
            hits, size = stats.cache_hits, stats.cache_size
            rate = hits / stats.requests * 100 if stats.requests else 0.0
            lines.append(f"    cache size: {size}/{maxsize} ({size / maxsize * 100:0.2f}%)")
            lines.append(f"    cache hits: {hits}")
            lines.append(f"cache hit rate: {rate:0.2f}%")
        lines.append(f" connect-ahead: {stats.bored_backends}/{svc.tunables.connect_ahead}")
        pool = it.graph.pools.get(svc.pool_name or "")
        if pool is not None:
            lines.append(f"          pool: {pool.name}")
            lines.append("         nodes:")
            for n in pool.nodes:
                lines.append(f"                {n.ipport:<21} {pool.node_used.get(n.ipport, 0):7d}")
    elif svc.role == "web_server":
        lines.append(f"        docroot: {svc.tunables.docroot or ''}")
    return lines


def beyond_perl_pool(pool: Pool) -> bool:
    """Does the pool use our balancing or health parameters (so the console
    adds our lines to Perl's)?"""
    return pool.balance_method != "random" or bool(pool.params)


def pool_health_lines(pool: Pool, view: PoolView) -> list[str]:
    """``show pool NAME``'s lines after Perl's: '#' comments, so a client that
    parses Perl's ``ip:port count`` lines reads past them."""
    settings = [f"balance_method {pool.balance_method}"]
    tunables = pool.tunables
    if pool.balance_method == "hash":
        settings.append(f"hash_key {tunables.hash_key}")
    if tunables.health_check_uri:
        settings.append(f"health_check_uri {tunables.health_check_uri} every "
                        f"{tunables.health_check_interval:g}s "
                        f"(rise {tunables.health_check_rise}, "
                        f"fall {tunables.health_check_fall})")
    if tunables.max_fails:
        settings.append(f"max_fails {tunables.max_fails} ({tunables.fail_statuses} or a failed "
                        f"connect), fail_timeout {tunables.fail_timeout:g}s")
    lines = ["# " + "; ".join(settings)]
    for n in pool.nodes:
        row = view.nodes.get(n.ipport, {})
        state = view.notes.get(n.ipport, "up")
        parts = [f"# {n.ipport} {state}", f"{view.load.get(n.ipport, 0)} in flight"]
        checks = row.get("checks", 0)
        if checks:
            parts.append(f"checks {checks} ({row.get('checks_failed', 0)} failed, "
                         f"last {row.get('last_check', '')})")
        if row.get("ejections"):
            parts.append(f"ejected {row['ejections']} times")
        lines.append("; ".join(parts))
        history = row.get("history")
        if isinstance(history, list):
            lines.extend(f"#   {when} {what}" for when, what in history)
    return lines


# --- SERVER key = value -------------------------------------------------------------


def server_setting(it: "Interpreter", key: str, val: str, call: "Call") -> bool:
    numeric = re.fullmatch(r"-?\d+", val) is not None
    # Perl: /^max_reproxy_connections(?:\((.+)\))?/, unanchored at the end: a prefix
    if key.startswith("max_reproxy_connections"):
        if not numeric:
            return call.err("Expected numeric parameter")
        # re-inserted so the dict keeps the order of setting: reproxy_state needs it
        it.graph.server.pop(key, None)
        it.graph.server[key] = str(int(val))
        return call.ok()
    if key == "max_connections":
        if not numeric:
            return call.err("Expected numeric parameter")
        if it.owns_process:
            # Perl sets RLIMIT_NOFILE to the value.  Ours also refuses clients beyond
            # it (server.py), so the descriptor limit is only ever raised, with room
            # for each client's backend connection and the listeners.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            want = 2 * int(val) + 100
            try:
                if want > soft:
                    resource.setrlimit(resource.RLIMIT_NOFILE,
                                       (want, max(want, hard) if hard != resource.RLIM_INFINITY
                                        else hard))
            except (ValueError, OSError):
                call.err("Unable to set limit." if os.geteuid() == 0
                         else "Need to be root to increase max connections.")
        it.graph.server[key] = val
        return call.ok()
    if key == "nice_level":
        if not numeric:
            return call.err("Expected numeric parameter")
        if it.owns_process:
            try:
                os.nice(int(val))
            except OSError as exc:
                call.err(f"Unable to renice: {exc.strerror}")
        it.graph.server[key] = val
        return call.ok()
    if key == "aio_mode":
        # Perl's regex is /^none|linux|ioaio$/ (alternation binds loosely)
        if not re.search(r"^none|linux|ioaio$", val):
            return call.err("Unknown AIO mode")
        if val == "linux":
            return call.err("Linux::AIO no longer supported")
        it.graph.server[key] = val
        return call.ok()
    if key in ("aio_threads", "workers"):
        if not numeric:
            return call.err("Expected numeric parameter")
        if key == "workers" and it.run_started:
            return call.err("workers must be configured at startup")
        it.graph.server[key] = val
        return call.ok()
    if key in ("track_obj", "crash_backtrace"):
        if val not in ("0", "1"):
            return call.err("Expected 1 or 0")
        it.graph.server[key] = val
        return call.ok()
    if key == "pidfile":
        if it.run_started:
            return call.err("pidfile must be configured at startup, before Perlbal::run is called")
        it.graph.server[key] = val
        return call.ok()
    if key in ("user", "error_log"):  # beyond Perl: startup only (runtime/main.py)
        if it.run_started:
            return call.err(f"{key} must be configured at startup")
        if not val:
            return call.err(f"Expected a value for {key}")
        it.graph.server[key] = val
        return call.ok()
    if key in ("log_level", "metrics"):  # beyond Perl
        choices = REGISTRY.server[key].choices
        if val.lower() not in choices:
            return call.err(f"Expected one of {', '.join(choices)}")
        it.graph.server[key] = val.lower()
        if key == "log_level" and it.owns_process:
            logging.getLogger("perlbal").setLevel(val.upper())
        if key == "metrics":
            it.effects.stats().metrics_enabled = val.lower() == "on"
        return call.ok()
    # Perl names the value here, not the key
    return call.err(f"unknown server option '{val}'")


# --- dumpconfig ----------------------------------------------------------------------


def _dump_value(param: Param, value: ParamValue) -> str:
    if isinstance(value, bool):
        return "on" if value else "0"
    if isinstance(value, list):
        return ", ".join(value)
    return "" if value is None else str(value)


def service_dump(it: "Interpreter", svc: Service) -> list[str]:
    params = dict(REGISTRY.service)
    for p in it.plugins.loaded_params(it.graph.plugins_loaded.values()):
        params[p.name] = p
    order = ["role", "listen", "pool"] + sorted(k for k in params if k not in
                                                 ("role", "listen", "pool"))
    out: list[str] = []
    for name in order:
        param = params[name]
        if param.dump_ignore or not param.applies_to(svc.role):
            continue
        value = svc.params.get(name)
        if not param.required:
            if value is None:
                continue
            # Perl compares against the default; a list never equals it (Perl quirk,
            # kept for Perl's parameters; ours, such as upgrade_protocols, compare)
            if param.default is not None and (param.kind is not Kind.LIST
                                              or param.beyond_perl):
                try:
                    if param.coerce(param.default, it.env, svc.name) == value:
                        continue
                except ParamError:
                    pass
        out.append(f"SET {name} = {_dump_value(param, value)}")
    if svc.plugin_order:
        out.append("SET plugins = " + ", ".join(svc.plugin_order))
    for plugin_name in svc.plugin_order:
        plugin = it.plugins.find(plugin_name)
        lines = plugin.dumpconfig(it, svc) if plugin is not None else None
        if lines is None:
            out.append(f"# Plugin '{plugin_name}' isn't capable of dumping config.")
        else:
            out.extend(lines)
    return out


def pool_dump(pool: Pool) -> list[str]:
    lines = ([f"SET nodefile = {pool.nodefile}"] if pool.nodefile
             else [f"POOL ADD {pool.name} {n.ipport}" for n in pool.nodes])
    # beyond Perl: the balancing and health parameters, so the dump rebuilds the pool
    if pool.balance_method != "random":
        lines.append(f"SET balance_method = {pool.balance_method}")
    for key, value in pool.params.items():
        lines.append(f"SET {key} = {'none' if value == '' else value}")
    return lines


def dumpconfig(it: "Interpreter", call: "Call") -> bool:
    """Perl's dumpconfig, extended so that its output rebuilds the same graph.

    Perl's own output does not round-trip: it omits LOAD, ``SET plugins`` and
    HEADER rules, and its ``DISABLE name`` fails on a fresh server.  We print
    Perl's lines plus those three, and leave a disabled service without the
    line (a new service starts disabled).
    """
    loaded = sorted(set(it.graph.plugins_loaded.values()))
    if loaded:
        call.out(*(f"LOAD {name}" for name in loaded), "")
    for name, pool in it.graph.pools.items():
        call.out(f"CREATE POOL {name}", *(f"  {ln}" for ln in pool_dump(pool)), "")
    for name, svc in it.graph.services.items():
        call.out(f"CREATE SERVICE {name}", *(f"  {ln}" for ln in service_dump(it, svc)))
        call.out(*(f"HEADER {name} REMOVE {h}" for h in svc.headers.remove))
        call.out(*(f"HEADER {name} INSERT {h}: {v}" for h, v in svc.headers.insert))
        if svc.enabled:
            call.out(f"ENABLE {name}")
        call.out("")
    return call.ok()


# --- other queries --------------------------------------------------------------------


_LIVE_QUERIES = frozenset({"proc", "fd", "obj", "backends", "noverify", "pending", "queues"})


def query(it: "Interpreter", keyword: str, call: "Call") -> bool:
    stats = it.effects.stats()
    if keyword in _LIVE_QUERIES:
        _whose_numbers(it, call)
    if keyword in ("uptime", "version"):
        call.out(f"starttime {it.start_time}", f"uptime {int(time.time()) - it.start_time}",
                 f"version {PERL_COMPAT_VERSION}")
    elif keyword == "proc":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        reqs = stats.requests()
        last = getattr(it, "_proc_last", (0.0, 0.0, 0))
        # Perl stringifies numbers with %.15g; and it stores $lastreqs before
        # computing the delta, so with BSD::Resource the reqs delta is always 0
        call.out(f"time: {int(time.time())}", f"pid: {os.getpid()}",
                 f"utime: {usage.ru_utime:.15g} (+{usage.ru_utime - last[0]:.15g})",
                 f"stime: {usage.ru_stime:.15g} (+{usage.ru_stime - last[1]:.15g})",
                 f"reqs: {reqs} (+0)")
        setattr(it, "_proc_last", (usage.ru_utime, usage.ru_stime, reqs))
    elif keyword == "fd":
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        try:
            cur = len(os.listdir("/proc/self/fd"))
        except OSError:
            cur = 0
        call.out(f"max {hard}", f"cur {cur}")
    elif keyword == "obj":
        for name, (count, total) in sorted(stats.obj_counts().items()):
            call.out(f"{name} = {count} (tot={total})")
    elif keyword == "backends":
        for ipport, count in sorted(stats.backends().items()):
            call.out(f"{ipport} {count}")
    elif keyword == "noverify":
        for ipport, left in stats.noverify().items():
            call.out(f"{ipport} {left}")
    elif keyword == "pending":
        for name in sorted(it.graph.services):
            svc = it.graph.services[name]
            for ipport, _state, age in sorted(stats.service_stats(svc).pending_connects):
                call.out(f"{name} {ipport} {age}")
    elif keyword == "queues":
        for name in sorted(it.graph.services):
            if it.graph.services[name].role != "reverse_proxy":
                continue
            for queue in ("normal", "highpri", "lowpri"):
                age, count = stats.queue(name, queue)
                call.out(f"{name}-{queue}.age {age}", f"{name}-{queue}.count {count}")
    elif keyword == "plugins":
        for name in sorted(it.graph.services):
            svc = it.graph.services[name]
            if svc.plugin_order:
                call.out(" ".join([name, *svc.plugin_order]))
    return call.end()


def nodes(it: "Interpreter", node: ast.Nodes, call: "Call") -> bool:
    _whose_numbers(it, call)
    stats = it.effects.stats()
    table = stats.node_stats()
    # beyond Perl: nodes of pools that balance or check health get their state too
    # (the same "ip:port key value" lines; a node in several pools: its worst state)
    for pool in it.graph.pools.values():
        if not beyond_perl_pool(pool):
            continue
        view = stats.pool_view(pool)
        for n in pool.nodes:
            row = table.setdefault(n.ipport, {})
            note = view.notes.get(n.ipport)
            if note is not None or "state" not in row:
                row["state"] = note.split()[0] if note else "up"
                if note is not None:
                    row["state_note"] = note
            row["in_flight"] = view.load.get(n.ipport, 0)
            extra = view.nodes.get(n.ipport, {})
            for key in ("checks", "checks_failed", "ejections"):
                if extra.get(key):
                    row[f"health_{key}" if key.startswith("check") else key] = extra[key]
    wanted = f"{node.ip}:{node.port or 80}" if node.ip else None
    for ipport in ([wanted] if wanted else list(table)):
        for key, value in table.get(ipport, {}).items():
            if isinstance(value, list):
                counts: dict[str, int] = {}
                for item in value:
                    counts[str(item)] = counts.get(str(item), 0) + 1
                for item, count in counts.items():
                    call.out(f"{ipport} {key} {item} {count}")
            else:
                call.out(f"{ipport} {key} {value}")
    return call.end()


def socks(it: "Interpreter", mode: str, call: "Call") -> bool:
    _whose_numbers(it, call)
    rows = it.effects.stats().sockets()
    if mode == "summary":
        counts: dict[str, int] = {}
        for row in rows:
            counts[row.cls] = counts.get(row.cls, 0) + 1
        for cls in sorted(counts):
            call.out(f"{counts[cls]:5d} {cls}")
        # Perl's "$mc->out();" here returns the writer and prints nothing
        call.out(f"Aggregate write buffer: {sum(r.write_buf for r in rows) / 1024:.1f}k")
        call.out(f"            Open files: {sum(1 for r in rows if r.open_file)}")
    elif mode == "all":
        call.out(f"{'fd':>5} {'age':>6}")
        for row in sorted(rows, key=lambda r: r.fd):
            call.out(f"{row.fd:5d} {row.age:5d}s {row.desc}")
    return call.end()


def states(it: "Interpreter", service: str | None, call: "Call") -> bool:
    if service is not None and service not in it.graph.services:
        return call.err("Service not found.")
    _whose_numbers(it, call)
    table = it.effects.stats().states(service)
    for cls in sorted(table):
        for state in sorted(table[cls]):
            call.out(f"{cls} {state} {table[cls][state]}")
    return call.end()


def reproxy_state(it: "Interpreter", call: "Call") -> bool:
    """ReproxyManager::dump_state: live lines, then the global limit, then '.'.

    Perl 1.80 never fills its per-host table: MANAGE_server's numeric check is
    a successful match that resets ``$1``, so ``max_reproxy_connections(host)``
    sets the global limit.  The last one set is therefore the global value.
    """
    _whose_numbers(it, call)
    call.out(*it.effects.stats().reproxy_state())
    limit = "0"
    for key, value in it.graph.server.items():
        if key.startswith("max_reproxy_connections"):
            limit = value
    call.out(f"SERVER max_reproxy_connections = {limit}")
    return call.end()


_PERL_ONLY = {
    "gladiator": "walks Perl's memory arena with Devel::Gladiator",
    "varsize": "measures Perl data structures",
    "track": "lists objects tracked by Perl's track_obj",
    "prof": "profiles Perl's Danga::Socket event loop",
    "leaks": "lists leaked Perl objects",
    "state": "lists Perl socket state changes",
    "crash": "deliberately crashes the Perl process",
}


def perl_only(keyword: str, call: "Call") -> bool:
    what = _PERL_ONLY.get(keyword, "is specific to the Perl implementation")
    return call.err(f"'{keyword}' {what}; it has no meaning in this implementation "
                    "(try 'socks', 'states' or the web UI)")
