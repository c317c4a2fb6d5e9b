"""SERVER workers = N: worker 0 forks the others, passes them the console's
commands and gathers their numbers.

Every worker binds its own socket to each service's address with
SO_REUSEPORT (``Listeners.rebind``), so the kernel spreads new connections
over them.  Only worker 0 (the process that read the config) keeps the
management listener: the console and its numbers are worker 0's.  Each
console command (and SIGHUP reload step) it runs successfully is written down
a pipe to every other worker, which runs it too (``Interpreter.line_observers``),
so configuration stays the same in all of them; each other worker writes its
metrics up another pipe every ``REPORT_INTERVAL`` (``metrics.render`` adds
them up).  Workers die with worker 0 (``PR_SET_PDEATHSIG``), and worker 0
reaps them at the very end.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from perlbal.interp import CommandContext, Reply
from perlbal.runtime import metrics

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

#: seconds between a worker's metrics reports to worker 0 (SERVER workers > 1)
REPORT_INTERVAL = 1.0

log = logging.getLogger("perlbal.runtime")

__all__ = ["Workers", "REPORT_INTERVAL"]


class Workers:
    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        #: which worker this process is (0: the only one, or the first)
        self.id = 0
        self.count = 1
        self._children: list[tuple[int, int]] = []  # (pid, command pipe write end)
        self._command_pipe: int | None = None  # a worker > 0 reads console commands here
        self._report_pipe: int | None = None  # a worker > 0 writes its metrics here
        self._report_fds: dict[int, int] = {}  # worker 0: worker id -> read end of its reports
        #: worker 0: each other worker's latest metrics (metrics.render adds them up)
        self.reports: dict[int, list[metrics.Family]] = {}

    def begin(self, tg: TaskGroup) -> None:
        """``Runtime.serve`` started: follow the pipes."""
        if self._command_pipe is not None:
            os.set_blocking(self._command_pipe, False)
            tg.start_soon(self._follow_commands, self._command_pipe)
        if self._report_pipe is not None:
            os.set_blocking(self._report_pipe, False)
            tg.start_soon(self._send_reports, self._report_pipe)
        for worker, fd in list(self._report_fds.items()):
            os.set_blocking(fd, False)
            tg.start_soon(self._read_reports, worker, fd)

    def start(self) -> int:
        """Fork ``SERVER workers`` - 1 more processes; returns this process's worker id.

        Call once after the config is loaded, before ``serve``.  Every worker
        binds its own socket to each service's address with SO_REUSEPORT, so
        the kernel spreads new connections over them.  Only worker 0 (the
        process that read the config) keeps the management listener: the
        console and its numbers are worker 0's, and every console command it
        runs is passed down a pipe to the other workers and run there too, so
        configuration stays the same in all of them.  Workers die with worker 0.
        """
        runtime = self.runtime
        listeners = runtime.sockets
        count = runtime.graph.settings.workers or 1
        if count <= 1:
            return 0
        self.count = runtime.live.worker_count = count
        listeners.reuse_port = True
        for lst in list(listeners.open.values()):
            if listeners.is_management(lst):
                continue
            listeners.rebind(lst)
        for worker in range(1, count):
            read_end, write_end = os.pipe()
            report_read, report_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                os.close(report_read)
                for _pid, fd in self._children:
                    os.close(fd)
                for fd in self._report_fds.values():
                    os.close(fd)
                self._children = []
                self._report_fds = {}
                self.id = runtime.live.worker_id = worker
                self._command_pipe = read_end
                self._report_pipe = report_write
                _die_with_parent()
                for name, lst in list(listeners.open.items()):
                    if listeners.is_management(lst):
                        listeners.open.pop(name)
                        listeners.close(lst)
                    else:
                        listeners.rebind(lst)
                return worker
            os.close(read_end)
            os.close(report_write)
            self._children.append((pid, write_end))
            self._report_fds[worker] = report_read
        self._forward_console_commands()
        return 0


    def _forward_console_commands(self) -> None:
        children = self._children

        def forward(raw: str, file: str, implied: str | None, reply: Reply) -> None:
            # console commands and SIGHUP reload steps reach every worker
            if reply.ok and (file == "<console>" or file.startswith("<reload")) and raw.strip():
                data = raw.strip().encode("utf-8", "replace") + b"\n"
                if implied is not None:
                    # the worker runs everything in one context: name the target
                    data = f"USE {implied}\n".encode("utf-8", "replace") + data
                for _pid, fd in children:
                    try:
                        os.write(fd, data)
                    except OSError:
                        pass

        self.runtime.interp.line_observers.append(forward)

    async def _follow_commands(self, fd: int) -> None:
        """Worker > 0: run what worker 0's console ran; end with worker 0."""
        ctx = CommandContext(verbose=False)
        buf = b""
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.runtime.shutdown(True, 30)
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                try:
                    self.runtime.interp.run_line(raw.decode("utf-8", "replace"), ctx)
                except Exception:
                    log.exception("worker %d: forwarded command failed", self.id)

    async def _send_reports(self, fd: int) -> None:
        """Worker > 0: this worker's metrics to worker 0, every REPORT_INTERVAL."""
        while True:
            data = metrics.snapshot(self.runtime)
            while data:
                await anyio.wait_writable(fd)
                try:
                    data = data[os.write(fd, data):]
                except BlockingIOError:
                    continue
                except OSError:
                    return  # worker 0 is gone; _follow_commands ends this worker
            await anyio.sleep(REPORT_INTERVAL)

    async def _read_reports(self, worker: int, fd: int) -> None:
        """Worker 0: keep the latest metrics line worker ``worker`` sent."""
        buf = b""
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    return  # that worker ended
                buf += data
                if b"\n" in buf:
                    *lines, buf = buf.split(b"\n")
                    try:
                        self.reports[worker] = metrics.parse_snapshot(lines[-1])
                    except ValueError:
                        log.warning("worker %d sent unreadable metrics", worker)
        finally:
            self.reports.pop(worker, None)
            self._report_fds.pop(worker, None)
            os.close(fd)

    def stop(self) -> None:
        for pid, fd in self._children:
            try:
                os.close(fd)
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def reap(self, timeout: float = 10.0) -> None:
        """Worker 0, at the very end: wait for the other workers (kill them after ``timeout``)."""
        deadline = time.monotonic() + timeout
        for pid, _fd in self._children:
            while True:
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    deadline = time.monotonic() + 5
                time.sleep(0.02)
        self._children = []



def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when worker 0 dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
