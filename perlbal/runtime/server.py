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
- a listener of an ``enable_ssl`` service carries its ``SSLContext``
  (``tls.py``, built at bind time so ENABLE reports a bad certificate); the
  handshake is done before the connection loop sees a byte;
- while ``limited_connections`` (open clients of non-management listeners)
  is at SERVER max_connections, new clients get ``admission.refuse``;
  management connections have a budget of their own of the same size
  (``management_connections``), so the console stays reachable when clients
  fill the server, and idle consoles cannot exhaust descriptors either;
- ``shutdown`` may be called from inside the event loop (console) or before
  it runs; graceful shutdown stops accepting, lets persistent clients finish
  their current request, and gives up after ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import math
import errno
import logging
import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from perlbal import queries
from perlbal.graph import Graph, Service
from perlbal.interp import CommandContext, Interpreter, Reply
from perlbal.runtime import admission, metrics, timeline
from perlbal.runtime.backends import BackendManager
from perlbal.runtime import context, dnspools, proxyproto
from perlbal.runtime.netstream import FastStream, wrap_accepted
from perlbal.runtime.stats import RuntimeStats

#: seconds between a worker's metrics reports to worker 0 (SERVER workers > 1)
REPORT_INTERVAL = 1.0

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
    tls: ssl.SSLContext | None = None  # enable_ssl: accepted sockets are wrapped (tls.py)
    management: bool = False  # counted on its own max_connections budget


class Runtime:
    """Effects for a live server; create, attach an interpreter, then ``await serve()``."""

    owns_process = True  # (Effects) rlimits, nice, log level are this process's

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
        self.limited_connections = 0  # open clients of non-management listeners
        self.management_connections = 0  # open connections of management listeners
        self._idle: anyio.Event | None = None
        # idle keep-alive clients waiting without a task: stream -> (service, limited, deadline)
        self._parked: dict[FastStream, tuple[str, bool, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: one plain asyncio task per client connection (see _accept_loop)
        self._client_tasks: set[asyncio.Task[None]] = set()
        self._spawn_later: list[Service] = []
        #: upload_tracker services: name -> (UDP socket, its transport once the loop runs)
        self.trackers: dict[str, tuple[socket.socket, asyncio.BaseTransport | None]] = {}
        #: closed client connections whose transport may still write their last
        #: bytes (a graceful shutdown waits for them); pruned as it grows
        self._flushing: set[FastStream] = set()
        self._flushing_prune_at = 64
        #: SO_REUSEPORT on listeners (SERVER workers > 1: each worker binds its own)
        self.reuse_port = False
        #: which worker this process is (0: the only one, or the first)
        self.worker_id = 0
        self.worker_count = 1
        self._children: list[tuple[int, int]] = []  # (pid, command pipe write end)
        self._command_pipe: int | None = None  # a worker > 0 reads console commands here
        self._report_pipe: int | None = None  # a worker > 0 writes its metrics here
        self._report_fds: dict[int, int] = {}  # worker 0: worker id -> read end of its reports
        #: worker 0: each other worker's latest metrics (metrics.render adds them up)
        self.worker_reports: dict[int, list[metrics.Family]] = {}

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
        if svc.role == "upload_tracker":
            return self._start_tracker(svc, listen)
        tls_context: ssl.SSLContext | None = None
        if svc.get("enable_ssl"):
            from perlbal.runtime.tls import TLSConfigError, build_context

            try:
                tls_context = build_context(svc)
            except TLSConfigError as exc:
                return str(exc)
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
        lst = _Listener(svc.name, sock, tls=tls_context, management=svc.role == "management")
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
        self._stop_tracker(svc.name)

    # --- upload_tracker: UDP (runtime/upload_tracker.py) ----------------------------

    def _start_tracker(self, svc: Service, listen: str) -> str | None:
        """Perl's UploadListener: a UDP socket bound at ENABLE, read in the loop."""
        try:
            family, host, port = parse_listen(listen)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
        except (ValueError, OSError) as exc:
            text = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
            return f"Error creating listening socket: IO::Socket::INET: {text}"
        self._stop_tracker(svc.name)
        self.trackers[svc.name] = (sock, None)
        if self._tg is not None:
            self._open_tracker(svc.name)
        return None

    def _open_tracker(self, name: str) -> None:
        from perlbal.runtime.upload_tracker import Tracker

        entry = self.trackers.get(name)
        if entry is None or entry[1] is not None:
            return
        sock = entry[0]

        async def open_endpoint() -> None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(Tracker, sock=sock)
            if self.trackers.get(name, (None, None))[0] is sock:
                self.trackers[name] = (sock, transport)
            else:  # stopped meanwhile
                transport.close()

        assert self._tg is not None
        self._tg.start_soon(open_endpoint)

    def _stop_tracker(self, name: str) -> None:
        entry = self.trackers.pop(name, None)
        if entry is None:
            return
        sock, transport = entry
        if transport is not None:
            transport.close()
        else:
            sock.close()

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

    def handler_for(self, role: str | None) -> "context.Handler | None":
        from perlbal.runtime.clientconn import handler_for

        return handler_for(role)

    def queue_stats(self, service: str) -> tuple[int, int, int, int]:
        """(normal length, its oldest wait, high-priority length, its oldest wait)."""
        from perlbal.runtime.backends import HIGH, NORMAL

        queues = self.backends.state(service).queues
        now = time.time()  # (a waiter's since is wall-clock time, as Perl's)

        def length_and_age(index: int) -> tuple[int, int]:
            queue = queues[index]
            return (len(queue), int(now - queue[0].since)) if queue else (0, 0)

        return (*length_and_age(NORMAL), *length_and_age(HIGH))

    def stats(self) -> queries.LiveStats:
        return self.live

    # --- SERVER workers = N ------------------------------------------------------

    def loop_options(self) -> dict[str, object]:
        """anyio backend options: uvloop when it is installed (optional, never required)."""
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return {}
        return {"use_uvloop": True}

    def start_workers(self) -> int:
        """Fork ``SERVER workers`` - 1 more processes; returns this process's worker id.

        Call once after the config is loaded, before ``serve``.  Every worker
        binds its own socket to each service's address with SO_REUSEPORT, so
        the kernel spreads new connections over them.  Only worker 0 (the
        process that read the config) keeps the management listener: the
        console and its numbers are worker 0's, and every console command it
        runs is passed down a pipe to the other workers and run there too, so
        configuration stays the same in all of them.  Workers die with worker 0.
        """
        raw = self.graph.server.get("workers")
        try:
            count = int(str(raw)) if raw is not None else 1
        except ValueError:
            count = 1
        if count <= 1:
            return 0
        self.worker_count = self.live.worker_count = count
        self.reuse_port = True
        for lst in list(self.listeners.values()):
            if self._is_management(lst):
                continue
            self._rebind(lst)
        for worker in range(1, count):
            read_end, write_end = os.pipe()
            report_read, report_write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                os.close(report_read)
                for _pid, fd in self._children:
                    os.close(fd)
                for fd in self._report_fds.values():
                    os.close(fd)
                self._children = []
                self._report_fds = {}
                self.worker_id = self.live.worker_id = worker
                self._command_pipe = read_end
                self._report_pipe = report_write
                _die_with_parent()
                for name, lst in list(self.listeners.items()):
                    if self._is_management(lst):
                        self.listeners.pop(name)
                        self._close_listener(lst)
                    else:
                        self._rebind(lst)
                return worker
            os.close(read_end)
            os.close(report_write)
            self._children.append((pid, write_end))
            self._report_fds[worker] = report_read
        self._forward_console_commands()
        return 0

    def _is_management(self, lst: _Listener) -> bool:
        svc = self.graph.services.get(lst.service)
        return svc is not None and svc.role == "management"

    def _rebind(self, lst: _Listener) -> None:
        """A fresh SO_REUSEPORT socket on the same address replaces ``lst.sock``."""
        addr = lst.sock.getsockname()
        family = lst.sock.family
        lst.sock.close()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        sock.listen(1024)
        sock.setblocking(False)
        lst.sock = sock

    def _forward_console_commands(self) -> None:
        children = self._children

        def forward(raw: str, file: str, implied: str | None, reply: Reply) -> None:
            # console commands and SIGHUP reload steps reach every worker
            if reply.ok and (file == "<console>" or file.startswith("<reload")) and raw.strip():
                data = raw.strip().encode("utf-8", "replace") + b"\n"
                if implied is not None:
                    # the worker runs everything in one context: name the target
                    data = f"USE {implied}\n".encode("utf-8", "replace") + data
                for _pid, fd in children:
                    try:
                        os.write(fd, data)
                    except OSError:
                        pass

        self.interp.line_observers.append(forward)

    async def _follow_commands(self, fd: int) -> None:
        """Worker > 0: run what worker 0's console ran; end with worker 0."""
        ctx = CommandContext(verbose=False)
        buf = b""
        while True:
            await anyio.wait_readable(fd)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.shutdown(True, 30)
                return
            buf += data
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                try:
                    self.interp.run_line(raw.decode("utf-8", "replace"), ctx)
                except Exception:
                    log.exception("worker %d: forwarded command failed", self.worker_id)

    async def _send_reports(self, fd: int) -> None:
        """Worker > 0: this worker's metrics to worker 0, every REPORT_INTERVAL."""
        while True:
            data = metrics.snapshot(self)
            while data:
                await anyio.wait_writable(fd)
                try:
                    data = data[os.write(fd, data):]
                except BlockingIOError:
                    continue
                except OSError:
                    return  # worker 0 is gone; _follow_commands ends this worker
            await anyio.sleep(REPORT_INTERVAL)

    async def _read_reports(self, worker: int, fd: int) -> None:
        """Worker 0: keep the latest metrics line worker ``worker`` sent."""
        buf = b""
        try:
            while True:
                await anyio.wait_readable(fd)
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    return  # that worker ended
                buf += data
                if b"\n" in buf:
                    *lines, buf = buf.split(b"\n")
                    try:
                        self.worker_reports[worker] = metrics.parse_snapshot(lines[-1])
                    except ValueError:
                        log.warning("worker %d sent unreadable metrics", worker)
        finally:
            self.worker_reports.pop(worker, None)
            self._report_fds.pop(worker, None)
            os.close(fd)

    def _stop_workers(self) -> None:
        for pid, fd in self._children:
            try:
                os.close(fd)
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass

    def reap_workers(self, timeout: float = 10.0) -> None:
        """Worker 0, at the very end: wait for the other workers (kill them after ``timeout``)."""
        deadline = time.monotonic() + timeout
        for pid, _fd in self._children:
            while True:
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                if time.monotonic() > deadline:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                    deadline = time.monotonic() + 5
                time.sleep(0.02)
        self._children = []

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
        return bool(self.listeners or self.trackers)

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
            for name in list(self.trackers):
                self._open_tracker(name)
            if self._command_pipe is not None:
                os.set_blocking(self._command_pipe, False)
                tg.start_soon(self._follow_commands, self._command_pipe)
            if self._report_pipe is not None:
                os.set_blocking(self._report_pipe, False)
                tg.start_soon(self._send_reports, self._report_pipe)
            for worker, fd in list(self._report_fds.items()):
                os.set_blocking(fd, False)
                tg.start_soon(self._read_reports, worker, fd)
            # beyond Perl: active health checks of pools with health_check_uri (runtime.health)
            tg.start_soon(self.backends.health.run, self)
            # beyond Perl: a sample a second for the web UI's live graphs (timeline.py)
            tg.start_soon(timeline.run, self)
            # beyond Perl: pools fed by DNS (dns_name) kept current (dnspools.py)
            tg.start_soon(dnspools.run, self)
            for svc in self._spawn_later:
                self.backends.spawn_backends(svc)
            self._spawn_later.clear()
            for svc in list(self.graph.services.values()):
                # Perl's enable: connect_ahead spares are opened as soon as a service runs
                if svc.enabled and svc.role == "reverse_proxy" and svc.get("connect_ahead", 0):
                    self.backends.spawn_backends(svc)
            await self._shutdown.wait()
            self._stop_workers()
            for lst in list(self.listeners.values()):
                self._close_listener(lst)
            self.listeners.clear()
            for name in list(self.trackers):
                self._stop_tracker(name)
            graceful, timeout = self.shutdown_requested or (False, None)
            self._close_all_parked()  # idle keep-alive clients: nothing in flight
            if graceful:
                with anyio.move_on_after(timeout if timeout else None):
                    while self.active_connections:
                        self._idle = anyio.Event()
                        await self._idle.wait()
                    # a reply handed to a slow client's transport is not sent yet
                    # when its handler returns: ending the loop now would drop the
                    # tail of a download (#15 defect 6)
                    for stream in list(self._flushing):
                        await stream.wait_flushed()
            clients = list(self._client_tasks)
            for task in clients:
                task.cancel()
            tg.cancel_scope.cancel()
        self._tg = None
        if clients:
            await asyncio.wait(clients, timeout=5)
        self._close_all_parked()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.backends.close_all()

    async def _accept_loop(self, lst: _Listener) -> None:
        if lst.closed:
            return
        loop = asyncio.get_running_loop()
        lst.scope = anyio.CancelScope()
        # Clients run as plain asyncio tasks kept in a set, not anyio task-group
        # children: a task-group child costs ~2 KB more per connection (TaskHandle,
        # its Event, a CancelScope with two sets, a wrapper coroutine), which
        # 10,000 idle keep-alive clients pay in full (bench/idle_rss.py).
        # serve() cancels and awaits them on shutdown.
        clients = self._client_tasks
        with lst.scope:
            while True:
                try:
                    sock, _addr = await loop.sock_accept(lst.sock)
                except OSError as exc:
                    if lst.closed or lst.sock.fileno() == -1:
                        return
                    log.warning("accept on %s failed: %s", lst.service, exc)
                    await anyio.sleep(0.05)
                    continue
                live = self.live
                live.accepted[lst.service] = live.accepted.get(lst.service, 0) + 1
                limit = self.max_connections
                opened = self.management_connections if lst.management \
                    else self.limited_connections
                if limit and opened >= limit:
                    live.refused_max_connections += 1
                    if admission.busy():
                        sock.close()
                        continue
                    task = loop.create_task(admission.refuse(sock, lst.tls, limit))
                else:
                    task = loop.create_task(self._run_client(sock, lst.service, lst.tls,
                                                             not lst.management))
                    if lst.management:  # never parked: done when the task is
                        self.management_connections += 1
                        task.add_done_callback(self._management_closed)
                clients.add(task)
                task.add_done_callback(clients.discard)

    def _management_closed(self, _task: "asyncio.Task[None]") -> None:
        self.management_connections -= 1

    @property
    def max_connections(self) -> int:
        """SERVER max_connections (0: no limit on open client connections)."""
        raw = self.graph.server.get("max_connections")
        try:
            return max(0, int(raw)) if raw is not None else 0
        except ValueError:
            return 0

    async def _run_client(self, sock: socket.socket, service_name: str,
                          tls: ssl.SSLContext | None = None, limited: bool = False) -> None:
        from perlbal.runtime.clientconn import serve_client

        self.active_connections += 1
        self.limited_connections += limited
        stream: FastStream | None = None
        park = False
        try:
            svc = self.graph.services.get(service_name)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sndbuf = svc.get("client_sndbuf_size", 0) if svc is not None else 0
            if isinstance(sndbuf, int) and sndbuf > 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            proxied = None
            if svc is not None and svc.get("proxy_protocol", False):
                try:  # before TLS and HTTP: the balancer's header (runtime/proxyproto.py)
                    proxied = (await proxyproto.read_header(
                        sock, svc, str(sock.getpeername()[0]), lambda: self.draining)).client
                except proxyproto.ProxyRefused:
                    return
            if tls is not None:
                timeout = svc.get("idle_timeout", 30) if svc is not None else 30
                try:
                    stream = await wrap_accepted(sock, tls, float(timeout or 60)
                                                 if isinstance(timeout, int) else 60.0)
                except (ssl.SSLError, TimeoutError, ConnectionError):
                    self.live.tls_handshake_failures += 1
                    return
            else:
                stream = await wrap_accepted(sock)
            stream.proxied_peer = proxied
            park = await serve_client(self, stream, service_name)
        except OSError:
            pass
        except Exception:  # isolation: one connection never takes the server down
            log.exception("client connection on %s failed", service_name)
        finally:
            if not (park and stream is not None and self._park(stream, service_name, limited)):
                await self._client_closed(stream, sock, limited)

    async def _resume_client(self, stream: FastStream, service_name: str, limited: bool) -> None:
        """A parked keep-alive client sent something: serve it again."""
        from perlbal.runtime.clientconn import serve_client

        park = False
        try:
            park = await serve_client(self, stream, service_name, resumed=True)
        except OSError:
            pass
        except Exception:
            log.exception("client connection on %s failed", service_name)
        finally:
            if not (park and self._park(stream, service_name, limited)):
                await self._client_closed(stream, None, limited)

    async def _client_closed(self, stream: FastStream | None, sock: socket.socket | None,
                             limited: bool) -> None:
        self.active_connections -= 1
        self.limited_connections -= limited
        if stream is not None:
            await stream.aclose()
            if stream.flushing:
                self._note_flushing(stream)
        elif sock is not None:
            sock.close()
        if self._idle is not None and not self.active_connections:
            self._idle.set()

    def _note_flushing(self, stream: FastStream) -> None:
        flushing = self._flushing
        flushing.add(stream)
        if len(flushing) > self._flushing_prune_at:  # amortized: halves at most each time
            self._flushing = {s for s in flushing if s.flushing}
            self._flushing_prune_at = max(64, 2 * len(self._flushing))

    # --- parked keep-alive clients ----------------------------------------------
    # Between requests an idle keep-alive client holds no task, coroutine frames
    # or timer: its protocol calls _wake when bytes (or EOF) arrive, and one
    # sweeper closes those idle past persist_client_idle_timeout.  Perl's
    # event loop holds idle clients the same way (bench/idle_rss.py).

    def _park(self, stream: FastStream, service_name: str, limited: bool) -> bool:
        if self.draining:
            return False
        svc = self.graph.services.get(service_name)
        raw = svc.get("persist_client_idle_timeout", 30) if svc is not None else 30
        timeout = raw if isinstance(raw, int) and not isinstance(raw, bool) else 30
        deadline = asyncio.get_running_loop().time() + timeout if timeout > 0 else math.inf
        if not stream.park(lambda: self._wake(stream)):
            # something arrived already: serve it rather than park
            self._start_resume(stream, service_name, limited)
            return True
        self._parked[stream] = (service_name, limited, deadline)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_parked())
        return True

    def _wake(self, stream: FastStream) -> None:
        entry = self._parked.pop(stream, None)
        if entry is not None:
            self._start_resume(stream, entry[0], entry[1])

    def _start_resume(self, stream: FastStream, service_name: str, limited: bool) -> None:
        task = asyncio.get_running_loop().create_task(
            self._resume_client(stream, service_name, limited))
        self._client_tasks.add(task)
        task.add_done_callback(self._client_tasks.discard)

    def _close_parked(self, stream: FastStream) -> None:
        entry = self._parked.pop(stream, None)
        if entry is None:
            return
        stream.unpark()
        self.active_connections -= 1
        self.limited_connections -= entry[1]
        stream.abort_quietly()
        if self._idle is not None and not self.active_connections:
            self._idle.set()

    async def _sweep_parked(self) -> None:
        loop = asyncio.get_running_loop()
        while self._parked:
            await asyncio.sleep(1.0)
            now = loop.time()
            for stream, (_name, _limited, deadline) in list(self._parked.items()):
                if deadline <= now:
                    self._close_parked(stream)

    def _close_all_parked(self) -> None:
        for stream in list(self._parked):
            self._close_parked(stream)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when worker 0 dies (prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
