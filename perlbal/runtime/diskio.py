"""Disk work off the event loop, in one hop.

A slow disk must never stall other clients (the job IO::AIO does for Perl
Perlbal), so file system calls run in a small thread pool.  Each hop to a
thread costs tens of microseconds, so the web server makes one hop per
request: ``resolve_and_read`` decides which file answers (``docroot.resolve``)
and, for a small file, reads the bytes to send in the same hop.

``SERVER aio_mode`` chooses, as in Perl Perlbal: ``ioaio`` (the default, as
Perl's when IO::AIO is installed) uses the pool; ``none`` makes the calls on
the event loop, like Perl without IO::AIO.  ``none`` is about twice as fast
for files in the page cache (a hop to a Python thread costs more than the
stat and read themselves), but one slow disk read then stalls every client.

The pool is a plain ``ThreadPoolExecutor`` used through
``loop.run_in_executor``: measured here at about 70 us a hop against 125 us
for ``anyio.to_thread`` (which adds cancellation scopes and a capacity
limiter we do not need for short, non-blocking-in-practice calls).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Callable, TypeVar

from perlbal.docroot import FileVerdict, resolve
from perlbal.graph import Service
from perlbal.http.head import RequestHead

T = TypeVar("T")

#: files at most this big are read in the resolving hop and sent in one write
SMALL_FILE = 64 * 1024
_THREADS = 4
_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="perlbal-disk")
    return _pool


async def run_disk(inline: bool, fn: Callable[..., T], *args: object) -> T:
    """Run ``fn(*args)`` on the disk pool, or right here when ``inline``
    (``SERVER aio_mode = none``)."""
    if inline:
        return fn(*args)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor(), fn, *args)


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
        fh = open(verdict.path, "rb")
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
