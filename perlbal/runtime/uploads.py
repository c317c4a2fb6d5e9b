"""Buffered uploads (spooling request bodies to disk) and UDP upload-progress reports.

``buffer_uploads`` (Perl's ClientProxy::start_buffering_request,
decide_to_buffer_to_disk, buffered_upload_update, send_buffered_upload,
handle_chunked_upload): a body is written to a file under
``buffer_uploads_path`` and only sent to a backend once it is complete, so a
slow uploader never holds a backend connection.  Perl's decision, kept here:

* a chunked body (Transfer-Encoding: chunked) is always spooled (reason
  ``chunked``), at most ``max_chunked_request_size`` decoded bytes (larger:
  413 naming the limit, the spool file gone, the connection closed; Perl
  closes it without a word; the limits are ``runtime/bodylimit.py``'s), then
  sent with a Content-Length;
* with ``buffer_backend_connect`` = 0 nothing is buffered (Perl goes straight
  to a backend);
* Content-Length >= ``buffer_upload_threshold_size`` (non-zero): spooled at
  once (reason ``size``);
* otherwise the first ``buffer_backend_connect`` bytes are read, timed from
  the moment the head was read (``RequestContext.head_read_at``, as Perl's
  start_time; not from when the proxy got round to sampling): arriving slower than ``buffer_upload_threshold_rate``
  bytes/s (reason ``rate``) or with the rest estimated to take longer than
  ``buffer_upload_threshold_time`` seconds (reason ``time``) spools the
  body; else the bytes are handed back and the body streams to a backend.

With the environment variable PERLBAL_DEBUG_BUFFERED_UPLOADS set, the reason
is told to the backend in ``X-PERLBAL-BUFFERED-UPLOAD-REASON`` as Perl does.

Spool files are named as Perl names them (``<service>-<listen>-client-<n>-<random>``),
but created mode 0600 with O_EXCL|O_NOFOLLOW, and, when ``buffer_uploads_path``
is unset, in a private 0700 directory of the process's own (``mkdtemp`` under
$TMPDIR, made on first use) instead of Perl's shared /tmp.
The name is removed as soon as the body is complete -- or at once when the
client aborts or anything fails -- and the open descriptor carries the data to
the backend (sendfile), so no outcome can leave a file behind.

``upload_status_listeners`` (ClientProxy::event_read, handle_upload_tracking):
a request whose URI carries ``client_up_sess=<5-50 word chars>`` has its
progress sent by UDP to every listener, at most once a second while body
bytes remain, as ``UPLOAD:<session>:<done>:<content-length>:<start>:<now>``
(epoch seconds).  Perl only reports Content-Length bodies.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import os
import re
import secrets
import socket
import tempfile
import time
from typing import Awaitable, BinaryIO, Callable

import anyio
from anyio import to_thread

from perlbal.runtime.context import RequestContext
from perlbal.runtime.aio import FastStream, TaskSet

__all__ = ["Spool", "spool_upload", "track_upload"]

_SESSION = re.compile(r"[?&]client_up_sess=(\w{5,50})\b")
#: the upload progress reporters running (plain tasks: see aio.TaskSet)
_tasks = TaskSet()
SendFn = Callable[[bytes], Awaitable[None]]


class Spool:
    """A complete request body on disk (its name already removed); ``size`` bytes."""

    def __init__(self, fh: BinaryIO, size: int, reason: str) -> None:
        self.fh = fh
        self.size = size
        self.reason = reason

    async def send_to(self, stream: object, send: SendFn) -> None:
        """Send the whole body: the loop's sendfile on a FastStream, else reads and ``send``."""
        if self.size and isinstance(stream, FastStream) and stream.can_sendfile:
            try:
                await stream.sendfile(self.fh, 0, self.size)
                return
            except (RuntimeError, NotImplementedError):
                pass
        await to_thread.run_sync(self.fh.seek, 0)
        remaining = self.size
        while remaining > 0:
            block: bytes = await to_thread.run_sync(self.fh.read, min(262144, remaining))
            if not block:
                raise anyio.BrokenResourceError
            await send(block)
            remaining -= len(block)

    def close(self) -> None:
        self.fh.close()


def _reason(ctx: RequestContext) -> str | None:
    """Spool at once, without sampling? (chunked, size)"""
    if ctx.head.chunked:
        return "chunked"
    size = ctx.service.tunables.buffer_upload_threshold_size
    if size > 0 and (ctx.head.content_length or 0) >= size:
        return "size"
    return None


async def spool_upload(ctx: RequestContext) -> Spool | None:
    """Spool the unread body when Perl would; None leaves it unread for streaming.

    Only called with ``buffer_uploads`` on and a body still to read.
    """
    early = ctx.service.tunables.buffer_backend_connect
    reason = _reason(ctx)
    if reason is None and early <= 0:
        return None
    sample = b""
    if reason is None:
        # timed from the head, not from now: a proxy that gets here late (a
        # loaded machine, a first request's imports, a plugin that awaited)
        # finds paced bytes queued, and must not take them for a fast client
        started = ctx.head_read_at
        sample = await _read_sample(ctx, early)
        duration = time.monotonic() - started or 1.0  # Perl: tv_interval(...) || 1
        rate = len(sample) / duration
        remain = ctx.http.remaining or 0
        threshold_rate = ctx.service.tunables.buffer_upload_threshold_rate
        threshold_time = ctx.service.tunables.buffer_upload_threshold_time
        if threshold_rate > 0 and rate < threshold_rate:
            reason = "rate"
        if threshold_time > 0 and (remain / rate if rate else float("inf")) > threshold_time:
            reason = "time"
        if reason is None:
            _unread(ctx, sample)  # fast enough: stream it to a backend as usual
            return None
    if reason != "chunked" and os.environ.get("PERLBAL_DEBUG_BUFFERED_UPLOADS"):
        ctx.head = dataclasses.replace(
            ctx.head, headers=ctx.head.headers + (("X-PERLBAL-BUFFERED-UPLOAD-REASON", reason),))
    spool = await _write_spool(ctx, sample, reason)
    if reason == "chunked":
        _chunked_to_length(ctx, spool)
    return spool


def _chunked_to_length(ctx: RequestContext, spool: Spool) -> None:
    # Perl drops Transfer-Encoding and appends the Content-Length to the client's fields
    fields = tuple((k, v) for k, v in ctx.head.headers if k.lower() != "transfer-encoding")
    ctx.head = dataclasses.replace(
        ctx.head, headers=fields + (("Content-Length", str(spool.size)),))


async def spool_rest(ctx: RequestContext, sample: bytes, reason: str) -> Spool:
    """Spool ``sample`` and the rest of the body to disk (a chunked upload too
    large to hold in memory, even with buffer_uploads off)."""
    spool = await _write_spool(ctx, sample, reason)
    if ctx.head.chunked:
        _chunked_to_length(ctx, spool)
    return spool


async def _read_sample(ctx: RequestContext, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for piece in ctx.body_chunks():
        parts.append(piece)
        size += len(piece)
        if size >= limit:
            break
    return b"".join(parts)


def _unread(ctx: RequestContext, data: bytes) -> None:
    """Give sampled Content-Length body bytes back, as if they had never been read."""
    if data:
        ctx.http.unread(data)


#: this process's private spool directory (pid, path), made on first use
_private_dir: tuple[int, str] | None = None


def _private_spool_dir() -> str:
    """A 0700 directory of this process's own (made after any privilege drop,
    so it belongs to the user the server runs as; one per worker process)."""
    global _private_dir
    if _private_dir is None or _private_dir[0] != os.getpid() \
            or not os.path.isdir(_private_dir[1]):
        path = tempfile.mkdtemp(prefix="perlbal-uploads-")
        _private_dir = (os.getpid(), path)
        atexit.register(_remove_private_dir, os.getpid(), path)
    return _private_dir[1]


def _remove_private_dir(pid: int, path: str) -> None:
    if os.getpid() == pid:
        try:
            os.rmdir(path)  # spool files are unlinked as soon as they are complete
        except OSError:
            pass


def _spool_name(ctx: RequestContext) -> str:
    svc = ctx.service
    directory = (svc.tunables.buffer_uploads_path or "").rstrip("/") or _private_spool_dir()
    name = "-".join([svc.name, str(svc.listen or ""), "client", str(ctx.peer_port),
                     str(secrets.randbelow(0xFFFFFFFF))])
    return os.path.join(directory, name.replace("/", "_"))


def _create_spool(ctx: RequestContext) -> tuple[int, str]:
    """A new spool file, readable by us only, never an existing file or a
    symlink planted under a predicted name (O_EXCL, O_NOFOLLOW)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        path = _spool_name(ctx)
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused spool file name")


async def _write_spool(ctx: RequestContext, sample: bytes, reason: str) -> Spool:
    fd, path = await to_thread.run_sync(_create_spool, ctx)
    fh = os.fdopen(fd, "w+b")
    complete = False
    try:
        size = 0
        if sample:
            await to_thread.run_sync(fh.write, sample)
            size += len(sample)
        pending: list[bytes] = []
        pending_size = 0
        # (max_chunked_request_size and the other limits: body_chunks, runtime/bodylimit.py)
        async for piece in ctx.body_chunks():
            pending.append(piece)
            pending_size += len(piece)
            if pending_size >= 262144:  # one write per ~256 KiB, off the event loop
                await to_thread.run_sync(fh.write, b"".join(pending))
                size += pending_size
                pending, pending_size = [], 0
        if pending:
            await to_thread.run_sync(fh.write, b"".join(pending))
            size += pending_size
        await to_thread.run_sync(fh.flush)
        complete = True
        return Spool(fh, size, reason)
    finally:
        with anyio.CancelScope(shield=True):
            await to_thread.run_sync(_unlink_quietly, path)
        if not complete:
            fh.close()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- upload progress over UDP ---------------------------------------------------------------


def _listeners(ctx: RequestContext) -> list[tuple[str, int]]:
    text = ctx.service.tunables.upload_status_listeners or ""
    out: list[tuple[str, int]] = []
    for item in str(text).split(","):
        host, _, port = item.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host, int(port)))
    return out


def track_upload(ctx: RequestContext) -> None:
    """Start reporting this request's upload progress, when it asked and listeners are set.

    The reporter task ends by itself when the body is read or the client is gone.
    """
    if ctx.body_done or ctx.head.content_length is None:
        return
    match = _SESSION.search(ctx.head.target)
    listeners = _listeners(ctx) if match else []
    if not listeners or match is None:
        return
    _tasks.start(_report(ctx, match.group(1), listeners, int(time.time())))


async def _report(ctx: RequestContext, session: str, listeners: list[tuple[str, int]],
                  since: int) -> None:
    total = ctx.head.content_length or 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    last_second = 0
    last_done = -1
    idle_limit = float(ctx.service.tunables.idle_timeout or 30)
    last_progress = time.monotonic()
    try:
        while not ctx.body_done:
            stream = ctx.stream
            if isinstance(stream, FastStream) and (stream.closed or stream.at_eof):
                return
            done = ctx.http.body_size + len(ctx.http.buffered)
            now = int(time.time())
            if done != last_done:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_limit:
                return
            if done != last_done and now != last_second and 0 < total - done:
                message = f"UPLOAD:{session}:{done}:{total}:{since}:{now}".encode()
                for address in listeners:
                    try:
                        sock.sendto(message, address)
                    except OSError:
                        pass
                last_second, last_done = now, done
            await anyio.sleep(0.1)
    finally:
        sock.close()
