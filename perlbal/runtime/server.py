"""The running server: listeners bound for services, one anyio task group over all of it.

``Runtime`` is the interpreter's ``Effects``: ``start_listener`` binds
synchronously (so a console ``ENABLE`` or ``SET listen`` answers with Perl's
error text at once) and then serves the socket in the runtime's task group,
or, before ``serve()`` has started, as soon as it starts.

Invariants:
- one ``_Listener`` per enabled, listening service name; its accept loop runs
  in its own cancel scope, so ``stop_listener`` stops accepting while open
  connections (in the runtime-wide connection group) finish on their own;
- every accepted connection is one task (``clientconn.serve_client``); the
  role is looked up per request, so ``SET role``/``SET pool`` apply next time;
- ``shutdown`` may be called from inside the event loop (console) or before
  it runs; graceful shutdown stops accepting, lets persistent clients finish
  their current request, and gives up after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from perlbal import queries
from perlbal.graph import Graph, Service
from perlbal.interp import Interpreter
from perlbal.runtime.backends import BackendManager
from perlbal.runtime.netstream import FastStream, wrap_accepted
from perlbal.runtime.stats import RuntimeStats

log = logging.getLogger("perlbal.runtime")

__all__ = ["Runtime", "parse_listen"]


def parse_listen(listen: str) -> tuple[socket.AddressFamily, str, int]:
    """``ip:port``, bare ``port`` (0.0.0.0) or ``[v6]:port`` -> (family, host, port)."""
    listen = listen.strip()
    if listen.startswith("["):
        host, _, port = listen[1:].partition("]:")
        return socket.AF_INET6, host, int(port)
    if ":" in listen:
        host, _, port = listen.rpartition(":")
        return socket.AF_INET, host, int(port)
    return socket.AF_INET, "0.0.0.0", int(listen)


@dataclass
class _Listener:
    service: str
    sock: socket.socket
    scope: anyio.CancelScope | None = None  # created inside the event loop
    closed: bool = False


class Runtime:
    """Effects for a live server; create, attach an interpreter, then ``await serve()``."""

    def __init__(self) -> None:
        self._interp: Interpreter | None = None
        self.live = RuntimeStats()
        self.listeners: dict[str, _Listener] = {}
        self.backends = BackendManager(self)
        self.live.manager = self.backends
        self._tg: TaskGroup | None = None
        self._not_started: list[_Listener] = []
        self._shutdown: anyio.Event | None = None
        self.shutdown_requested: tuple[bool, int | None] | None = None
        self.draining = False  # graceful shutdown: no more keep-alive
        self.active_connections = 0
        self._idle: anyio.Event | None = None
        self._spawn_later: list[Service] = []
        #: SO_REUSEPORT on listeners (SERVER workers > 1: each worker binds its own)
        self.reuse_port = False
        #: which worker this process is (0: the only one, or the first)
        self.worker_id = 0

    # --- wiring ---------------------------------------------------------------

    def attach(self, interp: Interpreter) -> None:
        self._interp = interp

    @property
    def interp(self) -> Interpreter:
        if self._interp is None:
            raise RuntimeError("Runtime used before an interpreter was attached")
        return self._interp

    @property
    def graph(self) -> Graph:
        return self.interp.graph

    # --- Effects ----------------------------------------------------------------

    def start_listener(self, svc: Service) -> str | None:
        listen = svc.listen
        if listen is None:
            return None
        try:
            family, host, port = parse_listen(listen)
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (ValueError, OSError) as exc:
            return f"Error creating listening socket: {exc}"
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port and svc.role != "management":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            text = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno == errno.EADDRNOTAVAIL:
                text = "Cannot assign requested address"
            # Perl: "Error creating listening socket: " . $@, and $@ names the class
            return f"Error creating listening socket: IO::Socket::INET: {text}"
        old = self.listeners.pop(svc.name, None)
        if old is not None:
            self._close_listener(old)
        lst = _Listener(svc.name, sock)
        self.listeners[svc.name] = lst
        if self._tg is not None:
            self._tg.start_soon(self._accept_loop, lst)
        else:
            self._not_started.append(lst)
        return None

    def stop_listener(self, svc: Service) -> None:
        lst = self.listeners.pop(svc.name, None)
        if lst is not None:
            self._close_listener(lst)

    def spawn_backends(self, svc: Service) -> None:
        # connect_ahead (Perl's spawn_backends on ENABLE / SET connect_ahead)
        if self._tg is not None:
            self.backends.spawn_backends(svc)
        elif svc not in self._spawn_later:
            self._spawn_later.append(svc)

    @property
    def task_group(self) -> TaskGroup | None:
        """The runtime-wide task group (None before ``serve`` and after it ended)."""
        return self._tg

    def shutdown(self, graceful: bool, timeout: int | None) -> None:
        self.shutdown_requested = (graceful, timeout)
        self.draining = True
        if self._shutdown is not None:
            self._shutdown.set()

    def stats(self) -> queries.LiveStats:
        return self.live

    # --- serving ----------------------------------------------------------------

    def _close_listener(self, lst: _Listener) -> None:
        lst.closed = True
        if lst.scope is not None:
            lst.scope.cancel()
        if lst in self._not_started:
            self._not_started.remove(lst)
        try:
            lst.sock.close()
        except OSError:
            pass

    def listening(self) -> bool:
        return bool(self.listeners)

    async def serve(self) -> None:
        """Run until ``shutdown``; returns when everything is closed."""
        self._shutdown = anyio.Event()
        if self.shutdown_requested is not None:
            self._shutdown.set()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for lst in self._not_started:
                tg.start_soon(self._accept_loop, lst)
            self._not_started.clear()
            for svc in self._spawn_later:
                self.backends.spawn_backends(svc)
            self._spawn_later.clear()
            await self._shutdown.wait()
            for lst in list(self.listeners.values()):
                self._close_listener(lst)
            self.listeners.clear()
            graceful, timeout = self.shutdown_requested or (False, None)
            if graceful and self.active_connections:
                with anyio.move_on_after(timeout if timeout else None):
                    while self.active_connections:
                        self._idle = anyio.Event()
                        await self._idle.wait()
            tg.cancel_scope.cancel()
        self._tg = None
        self.backends.close_all()

    async def _accept_loop(self, lst: _Listener) -> None:
        if lst.closed:
            return
        loop = asyncio.get_running_loop()
        lst.scope = anyio.CancelScope()
        with lst.scope:
            tg = self._tg
            assert tg is not None
            while True:
                try:
                    sock, _addr = await loop.sock_accept(lst.sock)
                except OSError as exc:
                    if lst.closed or lst.sock.fileno() == -1:
                        return
                    log.warning("accept on %s failed: %s", lst.service, exc)
                    await anyio.sleep(0.05)
                    continue
                tg.start_soon(self._run_client, sock, lst.service)

    async def _run_client(self, sock: socket.socket, service_name: str) -> None:
        from perlbal.runtime.clientconn import serve_client

        self.active_connections += 1
        stream: FastStream | None = None
        try:
            svc = self.graph.services.get(service_name)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sndbuf = svc.get("client_sndbuf_size", 0) if svc is not None else 0
            if isinstance(sndbuf, int) and sndbuf > 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            stream = await wrap_accepted(sock)
            await serve_client(self, stream, service_name)
        except OSError:
            pass
        except Exception:  # isolation: one connection never takes the server down
            log.exception("client connection on %s failed", service_name)
        finally:
            self.active_connections -= 1
            if stream is not None:
                await stream.aclose()
            else:
                sock.close()
            if self._idle is not None and not self.active_connections:
                self._idle.set()
