"""The digest application of ``tests.support.digest_backend`` as ASGI, for uvicorn.

Same answers as the WSGI ``digest_app``: JSON with the request's method,
path, body length and sha256; ``/bytes/N`` answers ``payload(N)`` (one
``Range: bytes=A-B`` is answered 206).  Run it with
``uvicorn tests.support.asgi_digest:app --http h11`` (or ``httptools``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Awaitable, Callable

from tests.support.digest_backend import byte_range, digest_json, payload

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    method: str = scope["method"]
    path: str = scope["path"]
    digest, length = hashlib.sha256(), 0
    while True:  # hashed as it arrives: a 5 MB upload is never held whole
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk: bytes = message.get("body", b"")
        digest.update(chunk)
        length += len(chunk)
        if not message.get("more_body", False):
            break
    headers = [(b"content-type", b"application/json")]
    status = 200
    if path.startswith("/bytes/"):
        data = payload(int(path.rsplit("/", 1)[1]))
        headers = [(b"content-type", b"application/octet-stream")]
        range_header = dict(scope["headers"]).get(b"range")
        wanted = byte_range(range_header.decode("latin-1") if range_header else None, len(data))
        if wanted is not None:
            first, last = wanted
            status = 206
            headers.append((b"content-range", f"bytes {first}-{last}/{len(data)}".encode()))
            data = data[first:last + 1]
    else:
        data = digest_json(method, path, length, digest.hexdigest())
    headers.append((b"content-length", str(len(data)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else data})
