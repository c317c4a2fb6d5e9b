"""Listening sockets: one per enabled, listening service (Perl's TCPListener, UploadListener).

``Listeners.start`` binds synchronously, so a console ``ENABLE`` or
``SET listen`` answers with Perl's error text at once; the socket is then
served by the accept loop (``clients.py``) in the runtime's task group, or,
before ``Runtime.serve`` has started, as soon as it starts.

Invariants:
- one ``Listener`` per enabled, listening service name; its accept loop runs
  in its own cancel scope, so ``stop`` stops accepting while open
  connections finish on their own;
- a listener of an ``enable_ssl`` service carries its ``SSLContext``
  (``tls.py``, built at bind time so ENABLE reports a bad certificate);
- an ``upload_tracker`` service binds a UDP socket instead, read by
  ``upload_tracker.serve_datagrams`` in a cancel scope of its own;
- with the environment variable ``PERLBAL_PORTS_FILE`` set, the address each
  listener got (``listen = 127.0.0.1:0`` binds a port the kernel chooses) is
  written there as JSON once the server runs, and again after each change
  (``report_ports``; docs/operating.md);
- with SERVER workers (``workers.py``) the supervisor binds every socket and
  accepts only on the management ones; the workers inherit the client
  listeners by fork and accept on those (``serves``), one shared accept
  queue per address.  ``generation`` counts the changes to client
  listeners: the supervisor starts a new generation of workers on one;
- a SIGHUP reload binds what it needs before it changes anything
  (``bind``, ``reload.py``) and leaves the sockets in ``prepared``: ``start``
  takes a prepared socket (and TLS context) for its service and address
  instead of binding, so applying a prepared reload cannot fail on a port.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from perlbal.graph import Service

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["Listener", "Listeners", "Prepared", "parse_listen"]


log = logging.getLogger("perlbal")

#: where the bound addresses are reported (docs/operating.md, "Port 0")
PORTS_FILE_ENV = "PERLBAL_PORTS_FILE"


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
class Listener:
    service: str
    sock: socket.socket
    scope: anyio.CancelScope | None = None  # created inside the event loop
    closed: bool = False
    tls: ssl.SSLContext | None = None  # enable_ssl: accepted sockets are wrapped (tls.py)
    management: bool = False  # counted on its own max_connections budget
    #: ``tls.digest`` of what ``tls`` was built from (a reload renews it when it differs)
    tls_digest: str = ""


@dataclass
class Prepared:
    """A socket (and TLS context) a reload bound for a service before applying anything."""

    listen: str
    sock: socket.socket
    tls: ssl.SSLContext | None = None
    tls_digest: str = ""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Listeners:
    """The runtime's listening sockets, TCP and (upload_tracker) UDP."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self.open: dict[str, Listener] = {}
        #: upload_tracker services: name -> (UDP socket, its reader's scope once the loop runs)
        self.trackers: dict[str, tuple[socket.socket, anyio.CancelScope | None]] = {}
        self._not_started: list[Listener] = []
        self._tg: TaskGroup | None = None
        #: bumped at every start or stop of a client (non-management) listener
        self.generation = 0
        #: service name -> what a reload bound for it, taken by ``start`` (reload.py)
        self.prepared: dict[str, Prepared] = {}
        #: the last report written to $PERLBAL_PORTS_FILE (the same one is not written again)
        self._reported: str | None = None

    def bind(self, svc: Service, listen: str) -> socket.socket | str:
        """A bound, listening socket for ``svc`` on ``listen`` (UDP for an
        upload_tracker), or Perl's error reason."""
        if svc.role == "upload_tracker":
            return _bind_udp(listen)
        try:
            family, host, port = parse_listen(listen)
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (ValueError, OSError) as exc:
            return f"Error creating listening socket: {exc}"
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        return sock

    def start(self, svc: Service) -> str | None:
        """Bind ``svc``'s listener (or take the one a reload prepared); Perl's error
        reason on failure."""
        listen = svc.listen
        if listen is None or self.runtime.workers.role == "worker":
            # a worker never binds: the supervisor owns every socket, and a change
            # to a client listener gives a new generation of workers (workers.py)
            return None
        prepared = self.prepared.pop(svc.name, None)
        if prepared is not None and prepared.listen != listen:
            prepared.close()
            prepared = None
        if svc.role == "upload_tracker":
            return self._start_tracker(svc, listen, prepared)
        tls_context: ssl.SSLContext | None = None
        tls_digest = ""
        if prepared is not None:
            tls_context, tls_digest = prepared.tls, prepared.tls_digest
        elif svc.tunables.enable_ssl:
            from perlbal.runtime.tls import TLSConfigError, build_context, digest, read_material

            try:
                material = read_material(svc)
                tls_context = build_context(svc, material)
                tls_digest = digest(svc, material)
            except TLSConfigError as exc:
                from perlbal.commands import ssl_enable_error

                return ssl_enable_error(svc, os.path.isfile) or str(exc)
        bound = prepared.sock if prepared is not None else self.bind(svc, listen)
        if isinstance(bound, str):
            return bound
        sock = bound
        old = self.open.pop(svc.name, None)
        if old is not None:
            self.close(old)
        lst = Listener(svc.name, sock, tls=tls_context, management=svc.role == "management",
                       tls_digest=tls_digest)
        self.open[svc.name] = lst
        if not lst.management:
            self.generation += 1
        if self._tg is None:
            self._not_started.append(lst)
        elif self.serves(lst):
            self._tg.start_soon(self.runtime.clients.accept_loop, lst)
        if self._tg is not None:
            self.report_ports()
        return None

    def stop(self, svc: Service) -> None:
        lst = self.open.pop(svc.name, None)
        if lst is not None:
            if not lst.management:
                self.generation += 1
            self.close(lst)
        if self._stop_tracker(svc.name) or lst is not None:
            self.report_ports()

    def serves(self, lst: Listener) -> bool:
        """Does this process accept on ``lst``?  The single process: all of them;
        with SERVER workers the supervisor the management ones, a worker the others."""
        role = self.runtime.workers.role
        if role == "single":
            return True
        return lst.management == (role == "supervisor")

    def close(self, lst: Listener) -> None:
        lst.closed = True
        if lst.scope is not None:
            lst.scope.cancel()
        if lst in self._not_started:
            self._not_started.remove(lst)
        try:
            lst.sock.close()
        except OSError:
            pass

    def any(self) -> bool:
        return bool(self.open or self.trackers)

    def begin(self, tg: TaskGroup) -> None:
        """``Runtime.serve`` started: serve what was bound before."""
        self._tg = tg
        for lst in self._not_started:
            if self.serves(lst):
                tg.start_soon(self.runtime.clients.accept_loop, lst)
        self._not_started.clear()
        for name in list(self.trackers):
            self._open_tracker(name)
        self.report_ports()

    def close_all(self, graceful: bool = False) -> None:
        """Close every listener; ``graceful``: first serve the connections
        already waiting in each one's backlog (``Clients.drain_backlog``)."""
        for lst in list(self.open.values()):
            if graceful and self._tg is not None and self.serves(lst):
                self.runtime.clients.drain_backlog(lst)
            self.close(lst)
        self.open.clear()
        for name in list(self.trackers):
            self._stop_tracker(name)

    def end(self) -> None:
        self._tg = None

    # --- SERVER workers ----------------------------------------------------------

    def forget_supervisor_sockets(self) -> None:
        """A new worker (workerside.py): the management listeners and upload trackers
        are the supervisor's (their sockets are already closed here); the client
        listeners are served by this worker's own loop once it runs."""
        for name, lst in list(self.open.items()):
            lst.scope = None  # a scope of the supervisor's loop
            if lst.management:
                del self.open[name]
        self.trackers.clear()
        self._not_started = list(self.open.values())
        self._tg = None

    # --- upload_tracker: UDP (runtime/upload_tracker.py) ----------------------------

    def _start_tracker(self, svc: Service, listen: str,
                       prepared: Prepared | None) -> str | None:
        """Perl's UploadListener: a UDP socket bound at ENABLE, read in the loop."""
        bound = prepared.sock if prepared is not None else _bind_udp(listen)
        if isinstance(bound, str):
            return bound
        sock = bound
        self._stop_tracker(svc.name)
        self.trackers[svc.name] = (sock, None)
        if self._tg is not None:
            self._open_tracker(svc.name)
            self.report_ports()
        return None

    def _open_tracker(self, name: str) -> None:
        from perlbal.runtime.upload_tracker import serve_datagrams

        entry = self.trackers.get(name)
        if entry is None or entry[1] is not None or self._tg is None:
            return
        sock, scope = entry[0], anyio.CancelScope()
        self.trackers[name] = (sock, scope)

        heard = self.runtime.workers.upload_heard if self.runtime.workers.supervising else None

        async def read() -> None:
            with scope:
                await serve_datagrams(sock, heard)

        self._tg.start_soon(read)

    def _stop_tracker(self, name: str) -> bool:
        entry = self.trackers.pop(name, None)
        if entry is None:
            return False
        sock, scope = entry
        if scope is not None:
            scope.cancel()
        sock.close()
        return True

    # --- PERLBAL_PORTS_FILE: the addresses bound, for whoever started us -------------

    def bound(self) -> dict[str, dict[str, str | int]]:
        """Each listening service's address as bound (a ``:0`` port resolved)."""
        out: dict[str, dict[str, str | int]] = {}
        sockets = [(name, lst.sock, "tcp") for name, lst in self.open.items() if not lst.closed]
        sockets += [(name, sock, "udp") for name, (sock, _) in self.trackers.items()]
        for name, sock, transport in sockets:
            try:
                host, port = sock.getsockname()[:2]
            except OSError:
                continue
            out[name] = {"host": host, "port": port, "transport": transport}
        return out

    def report_ports(self) -> None:
        """Write :meth:`bound` to $PERLBAL_PORTS_FILE (atomically: a reader sees the
        old list or the new one); a worker binds nothing and writes nothing."""
        path = os.environ.get(PORTS_FILE_ENV)
        if not path or self.runtime.workers.role == "worker":
            return
        text = json.dumps({"pid": os.getpid(), "services": self.bound()}, sort_keys=True)
        if text == self._reported:
            return  # (the first report is written before SERVER user drops root)
        self._reported = text
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
            os.replace(path + ".tmp", path)
        except OSError as exc:
            log.error("can't write the bound ports to %s=%s: %s", PORTS_FILE_ENV, path,
                      exc.strerror or exc)


def _bind_udp(listen: str) -> socket.socket | str:
    sock: socket.socket | None = None
    try:
        family, host, port = parse_listen(listen)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except (ValueError, OSError) as exc:
        if sock is not None:
            sock.close()
        text = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        return f"Error creating listening socket: IO::Socket::INET: {text}"
    return sock
