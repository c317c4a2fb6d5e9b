"""A small memcached client on anyio (text protocol: ``get`` and ``set``), for
Throttle's ``memcached_servers``.

Why not a library: the maintained asyncio client (aiomcache) talks to one
server only, and pymemcache blocks; Throttle needs two commands, several
servers picked the way Perl's Cache::Memcached picks them (so that a Perl and a
Python perlbal sharing the same server list read and write each key on the same
server), and a hard bound on the time one request may spend on them.

Invariants:

- a key goes to ``servers[((crc32(key) >> 16) & 0x7fff) % len(servers)]``,
  Cache::Memcached's ``_hashfunc`` without weights; a server that is down is
  not replaced by another (the caller falls back to its local state instead);
- every operation finishes within ``timeout`` seconds or raises
  ``MemcachedError``; a connection that failed or timed out mid-reply is closed,
  never reused (its next reply could belong to the abandoned command);
- a server that failed is skipped (immediate ``MemcachedError``) for
  ``retry_seconds``, so a dead or silent memcached costs one timeout per
  retry period, not one per request; the outage is logged once when it starts
  and once when the server answers again;
- at most ``connections`` connections per server (Perl's
  ``memcached_async_clients``); callers beyond that wait, within the timeout.
"""

from __future__ import annotations

import logging
import os
import re
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

log = logging.getLogger("perlbal.plugins.throttle")

_KEY_OK = re.compile(r"[\x21-\x7e]{1,250}")  # memcached: no spaces or control characters
_MAX_VALUE = 1 << 20
_Reader = Callable[[BufferedByteReceiveStream], Awaitable[bytes | None]]


class MemcachedError(Exception):
    """The operation did not complete: server down, slow, or answering nonsense."""


def valid_key(key: str) -> bool:
    return _KEY_OK.fullmatch(key) is not None


def server_index(key: str, count: int) -> int:
    """Cache::Memcached's bucket for ``key`` among ``count`` unweighted servers."""
    return ((zlib.crc32(key.encode("utf-8")) >> 16) & 0x7FFF) % count


def parse_servers(text: str) -> list[tuple[str, int]]:
    """Perl's ``split /[,\\s]+/``; ``host`` alone means port 11211."""
    out: list[tuple[str, int]] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, "11211"
        try:
            out.append((host.strip("[]"), int(port)))
        except ValueError:
            raise ValueError(f"bad memcached server '{item}'") from None
    return out


@dataclass
class _Conn:
    stream: SocketStream
    reader: BufferedByteReceiveStream


@dataclass
class _Server:
    host: str
    port: int
    connections: int
    idle: list[_Conn] = field(default_factory=list)
    limiter: anyio.Semaphore | None = None
    down_until: float = 0.0  # time.monotonic(); 0 while up
    down_logged: bool = False

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


class MemcachedClient:
    def __init__(self, servers: list[tuple[str, int]], connections: int = 10,
                 timeout: float = 0.3, retry_seconds: float = 5.0) -> None:
        if not servers:
            raise ValueError("no memcached servers")
        self.servers = [_Server(host, port, max(connections, 1)) for host, port in servers]
        self.timeout = timeout
        self.retry_seconds = retry_seconds

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None when memcached has none."""
        return await self._call(key, f"get {key}\r\n".encode("ascii"), _read_get)

    async def set(self, key: str, value: bytes, exptime: int) -> None:
        command = f"set {key} 0 {exptime} {len(value)}\r\n".encode("ascii") + value + b"\r\n"
        await self._call(key, command, _read_stored)

    async def _call(self, key: str, command: bytes, read: _Reader) -> bytes | None:
        if not valid_key(key):
            raise MemcachedError(f"key not storable in memcached: {key!r}")
        server = self.servers[server_index(key, len(self.servers))]
        if server.down_until and time.monotonic() < server.down_until:
            raise MemcachedError(f"memcached {server.name} is down")
        if server.limiter is None:
            server.limiter = anyio.Semaphore(server.connections)
        conn: _Conn | None = None
        try:
            with anyio.fail_after(self.timeout):
                async with server.limiter:
                    conn = server.idle.pop() if server.idle else await _connect(server)
                    await conn.stream.send(command)
                    reply = await read(conn.reader)
            server.idle.append(conn)
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError,
                anyio.ClosedResourceError, anyio.IncompleteRead, anyio.DelimiterNotFound,
                MemcachedError) as exc:
            stale, server.idle = server.idle, []  # the others likely broke the same way
            for dead in ([conn] if conn is not None else []) + stale:
                await _close(dead)
            self._mark_down(server, exc)
            raise MemcachedError(str(exc) or type(exc).__name__) from None
        except BaseException:  # cancelled (the client left): the reply may still come
            if conn is not None:
                await _close(conn)
            raise
        if server.down_logged:
            server.down_logged = False
            log.warning("memcached %s answers again: throttling state is shared again",
                        server.name)
        server.down_until = 0.0
        return reply

    def _mark_down(self, server: _Server, exc: BaseException) -> None:
        server.down_until = time.monotonic() + self.retry_seconds
        if not server.down_logged:
            server.down_logged = True
            if isinstance(exc, TimeoutError):
                reason = "no answer within %.1fs" % self.timeout
            else:  # anyio's connect_tcp: "All connection attempts failed", from the real one
                cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
                code = getattr(cause, "errno", None)
                reason = os.strerror(code) if isinstance(code, int) else \
                    (str(cause) or type(cause).__name__)
            log.warning("memcached %s unusable (%s): throttling uses this process's own "
                        "state until it answers", server.name, reason)


async def _connect(server: _Server) -> _Conn:
    stream = await anyio.connect_tcp(server.host, server.port)
    return _Conn(stream, BufferedByteReceiveStream(stream))


async def _close(conn: _Conn) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await conn.stream.aclose()
        except Exception:
            pass


async def _line(reader: BufferedByteReceiveStream) -> bytes:
    return await reader.receive_until(b"\r\n", 1024)


async def _read_get(reader: BufferedByteReceiveStream) -> bytes | None:
    """``VALUE <key> <flags> <bytes>`` + data + ``END``, or just ``END``."""
    line = await _line(reader)
    if line == b"END":
        return None
    parts = line.split()
    if len(parts) != 4 or parts[0] != b"VALUE" or not parts[3].isdigit() \
            or int(parts[3]) > _MAX_VALUE:
        raise MemcachedError(f"unexpected reply to get: {line[:80]!r}")
    data = await reader.receive_exactly(int(parts[3]) + 2)
    if await _line(reader) != b"END":
        raise MemcachedError("get reply without END")
    return data[:-2]


async def _read_stored(reader: BufferedByteReceiveStream) -> bytes | None:
    line = await _line(reader)
    if line != b"STORED":
        raise MemcachedError(f"unexpected reply to set: {line[:80]!r}")
    return None
