"""The runtime's one door to asyncio, behind anyio-shaped interfaces.

Everything else in ``perlbal/`` speaks anyio (task groups, ``anyio.Event``,
``anyio.wait_readable``, ``anyio.sleep``, cancel scopes); a test in
``tests/architecture/`` holds that no other module imports asyncio.  What is
here is asyncio because it is measurably cheaper than anyio's equivalent on
the hot paths, or because anyio has no equivalent:

- ``FastStream``: TCP streams on ``asyncio.BufferedProtocol`` with anyio's
  ``ByteStream`` interface (``receive``/``send``/``send_eof``/``aclose``,
  anyio's exceptions).  anyio's own socket stream pauses and resumes the
  transport around every ``receive`` (two epoll_ctl calls per read) and asks
  for the current task on each call: a third of the proxy's CPU.
- ``TaskSet``: one plain task per client connection, not a task-group child:
  a child costs about 2 KB more (TaskHandle, its Event, a CancelScope with two
  sets, a wrapper coroutine), which 10,000 idle keep-alive clients pay in full
  (``bench/idle_rss.py``).
- ``Slot`` (a one-shot value or error, awaited by one task, like an
  ``anyio.Event`` that carries a result) and ``call_later`` timers: a backend
  connection handed to a queued request, a receive timeout.  A future and a
  timer handle cost a fraction of an Event plus a cancel scope per request.
- ``call_soon``/``thread_caller``: what ``diskio`` batches disk calls of one
  loop turn with (one thread hop for many: about 70 us a hop against 125 us
  through ``anyio.to_thread``, before batching).
- ``FastStream.sendfile``: the loop's zero-copy ``sendfile`` on a transport.

What a stream asks of its socket directly (options, the RST close, MSG_MORE,
a backend socket's setup) needs no event loop: it is in ``rawsocket.py``.

Measured when the rest moved to anyio (commit 9edaa89 against its parent,
side by side in one run, wrk -t2 -c50, 1 worker, a box loaded by other work;
medians of 2 runs, req/s and CPU us/req):
  proxy 1 KiB (bench/proxy_bench.py)  1892 / 368 against 1997 / 377
  web server 1k (webserver_bench.py)  2576 / 257 against 2701 / 301
  web server 100k                     2216 / 393 against 1669 / 407
i.e. no change beyond the noise (the min..max ranges overlap; CPU per request
is not higher).  The accept loop now waits with ``anyio.wait_readable`` and
accepts with a plain ``accept()`` (what ``loop.sock_accept`` did inside).

Stream invariants: at most one task receives at a time; ``_size`` is the number
of buffered unread bytes; reading is paused iff ``_size > READ_HIGH_WATER``.
Extras over ``ByteStream``: ``receive(timeout=..., watch=other)`` (a cheap
timer instead of a cancel scope, raising ``TimeoutError``; ``PeerGone`` as soon
as ``other`` is lost: a client reset while we wait for its backend frees the
backend at once, as Perl's ``client_disconnected``; a FIN is a half-close, and
the complete request before it is still answered); ``send(..., timeout)``
aborts a peer that stopped reading (``BrokenResourceError``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import weakref
from typing import Any, BinaryIO, Callable, Coroutine, Generic, Mapping, TypeVar, cast

import anyio
from anyio.abc import ByteStream, SocketAttribute

from perlbal.runtime.rawsocket import linger_zero, send_more, set_option, tcp_socket

__all__ = ["FastStream", "PeerGone", "open_connection", "wrap_accepted", "READ_HIGH_WATER",
           "Slot", "Timer", "call_later", "call_soon", "thread_caller", "TaskSet"]

T = TypeVar("T")
#: a pending ``call_later``: ``cancel()`` it
Timer = asyncio.TimerHandle


def call_later(delay: float, fn: Callable[..., object], *args: object) -> Timer:
    """Run ``fn(*args)`` on the event loop after ``delay`` seconds (no task)."""
    return asyncio.get_running_loop().call_later(delay, fn, *args)


class Slot(Generic[T]):
    """A value (or an error) one task waits for: an ``anyio.Event`` carrying a result."""

    __slots__ = ("_fut",)

    def __init__(self) -> None:
        self._fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def set(self, value: T) -> None:
        if not self._fut.done():
            self._fut.set_result(value)

    def fail(self, exc: BaseException) -> None:
        if not self._fut.done():
            self._fut.set_exception(exc)

    def is_set(self) -> bool:
        return self._fut.done()

    @property
    def abandoned(self) -> bool:
        """Closed, or its waiting task cancelled, before a value came."""
        return self._fut.cancelled()

    def value(self) -> T | None:
        """What ``set`` gave, if it was set (and not failed or closed)."""
        fut = self._fut
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            return fut.result()
        return None

    def expire_after(self, delay: float) -> Timer:
        """Fail with ``TimeoutError`` after ``delay`` seconds unless set before."""
        return asyncio.get_running_loop().call_later(delay, _expire, self._fut)

    def close(self) -> None:
        """Nobody waits any more: a later ``set``/``fail`` is ignored."""
        fut = self._fut
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()  # an error nobody awaited is not logged as lost

    async def wait(self) -> T:
        return await self._fut


class TaskSet:
    """Plain tasks kept in a set (see the module docstring: a client connection
    each); ``cancel_all`` and then ``wait_cancelled`` end them on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled: list[asyncio.Task[None]] = []

    def start(self, coro: Coroutine[Any, Any, None],
              on_done: Callable[[], None] | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if on_done is not None:
            task.add_done_callback(lambda _task: on_done())

    def __len__(self) -> int:
        return len(self._tasks)

    def cancel_all(self) -> None:
        self._cancelled = list(self._tasks)
        for task in self._cancelled:
            task.cancel()

    async def wait_cancelled(self, timeout: float) -> None:
        tasks, self._cancelled = self._cancelled, []
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def call_soon(fn: Callable[..., object], *args: object) -> None:
    """Run ``fn(*args)`` on the event loop after the tasks ready this turn."""
    asyncio.get_running_loop().call_soon(fn, *args)


def thread_caller() -> Callable[..., object]:
    """For a worker thread: call back into this loop without waiting
    (raises ``RuntimeError`` once the loop has closed)."""
    return asyncio.get_running_loop().call_soon_threadsafe

#: Unread bytes kept before the transport stops reading.
READ_HIGH_WATER = 262144
#: Bytes one read may take from a socket (asyncio's own read size).
RECV_BUFFER_SIZE = 262144
#: Unsent bytes the transport buffers before ``send`` waits for the peer.
WRITE_HIGH_WATER = 262144


class PeerGone(Exception):
    """The watched stream ended while we were waiting on another one."""


#: Every open connection's protocol, for the buffer-memory gauge (metrics.py).
OPEN_PROTOCOLS: "weakref.WeakSet[_Protocol]" = weakref.WeakSet()


class _RecvBuffer(threading.local):
    """The buffer every connection of this thread's event loop reads into.

    The transport calls ``get_buffer``, fills it with one recv_into and calls
    ``buffer_updated`` at once, on the loop's thread, so one buffer serves
    all connections: the bytes are copied out before any other read.  A plain
    ``asyncio.Protocol`` gets a fresh 256 KiB bytes object per read instead,
    which glibc serves with mmap, mremap and munmap (three more system calls
    for every read, measured with strace on the proxy benchmark)."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(RECV_BUFFER_SIZE))


_recv_buffer = _RecvBuffer()


class _Protocol(asyncio.BufferedProtocol):
    # slots: 10,000 idle keep-alive clients each hold one (bench/idle_rss.py)
    __slots__ = ("transport", "chunks", "size", "eof", "lost", "exc", "reading_paused",
                 "writing_paused", "waiter", "drain_waiter", "watchers", "on_wake",
                 "__weakref__")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.lost = False
        self.exc: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.watchers: list[asyncio.Future[None]] = []
        #: a parked (task-less) idle connection's wake-up: called once on data or EOF
        self.on_wake: Callable[[], None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but behave as one
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER)
        OPEN_PROTOCOLS.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return _recv_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_recv_buffer.view[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.size > READ_HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_parked()

    def _wake_parked(self) -> None:
        wake = self.on_wake
        if wake is not None:
            self.on_wake = None
            wake()

    def _wake_all(self, lost: bool = True) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not lost:
            return  # a FIN: watchers wait for the connection to be lost
        for fut in self.watchers:
            if not fut.done():
                fut.set_exception(PeerGone())
        self.watchers.clear()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_all(lost=False)
        self._wake_parked()
        # keep the transport open: we may still answer a half-closed peer.  asyncio's
        # TLS transport cannot stay half-open and logs a warning on True (#15 defect 7)
        transport = self.transport
        return transport is None or transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.eof = True
        self.exc = exc
        self._wake_all()
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._wake_parked()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)


def _expire(fut: "asyncio.Future[Any]") -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class FastStream(ByteStream):
    """One TCP connection; see the module docstring."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self.last_activity = self._loop.time()
        #: bytes received / sent so far (plaintext under TLS), for the byte counters
        self.bytes_in = 0
        self.bytes_out = 0
        #: the client's address a PROXY protocol header named (perlbal.runtime.proxyproto)
        self.proxied_peer: tuple[str, int] | None = None
        #: the peer's address as accepted, IPv4-mapped unmapped (runtime/clients.py)
        self.peer: tuple[str, int] | None = None

    # --- reading -------------------------------------------------------------

    @property
    def at_eof(self) -> bool:
        """The peer closed its side (or the connection is gone) and nothing is left unread."""
        return self._protocol.eof and not self._protocol.chunks

    @property
    def buffered(self) -> int:
        return self._protocol.size

    def peek(self) -> bytes:
        """The bytes received and not read yet (they stay for ``receive``)."""
        return b"".join(self._protocol.chunks)

    async def receive(self, max_bytes: int = 65536, *, timeout: float | None = None,
                      watch: "FastStream | None" = None) -> bytes:
        proto = self._protocol
        if not proto.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if not proto.eof:
                await self._wait_readable(timeout, watch)
            if not proto.chunks:
                if self._closed:
                    raise anyio.ClosedResourceError
                if proto.exc is not None:
                    raise anyio.BrokenResourceError from proto.exc
                raise anyio.EndOfStream
        chunks = proto.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        proto.size = 0
        self.bytes_in += len(data)
        if proto.reading_paused:
            proto.reading_paused = False
            self._transport.resume_reading()
        self.last_activity = self._loop.time()
        return data

    async def _wait_readable(self, timeout: float | None, watch: "FastStream | None") -> None:
        if watch is not None and watch._protocol.lost:
            raise PeerGone
        proto = self._protocol
        fut: asyncio.Future[None] = self._loop.create_future()
        proto.waiter = fut
        timer = self._loop.call_later(timeout, _expire, fut) if timeout else None
        if watch is not None:
            watch._protocol.watchers.append(fut)
        try:
            await fut
        finally:
            proto.waiter = None
            if timer is not None:
                timer.cancel()
            if watch is not None and fut in watch._protocol.watchers:
                watch._protocol.watchers.remove(fut)

    # --- writing -------------------------------------------------------------

    async def send(self, item: bytes, timeout: float | None = None, *,
                   more: bool = False) -> None:
        """Write ``item``; with ``more``, the caller sends more right after
        (a response head before its sendfile body): the kernel is told so
        (MSG_MORE) and puts head and body in the same segments, instead of
        pushing the head alone and waking the client for it."""
        proto = self._protocol
        if self._closed:
            raise anyio.ClosedResourceError
        if proto.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError
        if more and not self._transport.get_write_buffer_size():
            sent = send_more(getattr(self._transport, "_sock", None), item)  # None: TLS
            if sent is not None:
                self.bytes_out += sent
                item = item[sent:]
                if not item:
                    self.last_activity = self._loop.time()
                    return
        self._transport.write(item)
        self.bytes_out += len(item)
        if proto.writing_paused:
            fut: asyncio.Future[None] = self._loop.create_future()
            proto.drain_waiter = fut
            timer = self._loop.call_later(timeout, _expire, fut) if timeout else None
            try:
                await fut
            except TimeoutError:
                # a peer that stopped reading: cut it off (write timeout)
                self._transport.abort()
                raise anyio.BrokenResourceError("write timed out") from None
            finally:
                proto.drain_waiter = None
                if timer is not None:
                    timer.cancel()
            if proto.lost:
                raise anyio.BrokenResourceError
        self.last_activity = self._loop.time()

    async def send_eof(self) -> None:
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

    def abort(self) -> None:
        """Close now, dropping unsent data (a broken exchange; sends RST)."""
        self._closed = True
        self._transport.abort()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), dropping unsent data: the peer
        sees an error, never a clean end.  For a reply cut short whose length
        the client could not otherwise check (close-delimited): it must not
        look complete (RFC 9112 section 8)."""
        linger_zero(self._transport.get_extra_info("socket"))
        self.abort()

    def park(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` once when data, EOF or an error arrives, with no task
        waiting meanwhile.  False (and nothing registered) when something has
        arrived already."""
        proto = self._protocol
        if proto.chunks or proto.eof or proto.lost or self._closed:
            return False
        proto.on_wake = wake
        return True

    def unpark(self) -> None:
        self._protocol.on_wake = None

    def abort_quietly(self) -> None:
        """Close a parked idle connection (idle timeout, shutdown): FIN, no data lost."""
        self._closed = True
        if not self._transport.is_closing():
            self._transport.close()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        if transport.is_closing():
            return
        if transport.get_write_buffer_size():
            # the rest is flushed by the transport; a peer that never reads is cut off
            self._loop.call_later(30.0, transport.abort)
        transport.close()

    @property
    def flushing(self) -> bool:
        """Closed (``aclose``) with bytes still queued in the transport for the peer."""
        return self._closed and not self._protocol.lost and self._transport.is_closing()

    async def wait_flushed(self) -> None:
        """After ``aclose``: until the transport has handed everything queued to
        the kernel and closed (or the peer is gone, or the 30 s cut-off hit)."""
        proto = self._protocol
        while not proto.lost:
            fut: asyncio.Future[None] = self._loop.create_future()
            proto.drain_waiter = fut  # resume_writing / connection_lost set it
            await fut

    @property
    def closed(self) -> bool:
        return self._closed or self._protocol.lost

    @property
    def ended(self) -> bool:
        """The peer closed its side or the connection is gone (bytes may still be unread)."""
        return self._protocol.eof

    def fail_on_end(self, slot: "Slot[Any]") -> bool:
        """Fail ``slot`` with ``PeerGone`` when this connection is lost (reset,
        broken: not a FIN, after which the peer may still read); False if it is."""
        if self._protocol.lost:
            return False
        self._protocol.watchers.append(slot._fut)
        return True

    def forget(self, slot: "Slot[Any]") -> None:
        if slot._fut in self._protocol.watchers:
            self._protocol.watchers.remove(slot._fut)

    # --- files -----------------------------------------------------------------

    @property
    def can_sendfile(self) -> bool:
        """An open asyncio transport (the loop's ``sendfile`` works on it)."""
        transport = self._transport
        return isinstance(transport, asyncio.WriteTransport) and not transport.is_closing()

    def idle_tcp_socket(self) -> socket.socket | None:
        """The socket, when bytes may go to it directly now: plain TCP (not TLS)
        and nothing queued in the transport (so bytes stay in order)."""
        transport = self._transport
        sock = transport.get_extra_info("socket")
        if (sock is None or transport.get_write_buffer_size() or
                transport.get_extra_info("sslcontext") is not None):
            return None
        return cast(socket.socket, sock)

    async def sendfile(self, fh: BinaryIO, offset: int, count: int) -> None:
        """The loop's ``sendfile``: what the transport buffers goes first, then
        ``os.sendfile`` (or reads and writes under TLS).  ``BrokenResourceError``
        when the peer is gone; ``RuntimeError``/``NotImplementedError`` when the
        transport cannot (the caller then reads and sends)."""
        try:
            await self._loop.sendfile(self._transport, fh, offset, count)
        except (ConnectionError, OSError) as exc:
            raise anyio.BrokenResourceError from exc

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        transport = self._transport
        peer = self.peer  # (set at accept: an IPv4-mapped address unmapped)
        return {
            SocketAttribute.remote_address: lambda: peer or transport.get_extra_info("peername"),
            SocketAttribute.local_address: lambda: transport.get_extra_info("sockname"),
            SocketAttribute.raw_socket: lambda: transport.get_extra_info("socket"),
        }

    def setsockopt(self, level: int, option: int, value: int) -> None:
        set_option(self._transport.get_extra_info("socket"), level, option, value)


async def wrap_accepted(sock: socket.socket, tls: ssl.SSLContext | None = None,
                        handshake_timeout: float = 60.0) -> FastStream:
    """Adopt an accepted socket; with ``tls``, the TLS handshake is done first
    (an ``ssl.SSLError`` or ``TimeoutError`` when it fails)."""
    transport, protocol = await asyncio.get_running_loop().connect_accepted_socket(
        _Protocol, sock, ssl=tls, ssl_handshake_timeout=handshake_timeout if tls else None)
    return FastStream(transport, protocol)


async def open_connection(host: str, port: int, *, sndbuf: int = 0) -> FastStream:
    """Connect (non-blocking, no DNS: ``host`` is an address) with TCP_NODELAY."""
    loop = asyncio.get_running_loop()
    sock = tcp_socket(host, sndbuf)
    try:
        await loop.sock_connect(sock, (host, port))
        transport, protocol = await loop.create_connection(_Protocol, sock=sock)
    except BaseException:
        sock.close()
        raise
    return FastStream(transport, protocol)
