"""EchoService: the ``echo`` role, a line echo server (Perl's plugin example).

Config: ``LOAD EchoService`` makes ``SET role = echo`` valid and adds the
``echo_delay`` parameter (integer seconds, default 0, echo services only);
UNLOAD takes both away again.

Runtime: a listener of role ``echo`` hands each connection to
``serve_connection``: every complete non-empty line a client sends (``\\n`` or
``\\r\\n``) is written back to it followed by ``\\r\\n``, after echo_delay
seconds when set (other lines keep being read meanwhile, as Perl's timers).
"""

from __future__ import annotations

import re
from typing import Any

import anyio

from perlbal.graph import Service
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin

_LINE = re.compile(rb"^(.+?)\r?\n", re.S)


class EchoService(Plugin):
    name = "EchoService"
    roles = ("echo",)
    params = (
        Param("echo_delay", Kind.INT, "Seconds to wait before echoing a line back.",
              roles=("echo",), default="0", plugin="EchoService"),
    )

    async def serve_connection(self, runtime: Any, stream: Any, svc: Service) -> None:
        buf = b""

        async def echo(line: bytes, delay: int) -> None:
            await anyio.sleep(delay)
            try:
                await stream.send(line + b"\r\n")
            except Exception:  # the client left: nothing to do
                pass

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
                    delay = svc.get("echo_delay")
                    if isinstance(delay, int) and delay > 0:
                        tg.start_soon(echo, m.group(1), delay)
                    else:
                        await echo(m.group(1), 0)


PLUGIN = EchoService()
