"""The signal table (docs/operating.md, "Signals"): what each catchable signal does.

Shared by the process that reads the config (``main.py``) and, with SERVER
workers, the workers it supervises, so no signal ends either silently.  Kept
below ``server.py`` in the import graph: a worker's side may import it.
"""

from __future__ import annotations

import signal

from perlbal.runtime import accesslog
from perlbal.runtime.daemon import reopen_error_log

__all__ = ["DRAIN_SECONDS", "GRACEFUL", "HANDLED", "IMMEDIATE", "LOGGED", "RELOAD",
           "REOPEN_LOGS", "reopen_logs", "signal_name"]

RELOAD = signal.SIGHUP  # re-read the config, all or nothing (reload.py); reopen logs
REOPEN_LOGS = signal.SIGUSR1  # reopen the access logs and a file error_log, nothing else
GRACEFUL = (signal.SIGTERM, signal.SIGQUIT)  # stop accepting, drain (30 s), exit 0
IMMEDIATE = (signal.SIGINT,)  # stop at once: open connections are closed
#: signals whose default action would end the process silently: logged, then ignored.
#: Not the faults (SEGV, BUS...: a crash must stay a crash), nor those whose default
#: does not end a process (CHLD, CONT, URG, WINCH) or stops it (TSTP, TTIN, TTOU);
#: PIPE is already ignored by Python.
LOGGED = tuple(sorted(
    set(signal.valid_signals()) - {RELOAD, REOPEN_LOGS, *GRACEFUL, *IMMEDIATE}
    - {signal.SIGKILL, signal.SIGSTOP, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
       signal.SIGBUS, signal.SIGFPE, signal.SIGSEGV, signal.SIGSYS, signal.SIGPIPE,
       signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH, signal.SIGTSTP,
       signal.SIGTTIN, signal.SIGTTOU}))
HANDLED = (RELOAD, REOPEN_LOGS, *GRACEFUL, *IMMEDIATE, *LOGGED)

#: seconds a graceful stop (TERM, QUIT) lets in-flight requests finish
DRAIN_SECONDS = 30


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def reopen_logs() -> None:
    """SIGUSR1 (and SIGHUP): the access logs and a file error_log are opened again
    by name, after logrotate moved them."""
    accesslog.reopen_all()
    reopen_error_log()
