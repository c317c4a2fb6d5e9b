"""``perlbal reload`` and ``perlbal reopen-logs``: signal the running server found through
its pidfile.

``perlbal reload`` asks the server to reload its config, and says whether it did.

The command finds the server through its pidfile (``--pidfile``, or the
config's ``SERVER pidfile``), notes the time, sends SIGHUP and waits for the
outcome of a reload that started after that moment, which the server writes
to ``PIDFILE.reload`` (``runtime/reloadstatus.py``).  It prints the server's
report (what changed, or each reason with its file:line) and exits:

- 0: the reload was applied (or there was nothing to change);
- 1: the server refused it (nothing changed), or no outcome came in time,
  or the server exited;
- 2: the server could not be asked (no pidfile, a stale pid, no permission).

So ``ExecReload=perlbal reload -c FILE`` makes ``systemctl reload`` fail
when the reload failed (examples/perlbal.service).

``perlbal reopen-logs`` sends SIGUSR1: the server reopens its access logs and
a file error_log by name, and reloads nothing (logrotate's ``postrotate``).
It exits 0 once the signal is delivered, 2 when the server cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Sequence

__all__ = ["main"]

DESCRIPTION = """\
Reload the running server's config (SIGHUP to the pid in its pidfile) and wait
for the outcome.  Exit status: 0 applied, 1 refused (nothing changed) or no
outcome, 2 the server could not be asked."""


def _pidfile_of(config: str) -> str | None:
    from perlbal.dryrun import load_graph

    try:
        graph, _errors = load_graph(config)
    except OSError:
        return None
    return graph.settings.pidfile or None


def _fail(why: str, status: int = 2, prog: str = "perlbal reload") -> int:
    print(f"{prog}: {why}", file=sys.stderr)
    return status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: where ``perlbal`` looks for its config (cli.DEFAULT_CONFIG; cli imports this module)
DEFAULT_CONFIG = "/etc/perlbal/perlbal.conf"


REOPEN_DESCRIPTION = """\
Make the running server reopen its access logs and a file error_log (SIGUSR1 to the
pid in its pidfile), for logrotate's postrotate; nothing is reloaded.  Exit status:
0 signalled, 2 the server could not be reached."""


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                        help=f"the config whose SERVER pidfile names the server "
                             f"(default {DEFAULT_CONFIG})")
    parser.add_argument("--pidfile", "-p", help="the server's pidfile (instead of the config's)")
    return parser


def _read_pid(args: argparse.Namespace) -> tuple[str, int] | str:
    """(pidfile, pid) or why not."""
    pidfile = args.pidfile or _pidfile_of(args.config)
    if not pidfile:
        return f"no pidfile: give --pidfile, or set SERVER pidfile in {args.config}"
    try:
        with open(pidfile, encoding="ascii", errors="replace") as fh:
            return pidfile, int(fh.read().strip())
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "no process id in it"
        return f"can't read pidfile {pidfile}: {why} (is the server running?)"


def _signal(pidfile: str, pid: int, signum: int) -> str | None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return f"no process {pid} (a stale pidfile {pidfile})"
    except PermissionError:
        return f"not allowed to signal process {pid}: run as the server's user or root"
    return None


def _server(parser: argparse.ArgumentParser, argv: Sequence[str]
            ) -> tuple[argparse.Namespace, str, int] | int:
    """The parsed arguments, the pidfile and the server's pid; or the exit status
    (0 for --help, 2 for a usage error or a server that cannot be found)."""
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    found = _read_pid(args)
    if isinstance(found, str):
        return _fail(found, prog=parser.prog)
    return (args, *found)


def reopen_main(argv: Sequence[str]) -> int:
    parser = _parser("perlbal reopen-logs", REOPEN_DESCRIPTION)
    server = _server(parser, argv)
    if isinstance(server, int):
        return server
    _args, pidfile, pid = server
    why = _signal(pidfile, pid, signal.SIGUSR1)
    return _fail(why, prog=parser.prog) if why else 0


def main(argv: Sequence[str]) -> int:
    from perlbal.runtime.reloadstatus import read_status, status_path

    parser = _parser("perlbal reload", DESCRIPTION)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the outcome (default 60)")
    server = _server(parser, argv)
    if isinstance(server, int):
        return server
    args, pidfile, pid = server
    status = status_path(pidfile)
    if not os.path.exists(status):
        return _fail(f"{status} is missing: the server could not create it (see its error "
                     "log), or it runs a perlbal without `perlbal reload`")
    asked = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    why = _signal(pidfile, pid, signal.SIGHUP)
    if why is not None:
        return _fail(why)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            outcome = read_status(status)
        except OSError as exc:
            return _fail(f"can't read {status}: {exc.strerror}", 1)
        if outcome is not None and outcome.started_usec >= asked:
            out = sys.stdout if outcome.applied else sys.stderr
            for line in outcome.lines:
                print(line, file=out)
            return 0 if outcome.applied else 1
        if not _alive(pid):
            return _fail(f"the server (process {pid}) exited before it reported the reload", 1)
        time.sleep(0.05)  # a command line tool waiting for another process: no event to wait on
    return _fail(f"no reload outcome from process {pid} within {args.timeout:g} s", 1)
