"""The request object a Cgilike handler receives (Perl's Perlbal::Plugin::Cgilike::Request).

A handler is ``module:function`` (or ``module.function``), plain or async::

    from perlbal.plugins.cgilike import HANDLED

    def handler(r):
        if r.path() == "/":
            r.print("<p>Hello, world</p>")
            return HANDLED
        return 404

Methods keep Perl's names: ``uri()``, ``path()``, ``path_segments()``,
``query_string()``, ``query_args()``, ``method()``, ``request_header(name)``,
``response_header(name[, value])``, ``response_status_code([code])``,
``send_response_header()``, ``response_header_sent()``, ``print(*parts)``,
``printf(fmt, *args)``, ``end_response()``.  Output is collected and written
when the handler returns (or, for POSTPONE_RESPONSE, when ``end_response`` is
called): ``HTTP/1.0 <code>`` head, ``Content-type: text/html`` unless set, the
body, then the connection closes, as Perl's does.
"""

from __future__ import annotations

import importlib
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

import anyio

from perlbal.http import set_header
from perlbal.http.responses import render_head

if TYPE_CHECKING:
    from perlbal.plugins.view import RequestView

__all__ = ["CgiRequest", "find_handler"]


def find_handler(name: str) -> Callable[["CgiRequest"], Any]:
    """``module:function`` or ``module.function`` -> the function (ImportError/AttributeError)."""
    module, sep, func = name.partition(":")
    if not sep:
        module, _, func = name.rpartition(".")
    handler = getattr(importlib.import_module(module.replace("::", ".")), func)
    if not callable(handler):
        raise TypeError(f"{name} is not callable")
    return handler  # type: ignore[no-any-return]


class CgiRequest:
    def __init__(self, ctx: "RequestView") -> None:
        self.ctx = ctx
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.header_sent = False
        self.ended = anyio.Event()
        self._flushed = 0

    # --- the request ---
    def uri(self) -> str:
        return self.ctx.head.target

    def path(self) -> str:
        return urllib.parse.urlsplit(self.ctx.head.target).path

    def path_segments(self) -> list[str]:
        return [urllib.parse.unquote(s) for s in self.path().split("/")[1:]]

    def query_string(self) -> str | None:
        return urllib.parse.urlsplit(self.ctx.head.target).query or None

    def query_args(self) -> list[tuple[str, str]]:
        return urllib.parse.parse_qsl(self.query_string() or "", keep_blank_values=True)

    def method(self) -> str:
        return self.ctx.head.method

    def request_header(self, name: str) -> str | None:
        return self.ctx.head.get(name)

    # --- the response ---
    def response_header(self, name: str, value: str | None = None) -> str | None:
        if value is not None:
            self.headers = set_header(self.headers, name, value)
            return value
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def response_status_code(self, value: int | None = None) -> int:
        if value is not None:
            self.status = int(value)
        return self.status

    def send_response_header(self) -> None:
        if self.response_header("Content-type") is None:
            self.response_header("Content-type", "text/html")
        self.header_sent = True

    def response_header_sent(self) -> bool:
        return self.header_sent

    def print(self, *parts: object) -> None:
        if not self.header_sent:
            self.send_response_header()
        for part in parts:
            self.body.append(part if isinstance(part, bytes) else str(part).encode("utf-8"))

    def printf(self, fmt: str, *args: object) -> None:
        self.print(fmt % args)

    def end_response(self) -> None:
        self.ended.set()

    async def flush(self) -> None:
        """Write what was printed (the head once)."""
        data = b""
        if self.header_sent and not self.ctx.response_started:
            data = render_head(self.status, self.headers)
        elif not self.header_sent and not self.ctx.response_started:
            self.send_response_header()  # Perl sent nothing at all here; we send the head
            data = render_head(self.status, self.headers)
        data += b"".join(self.body[self._flushed:])
        self._flushed = len(self.body)
        if data:
            await self.ctx.send(data)
