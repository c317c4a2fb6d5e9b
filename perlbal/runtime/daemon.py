"""Process plumbing for running as a service: daemon mode, privilege drop, logs, sd_notify.

- ``Daemon``: Perl's ``Perlbal::daemonize`` (fork, setsid, fork, stdio to
  /dev/null) with one difference: the first parent waits until the server is
  ready (listeners bound, pidfile written) and exits 0 only then, or 1 when
  startup failed after the fork, so ``perlbal --daemon && next-step`` is safe.
  Unlike Perl it keeps the working directory, so relative paths in a config
  (docroot, nodefile) keep meaning what ``perlbal check`` saw.  A failure after
  the fork (``failed(why)``) is printed by that parent on its stderr, since the
  daemon's own stderr is /dev/null by then.
- ``write_pidfile``: the pidfile is written as root, so it is opened with
  O_NOFOLLOW and must be a regular file with one link: a symlink or hard link
  planted by a local user cannot make root overwrite another file.
- ``drop_privileges``: ``SERVER user = name[:group]`` -- after every listener
  is bound (ports below 1024 need root), switch group list, gid and uid.
- ``setup_logging``: error and event messages (logger ``perlbal``) to stderr,
  syslog (Perl's ``openlog('perlbal', 'pid', 'daemon')``) or a file, at
  ``SERVER log_level``.  Perl logs to syslog when daemonised and to stdout in
  the foreground; ours uses stderr in the foreground.
- ``sd_notify``: ``READY=1`` / ``RELOADING=1`` / ``STOPPING=1`` to systemd when
  ``NOTIFY_SOCKET`` is set (Type=notify units), with nothing but a datagram;
  ``notify_reloading`` adds ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, in
  microseconds), which ``Type=notify-reload`` needs to tell this reload from
  an earlier one.
- ``reopen_error_log``: SIGUSR1 (and SIGHUP): a file error_log is closed and
  opened again by name, after logrotate moved it.
"""

from __future__ import annotations

import errno
import grp
import logging
import logging.handlers
import os
import pwd
import socket
import stat
import sys
import time

__all__ = ["Daemon", "drop_privileges", "notify_reloading", "reopen_error_log", "setup_logging",
           "sd_notify", "write_pidfile"]

_FORMAT_STDERR = "perlbal: %(message)s"
_FORMAT_LEVEL = "%(levelname)s %(message)s"


class Daemon:
    """Detach now; ``ready()`` or ``failed(why)`` later releases the waiting parent."""

    def __init__(self) -> None:
        read_end, write_end = os.pipe()
        if os.fork() > 0:
            os.close(write_end)
            os._exit(_wait_for_daemon(read_end))
        os.close(read_end)
        self._pipe: int | None = write_end
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        if devnull > 2:
            os.close(devnull)

    def _tell(self, status: bytes) -> None:
        if self._pipe is not None:
            try:
                os.write(self._pipe, status)
            finally:
                os.close(self._pipe)
                self._pipe = None

    def ready(self) -> None:
        self._tell(b"1")

    def failed(self, why: str = "") -> None:
        """Startup failed after the fork: the waiting parent prints ``why`` and exits 1."""
        self._tell(b"0" + why.encode("utf-8", "replace")[:4000])


def _wait_for_daemon(read_end: int) -> int:
    """The first parent: 0 once the daemon says it is ready, else 1 (its reason on stderr)."""
    message = b""
    while chunk := os.read(read_end, 4096):
        message += chunk
        if message[:1] == b"1":
            return 0
    why = message[1:].decode("utf-8", "replace")
    if why:
        sys.stderr.write(f"perlbal: {why}\nError starting up.\n")
    else:
        sys.stderr.write("perlbal: the daemon exited before it was ready\n")
    sys.stderr.flush()
    return 1


def open_run_file(path: str, label: str) -> int | str:
    """Open ``path`` for the server to write, truncated (created mode 0644): the
    descriptor, or why not (``can't write {label}: ...``).

    Runs as root (before ``SERVER user`` drops it), often in a directory others
    can write to: the last component is never followed if it is a symlink
    (O_NOFOLLOW), a FIFO cannot block us (O_NONBLOCK), and only a regular file
    with a single link is truncated.  The pidfile and the reload outcome file
    (``reloadstatus.py``) are opened this way."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"can't write {label}: it is a symbolic link, refusing to follow it"
        return f"can't write {label}: {exc.strerror}"
    try:
        info = os.fstat(fd)
        why = None
        if not stat.S_ISREG(info.st_mode):
            why = f"can't write {label}: not a regular file"
        elif info.st_nlink > 1:
            why = f"can't write {label}: it has other hard links, refusing to write it"
        else:
            if info.st_uid == os.geteuid():
                os.fchmod(fd, 0o644)  # whatever the umask: tools read it as other users
            os.ftruncate(fd, 0)
    except OSError as exc:
        why = f"can't write {label}: {exc.strerror}"
    if why is not None:
        os.close(fd)
        return why
    return fd


def write_pidfile(path: str) -> str | None:
    """Write this process's id to ``path`` (``open_run_file``); None when done, else why not."""
    fd = open_run_file(path, f"pidfile {path}")
    if isinstance(fd, str):
        return fd
    try:
        data = f"{os.getpid()}\n".encode("ascii")
        while data:
            data = data[os.write(fd, data):]
    except OSError as exc:
        return f"can't write pidfile {path}: {exc.strerror}"
    finally:
        os.close(fd)
    return None


def drop_privileges(spec: str, *, dry_run: bool = False) -> str | None:
    """``name`` or ``name:group`` -> None when done (or possible, with ``dry_run``),
    else why not."""
    name, _, group = spec.partition(":")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return f"no such user '{name}'"
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return f"no such group '{group}'"
    if os.geteuid() == entry.pw_uid and os.getegid() == gid:
        return None
    if os.geteuid() != 0:
        return f"must start as root to become '{spec}'"
    if dry_run:
        return None
    try:
        os.setgroups([])
        os.initgroups(name, gid)
        os.setgid(gid)
        os.setuid(entry.pw_uid)
    except OSError as exc:
        return f"can't become '{spec}': {exc.strerror}"
    os.environ["HOME"] = entry.pw_dir
    return None


def setup_logging(target: str | None, level: str | None, daemon: bool) -> str | None:
    """Send logger ``perlbal`` to ``target``; returns an error text if it can't."""
    root = logging.getLogger("perlbal")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = False
    root.setLevel((level or "warning").upper())
    where = target or ("syslog" if daemon else "stderr")
    handler, error = _handler(where)
    root.addHandler(handler)
    return error


def _handler(where: str) -> tuple[logging.Handler, str | None]:
    fallback = logging.StreamHandler(sys.stderr)
    fallback.setFormatter(logging.Formatter(_FORMAT_STDERR))
    if where == "stderr":
        return fallback, None
    if where == "syslog" or where.startswith("syslog:"):
        facility = where.partition(":")[2] or "daemon"
        code = logging.handlers.SysLogHandler.facility_names.get(facility)
        error = None
        if code is None:
            code = logging.handlers.SysLogHandler.LOG_DAEMON
            error = f"unknown syslog facility '{facility}', using daemon"
        address: str | tuple[str, int] = "/dev/log" if os.path.exists("/dev/log") \
            else ("localhost", 514)
        try:
            syslog_handler = logging.handlers.SysLogHandler(address=address, facility=code)
        except OSError as exc:
            return fallback, f"can't reach syslog: {exc.strerror}"
        syslog_handler.setFormatter(logging.Formatter(f"perlbal[{os.getpid()}]: %(message)s"))
        return syslog_handler, error
    try:
        file_handler = _ErrorLogFile(where)
    except OSError as exc:
        return fallback, f"can't open error_log {where}: {exc.strerror}"
    file_handler.setFormatter(logging.Formatter("%(asctime)s " + _FORMAT_LEVEL))
    return file_handler, None


class _ErrorLogFile(logging.handlers.WatchedFileHandler):
    """A file error_log, opened again by name after logrotate moved it.

    After ``SERVER user`` the new user may not be allowed to look at the path
    (a directory only root may enter): the stat that looks for a moved file
    then fails, and the file opened as root is kept, rather than an exception
    out of every log call (which stopped the server at its first message)."""

    def reopenIfNeeded(self) -> None:
        try:
            super().reopenIfNeeded()
        except OSError as exc:
            if self.stream is None:  # closed, not reopened: nothing left to write to
                setattr(self, "stream", sys.stderr)  # never None: FileHandler.emit would reopen and raise
            if not getattr(self, "_told", False):
                self._told = True
                sys.stderr.write(f"perlbal: can't reopen error_log {self.baseFilename}: "
                                 f"{exc.strerror}; still writing to the file opened at "
                                 "startup\n")


def reopen_error_log() -> None:
    """A file error_log that logrotate moved is opened again by its name now (the
    handler would also notice at its next record)."""
    for handler in logging.getLogger("perlbal").handlers:
        if isinstance(handler, logging.handlers.WatchedFileHandler):
            try:
                handler.reopenIfNeeded()
            except OSError as exc:
                sys.stderr.write(f"perlbal: can't reopen error_log {handler.baseFilename}: "
                                 f"{exc.strerror}\n")


def notify_reloading() -> bool:
    """``RELOADING=1`` with the ``MONOTONIC_USEC`` Type=notify-reload waits for."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return sd_notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def sd_notify(state: str) -> bool:
    """Tell systemd ``state`` (e.g. ``READY=1``); False when not run by a notify unit."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError:
        return False
    return True
