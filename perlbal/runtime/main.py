"""Start a whole server from a config file, as /usr/bin/perlbal does, and run it to the end.

``run_server(config_path, daemon=False) -> int`` (the exit status):

1. an ``Interpreter`` with a ``Runtime`` as its effects runs the config file
   (reply lines printed to stdout as Perl prints them); a failure prints
   ``Error starting up.`` to stderr and returns 1;
2. nothing listening -> ``No services or management port configured.  Nothing
   to do.  Stopping.`` on stderr, return 1 (Perl's wording);
3. ``Running.`` on stdout (not when daemonised), the SERVER pidfile written
   (``daemon.write_pidfile``: never through a symlink; with ``--daemon`` a
   pidfile that cannot be written fails startup, exit 1), then serve until the
   console's ``shutdown`` or a stopping signal; the pidfile is removed on the
   way out;
4. signals, as ``signals.py`` and docs/operating.md say: HUP
   reloads the config all or nothing (``reload.py``; the outcome printed to
   stdout, logged, and written to ``PIDFILE.reload`` for ``perlbal reload``,
   ``reloadstatus.py``) and reopens the logs; USR1 reopens the logs only
   (Perl logs its numbers on it); TERM and QUIT drain gracefully; INT stops
   at once; every other signal that would end the process is logged and
   ignored.  (Perl Perlbal has no reload, and dies on every signal but USR1.)

Operating (``daemon.py``): ``--daemon`` detaches once the listeners are bound
and returns when the server is ready; ``SERVER user`` drops root after
binding (with SERVER workers: in each worker, after the fork; the supervisor
keeps root to bind and read root-only files on reload), once every module the server can need is imported
(``preload.py``: the new user may not be allowed to read the installation);
``SERVER error_log``/``log_level`` route the ``perlbal`` logger; systemd is told
``READY=1`` (Type=notify units), and ``RELOADING=1`` with ``MONOTONIC_USEC``
then ``READY=1`` around each reload (Type=notify-reload).

``python -m perlbal.runtime.main --config=FILE`` runs the same thing (tests use it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from typing import Callable

import anyio

from perlbal.interp import Interpreter
from perlbal.runtime import accesslog
from perlbal.runtime.daemon import (Daemon, drop_privileges, notify_reloading, sd_notify,
                                    setup_logging, write_pidfile)
from perlbal.runtime.preload import preload_modules
from perlbal.runtime.reload import ReloadReport, reload_file
from perlbal.runtime.reloadstatus import Outcome, StatusFile, status_path
from perlbal.runtime.signals import (DRAIN_SECONDS, GRACEFUL, HANDLED, IMMEDIATE, RELOAD,
                                     REOPEN_LOGS, reopen_logs, signal_name)
from perlbal.runtime.server import Runtime

__all__ = ["Reloader", "on_signal", "run_server"]

log = logging.getLogger("perlbal.runtime")


class Reloader:
    """SIGHUP: tell systemd, prepare and commit (``reload.py``), report the outcome."""

    def __init__(self, runtime: Runtime, config_path: str | None,
                 status: StatusFile | None = None) -> None:
        self.runtime = runtime
        self.config_path = config_path
        self.status = status

    def reload(self) -> ReloadReport:
        started = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notify_reloading()
        reopen_logs()
        if not self.config_path:
            report = ReloadReport(False, errors=["the server was started without a config "
                                                 "file: nothing to reload"])
            log.error("reload refused: %s", report.errors[0])
        else:
            try:
                report = reload_file(self.runtime, self.config_path)
            except Exception as exc:  # a reload bug must not take the running server down
                log.exception("reload of %s failed", self.config_path)
                report = ReloadReport(False, errors=[f"internal error: {exc!r} (logged)"])
        if report.ok and (report.renewed or report.nodefiles):
            # changed with no console line: the workers of a supervisor (issue 25
            # item 1) are replaced by a generation forked from the committed state
            what = [f"certificate renewed: {name}" for name in report.renewed] \
                + [f"node file re-read: {name}" for name in report.nodefiles]
            _tell_workers(self.runtime, "new_generation", "; ".join(what))
        lines = report.summary()
        for line in lines:
            print(line, flush=True)
            if report.ok:
                log.info("%s", line)  # a refusal was logged at ERROR, reason by reason
        # READY=1 first: when `perlbal reload` (ExecReload) returns, systemd has it
        sd_notify("READY=1")
        if self.status is not None:
            try:
                self.status.write(Outcome(started, report.ok, lines))
            except OSError as exc:
                log.error("can't write the reload outcome to %s: %s", self.status.path,
                          exc.strerror)
        return report


def _tell_workers(runtime: Runtime, what: str, *args: object) -> None:
    """Call ``runtime.workers.<what>(*args)`` where the supervised worker pool (issue 25
    item 1, /work/ops-interface.md) provides it; nothing in a single process."""
    call = getattr(runtime.workers, what, None)
    if callable(call):
        call(*args)


def on_signal(runtime: Runtime, reloader: Reloader, signum: int) -> bool:
    """Act on ``signum`` as the signal table says; True when the server stops."""
    stopping = runtime.shutdown_requested is not None
    graceful_stop = runtime.shutdown_requested is not None and runtime.shutdown_requested[0]
    if signum in IMMEDIATE and graceful_stop:
        log.info("%s: stopping now, the graceful drain cut short", signal_name(signum))
        runtime.shutdown(False, None)
        _tell_workers(runtime, "signal_all", signum)  # each worker's drain too
        return True
    if stopping and signum in (RELOAD, *GRACEFUL, *IMMEDIATE):
        log.info("%s: ignored, the server is already stopping", signal_name(signum))
        return True
    if signum == RELOAD:
        reloader.reload()
        return False
    if signum == REOPEN_LOGS:
        reopen_logs()
        _tell_workers(runtime, "signal_all", REOPEN_LOGS)  # they write the access logs
        log.info("SIGUSR1: log files reopened")
        return False
    if signum in GRACEFUL or signum in IMMEDIATE:
        graceful = signum in GRACEFUL
        log.info("%s: shutting down%s", signal_name(signum),
                 f" gracefully (up to {DRAIN_SECONDS} s)" if graceful else " now")
        sd_notify("STOPPING=1")
        runtime.shutdown(graceful, DRAIN_SECONDS if graceful else None)
        return True
    log.warning("%s received: ignored (perlbal acts on HUP, USR1, TERM, QUIT and INT; "
                "see the signal table in docs/operating.md)", signal_name(signum))
    return False


def _act(runtime: Runtime, reloader: Reloader, signum: int) -> bool:
    """``on_signal``, but a failure while acting on a signal never ends the server."""
    try:
        return on_signal(runtime, reloader, signum)
    except Exception as exc:
        try:
            log.exception("acting on %s failed", signal_name(signum))
        except Exception:
            print(f"perlbal: acting on {signal_name(signum)} failed: {exc!r}",
                  file=sys.stderr, flush=True)
        return False


async def _serve(runtime: Runtime, reloader: Reloader,
                 on_ready: Callable[[], None] | None = None) -> None:
    async def watch_signals() -> None:
        with anyio.open_signal_receiver(*HANDLED) as signals:
            if on_ready is not None:
                on_ready()  # only now: a SIGTERM from here on is a graceful shutdown
            early = list(_EARLY_SIGNALS)  # arrived between binding and this point
            _EARLY_SIGNALS.clear()
            # the receiver stays open until the server has stopped: a signal during
            # the drain is still handled here (never the system's default action),
            # and nothing delays closing the listeners once a stop is asked for
            for signum in early:
                _act(runtime, reloader, signum)
            async for signum in signals:
                _act(runtime, reloader, signum)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals)
        await runtime.serve()
        # a supervisor waits for its workers' drains here, with the signal table
        # still in force: once the receiver closes, asyncio leaves each signal at
        # the system's default (HUP would end the process, INT raise in Python)
        await anyio.to_thread.run_sync(runtime.reap_workers)
        tg.cancel_scope.cancel()


#: Signals received before the event loop handles them (kept, then acted on).
_EARLY_SIGNALS: list[int] = []


def _remember_signal(signum: int, _frame: object) -> None:
    _EARLY_SIGNALS.append(signum)


def run_server(config_path: str | None, *, daemon: bool = False) -> int:
    # Listeners are bound while the config loads, well before the event loop
    # installs its handlers: a SIGHUP or SIGTERM in between must not kill us.
    for signum in HANDLED:
        signal.signal(signum, _remember_signal)
    runtime = Runtime()
    # Relative paths in a config (docroot, nodefile, ...) are resolved against the
    # working directory, as Perl Perlbal does.
    interp = Interpreter(effects=runtime)
    runtime.attach(interp)
    if config_path:
        try:
            with open(config_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError as exc:
            print(f"Error reading config file {config_path}: {exc.strerror}", file=sys.stderr)
            print("Error starting up.", file=sys.stderr)
            return 1

        def out(line: str) -> None:
            print(line, flush=True)

        if not interp.load_config_text(text, file=config_path, out=out):
            print("Error starting up.", file=sys.stderr, flush=True)
            return 1
    if not runtime.listening():
        print("No services or management port configured.  Nothing to do.  Stopping.",
              file=sys.stderr, flush=True)
        return 1
    interp.run_started = True
    settings = interp.graph.settings
    problem = setup_logging(settings.error_log, settings.log_level, daemon)
    if problem:
        log.error("%s", problem)
    runtime.live.metrics_enabled = settings.metrics != "off"
    user = settings.user
    why = drop_privileges(user, dry_run=True) if user else None
    if why is not None:
        print(f"SERVER user: {why}", file=sys.stderr, flush=True)
        print("Error starting up.", file=sys.stderr, flush=True)
        return 1
    detached = Daemon() if daemon else None
    if detached is None:
        print("Running.", flush=True)
    # written by the process that stays: the single one, or the supervisor
    pidfile = settings.pidfile
    status: StatusFile | None = None
    if pidfile:
        why = write_pidfile(pidfile)
        if why is not None:
            log.error("%s", why)
            pidfile = None
            if detached is not None:  # --daemon promises: exit 0 = serving, pidfile written
                detached.failed(why)
                return 1
        else:  # where `perlbal reload` reads the outcome of the reload it asked for
            opened = StatusFile.open(status_path(pidfile))
            if isinstance(opened, str):
                log.error("%s; `perlbal reload` will not know the outcome", opened)
            else:
                status = opened
    # SERVER workers = N: this process becomes the supervisor (runtime/workers.py);
    # the workers are forked once the event loop runs, and each drops privileges
    runtime.start_workers()
    supervising = runtime.workers.supervising
    # PERLBAL_PORTS_FILE (listeners.py): the ports bound, written before root is given up
    runtime.sockets.report_ports()
    if user:  # every listener is bound: now give root up (the supervisor keeps it)
        preload_modules()  # the new user may not be able to read our files
        # the Lark parser is built on the first line that needs it (a console
        # command): build it now, while the grammar and Lark's own files are readable
        interp.parser.lark  # noqa: B018
        why = None if supervising else drop_privileges(user)
        if why is not None:  # checked above; only a failing setuid gets here
            log.critical("SERVER user: %s", why)
            if detached is not None:
                detached.failed(f"SERVER user: {why}")
            if pidfile:
                _unlink(pidfile)
            os._exit(1)  # never serve as root when told not to

    def ready() -> None:
        if detached is not None:
            detached.ready()
        sd_notify(f"READY=1\nMAINPID={os.getpid()}")
        log.info("beginning run")

    try:
        anyio.run(_serve, runtime, Reloader(runtime, config_path, status), ready,
                  backend="asyncio", backend_options=runtime.loop_options())
    except KeyboardInterrupt:
        pass
    finally:
        accesslog.close_all()
        _while_reaping(runtime)
        runtime.reap_workers()
        if pidfile:
            _unlink(pidfile)
        if status is not None:
            status.close(unlink=True)
        log.info("ending run")
    return 0


def _while_reaping(runtime: Runtime) -> None:
    """The event loop has ended (its signal handlers with it): keep the signal table
    in force for what is left (the workers are normally reaped inside the loop, see
    ``_serve``; not when the loop ended on an error).  INT passes the stop-now on to the workers (a graceful drain cut
    short); the other stops and HUP are logged and ignored; never Python's defaults
    (HUP's death, INT's KeyboardInterrupt traceback)."""
    def handle(signum: int, _frame: object) -> None:
        if signum in IMMEDIATE:
            log.info("%s: stopping the workers now", signal_name(signum))
            _tell_workers(runtime, "signal_all", signum)
        elif signum == REOPEN_LOGS:
            reopen_logs()
            _tell_workers(runtime, "signal_all", signum)
        else:
            log.info("%s: ignored, the server is stopping", signal_name(signum))

    for handled in HANDLED:
        signal.signal(handled, handle)
    # between the event loop's end and here, _remember_signal kept what came
    early = list(_EARLY_SIGNALS)
    _EARLY_SIGNALS.clear()
    for remembered in early:
        handle(remembered, None)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # e.g. SERVER user may not remove it from a root-owned directory


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    config: str | None = None
    daemon = False
    for arg in args:
        if arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg in ("--daemon", "-d"):
            daemon = True
    logging.basicConfig(level=logging.WARNING, format="perlbal: %(message)s")
    return run_server(config, daemon=daemon)


if __name__ == "__main__":
    sys.exit(main())
