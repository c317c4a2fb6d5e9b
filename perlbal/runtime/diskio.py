"""Disk work off the event loop, in one hop.

A slow disk must never stall other clients (the job IO::AIO does for Perl
Perlbal), so file system calls run in a small thread pool.  Each hop to a
thread costs tens of microseconds, so the web server makes one hop per
request: ``resolve_and_read`` decides which file answers (``docroot.resolve``)
and, for a small file, reads the bytes to send in the same hop.

``SERVER aio_mode`` chooses, as in Perl Perlbal: ``ioaio`` (the default, as
Perl's when IO::AIO is installed) uses the pool; ``none`` makes the calls on
the event loop, like Perl without IO::AIO.  ``none`` is about 1.4 times as
fast with one worker for files in the page cache (a hop to a Python thread
costs more than the stat and read themselves), but one slow disk read then
stalls every client.

The pool is a plain ``ThreadPoolExecutor`` (measured here at about 70 us a
hop through the executor against 125 us for ``anyio.to_thread``,
which adds cancellation scopes and a capacity limiter we do not need).  Even
so, a hop per request costs more than the work: queueing the job, waking a
thread, waking the loop back through its self-pipe, and the two threads
passing the GIL.  So calls are *batched*: every call made during one turn of
the event loop joins one batch, handed to the pool as one job (split into
jobs of at most ``_BATCH`` calls, so that one slow file delays few others);
the thread runs them in order and hands all the results back to the loop in
one wake-up.  Under load, when many clients ask at once, that is one hop for
many requests; a lone request still makes exactly one hop.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, TypeVar, cast

import anyio
from anyio.lowlevel import RunVar

from perlbal.docroot import FileVerdict, resolve
from perlbal.graph import Service
from perlbal.http.head import RequestHead
if TYPE_CHECKING:  # (only named for typing: context imports this module for send_file)
    import socket

    from perlbal.runtime.context import RequestContext
from perlbal.runtime import aio
from perlbal.runtime.aio import FastStream, Slot

T = TypeVar("T")

#: read size when a file cannot go out by sendfile (TLS)
_CHUNK = 256 * 1024
#: files at most this big are read in the resolving hop and sent in one write
SMALL_FILE = 64 * 1024
#: pool threads when SERVER aio_threads is not set
DEFAULT_THREADS = 4
_threads = DEFAULT_THREADS
_threads_setting: int | None = None  # the SERVER aio_threads value _threads was taken from
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="perlbal-disk")
    return _pool


def _follow_threads_setting(value: int | None) -> None:
    """SERVER aio_threads (Perl: IO::AIO::min_parallel), also when SET live:
    the pool is replaced; the old one finishes its jobs and goes."""
    global _threads, _threads_setting, _pool
    _threads_setting = value
    wanted = value if value is not None and value > 0 else DEFAULT_THREADS
    if wanted != _threads:
        _threads = wanted
        old, _pool = _pool, None
        if old is not None:
            old.shutdown(wait=False)


def forget_threads() -> None:
    """A forked worker (workerside.py): the pool's threads stayed in the supervisor,
    so the next job starts a pool of this process's own."""
    global _pool
    _pool = None


#: calls in one pool job at most: a batch bigger than this is split
_BATCH = 8

_Call = tuple[Callable[..., Any], tuple[object, ...], Slot[Any]]
_Outcome = tuple[Slot[Any], bool, Any]


class _Batcher:
    """Collects one event-loop turn's disk calls and runs them as pool jobs."""

    def __init__(self) -> None:
        self._to_loop = aio.thread_caller()
        self._pending: list[_Call] = []

    def call(self, fn: Callable[..., T], args: tuple[object, ...]) -> Slot[T]:
        slot: Slot[T] = Slot()
        if not self._pending:
            aio.call_soon(self._flush)  # after every task ready this turn
        self._pending.append((fn, args, slot))
        return slot

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        pool = _executor()
        for start in range(0, len(batch), _BATCH):
            pool.submit(self._run, batch[start:start + _BATCH])

    def _run(self, batch: list[_Call]) -> None:  # on a pool thread
        outcomes: list[_Outcome] = []
        for fn, args, slot in batch:
            try:
                outcomes.append((slot, True, fn(*args)))
            except BaseException as exc:  # delivered to the awaiting task
                outcomes.append((slot, False, exc))
        try:
            self._to_loop(_deliver, outcomes)
        except RuntimeError:
            pass  # the loop closed meanwhile: nobody is waiting any more


def _deliver(outcomes: list[_Outcome]) -> None:
    for slot, ok, value in outcomes:
        if slot.abandoned:
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, io.IOBase):
                    item.close()  # an opened file nobody will read
            continue
        if ok:
            slot.set(value)
        else:
            slot.fail(value)


#: one batcher per event loop
_batcher: RunVar[_Batcher] = RunVar("perlbal_disk_batcher")


async def run_disk(inline: bool, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on the disk pool (batched with the calls of this
    loop turn), or right here when ``inline`` (``SERVER aio_mode = none``)."""
    if inline:
        return fn(*args)
    try:
        batcher = _batcher.get()
    except LookupError:
        batcher = _Batcher()
        _batcher.set(batcher)
    return await batcher.call(fn, args).wait()


def open_file(path: str) -> BinaryIO:
    """``path`` opened for reading, unbuffered: a buffered ``open`` also asks
    whether the file is a terminal (an ioctl) and where it stands (an lseek),
    two system calls per request for nothing; every read here is a sendfile
    or a pread of a known range anyway."""
    return cast(BinaryIO, open(path, "rb", buffering=0))


def resolve_and_read(svc: Service, head: RequestHead, mime: dict[str, str], uri: str | None,
                     read_small: bool) -> tuple[FileVerdict, bytes | None, BinaryIO | None]:
    """``docroot.resolve``, plus what sending the answer needs, in the same hop:
    for a GET answered by a file (200 or 206), its bytes when it is small and
    ``read_small``, else the open file.  (None, None) when neither applies or
    the file changed under us (the caller then opens it itself)."""
    verdict = resolve(svc, head, mime, uri)
    if (verdict.kind != "file" or verdict.status not in (200, 206)
            or head.method != "GET" or verdict.path is None or verdict.size is None):
        return verdict, None, None
    rng = verdict.range
    offset, count = (rng[0], rng[1] - rng[0] + 1) if rng else (0, verdict.size)
    try:
        fh = open_file(verdict.path)
    except OSError:
        return verdict, None, None
    if not read_small or count > SMALL_FILE:
        return verdict, None, fh
    try:
        data = os.pread(fh.fileno(), count, offset) if count else b""
        if os.fstat(fh.fileno()).st_size != verdict.size or len(data) != count:
            return verdict, None, None
        return verdict, data, None
    except OSError:
        return verdict, None, None
    finally:
        fh.close()


# --- sending a file to a client -------------------------------------------------


async def send_file(ctx: RequestContext, fh: BinaryIO, offset: int, count: int) -> None:
    """``count`` bytes of ``fh`` from ``offset``: zero-copy when the stream allows it."""
    if count <= 0:
        return
    stream = ctx.stream
    if isinstance(stream, FastStream) and stream.can_sendfile:
        sent = _sendfile_now(stream.idle_tcp_socket(), fh, offset, count)
        offset, count = offset + sent, count - sent
        stream.bytes_out += sent
        if count == 0:
            return
        try:
            # flushes what the transport buffers first, then os.sendfile (or a
            # read/write fallback for TLS transports)
            await stream.sendfile(fh, offset, count)
            stream.bytes_out += count  # sendfile bypasses send(): count it (metrics)
            return
        except (RuntimeError, NotImplementedError):
            pass  # fall through to plain reads
    await run_disk(inline_disk(ctx), fh.seek, offset)
    remaining = count
    while remaining > 0:
        block: bytes = await run_disk(inline_disk(ctx), fh.read, min(_CHUNK, remaining))
        if not block:
            raise anyio.BrokenResourceError  # the file shrank: the length is now a lie
        await ctx.send(block)
        remaining -= len(block)


def inline_disk(ctx: RequestContext) -> bool:
    """``SERVER aio_mode = none``: disk calls on the event loop (see diskio).
    Also keeps the pool at ``SERVER aio_threads`` threads (a dictionary read
    per call; the pool is replaced only when the setting changed)."""
    settings = ctx.server.graph.settings
    threads = settings.aio_threads
    if threads != _threads_setting:
        _follow_threads_setting(threads)
    return settings.aio_mode == "none"


def _sendfile_now(sock: "socket.socket | None", fh: BinaryIO, offset: int, count: int) -> int:
    """As much of the file as the socket takes right now, by ``os.sendfile``
    straight from the event loop, as Perl Perlbal does; the loop's
    ``sendfile`` (used for the rest) registers and unregisters the socket
    on every call, which costs more than a small file's whole send.  Only when
    the transport has nothing buffered (so bytes stay in order) and the socket
    is plain TCP (not TLS): ``FastStream.idle_tcp_socket``."""
    if sock is None:
        return 0
    sent_total = 0
    try:
        while sent_total < count:
            sent = os.sendfile(sock.fileno(), fh.fileno(), offset + sent_total,
                               count - sent_total)
            if sent == 0:
                break
            sent_total += sent
    except (BlockingIOError, InterruptedError):
        pass
    except OSError:
        pass  # let the loop's sendfile meet (and report) the error
    return sent_total
