"""Parked keep-alive clients: idle between two requests, holding no task.

Between requests an idle keep-alive client holds no task, coroutine frames
or timer: its stream calls ``wake`` when bytes (or EOF) arrive, and one
sweeper closes those idle past ``persist_client_idle_timeout``.  Perl's
event loop holds idle clients the same way (``bench/idle_rss.py``).

Invariants: a parked stream is in ``parked`` and nowhere else (no task
serves it); it stays counted among the open clients (``Clients.active``,
``limited``) until it is woken (served again by a new task) or closed; nothing
is parked once a graceful shutdown has begun.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio

from perlbal.runtime.aio import FastStream

if TYPE_CHECKING:
    from perlbal.runtime.clients import Clients

__all__ = ["Parking"]

#: seconds between two looks for clients idle too long
SWEEP_INTERVAL = 1.0


class Parking:
    def __init__(self, clients: "Clients") -> None:
        self.clients = clients
        #: stream -> (service, counted as limited, deadline on anyio.current_time())
        self.parked: dict[FastStream, tuple[str, bool, float]] = {}
        self._sweeping = False

    def park(self, stream: FastStream, service_name: str, limited: bool) -> bool:
        """Hold ``stream`` until it sends again; False when it must be closed instead."""
        runtime = self.clients.runtime
        if runtime.draining:
            return False
        svc = runtime.graph.services.get(service_name)
        timeout = svc.tunables.persist_client_idle_timeout if svc is not None else 30
        deadline = anyio.current_time() + timeout if timeout > 0 else math.inf
        if not stream.park(lambda: self._wake(stream)):
            # something arrived already: serve it rather than park
            self._resume(stream, service_name, limited)
            return True
        self.parked[stream] = (service_name, limited, deadline)
        tg = runtime.task_group
        if not self._sweeping and tg is not None:
            self._sweeping = True
            tg.start_soon(self._sweep)
        return True

    def _wake(self, stream: FastStream) -> None:
        entry = self.parked.pop(stream, None)
        if entry is not None:
            self._resume(stream, entry[0], entry[1])

    def _resume(self, stream: FastStream, service_name: str, limited: bool) -> None:
        self.clients.tasks.start(self.clients.resume(stream, service_name, limited))

    def _close(self, stream: FastStream) -> None:
        entry = self.parked.pop(stream, None)
        if entry is None:
            return
        stream.unpark()
        clients = self.clients
        clients.active -= 1
        clients.limited -= entry[1]
        stream.abort_quietly()
        clients.note_closed()

    async def _sweep(self) -> None:
        try:
            while self.parked:
                await anyio.sleep(SWEEP_INTERVAL)
                now = anyio.current_time()
                for stream, (_name, _limited, deadline) in list(self.parked.items()):
                    if deadline <= now:
                        self._close(stream)
        finally:
            self._sweeping = False

    def close_all(self) -> None:
        for stream in list(self.parked):
            self._close(stream)
