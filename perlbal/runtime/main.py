"""Start a whole server from a config file, as /usr/bin/perlbal does, and run it to the end.

``run_server(config_path, daemon=False) -> int`` (the exit status):

1. an ``Interpreter`` with a ``Runtime`` as its effects runs the config file
   (reply lines printed to stdout as Perl prints them); a failure prints
   ``Error starting up.`` to stderr and returns 1;
2. nothing listening -> ``No services or management port configured.  Nothing
   to do.  Stopping.`` on stderr, return 1 (Perl's wording);
3. ``Running.`` on stdout (not when daemonised), the SERVER pidfile written
   (``daemon.write_pidfile``: never through a symlink; with ``--daemon`` a
   pidfile that cannot be written fails startup, exit 1), then serve until the console's ``shutdown`` or SIGTERM/SIGINT (both graceful:
   stop accepting, finish in-flight requests, exit); the pidfile is removed on
   the way out;
4. SIGHUP re-reads the config file: checked as a whole, and if clean only the
   difference is applied through the live interpreter (``reload.py``); what
   changed, or why it was rejected, is printed to stdout.  (Perl Perlbal has
   no reload; this is ours.)  SIGHUP also reopens access log files.

Operating (``daemon.py``): ``--daemon`` detaches once the listeners are bound
and returns when the server is ready; ``SERVER user`` drops root after
binding (with SERVER workers: in each worker, after the fork; the supervisor
keeps root to bind and read root-only files on reload), once every module the server can need is imported
(``preload.py``: the new user may not be allowed to read the installation);
``SERVER error_log``/``log_level`` route the ``perlbal`` logger; systemd is told ``READY=1`` (Type=notify units).

``python -m perlbal.runtime.main --config=FILE`` runs the same thing (tests use it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Callable

import anyio

from perlbal.interp import Interpreter
from perlbal.runtime import accesslog
from perlbal.runtime.daemon import (Daemon, drop_privileges, sd_notify, setup_logging,
                                    write_pidfile)
from perlbal.runtime.preload import preload_modules
from perlbal.runtime.reload import reload_file
from perlbal.runtime.server import Runtime

__all__ = ["run_server"]

log = logging.getLogger("perlbal.runtime")


def _reload(runtime: Runtime, config_path: str) -> None:
    sd_notify("RELOADING=1")
    accesslog.reopen_all()
    try:
        report = reload_file(runtime.interp, config_path)
    except Exception:  # a reload bug must not take the running server down
        log.exception("reload of %s failed", config_path)
        sd_notify("READY=1")
        return
    for line in report.summary():
        print(line, flush=True)
        log.info("reload: %s", line)
    sd_notify("READY=1")


async def _serve(runtime: Runtime, config_path: str | None,
                 on_ready: Callable[[], None] | None = None) -> None:
    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            if on_ready is not None:
                on_ready()  # only now: a SIGTERM from here on is a graceful shutdown
            early = list(_EARLY_SIGNALS)  # arrived between binding and this point
            _EARLY_SIGNALS.clear()
            for signum in early:
                if signum == signal.SIGHUP:
                    if config_path:
                        _reload(runtime, config_path)
                    continue
                runtime.shutdown(True, 30)
                return
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if config_path:
                        _reload(runtime, config_path)
                    continue
                log.info("signal %d: shutting down", signum)
                sd_notify("STOPPING=1")
                runtime.shutdown(True, 30)
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals)
        await runtime.serve()
        tg.cancel_scope.cancel()


#: Signals received before the event loop handles them (kept, then acted on).
_EARLY_SIGNALS: list[int] = []


def _remember_signal(signum: int, _frame: object) -> None:
    _EARLY_SIGNALS.append(signum)


def run_server(config_path: str | None, *, daemon: bool = False) -> int:
    # Listeners are bound while the config loads, well before the event loop
    # installs its handlers: a SIGHUP or SIGTERM in between must not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
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
    if pidfile:
        why = write_pidfile(pidfile)
        if why is not None:
            log.error("%s", why)
            pidfile = None
            if detached is not None:  # --daemon promises: exit 0 = serving, pidfile written
                detached.failed(why)
                return 1
    # SERVER workers = N: this process becomes the supervisor (runtime/workers.py);
    # the workers are forked once the event loop runs, and each drops privileges
    runtime.start_workers()
    supervising = runtime.workers.supervising
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
        anyio.run(_serve, runtime, config_path, ready, backend="asyncio",
                  backend_options=runtime.loop_options())
    except KeyboardInterrupt:
        pass
    finally:
        accesslog.close_all()
        runtime.reap_workers()
        if pidfile:
            _unlink(pidfile)
        log.info("ending run")
    return 0


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
