"""``perlbal reload``: ask the running server to reload its config, and say whether it did.

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


def _fail(why: str, status: int = 2) -> int:
    print(f"perlbal reload: {why}", file=sys.stderr)
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


def main(argv: Sequence[str]) -> int:
    from perlbal.runtime.reloadstatus import read_status, status_path

    parser = argparse.ArgumentParser(prog="perlbal reload", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                        help=f"the config whose SERVER pidfile names the server "
                             f"(default {DEFAULT_CONFIG})")
    parser.add_argument("--pidfile", "-p", help="the server's pidfile (instead of the config's)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the outcome (default 60)")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    pidfile = args.pidfile or _pidfile_of(args.config)
    if not pidfile:
        return _fail(f"no pidfile: give --pidfile, or set SERVER pidfile in {args.config}")
    try:
        with open(pidfile, encoding="ascii", errors="replace") as fh:
            pid = int(fh.read().strip())
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "no process id in it"
        return _fail(f"can't read pidfile {pidfile}: {why} (is the server running?)")
    status = status_path(pidfile)
    if not os.path.exists(status):
        return _fail(f"{status} is missing: the server could not create it (see its error "
                     "log), or it runs a perlbal without `perlbal reload`")
    asked = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return _fail(f"no process {pid} (a stale pidfile {pidfile})")
    except PermissionError:
        return _fail(f"not allowed to signal process {pid}: run as the server's user or root")
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
