"""The last reload's outcome, in a file next to the pidfile, for ``perlbal reload``.

A signal carries no answer, so the server writes each reload's outcome to
``PIDFILE.reload`` (``status_path``): when it started (CLOCK_MONOTONIC, in
microseconds: the same clock in every process of the host), whether it was
applied, and the report lines.  ``perlbal reload`` notes the time, sends
SIGHUP to the pid in the pidfile and waits for an outcome that started after
that moment: a reload that started later read the file after the command
was given.

The file is opened once at startup, as the pidfile is (before ``SERVER user``
drops root, never through a symbolic link, only a regular file with one
link), and the descriptor is kept: the server writes it after the drop
without needing the directory.  Writer and readers take a ``flock`` so a
reader never sees half a record.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass

from perlbal.runtime.daemon import open_run_file

__all__ = ["Outcome", "StatusFile", "read_status", "status_path"]

_MAGIC = "perlbal-reload 1"


def status_path(pidfile: str) -> str:
    return pidfile + ".reload"


@dataclass
class Outcome:
    started_usec: int
    applied: bool
    lines: list[str]


class StatusFile:
    """The server's end: ``open`` once at startup, ``write`` after each reload."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    @classmethod
    def open(cls, path: str) -> "StatusFile | str":
        """The status file (created 0644, as the pidfile: ``daemon.open_run_file``), or
        why it cannot be used.  Truncated: a previous run's outcome (maybe of a
        previous boot, whose monotonic clock was further on) must never pass for
        this run's."""
        fd = open_run_file(path, path)
        return fd if isinstance(fd, str) else cls(fd, path)

    def write(self, outcome: Outcome) -> None:
        text = "\n".join([_MAGIC, f"started_usec={outcome.started_usec}",
                          f"result={'applied' if outcome.applied else 'refused'}",
                          *outcome.lines]) + "\n"
        data = text.encode("utf-8", "replace")
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self, unlink: bool) -> None:
        os.close(self.fd)
        if unlink:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def read_status(path: str) -> Outcome | None:
    """The last outcome written (None: no reload yet); raises OSError if unreadable."""
    with open(path, "rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
        try:
            text = fh.read().decode("utf-8", "replace")
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    lines = text.splitlines()
    if len(lines) < 3 or lines[0] != _MAGIC:
        return None
    try:
        started = int(lines[1].partition("=")[2])
    except ValueError:
        return None
    return Outcome(started, lines[2] == "result=applied", lines[3:])
