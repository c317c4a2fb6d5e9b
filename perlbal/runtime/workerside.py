"""What a worker does after the supervisor forked it (SERVER workers; ``workers.py``).

The fork happens inside the supervisor's event loop, so the child starts as
a copy of a process in the middle of a coroutine.  ``become_worker`` never
returns into that loop: it

1. stops the inherited signal wakeup descriptor (it would wake the
   supervisor's loop) and keeps the signals that arrive until its own loop
   handles them;
2. asks for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG);
3. closes every socket that is the supervisor's (console connections,
   health checks, the management and upload-tracker listeners, the loop's
   own descriptors), found by walking the objects, so a console the
   supervisor closes is closed; it keeps the client listeners and the log
   handlers' sockets (syslog);
4. starts afresh what belonged to the old loop (client connections,
   backends, counters, the disk thread pool) and keeps what is state
   (the graph, the health book, the upload table);
5. drops privileges to SERVER user;
6. runs ``Runtime.serve`` on a new event loop, following the command pipe
   (``_follow``): console lines, health and DNS changes, upload progress,
   ``report`` requests, ``shutdown``; EOF (the supervisor retired it or is
   gone) is a graceful stop;
7. exits with ``os._exit``: 0 after a clean stop, 70 when something here
   failed (logged first).

Signals in a worker: TERM and QUIT drain, INT stops at once, USR1 reopens
the access logs (and a file error_log); HUP is the supervisor's (a reload
reaches workers as lines or as a new generation) and is ignored here; the
other signals that would end the process (USR2, ALRM, ...) are logged at
ERROR and ignored.
"""

from __future__ import annotations

import contextvars
import gc
import json
import logging
import os
import selectors
import signal
import socket
from typing import TYPE_CHECKING, Any

import anyio

from perlbal.interp import CommandContext
from perlbal.runtime import accesslog, dnspools, metrics, upload_tracker
from perlbal.runtime.signals import (DRAIN_SECONDS, GRACEFUL, HANDLED, IMMEDIATE, RELOAD,
                                     REOPEN_LOGS, reopen_logs, signal_name)

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

__all__ = ["become_worker", "close_quietly", "SIGNALS"]

#: a worker acts on the same signal table as the supervisor (``signals.py``;
#: docs/operating.md), less HUP, which only the supervisor acts on: every signal
#: whose default would end a worker without a word is handled
SIGNALS = HANDLED
_early: list[int] = []


def _remember(signum: int, _frame: object) -> None:
    _early.append(signum)


def become_worker(runtime: "Runtime", slot: int, cmd_fd: int, report_fd: int,
                  supervisor: int) -> None:
    """The forked child, in slot ``slot``: serve until told to stop, then exit."""
    status = 70
    try:
        signal.set_wakeup_fd(-1)
        for signum in SIGNALS:  # blocked by the supervisor until now
            signal.signal(signum, _remember)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
        _die_with_parent(supervisor)
        _setup(runtime, slot, cmd_fd, report_fd)
        contextvars.Context().run(anyio.run, _main, runtime, cmd_fd, report_fd)
        status = 0
    except BaseException:  # noqa: B036 -- never return into the supervisor's loop
        try:
            log.exception("worker %d failed", slot)
        except BaseException:  # noqa: B036
            pass
    finally:
        try:
            accesslog.close_all()
            logging.shutdown()
        finally:
            os._exit(status)


def _setup(runtime: "Runtime", slot: int, cmd_fd: int, report_fd: int) -> None:
    workers = runtime.workers
    for proc in workers.procs():  # the other workers' pipes are the supervisor's
        if not proc.cmd_closed:
            proc.cmd_closed = True
            close_quietly(proc.cmd_fd)
        close_quietly(proc.report_fd)
    workers.slots = []
    workers.old = []
    workers.role = "worker"
    workers.id = runtime.live.worker_id = slot
    if workers.forward in runtime.interp.line_observers:
        runtime.interp.line_observers.remove(workers.forward)
    listeners = runtime.sockets
    keep = {lst.sock.fileno() for lst in listeners.open.values() if not lst.management}
    for handler in logging.getLogger().handlers + logging.getLogger("perlbal").handlers:
        sock = getattr(handler, "socket", None)
        if isinstance(sock, socket.socket):
            keep.add(sock.fileno())
    _close_inherited(keep)
    listeners.forget_supervisor_sockets()
    runtime.become_worker()
    from perlbal.runtime import diskio

    diskio.forget_threads()
    user = runtime.graph.settings.user
    if user:
        from perlbal.runtime.daemon import drop_privileges

        why = drop_privileges(user)
        if why is not None:  # checked before the fork; only a failing setuid gets here
            raise RuntimeError(f"SERVER user: {why}")


def _close_inherited(keep: set[int]) -> None:
    """Close the supervisor's sockets and selectors in this process only.

    A socket is detached before its descriptor is closed, so its object (still
    referenced by the supervisor's frozen loop) can never close a descriptor
    number this worker reuses later."""
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket):
            fd = obj.fileno()
            if fd >= 0 and fd not in keep:
                close_quietly(obj.detach())
        elif isinstance(obj, selectors.BaseSelector):
            try:
                obj.close()
            except (OSError, ValueError, RuntimeError):
                pass


class _Outbox:
    """What a worker sends up its report pipe, JSON lines written whole and in order
    by one task (a report can take several writes; nothing may cut into it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: list[bytes] = []
        self._ready = anyio.Event()

    def send(self, message: dict[str, Any]) -> None:
        self.queue.append(json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n")
        self._ready.set()

    async def run(self) -> None:
        os.set_blocking(self.fd, False)
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            while self.queue:
                data = self.queue.pop(0)
                while data:
                    await anyio.wait_writable(self.fd)
                    try:
                        data = data[os.write(self.fd, data):]
                    except BlockingIOError:
                        continue
                    except OSError:
                        return  # the supervisor is gone: EOF on the command pipe ends us


async def _main(runtime: "Runtime", cmd_fd: int, report_fd: int) -> None:
    outbox = _Outbox(report_fd)

    def ejected(pool: str, ipport: str, seconds: float, reason: str) -> None:
        outbox.send({"eject": [pool, ipport, seconds, reason]})  # to every worker

    runtime.backends.health.on_eject = ejected
    async with anyio.create_task_group() as tg:
        tg.start_soon(_signals, runtime)
        tg.start_soon(outbox.run)
        tg.start_soon(_follow, runtime, cmd_fd, outbox)
        await runtime.serve()
        tg.cancel_scope.cancel()


def _on_signal(runtime: "Runtime", signum: int) -> None:
    if signum in GRACEFUL:
        runtime.shutdown(True, DRAIN_SECONDS)
    elif signum in IMMEDIATE:
        runtime.shutdown(False, None)  # also cuts a drain under way short
    elif signum == REOPEN_LOGS:
        reopen_logs()  # the supervisor passes its own USR1 on (logrotate's postrotate)
    elif signum != RELOAD:
        log.error("worker %d: signal %s ignored (send it to the supervisor, pid %d)",
                  runtime.workers.id, signal_name(signum), os.getppid())
    # SIGHUP: the supervisor reloads; it reaches workers as lines or a new generation


async def _signals(runtime: "Runtime") -> None:
    with anyio.open_signal_receiver(*SIGNALS) as signals:
        for signum in _early:
            _on_signal(runtime, signum)
        _early.clear()
        async for signum in signals:
            _on_signal(runtime, signum)


async def _follow(runtime: "Runtime", cmd_fd: int, outbox: _Outbox) -> None:
    """Run what the supervisor sends, in order; EOF: drain and stop."""
    os.set_blocking(cmd_fd, False)
    ctx = CommandContext(verbose=False)
    buf = b""
    while True:
        await anyio.wait_readable(cmd_fd)
        try:
            data = os.read(cmd_fd, 1 << 16)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:  # retired, or the supervisor is gone: drain (unless told otherwise)
            if runtime.shutdown_requested is None:
                runtime.shutdown(True, DRAIN_SECONDS)
            return
        buf += data
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            try:
                message = json.loads(raw)
                _apply(runtime, message, ctx, outbox)
            except Exception:
                log.exception("worker %d: a message from the supervisor failed: %r",
                              runtime.workers.id, raw[:200])


def _apply(runtime: "Runtime", message: dict[str, Any], ctx: CommandContext,
           outbox: _Outbox) -> None:
    if "line" in message:
        implied = message.get("use")
        if implied:  # the worker runs everything in one context: name the target
            runtime.interp.run_line(f"USE {implied}", ctx)
        runtime.interp.run_line(str(message["line"]), ctx)
    elif "health" in message:
        for pool, ipport, down, reason, since in message["health"]:
            runtime.backends.health.apply_remote(str(pool), str(ipport), bool(down),
                                                 str(reason), float(since))
    elif "eject" in message:
        pool_name, ipport, seconds, reason = message["eject"]
        runtime.backends.health.apply_ejection(str(pool_name), str(ipport), float(seconds),
                                               str(reason), count=False)
    elif "nodes" in message:
        pool_name, nodes = message["nodes"]
        pool = runtime.graph.pools.get(str(pool_name))
        if pool is not None:
            dnspools.apply_nodes(pool, [(str(ip), int(port)) for ip, port in nodes])
    elif "upload" in message:
        upload_tracker.record(str(message["upload"]).encode("latin-1"), message.get("now"))
    elif "report" in message:
        from perlbal.runtime import poolstats

        outbox.send({"seq": int(message["report"]), "metrics": metrics.families_data(runtime),
                     "live": poolstats.snapshot(runtime)})
    elif "shutdown" in message:
        graceful, timeout = message["shutdown"]
        runtime.shutdown(bool(graceful), timeout)


def _die_with_parent(supervisor: int) -> None:
    """Linux: a worker gets SIGTERM when the supervisor dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != supervisor:  # it died before prctl: nothing to serve for
        os._exit(0)


def close_quietly(fd: int) -> None:
    """Close ``fd``; one already closed (or never valid) is no error here."""
    try:
        os.close(fd)
    except OSError:
        pass
