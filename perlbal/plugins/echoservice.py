"""EchoService: the ``echo`` role, a line echo server (Perl's plugin example).

Config: ``LOAD EchoService`` makes ``SET role = echo`` valid and adds the
``echo_delay`` parameter (integer seconds, default 0, echo services only);
UNLOAD takes both away again.

Runtime: a listener of role ``echo`` hands each connection to
``serve_connection``: every complete non-empty line a client sends (``\\n`` or
``\\r\\n``) is written back to it followed by ``\\r\\n``, after echo_delay
seconds when set (other lines keep being read meanwhile, as Perl's timers).

Bounds (Perl had none): a line longer than ``MAX_ECHO_LINE`` (8 KiB) without
a newline closes the connection, and at most ``MAX_PENDING_ECHOES`` (64)
delayed echoes wait at once per connection (reading pauses until one is
sent), so one connection holds at most about 512 KiB.
"""

from __future__ import annotations

import re
from typing import Any

import anyio

from perlbal.graph import Service
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.tunables import EchoServiceTunables

_LINE = re.compile(rb"^(.+?)\r?\n", re.S)
#: longest line (bytes, without its newline) a client may send
MAX_ECHO_LINE = 8192
#: delayed echoes waiting at once, per connection
MAX_PENDING_ECHOES = 64


class EchoService(Plugin):
    name = "EchoService"
    roles = ("echo",)
    params = (
        Param("echo_delay", Kind.INT, "Seconds to wait before echoing a line back.",
              roles=("echo",), default="0", plugin="EchoService"),
    )

    async def serve_connection(self, runtime: Any, stream: Any, svc: Service) -> None:
        buf = b""

        pending = anyio.Semaphore(MAX_PENDING_ECHOES)

        async def echo(line: bytes, delay: int) -> None:
            await anyio.sleep(delay)
            try:
                await stream.send(line + b"\r\n")
            except Exception:  # the client left: nothing to do
                pass

        async def echo_later(line: bytes, delay: int) -> None:
            try:
                await echo(line, delay)
            finally:
                pending.release()

        async with anyio.create_task_group() as tg:
            while True:
                try:
                    data = await stream.receive(1024)
                except Exception:
                    data = b""
                if not data:
                    tg.cancel_scope.cancel()
                    return
                buf += data
                while (m := _LINE.match(buf)) is not None:
                    buf = buf[m.end():]
                    if len(m.group(1)) > MAX_ECHO_LINE:
                        break  # over-long line: handled below
                    delay = EchoServiceTunables(svc.params).echo_delay
                    if delay > 0:
                        await pending.acquire()  # waits while MAX_PENDING_ECHOES are queued
                        tg.start_soon(echo_later, m.group(1), delay)
                    else:
                        await echo(m.group(1), 0)
                else:
                    if len(buf) <= MAX_ECHO_LINE + 1:  # room for the "\r" of a "\r\n"
                        continue
                try:
                    await stream.send(b"ERROR: line too long\r\n")
                except Exception:
                    pass
                tg.cancel_scope.cancel()
                return


PLUGIN = EchoService()
