"""Node health: active checks (HAProxy's rise/fall) and passive ejection (nginx's max_fails).

Beyond Perl Perlbal, which only skips a node for a second after a failed
connect (``backends.DEAD_NODE_SECONDS``).  State is per (pool, node).  With
SERVER workers the active checks run once, in the supervisor, and each
change of a node's up/down state is sent to every worker (``on_change``,
``apply_remote``), so all of them take a node out at the same moment;
passive ejection counts each worker's own traffic, and an ejection a worker
decides goes up to the supervisor and from it to every worker
(``on_eject``, ``apply_ejection``) (docs/balancing.md):

- **active** (``health_check_uri`` set): every ``health_check_interval`` each
  node of the pool gets ``GET <uri> HTTP/1.0``; a 2xx or 3xx reply within
  ``health_check_timeout`` passes.  An up node goes down after
  ``health_check_fall`` consecutive failures, a down node comes back after
  ``health_check_rise`` consecutive passes.  Nodes start up.
- **passive** (``max_fails`` > 0): consecutive failures of real traffic -- a
  failed connect, or a reply whose status is in ``fail_statuses`` -- eject
  the node for ``fail_timeout`` seconds; any other reply resets the count.
  The last node of a pool still in is never ejected (a try is better than a
  503).

A node that is down or ejected is *out*: the balancer passes it by while
another node is available (``backends.BackendManager.available``).  Every
change of state is logged, counted and kept in a short history for the
console (``show pool``, ``nodes``), ``/metrics`` and ``perlbal explain``.

Invariants: ``out`` holds exactly the (pool, node) pairs that are down or
ejected (an ejection that ran out is dropped when next looked at); nothing
here touches client connections.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import anyio

from perlbal.graph import Pool
from perlbal.params import parse_status_list

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

HISTORY = 10  # state changes kept per node
MAX_TICK = 0.5  # the checker looks at the pools at least this often (live SETs)


def clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


@dataclass
class NodeHealth:
    pool: str
    ipport: str
    down: bool = False  # by active checks
    since: float = 0.0  # wall time of the last change of state (0: none yet)
    reason: str = ""  # why it is out (or came back)
    rise_count: int = 0  # consecutive passed checks while down
    fall_count: int = 0  # consecutive failed checks while up
    fails: int = 0  # passive: consecutive failures of real traffic
    ejected_until: float = 0.0  # monotonic; passive ejection ends then
    checks: int = 0
    checks_failed: int = 0
    ejections: int = 0
    remote: bool = False  # its ejection was another process's (not logged again here)
    last_check: str = ""  # the last check's result: "200", "connect refused", ...
    next_check: float = 0.0  # monotonic
    checking: bool = False
    history: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def ejected(self) -> bool:
        return self.ejected_until > time.monotonic()

    @property
    def state(self) -> str:
        return "down" if self.down else "ejected" if self.ejected else "up"

    def note(self) -> str:
        """Why the node is out, as explain and the console say it."""
        if self.down:
            return f"down since {clock(self.since)} ({self.reason})"
        left = max(self.ejected_until - time.monotonic(), 0.0)
        return f"ejected since {clock(self.since)} ({self.reason}; back in {left:.0f}s)"

    def change(self, text: str) -> None:
        self.since = time.time()
        self.history.append((self.since, text))


class HealthBook:
    """Health of every (pool, node) this worker has heard of."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], NodeHealth] = {}
        #: pool -> node -> health, for the nodes out now (the balancer reads only this)
        self.out: dict[str, dict[str, NodeHealth]] = {}
        self._statuses: dict[str, tuple[int, frozenset[int]]] = {}  # pool -> (generation, set)
        #: hears every up/down change the active checks make: (pool, node, down,
        #: reason, since); SERVER workers: the supervisor sends it to the workers
        self.on_change: Callable[[str, str, bool, str, float], None] | None = None
        #: hears every passive ejection decided here: (pool, node, seconds, reason);
        #: SERVER workers: a worker tells the supervisor, which tells every worker
        self.on_eject: Callable[[str, str, float, str], None] | None = None

    def get(self, pool: str, ipport: str) -> NodeHealth:
        health = self.nodes.get((pool, ipport))
        if health is None:
            health = self.nodes[(pool, ipport)] = NodeHealth(pool, ipport)
        return health

    def out_of(self, pool: str) -> dict[str, NodeHealth] | None:
        """The nodes of ``pool`` out now (None: none), ejections that ran out dropped."""
        out = self.out.get(pool)
        if not out:
            return None
        for ipport, health in list(out.items()):
            if not health.down and not health.ejected:
                del out[ipport]
                health.change("back: fail_timeout passed")
                if not health.remote:
                    log.warning("pool %s: node %s back after fail_timeout", pool, ipport)
        return out or None

    def _set_out(self, health: NodeHealth, out: bool) -> None:
        table = self.out.setdefault(health.pool, {})
        if out:
            table[health.ipport] = health
        else:
            table.pop(health.ipport, None)

    # --- passive: what real traffic saw ------------------------------------------

    def note_traffic(self, pool: Pool, ipport: str, failed: bool, what: str) -> None:
        """A request's outcome on ``ipport``: a failed connect or a counted status
        (``failed``), or another reply."""
        max_fails = pool.tunables.max_fails
        if max_fails <= 0:
            return
        health = self.get(pool.name, ipport)
        if not failed:
            health.fails = 0
            return
        health.fails += 1
        if health.fails < max_fails or health.ejected or health.down:
            return
        out = self.out_of(pool.name) or {}
        others_in = [n for n in pool.nodes if n.ipport != ipport and n.ipport not in out]
        if not others_in:
            if health.fails == max_fails:
                health.change(f"not ejected after {max_fails} failures ({what}): "
                              "the last node in")
            return
        timeout = pool.tunables.fail_timeout
        health.ejected_until = time.monotonic() + timeout
        health.ejections += 1
        health.remote = False
        health.reason = f"{health.fails} failures, the last {what}"
        health.change(f"ejected for {timeout:g}s: {health.reason}")
        health.fails = 0
        self._set_out(health, True)
        log.warning("pool %s: node %s ejected for %gs after %s", pool.name, ipport, timeout,
                    health.reason)
        if self.on_eject is not None:
            self.on_eject(pool.name, ipport, timeout, health.reason)

    def apply_ejection(self, pool: str, ipport: str, seconds: float, reason: str,
                       *, count: bool) -> None:
        """Another process ejected ``ipport`` for ``seconds`` (SERVER workers: a worker's
        traffic, passed on by the supervisor).  ``count``: the supervisor counts it
        (its ejections are what the console and /metrics show)."""
        health = self.get(pool, ipport)
        until = time.monotonic() + seconds
        if health.ejected and health.ejected_until >= until - 0.5:
            return  # the one that decided it, or already told
        health.ejected_until = until
        health.remote = True
        health.fails = 0
        health.reason = reason
        if count:
            health.ejections += 1
        health.change(f"ejected for {seconds:g}s: {reason}")
        self._set_out(health, True)

    def fail_statuses(self, pool: Pool) -> frozenset[int]:
        cached = self._statuses.get(pool.name)
        if cached is None or cached[0] != pool.generation:
            cached = (pool.generation, parse_status_list(pool.tunables.fail_statuses))
            self._statuses[pool.name] = cached
        return cached[1]

    # --- active checks ---------------------------------------------------------

    def check_result(self, pool: Pool, ipport: str, passed: bool, what: str) -> None:
        health = self.get(pool.name, ipport)
        health.checks += 1
        health.last_check = what
        if passed:
            health.fall_count = 0
            if health.down:
                health.rise_count += 1
                if health.rise_count >= pool.tunables.health_check_rise:
                    health.down = False
                    health.reason = f"{health.rise_count} passed checks"
                    health.change(f"up: {health.reason}")
                    self._set_out(health, health.ejected)
                    log.warning("pool %s: node %s is up again (%s)", pool.name, ipport,
                                health.reason)
                    self._tell(health)
            return
        health.checks_failed += 1
        health.rise_count = 0
        if health.down:
            return
        health.fall_count += 1
        if health.fall_count >= pool.tunables.health_check_fall:
            health.down = True
            health.reason = f"{health.fall_count} failed checks, the last {what}"
            health.change(f"down: {health.reason}")
            self._set_out(health, True)
            log.warning("pool %s: node %s is down (%s)", pool.name, ipport, health.reason)
            self._tell(health)

    def _tell(self, health: NodeHealth) -> None:
        if self.on_change is not None:
            self.on_change(health.pool, health.ipport, health.down, health.reason, health.since)

    def apply_remote(self, pool: str, ipport: str, down: bool, reason: str, since: float) -> None:
        """A worker: the supervisor's checks changed ``ipport``'s state (``on_change``)."""
        health = self.get(pool, ipport)
        if health.down == down:
            return
        health.down = down
        health.reason = reason
        health.since = since
        health.history.append((since, f"{'down' if down else 'up'}: {reason}"))
        self._set_out(health, down or health.ejected)

    async def run(self, runtime: "Runtime") -> None:
        """The checker: runs for the server's life, following live SETs."""
        while True:
            now = time.monotonic()
            wake = now + MAX_TICK
            tg = runtime.task_group
            for pool in list(runtime.graph.pools.values()):
                uri = pool.tunables.health_check_uri
                if not uri or pool.use_count <= 0:
                    continue
                interval = max(pool.tunables.health_check_interval, 0.05)
                for node in list(pool.nodes):
                    health = self.get(pool.name, node.ipport)
                    if health.checking:
                        continue
                    if health.next_check <= now and tg is not None:
                        health.next_check = now + interval
                        health.checking = True
                        tg.start_soon(self._check, pool, node.ip, node.port, uri)
                    wake = min(wake, health.next_check)
            self._forget_removed(runtime)
            await anyio.sleep(max(wake - time.monotonic(), 0.01))

    def _forget_removed(self, runtime: "Runtime") -> None:
        pools = runtime.graph.pools
        for key in [k for k in self.nodes if k[0] not in pools
                    or all(n.ipport != k[1] for n in pools[k[0]].nodes)]:
            health = self.nodes.pop(key)
            self._set_out(health, False)
            if health.down:  # a worker must not keep it out if it comes back
                health.down = False
                self._tell(health)

    async def _check(self, pool: Pool, ip: str, port: int, uri: str) -> None:
        ipport = f"{ip}:{port}"
        health = self.get(pool.name, ipport)
        timeout = max(pool.tunables.health_check_timeout, 0.05)
        try:
            passed, what = await _probe(ip, port, uri, timeout)
        finally:
            health.checking = False
        if (pool.name, ipport) in self.nodes:  # not removed from the pool meanwhile
            self.check_result(pool, ipport, passed, what)


async def _probe(ip: str, port: int, uri: str, timeout: float) -> tuple[bool, str]:
    """One check: (passed, what happened: the status, or the failure)."""
    request = (f"GET {uri} HTTP/1.0\r\nHost: {ip}:{port}\r\n"
               f"User-Agent: Perlbal-health-check\r\nConnection: close\r\n\r\n")
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_tcp(ip, port) as stream:
                await stream.send(request.encode("latin-1"))
                data = b""
                while b"\n" not in data and len(data) < 4096:
                    try:
                        data += await stream.receive(4096)
                    except anyio.EndOfStream:
                        break
    except TimeoutError:
        return False, f"timeout after {timeout:g}s"
    except OSError as exc:
        return False, (exc.strerror or str(exc)).lower()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return False, "connection reset"
    line = data.split(b"\n", 1)[0].decode("latin-1", "replace").split()
    if len(line) < 2 or not line[0].startswith("HTTP/") or not line[1].isdigit():
        return False, "no HTTP reply"
    status = int(line[1])
    return 200 <= status < 400, f"status {status}"
