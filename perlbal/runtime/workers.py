"""SERVER workers = N: a supervisor process and N equal, supervised workers.

Unset (or 0), the server is one process, as Perl Perlbal is.  With
``workers = N`` (N >= 1) the process that read the config becomes the
*supervisor*:

- it owns every listening socket: it bound them while the config loaded (as
  root when started as root, so ports below 1024 work), and never accepts on
  a client listener itself.  Each worker inherits the same sockets by fork
  and accepts on them: one shared accept queue per address, so a worker that
  dies leaves nothing queued behind it (docs/operating.md, "Workers", has
  the measurement against one SO_REUSEPORT socket per worker);
- it forks N workers (slots 1..N) from the event loop (``workerside.py`` is
  what a worker does after the fork: close what is the supervisor's, drop
  privileges to SERVER user, start a fresh event loop) and restarts a dead
  one at once, logged at ERROR with its exit status or signal.  A worker
  that dies within ``STABLE_SECONDS`` of its start counts towards a crash
  loop: the k-th such exit in a row waits ``backoff(k)`` seconds (0, 0.5,
  1, 2 ... capped at ``MAX_BACKOFF``) before the slot is forked again;
- it serves the management service (console, web UI, /metrics) and runs the
  health checks, DNS refreshes and upload tracker once; their changes are
  sent to every worker down its command pipe as they happen, so every worker
  takes a node out at the same moment;
- a console command that succeeded is sent down the same pipe as a line,
  which the worker runs too; one that changed a client listener (ENABLE,
  DISABLE, SET listen, a TLS context), and any reload that applied
  something, starts a *new generation* instead, as nginx does: N fresh
  workers forked from the supervisor's new state (they inherit its sockets
  and TLS contexts), while the old ones stop accepting and finish what they
  hold with the old config (their command pipe is closed: a worker drains
  on EOF);
- each worker answers ``report`` messages with its numbers (``poolstats``
  adds them up for the console, the web UI and /metrics).

Invariants: a worker never outlives the supervisor (PR_SET_PDEATHSIG and the
command pipe's EOF); a slot has at most one current process; the messages on
a pipe are single JSON lines, written whole (``_send`` keeps what a full
pipe did not take and writes it in order).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from perlbal.interp import Reply
from perlbal.runtime import metrics, workerside

if TYPE_CHECKING:
    from perlbal.graph import Pool
    from perlbal.runtime.server import Runtime

#: seconds between a worker's unsolicited reports to the supervisor
REPORT_INTERVAL = 1.0
#: a worker that ran this long before it died is not part of a crash loop
STABLE_SECONDS = 10.0
#: the longest wait before a crash-looping slot is forked again
MAX_BACKOFF = 30.0
#: how long ``refresh`` waits for the workers' answers
REFRESH_TIMEOUT = 1.0

log = logging.getLogger("perlbal.runtime")

__all__ = ["Workers", "Proc", "REPORT_INTERVAL", "backoff", "describe_exit"]


def backoff(quick_exits: int) -> float:
    """Seconds to wait before forking a slot again after its ``quick_exits``-th
    exit in a row within STABLE_SECONDS of its start (the first: none)."""
    if quick_exits <= 1:
        return 0.0
    return min(0.5 * 2.0 ** (quick_exits - 2), MAX_BACKOFF)


def describe_exit(status: int) -> str:
    """A waitpid status as an operator reads it."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"was killed by signal {signum} ({name})"
    return f"exited with status {os.WEXITSTATUS(status)}"


@dataclass
class Proc:
    """One worker process (current in its slot, or of an older generation)."""

    slot: int
    pid: int
    cmd_fd: int  # supervisor -> worker: JSON lines
    report_fd: int  # worker -> supervisor: JSON lines
    started: float  # monotonic
    retired: bool = False  # an older generation's: drains, is not replaced
    pending: bytes = b""  # what the command pipe did not take yet
    seen_seq: int = 0  # the last refresh it answered
    cmd_closed: bool = False
    last: "Report | None" = None  # its latest numbers

    def close_commands(self) -> None:
        """Close the command pipe once (EOF: the worker drains and ends)."""
        if not self.cmd_closed:
            self.cmd_closed = True
            self.pending = b""
            workerside.close_quietly(self.cmd_fd)


@dataclass
class Slot:
    index: int
    proc: Proc | None = None
    quick_exits: int = 0  # exits in a row within STABLE_SECONDS of their start
    fork_at: float = 0.0  # monotonic: not forked again before this


@dataclass
class Report:
    families: list[metrics.Family]
    live: dict[str, Any] = field(default_factory=dict)


class Workers:
    """The supervisor's side of SERVER workers (and ``role`` for every process)."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        #: "single" (no SERVER workers: Perl's one process), "supervisor", "worker"
        self.role = "single"
        #: which worker this process is: 0 for the supervisor or the single process
        self.id = 0
        #: worker slots (SERVER workers)
        self.count = 1
        self.slots: list[Slot] = []
        self.old: list[Proc] = []  # older generations, draining
        #: each running worker's latest report, by pid (poolstats adds them up)
        self.reports: dict[int, Report] = {}
        #: lifetime counters of the workers that ended (poolstats.add_departed)
        self.departed: dict[str, Any] = {}
        self.departed_families: list[metrics.Family] = []
        self.stopping = False
        self.generation = 0
        self._tg: TaskGroup | None = None
        self._wake: anyio.Event | None = None
        self._regenerate: str | None = None  # why a new generation is due
        self._listener_generation = 0
        self._seq = 0
        self._waiting: list[anyio.Event] = []  # refreshes waiting for reports
        self.forward = self._forward  # the line observer (a worker removes it)

    @property
    def supervising(self) -> bool:
        return self.role == "supervisor"

    def procs(self) -> list[Proc]:
        """Every worker process alive or not yet reaped, current ones first."""
        return [s.proc for s in self.slots if s.proc is not None] + self.old

    # --- start ------------------------------------------------------------------

    def start(self) -> int:
        """After the config loaded: become the supervisor if SERVER workers >= 1.

        The workers are forked once the event loop runs (``begin``); returns
        this process's worker id (0)."""
        count = self.runtime.graph.settings.workers or 0
        if count < 1:
            return 0
        self.role = "supervisor"
        self.count = self.runtime.live.worker_count = count
        self.slots = [Slot(i) for i in range(1, count + 1)]
        self._listener_generation = self.runtime.sockets.generation
        self.runtime.interp.line_observers.append(self.forward)
        return 0

    def begin(self, tg: TaskGroup) -> None:
        """``Runtime.serve`` started: fork the workers and watch over them."""
        if self.role != "supervisor":
            return
        self._tg = tg
        self._wake = anyio.Event()
        tg.start_soon(self._supervise)
        tg.start_soon(self._ask_reports)

    # --- the supervisor's loop ------------------------------------------------------

    async def _supervise(self) -> None:
        while not self.stopping:
            if self._regenerate is not None:
                self._new_generation(self._regenerate)
            now = time.monotonic()
            wake_at = now + 1.0
            for slot in self.slots:
                if slot.proc is None:
                    if slot.fork_at <= now:
                        self._fork(slot)
                    else:
                        wake_at = min(wake_at, slot.fork_at)
            assert self._wake is not None
            with anyio.move_on_after(max(wake_at - time.monotonic(), 0.0)):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _fork(self, slot: Slot) -> None:
        cmd_read, cmd_write = os.pipe()
        report_read, report_write = os.pipe()
        supervisor = os.getpid()
        # until the new worker has its own handlers, a signal must wait, not kill it
        signal.pthread_sigmask(signal.SIG_BLOCK, workerside.SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN, ENOMEM: the slot is tried again later
            signal.pthread_sigmask(signal.SIG_UNBLOCK, workerside.SIGNALS)
            for fd in (cmd_read, cmd_write, report_read, report_write):
                workerside.close_quietly(fd)
            slot.quick_exits += 1
            delay = max(backoff(slot.quick_exits), 0.5)
            slot.fork_at = time.monotonic() + delay
            log.error("worker %d could not be started (fork: %s); trying again in %gs",
                      slot.index, exc.strerror or exc, delay)
            return
        if pid == 0:  # the new worker: never returns (it unblocks the signals)
            os.close(cmd_write)
            os.close(report_read)
            workerside.become_worker(self.runtime, slot.index, cmd_read, report_write,
                                     supervisor)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, workerside.SIGNALS)
        os.close(cmd_read)
        os.close(report_write)
        os.set_blocking(cmd_write, False)
        os.set_blocking(report_read, False)
        proc = Proc(slot.index, pid, cmd_write, report_read, time.monotonic())
        slot.proc = proc
        assert self._tg is not None
        self._tg.start_soon(self._watch, proc)
        self._tg.start_soon(self._read_reports, proc)
        log.info("worker %d started (pid %d, generation %d)", slot.index, pid, self.generation)

    async def _watch(self, proc: Proc) -> None:
        """Wait for ``proc`` to end, then reap it and decide what follows."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        try:
            while True:
                if pidfd is not None:
                    await anyio.wait_readable(pidfd)
                else:  # no pidfd (old kernel): look ten times a second
                    await anyio.sleep(0.1)
                try:
                    done, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:  # reaped already (never by us): say so
                    done, status = proc.pid, 255 << 8
                if done:
                    break
        finally:
            if pidfd is not None:
                os.close(pidfd)
        self._exited(proc, status)

    def _exited(self, proc: Proc, status: int) -> None:
        proc.close_commands()
        self.reports.pop(proc.pid, None)
        if proc.last is not None:  # its totals stay counted
            from perlbal.runtime.poolstats import add_departed

            add_departed(self.departed, proc.last.live)
            counters = [metrics.Family(f.name, f.kind, f.doc, list(f.samples))
                        for f in proc.last.families if f.kind == "counter"]
            self.departed_families = metrics.merge(self.departed_families, [counters])
            proc.last = None
        if proc in self.old:
            self.old.remove(proc)
        slot = self.slots[proc.slot - 1]
        if proc.retired or self.stopping or slot.proc is not proc:
            # not replaced: a newer generation serves, or the server stops
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            log.log(logging.INFO if clean else logging.ERROR, "worker %d (pid %d) %s %s",
                    proc.slot, proc.pid,
                    "of an older generation" if proc.retired else "(stopping)",
                    describe_exit(status))
            return
        slot.proc = None
        ran = time.monotonic() - proc.started
        slot.quick_exits = slot.quick_exits + 1 if ran < STABLE_SECONDS else 1
        delay = backoff(slot.quick_exits)
        slot.fork_at = time.monotonic() + delay
        if delay:
            then = (f"restarting it in {delay:g}s (crash loop: {slot.quick_exits} exits in a "
                    f"row within {STABLE_SECONDS:g}s of starting)")
        else:
            then = "restarting it now"
        log.error("worker %d (pid %d) %s after %.1fs; %s", proc.slot, proc.pid,
                  describe_exit(status), ran, then)
        self._poke()

    # --- new generations (listener changes, reloads) ----------------------------------

    def new_generation(self, why: str) -> None:
        """Fork N fresh workers from the supervisor's state as it is now, and let the
        current ones drain (their command pipe is closed).  Coalesced: several calls
        in one turn of the event loop give one new generation."""
        if self.role != "supervisor" or self.stopping:
            return
        self._regenerate = why
        self._poke()

    def _new_generation(self, why: str) -> None:
        self._regenerate = None
        self.generation += 1
        log.info("new generation %d of %d worker(s): %s", self.generation, self.count, why)
        for slot in self.slots:
            proc = slot.proc
            if proc is not None:
                proc.retired = True
                self.old.append(proc)
                slot.proc = None
                proc.close_commands()  # EOF: the worker stops accepting and drains
            slot.fork_at = 0.0

    # --- messages to the workers ---------------------------------------------------

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send one message to every current worker (health, DNS, uploads, lines)."""
        if self.role != "supervisor":
            return
        data = json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"
        for slot in self.slots:
            if slot.proc is not None:
                self._send(slot.proc, data)

    def health_changed(self, pool: str, ipport: str, down: bool, reason: str,
                       since: float) -> None:
        """The supervisor's health checks flipped a node (``HealthBook.on_change``)."""
        self.broadcast({"health": [[pool, ipport, down, reason, since]]})

    def nodes_changed(self, pool: "Pool", nodes: list[tuple[str, int]]) -> None:
        """DNS gave a pool other nodes (``dnspools.run``)."""
        self.broadcast({"nodes": [pool.name, [[ip, port] for ip, port in nodes]]})

    def upload_heard(self, datagram: bytes) -> None:
        """The upload tracker recorded a progress datagram (``serve_datagrams``)."""
        self.broadcast({"upload": datagram.decode("latin-1")})

    def _send(self, proc: Proc, data: bytes) -> None:
        if proc.cmd_closed:
            return
        proc.pending += data
        try:
            while proc.pending:
                proc.pending = proc.pending[os.write(proc.cmd_fd, proc.pending):]
        except BlockingIOError:
            if self._tg is not None and len(proc.pending) == len(data):
                self._tg.start_soon(self._flush, proc)
        except OSError:
            proc.pending = b""  # it is gone: _watch reaps it

    async def _flush(self, proc: Proc) -> None:
        while proc.pending and not proc.cmd_closed:
            try:
                await anyio.wait_writable(proc.cmd_fd)
                if proc.cmd_closed:
                    return
                proc.pending = proc.pending[os.write(proc.cmd_fd, proc.pending):]
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                proc.pending = b""

    def _forward(self, raw: str, file: str, implied: str | None, reply: Reply) -> None:
        """A line observer.  A console command that succeeded reaches every worker as
        a line, unless it changed a client listener: then a new generation.  A
        reload step never goes as a line: any reload that applied something gives
        one new generation once it is done (nginx's model: the old workers keep
        the old config while they drain)."""
        if not (reply.ok and raw.strip()):
            return
        sockets = self.runtime.sockets
        if file.startswith("<reload"):
            self._listener_generation = sockets.generation
            self.new_generation("the configuration was reloaded")
            return
        if file != "<console>":
            return
        if sockets.generation != self._listener_generation:
            self._listener_generation = sockets.generation
            self.new_generation(f"a client listener changed ({raw.strip()[:80]})")
            return
        self.broadcast({"line": raw.strip(), "use": implied})

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to every worker (the supervisor's USR1: reopen the access logs,
        which the workers write)."""
        for proc in self.procs():
            try:
                os.kill(proc.pid, signum)
            except OSError:
                pass

    # --- numbers from the workers ----------------------------------------------------

    async def refresh(self) -> None:
        """Ask every current worker for its numbers now and wait for the answers
        (at most REFRESH_TIMEOUT): the console's and /metrics' sums are current."""
        if self.role != "supervisor":
            return
        self._seq += 1
        seq = self._seq
        self.broadcast({"report": seq})
        with anyio.move_on_after(REFRESH_TIMEOUT):
            while any(p.seen_seq < seq for p in self.procs() if not p.retired):
                answered = anyio.Event()
                self._waiting.append(answered)
                try:
                    await answered.wait()
                finally:
                    if answered in self._waiting:
                        self._waiting.remove(answered)

    async def _ask_reports(self) -> None:
        while True:
            await anyio.sleep(REPORT_INTERVAL)
            self._seq += 1
            self.broadcast({"report": self._seq})

    async def _read_reports(self, proc: Proc) -> None:
        buf = b""
        try:
            while True:
                await anyio.wait_readable(proc.report_fd)
                try:
                    data = os.read(proc.report_fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    return
                buf += data
                if b"\n" not in buf:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._heard(proc, line)
                for answered in self._waiting:
                    answered.set()
        finally:
            workerside.close_quietly(proc.report_fd)
            self.reports.pop(proc.pid, None)

    def _heard(self, proc: Proc, line: bytes) -> None:
        """One message from a worker: its numbers, or a passive ejection it decided."""
        try:
            message = json.loads(line)
            if "eject" in message:
                pool, ipport, seconds, reason = message["eject"]
                self.runtime.backends.health.apply_ejection(
                    str(pool), str(ipport), float(seconds), str(reason), count=True)
                self.broadcast({"eject": [str(pool), str(ipport), float(seconds), str(reason)]})
                return
            report = Report(metrics.parse_families(message["metrics"]),
                            dict(message.get("live") or {}))
            seq = int(message.get("seq", 0))
        except (ValueError, KeyError, TypeError):
            log.warning("worker %d sent an unreadable message", proc.slot)
            return
        proc.last = self.reports[proc.pid] = report
        samples = report.live.pop("timeline", None)
        if isinstance(samples, list):  # the web UI's graphs: every worker's
            self.runtime.live.timeline.absorb(samples)
        proc.seen_seq = max(proc.seen_seq, seq)

    # --- the end -----------------------------------------------------------------

    def stop(self, graceful: bool = True, timeout: int | None = 30) -> None:
        """The server stops: every worker is told to (and drains when graceful)."""
        if self.role != "supervisor":
            return
        self.stopping = True
        self.broadcast({"shutdown": [graceful, timeout]})
        for proc in self.procs():
            proc.close_commands()
        self._poke()

    def reap(self, timeout: float = 40.0) -> None:
        """The supervisor, at the very end: wait for every worker (SIGKILL after ``timeout``)."""
        if self.role != "supervisor":
            return
        deadline = time.monotonic() + timeout
        for proc in self.procs():
            while True:
                try:
                    done, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    log.info("worker %d (pid %d) %s", proc.slot, proc.pid, describe_exit(status))
                    break
                if time.monotonic() > deadline:
                    log.error("worker %d (pid %d) did not stop in %gs: killing it",
                              proc.slot, proc.pid, timeout)
                    try:
                        os.kill(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    deadline = time.monotonic() + 5
                time.sleep(0.02)
        for slot in self.slots:
            slot.proc = None
        self.old = []


