"""What happens when a client request is finished: it is counted, and logged if asked.

Perl Perlbal has no access log (sites wrote plugins for one).  Ours is per
service: ``access_log`` names a destination (a file path, ``stderr`` or
``syslog``) and ``access_log_format`` the line format:

- ``combined``: Apache/NCSA Combined Log Format,
  ``host - - [time] "request line" status bytes "referer" "user-agent"``,
  where bytes counts the response body (``-`` for none), as Apache's ``%b``;
- ``json``: one object a line, with the same facts and a few more
  (service, port, request bytes, duration).

A request that got no response (the client left, or a connection broken
before the head went out) is logged with status 0.

Cost on the hot path: with no ``access_log`` a dictionary look-up or two;
with one, formatting the line (the time text is cached per second) and an
append to an in-memory buffer.  Buffers are handed to the destination's
writer thread at most one second later, at once past 64 KiB, on SIGHUP
(which also reopens files, for log rotation) and at shutdown; the event loop
never waits for a disk or syslog.  ``time`` is when the request head was read.

Invariants: a destination that cannot be written (or falls more than 64 MiB
behind) loses lines, reported on the error log, never the request.  One
request is one line in every format: every character that some reader takes
for a line break (``\n \r \v \f``, ``\x1c``-``\x1e``, NEL ``\x85``, U+2028,
U+2029; Python's ``str.splitlines`` splits on all of them) is escaped in what
the client sent, so no header can forge a second record, and syslog gets
each line whole.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import syslog
import threading
import time
from typing import TYPE_CHECKING

from perlbal.runtime import aio
from perlbal.runtime.context import RequestContext

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["finish", "flush_all", "reopen_all", "close_all", "combined_line", "json_line"]

log = logging.getLogger("perlbal.runtime")

#: Buffered bytes that trigger an immediate write.
FLUSH_SIZE = 65536
#: Seconds a line may wait in the buffer.
FLUSH_DELAY = 1.0
#: Bytes queued for a writer thread past which new lines are dropped (and counted).
MAX_PENDING = 64 * 1024 * 1024


class Destination:
    """One log destination: lines buffered here, written by its own writer thread.

    The event loop only joins lines into a block and queues it; the write
    itself (which can stall for seconds when the disk is busy writing back,
    or syslog is slow) happens in a daemon thread, one per destination.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._lines: list[str] = []
        self._size = 0
        self._timer: aio.Timer | None = None
        self._queue: "queue.SimpleQueue[bytes | None]" = queue.SimpleQueue()
        self._pending = 0  # bytes queued and not yet written (read racily: a bound only)
        self._dropped = 0
        self._fd: int | None = None
        self._failed = False
        self._reopen = threading.Event()
        self._open()
        self._thread = threading.Thread(target=self._writer, name=f"access-log {target}",
                                        daemon=True)
        self._thread.start()

    # --- the event loop's side ---

    def write(self, line: str) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= FLUSH_SIZE:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = aio.call_later(FLUSH_DELAY, self.flush)
            except RuntimeError:  # no event loop (tests calling directly): write now
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines, self._size = self._lines, [], 0
        if not lines:
            return
        if self._pending > MAX_PENDING:  # the destination is stuck: never grow without bound
            self._dropped += len(lines)
            return
        data = "".join(lines).encode("utf-8", "replace")
        self._pending += len(data)
        self._queue.put(data)

    def reopen(self) -> None:
        self.flush()
        self._reopen.set()
        self._queue.put(b"")  # wakes the writer, which reopens before the next block

    def close(self, timeout: float = 5.0) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout)

    # --- the writer thread's side ---

    def _open(self) -> None:
        if self.target in ("stderr", "syslog"):
            self._fd = 2 if self.target == "stderr" else None
            return
        try:
            self._fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            self._fd = None
            self._report(exc)

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("access log %s: %s", self.target, exc.strerror or exc)

    def _writer(self) -> None:
        while True:
            data = self._queue.get()
            if self._reopen.is_set():
                self._reopen.clear()
                if self._fd is not None and self._fd > 2:
                    os.close(self._fd)
                self._failed = False
                self._open()
            if data is None:
                break
            self._pending -= len(data)
            if self._dropped:
                log.error("access log %s: %d line(s) dropped, the destination was too slow",
                          self.target, self._dropped)
                self._dropped = 0
            if data:
                self._write(data)
        if self._fd is not None and self._fd > 2:
            os.close(self._fd)
        self._fd = None

    def _write(self, data: bytes) -> None:
        if self.target == "syslog":
            # only "\n" ends a record: the formats escape every other line separator
            for line in data.decode("utf-8", "replace").split("\n"):
                if line:
                    syslog.syslog(syslog.LOG_INFO, line)
            return
        if self._fd is None:
            return
        try:
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
        except OSError as exc:
            self._report(exc)


_DESTINATIONS: dict[str, Destination] = {}


def destination(target: str) -> Destination:
    dest = _DESTINATIONS.get(target)
    if dest is None:
        dest = _DESTINATIONS[target] = Destination(target)
    return dest


def flush_all() -> None:
    for dest in list(_DESTINATIONS.values()):
        dest.flush()


def reopen_all() -> None:
    """SIGHUP: write what is buffered, then reopen files (after logrotate moved them)."""
    for dest in list(_DESTINATIONS.values()):
        dest.reopen()


def close_all() -> None:
    for dest in list(_DESTINATIONS.values()):
        dest.close()
    _DESTINATIONS.clear()


# --- formats --------------------------------------------------------------------

_clf_time: tuple[int, str] = (0, "")
_iso_time: tuple[int, str] = (0, "")
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
#: what json leaves raw with ensure_ascii=False although readers split lines on it
_JSON_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                                   "\u2029": "\\u2029"})


def _clf_now(when: float) -> str:
    global _clf_time
    sec = int(when)
    if _clf_time[0] != sec:
        _clf_time = (sec, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(sec)))
    return _clf_time[1]


def _quote(text: str) -> str:
    """Inside a CLF quoted field: escape quotes, backslashes and control bytes (nginx's way)."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(f"\\x{ord(c):02X}" if (c in '"\\' or not c.isprintable()) else c
                   for c in text)


def _iso_now(when: float) -> str:
    global _iso_time
    sec = int(when)
    if _iso_time[0] != sec:
        _iso_time = (sec, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(sec)))
    return _iso_time[1]


def combined_line(ctx: RequestContext, started: float, body_bytes: int) -> str:
    head = ctx.head
    request = f"{head.method} {head.target} HTTP/{head.version_string}"
    return (f"{ctx.peer_ip or '-'} - - [{_clf_now(started)}] \"{_quote(request)}\" "
            f"{ctx.status} {body_bytes or '-'} \"{_quote(head.get('Referer') or '-')}\" "
            f"\"{_quote(head.get('User-Agent') or '-')}\"\n")


def json_line(ctx: RequestContext, started: float, body_bytes: int, bytes_in: int) -> str:
    head = ctx.head
    record = {
        "time": _iso_now(started),
        "remote_addr": ctx.peer_ip, "remote_port": ctx.peer_port,
        "service": ctx.service.name, "method": head.method, "uri": head.target,
        "protocol": f"HTTP/{head.version_string}", "status": ctx.status,
        "bytes_sent": body_bytes, "request_bytes": bytes_in,
        "host": head.get("Host"), "referer": head.get("Referer"),
        "user_agent": head.get("User-Agent"),
        "duration_ms": round((time.time() - started) * 1000, 3),
    }
    # json escapes every control character below 0x20 itself (\n \r \v \f \x1c-\x1e)
    return _json.encode(record).translate(_JSON_LINE_BREAKS) + "\n"


# --- the call site: clientconn, after each request -------------------------------


def finish(runtime: "Runtime", ctx: RequestContext, started: float,
           bytes_in: int, bytes_out: int) -> None:
    """Count the request (metrics) and write its access log line (if configured)."""
    svc = ctx.service
    live = runtime.live
    if live.metrics_enabled:
        live.request_done(svc.name, ctx.status, bytes_in, bytes_out)
    live.timeline.request(svc.name, ctx.status, time.time() - started)  # the web UI's graphs
    owner = svc
    target = svc.tunables.access_log
    if not target and ctx.listener_service is not None and ctx.listener_service is not svc:
        owner = ctx.listener_service
        target = owner.tunables.access_log
    if not target:
        return
    body = max(0, bytes_out - ctx.head_length) if ctx.status else 0
    if owner.tunables.access_log_format == "json":
        line = json_line(ctx, started, body, bytes_in)
    else:
        line = combined_line(ctx, started, body)
    destination(target).write(line)
