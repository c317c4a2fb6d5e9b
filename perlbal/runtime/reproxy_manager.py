"""Connections to reproxy targets and the X-REPROXY-CACHE-FOR cache (Perl's ReproxyManager + Cache).

Reproxy targets are not pool nodes: they are whatever host:port an
X-REPROXY-URL names.  Per host:port, as Perl's ReproxyManager keeps them:

- ``bored``: idle keep-alive connections, newest last; one idle for more than
  ``BORED_MAX_AGE`` seconds is closed instead of reused (Perl: "alive_time <
  now - 5" in spawn_backend);
- ``backends``: every open connection (busy or bored);
- ``queued``: clients waiting for a connection;
- ``connecting``: connects in progress.

``SERVER max_reproxy_connections`` bounds ``backends + connecting`` per host;
a client over the limit waits for a connection to be freed.  Perl 1.80 never
fills its per-host table (see ``queries.reproxy_state``), so the last
``max_reproxy_connections[(...)]`` set is the global limit, here as there.

The cache (Perl's Service::add_to_reproxy_url_cache / Perlbal::Cache) is an
LRU per service, keyed ``Host|URI``, holding (expiry, replayed headers, URL
list); its size follows the service's ``reproxy_cache_maxsize`` (kept in
``svc.extra`` because Perl never stores it as a param) at every use.

Invariants: a connection is in ``backends`` iff it is open; it is in at
most one ``bored`` list and then owned by nobody; nothing here writes to clients.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import anyio

from perlbal.graph import Graph, Service
from perlbal.runtime.aio import FastStream, open_connection

if TYPE_CHECKING:
    from perlbal.runtime.stats import RuntimeStats

CONNECT_TIMEOUT = 5.0  # Perl: a reproxy backend still connecting after 5 s is given up
BORED_MAX_AGE = 5.0

Header = tuple[str, str]


@dataclass
class ReproxyConn:
    ipport: str
    stream: FastStream
    sock_id: int
    uses: int = 0
    idle_since: float = 0.0
    state: str = "connecting"
    client: str = ""


@dataclass
class _Host:
    connecting: int = 0
    bored: list[ReproxyConn] = field(default_factory=list)
    queued: int = 0
    backends: list[ReproxyConn] = field(default_factory=list)
    waiters: deque[anyio.Event] = field(default_factory=deque)


@dataclass
class CacheEntry:
    expires: float
    headers: tuple[Header, ...]
    urls: str


class ReproxyCache:
    """Perl's Perlbal::Cache: an LRU of at most ``maxsize`` entries."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[str, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def resize(self, maxsize: int) -> None:
        self.maxsize = maxsize
        while len(self._items) > maxsize:
            self._items.popitem(last=False)

    def get(self, key: str) -> CacheEntry | None:
        entry = self._items.get(key)
        if entry is not None:
            self._items.move_to_end(key)
        return entry

    def set(self, key: str, entry: CacheEntry) -> None:
        self._items[key] = entry
        self._items.move_to_end(key)
        self.resize(self.maxsize)


@dataclass
class CacheStats:
    requests: int = 0  # Perl's _stat_requests: requests that consulted the cache
    hits: int = 0  # Perl's _stat_cache_hits


class ReproxyManager:
    """Per-runtime reproxy connections and per-service caches."""

    def __init__(self, live: "RuntimeStats", graph: Callable[[], Graph]) -> None:
        self.live = live
        self._graph = graph
        self.hosts: dict[str, _Host] = {}
        self.caches: dict[str, ReproxyCache] = {}
        self.cache_stats: dict[str, CacheStats] = {}

    # --- the cache -------------------------------------------------------------

    def cache(self, svc: Service) -> ReproxyCache | None:
        """The service's cache sized to reproxy_cache_maxsize; None when that is 0/unset."""
        maxsize = svc.extra.get("reproxy_cache_maxsize")
        if not isinstance(maxsize, int) or maxsize <= 0:
            self.caches.pop(svc.name, None)  # Perl: setting 0 drops the cache
            return None
        cache = self.caches.get(svc.name)
        if cache is None:
            cache = self.caches[svc.name] = ReproxyCache(maxsize)
        elif cache.maxsize != maxsize:
            cache.resize(maxsize)
        return cache

    def stats_for(self, name: str) -> CacheStats:
        return self.cache_stats.setdefault(name, CacheStats())

    # --- connections -------------------------------------------------------------

    def limit(self) -> int:
        value = "0"
        for key, val in self._graph().server.items():
            if key.startswith("max_reproxy_connections"):
                value = val
        try:
            return max(int(value), 0)
        except ValueError:
            return 0

    async def acquire(self, host: str, port: int, client: str = "") -> ReproxyConn | None:
        """A connection to host:port (bored, or new within the limit); None if it cannot connect."""
        ipport = f"{host}:{port}"
        st = self.hosts.setdefault(ipport, _Host())
        st.queued += 1
        try:
            while True:
                now = time.monotonic()
                while st.bored:
                    conn = st.bored.pop()
                    if now - conn.idle_since > BORED_MAX_AGE or conn.stream.closed \
                            or conn.stream.at_eof or conn.stream.buffered:
                        self.close(conn)
                        continue
                    conn.client = client
                    self._set_state(conn, "sending_req")
                    return conn
                limit = self.limit()
                if limit and len(st.backends) + st.connecting >= limit:
                    freed = anyio.Event()
                    st.waiters.append(freed)
                    try:
                        await freed.wait()
                    finally:
                        if freed in st.waiters:
                            st.waiters.remove(freed)
                    continue
                return await self._connect(st, ipport, host, port, client)
        finally:
            st.queued -= 1

    async def _connect(self, st: _Host, ipport: str, host: str, port: int,
                       client: str) -> ReproxyConn | None:
        st.connecting += 1
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                address = await _resolve(host, port)
                stream = await open_connection(address, port)
        except (OSError, TimeoutError, anyio.BrokenResourceError):
            return None
        finally:
            st.connecting -= 1
            self._wake(st)
        sock_id = self.live.open_sock("Perlbal::BackendHTTP", ipport, "", "sending_req")
        conn = ReproxyConn(ipport, stream, sock_id, state="sending_req", client=client)
        st.backends.append(conn)
        return conn

    def _set_state(self, conn: ReproxyConn, state: str) -> None:
        conn.state = state
        self.live.set_state(conn.sock_id, state)

    def set_state(self, conn: ReproxyConn, state: str) -> None:
        self._set_state(conn, state)

    def release(self, conn: ReproxyConn, reusable: bool) -> None:
        """Done with ``conn``: park it bored when the reply allows, else close it."""
        st = self.hosts.setdefault(conn.ipport, _Host())
        if reusable and not conn.stream.closed:
            conn.idle_since = time.monotonic()
            conn.client = ""
            self._set_state(conn, "bored")
            st.bored.append(conn)
            self._wake(st)
        else:
            self.close(conn)

    def close(self, conn: ReproxyConn) -> None:
        st = self.hosts.setdefault(conn.ipport, _Host())
        if conn in st.backends:
            st.backends.remove(conn)
        if conn in st.bored:
            st.bored.remove(conn)
        self.live.close_sock(conn.sock_id)
        conn.stream.abort()
        self._wake(st)

    @staticmethod
    def _wake(st: _Host) -> None:
        while st.waiters:
            freed = st.waiters.popleft()
            if not freed.is_set():
                freed.set()
                return

    def close_all(self) -> None:
        for st in self.hosts.values():
            for conn in list(st.backends):
                self.close(conn)

    def dump_state(self) -> list[str]:
        """ReproxyManager::dump_state's live lines (the caller adds the limit and '.')."""
        out: list[str] = []
        for ipport, st in self.hosts.items():
            if st.connecting:
                out.append(f"connecting {ipport} 1")
        for ipport, st in self.hosts.items():
            out.append(f"bored {ipport} {len(st.bored)}")
        for ipport, st in self.hosts.items():
            out.append(f"clients_queued {ipport} {st.queued}")
        for ipport, st in self.hosts.items():
            out.append(f"backends {ipport} {len(st.backends)}")
            for conn in st.backends:
                client = f"; client={conn.client}" if conn.client else ""
                out.append(f"... Perlbal::BackendHTTP({conn.sock_id}): {conn.ipport}"
                           f"{client}; uses={conn.uses}; {conn.state}")
        return out


async def _resolve(host: str, port: int) -> str:
    bare = host[1:-1] if host.startswith("[") else host
    try:
        ipaddress.ip_address(bare)
        return bare
    except ValueError:
        pass
    infos = await anyio.getaddrinfo(bare, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return str(infos[0][4][0])
