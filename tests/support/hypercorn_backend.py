"""Hypercorn on loopback, in a thread: an ASGI backend that records every request.

Hypercorn accepts ``Upgrade: h2c`` on HTTP/1.1 (and the HTTP/2 preface) by
default, so it is the backend of the h2c smuggling tests (issue 24 item 2):
whatever reaches it over HTTP/1.x or HTTP/2 is in ``seen`` as
``Seen(http_version, method, path, headers)``, headers lower-cased.  HTTP
requests get ``200 ok``; a WebSocket is accepted and echoes text.

The listening socket is made here (port 0) and handed to Hypercorn as
``fd://``, so the port is known before the server starts and never raced for.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Awaitable, Callable

from tests.support.ports import LOOPBACK

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Seen:
    http_version: str
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)


class HypercornBackend:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        self.port = int(sock.getsockname()[1])
        self._fd = sock.detach()  # Hypercorn's from here on (it closes it when it stops)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1"))
                        for k, v in scope["headers"])
        self.seen.append(Seen(scope.get("http_version", ""), scope.get("method", "GET"),
                              scope["path"], headers))
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                await send({"type": "websocket.send", "text": message.get("text") or ""})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    def _run(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            config = Config()
            config.bind = [f"fd://{self._fd}"]
            config.accesslog = None
            config.errorlog = None
            config.graceful_timeout = 1
            self._ready.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by __exit__
            self._failed = exc
            self._ready.set()

    def __enter__(self) -> "HypercornBackend":
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise RuntimeError(f"hypercorn did not start: {self._failed!r}")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
