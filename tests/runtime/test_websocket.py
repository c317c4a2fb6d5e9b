"""WebSocket (and any Upgrade) through reverse_proxy and a selector, with the
``websockets`` library on both ends: echo, 1 MB messages, ping/pong, close
codes, a refused upgrade as an ordinary reply, idle tunnels closed after
idle_timeout, and allow_upgrade = off."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from tests.support.pyserver import PyPerlbal  # noqa: E402
from tests.support.configs import pool, proxy_service, vhost_selector  # noqa: E402
from tests.support.ports import free_ports  # noqa: E402


async def _echo(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path == "/close4001":
        await ws.close(4001, "bye from the backend")
        return
    try:
        async for message in ws:
            if message == "who":
                forwarded = ws.request.headers.get("X-Forwarded-For") if ws.request else None
                await ws.send(f"xff={forwarded}")
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass


class _Backend:
    """A websockets echo server in a thread with its own event loop."""

    def __init__(self) -> None:
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stop_event = asyncio.Event()

        def refuse(conn: ServerConnection, request: object) -> object:
            path = getattr(request, "path", "")
            if path == "/refuse":
                return conn.respond(403, "no upgrade for you\n")
            return None

        async with serve(_echo, "127.0.0.1", 0, process_request=refuse,
                         max_size=4 * 1024 * 1024) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self.ready.set()
            await self.stop_event.wait()

    def __enter__(self) -> "_Backend":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stop_event is not None
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(10)


@dataclass
class Stack:
    proxy: int
    selector: int
    quiet: int
    off: int
    server: PyPerlbal


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    proxy, selector, quiet, off = free_ports(4)
    with _Backend() as backend:
        config = (pool("ws", [backend.port])
                  + proxy_service("proxy", proxy, "ws", extra=["SET persist_backend = on"])
                  + proxy_service("inner", None, "ws")
                  + vhost_selector("sel", selector, {"*": "inner"})
                  + proxy_service("quiet", quiet, "ws", extra=["SET idle_timeout = 2"])
                  + proxy_service("off", off, "ws", extra=["SET allow_upgrade = off"]))
        with PyPerlbal("LOAD vhosts\n" + config) as server:
            yield Stack(proxy, selector, quiet, off, server)


@pytest.mark.parametrize("via", ["proxy", "selector"])
def test_echo_big_messages_ping_and_close(stack: Stack, via: str) -> None:
    port = stack.proxy if via == "proxy" else stack.selector

    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{port}/echo", max_size=4 * 1024 * 1024) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            big = bytes(range(256)) * 4096  # 1 MiB
            await ws.send(big)
            assert await ws.recv() == big
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, 5)
            await ws.send("who")
            assert await ws.recv() == "xff=127.0.0.1"  # the usual rewrites apply
            await ws.close(4000, "done")
            assert ws.close_code == 4000

    asyncio.run(talk())


def test_backend_close_code_reaches_the_client(stack: Stack) -> None:
    async def talk() -> None:
        async with connect(f"ws://127.0.0.1:{stack.proxy}/close4001") as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001 and ws.close_reason == "bye from the backend"

    asyncio.run(talk())


def test_refused_upgrade_is_an_ordinary_reply(stack: Stack) -> None:
    # (raw: our replies carry Perl's HTTP/1.0 status line, which the websockets
    # client refuses outright; a browser shows the 403)
    with socket.create_connection(("127.0.0.1", stack.proxy), timeout=5) as sock:
        sock.sendall(b"GET /refuse HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 403 Forbidden\r\n"), reply
    assert reply.endswith(b"\r\n\r\nno upgrade for you\n")
    asyncio.run(_one_echo(stack.proxy))  # and the proxy still serves


async def _one_echo(port: int) -> None:
    async with connect(f"ws://127.0.0.1:{port}/again") as ws:
        await ws.send("again")
        assert await ws.recv() == "again"


def test_silent_tunnel_closed_after_idle_timeout(stack: Stack) -> None:
    async def talk() -> float:
        async with connect(f"ws://127.0.0.1:{stack.quiet}/q", ping_interval=None) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return time.monotonic() - started

    elapsed = asyncio.run(talk())
    assert 1.5 < elapsed < 5, elapsed


def test_allow_upgrade_off_sends_an_ordinary_request(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.off), timeout=5) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        reply = sock.recv(65536)
    # the backend sees no Upgrade, so it cannot switch: an ordinary (error) reply
    assert reply.startswith(b"HTTP/1.0 ") and not reply.startswith(b"HTTP/1.0 101")
