"""Issue 24 item 2: ``Upgrade: h2c`` must not open a tunnel past routing and plugins.

The attack, through the real server to a real Hypercorn (which accepts h2c
upgrades by default), with a real HTTP/2 client (the ``h2`` package): a
selector sends ``^/admin`` to a service whose AccessControl denies everything
and the rest to a service that removes ``X-Secret``.  The client asks
``GET /x`` to switch to h2c; had we relayed the 101, an HTTP/2 stream for
``/admin/users`` carrying ``x-secret`` would reach the backend unrouted and
unfiltered.  Now h2c is never relayed: the upgrade fields are dropped, the
request is an ordinary one, and the HTTP/2 preface that follows is refused
(505).  WebSocket (``upgrade_protocols``' default) keeps working with the
``websockets`` library; a protocol not listed is an ordinary request; and a
backend's 101 switching to a protocol we did not offer gets the client 502.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

h2_connection = pytest.importorskip("h2.connection")
h2_config = pytest.importorskip("h2.config")
h2_events = pytest.importorskip("h2.events")
pytest.importorskip("hypercorn")
websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402

from tests.support.configs import pool, proxy_service, service  # noqa: E402
from tests.support.hypercorn_backend import HypercornBackend  # noqa: E402
from tests.support.ports import LOOPBACK, free_ports  # noqa: E402
from tests.support.pyserver import PyPerlbal  # noqa: E402
from tests.support.threadserver import ThreadedServer  # noqa: E402


_WS_REQUEST = (b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@dataclass
class Stack:
    front: int  # the selector (VPATH ^/admin = admin, .* = app)
    listed: int  # a reverse_proxy whose upgrade_protocols names h2c and websocket
    other: int  # a reverse_proxy relaying only "foo"
    backend: HypercornBackend
    server: PyPerlbal


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    front, listed, other = free_ports(3)
    with HypercornBackend() as backend:
        config = ("LOAD vpaths\nLOAD AccessControl\n"
                  + pool("hyper", [backend.port])
                  + service("admin", "reverse_proxy", pool="hyper", extra=[
                      "SET plugins = AccessControl", "ACCESS POLICY DENY"])
                  + service("app", "reverse_proxy", pool="hyper", extra=[
                      "HEADER app REMOVE X-Secret"])
                  + service("front", "selector", listen=front, extra=[
                      "SET plugins = vpaths", "SET persist_client = on",
                      "VPATH ^/admin = admin", "VPATH .* = app"])
                  + proxy_service("listed", listed, "hyper", extra=[
                      "SET upgrade_protocols = h2c, WebSocket"])
                  + proxy_service("other", other, "hyper", extra=[
                      "SET upgrade_protocols = foo"]))
        with PyPerlbal(config) as server:
            yield Stack(front, listed, other, backend, server)


def _read_head(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a reply head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _h2c_attack(port: int) -> tuple[bytes, bytes]:
    """The issue's reproduction: ``GET /x`` asking for h2c, then an HTTP/2
    stream for /admin/users on the same connection.  Returns the reply head to
    the upgrade request and whatever came back after it (HTTP/2 frames if the
    proxy tunnelled, else our HTTP/1 answer to the preface)."""
    client = h2_connection.H2Connection(
        config=h2_config.H2Configuration(client_side=True, header_encoding="utf-8"))
    settings = client.initiate_upgrade_connection()
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.1\r\nHost: app.example\r\n"
                     b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     b"HTTP2-Settings: " + settings + b"\r\n\r\n")
        head, rest = _read_head(sock)
        switched = head.split(b"\r\n", 1)[0].split(b" ")[1] == b"101"
        if not switched:  # the ordinary reply's body ("ok", Content-Length: 2)
            while len(rest) < 2:
                rest += sock.recv(65536)
            rest = rest[2:]
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, [
            (":method", "GET"), (":path", "/admin/users"), (":scheme", "http"),
            (":authority", "app.example"), ("x-forwarded-for", "10.0.0.1"),
            ("x-secret", "smuggled")], end_stream=True)
        try:
            sock.sendall(client.data_to_send())
        except OSError:
            return head, rest  # the proxy had closed: nothing more went anywhere
        after = rest
        if switched:
            events = client.receive_data(rest) if rest else []
            while not any(isinstance(e, (h2_events.StreamEnded, h2_events.StreamReset,
                                         h2_events.ConnectionTerminated))
                          and getattr(e, "stream_id", stream) == stream for e in events):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                after += chunk
                events = client.receive_data(chunk)
                sock.sendall(client.data_to_send())
            return head, after
        try:
            while chunk := sock.recv(65536):  # our answer to the HTTP/2 preface, then close
                after += chunk
        except ConnectionResetError:
            pass  # (a proxy that had closed after its reply resets the late bytes)
        return head, after


def test_h2c_upgrade_is_not_tunnelled_past_routing_and_plugins(stack: Stack) -> None:
    before = len(stack.backend.seen)
    head, after = _h2c_attack(stack.front)
    seen = stack.backend.seen[before:]
    smuggled = [s for s in seen if s.path.startswith("/admin") or s.header("x-secret")]
    assert not smuggled, f"the HTTP/2 stream reached the backend: {smuggled}"
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.0 200 OK", head
    # the upgrade request went on as an ordinary one: HTTP/1.0, no upgrade fields
    assert [(s.http_version, s.method, s.path) for s in seen] == [("1.0", "GET", "/x")]
    names = {name for name, _ in seen[0].headers}
    assert not names & {"upgrade", "http2-settings"}, seen[0].headers
    assert seen[0].header("connection") == "close"
    # and the HTTP/2 preface that followed was refused as HTTP/1 ("PRI * HTTP/2.0")
    assert after.startswith(b"HTTP/1.0 505 ") and after.endswith(b"HTTP version not supported"), after


def test_h2c_is_never_relayed_even_when_listed(stack: Stack) -> None:
    before = len(stack.backend.seen)
    head, _after = _h2c_attack(stack.listed)
    seen = stack.backend.seen[before:]
    assert head.startswith(b"HTTP/1.0 200 OK\r\n"), head
    assert [(s.http_version, s.path) for s in seen] == [("1.0", "/x")]
    assert seen[0].header("upgrade") is None and seen[0].header("http2-settings") is None


def test_the_routing_and_plugins_hold_for_plain_requests(stack: Stack) -> None:
    """The control: without the tunnel, /admin is denied and X-Secret removed."""
    before = len(stack.backend.seen)
    with socket.create_connection((LOOPBACK, stack.front), timeout=10) as sock:
        sock.sendall(b"GET /admin/users HTTP/1.0\r\nX-Secret: s\r\n\r\n")
        head, _ = _read_head(sock)
    assert b" 403 " in head.split(b"\r\n", 1)[0], head
    with socket.create_connection((LOOPBACK, stack.front), timeout=10) as sock:
        sock.sendall(b"GET /y HTTP/1.0\r\nX-Secret: s\r\n\r\n")
        _read_head(sock)
    seen = stack.backend.seen[before:]
    assert [(s.path, s.header("x-secret")) for s in seen] == [("/y", None)]


def test_websocket_still_relayed_through_the_selector(stack: Stack) -> None:
    async def talk(port: int) -> str:
        async with connect(f"ws://{LOOPBACK}:{port}/chat") as ws:
            await ws.send("hello")
            return str(await ws.recv())

    assert asyncio.run(talk(stack.front)) == "hello"
    assert asyncio.run(talk(stack.listed)) == "hello"  # (listed as "WebSocket": any case)


def test_an_unlisted_protocol_is_an_ordinary_request(stack: Stack) -> None:
    # (raw: the websockets client refuses our HTTP/1.0 status line outright)
    before = len(stack.backend.seen)
    with socket.create_connection((LOOPBACK, stack.other), timeout=10) as sock:
        sock.sendall(_WS_REQUEST)
        head, _ = _read_head(sock)
    assert head.startswith(b"HTTP/1.0 200 OK\r\n"), head  # Hypercorn's answer to a plain GET
    seen = stack.backend.seen[before:]
    assert [(s.http_version, s.path, s.header("upgrade")) for s in seen] == [("1.0", "/ws", None)]


class _Switcher(ThreadedServer):
    """A backend that answers every request with ``reply`` (a 101 of our
    choosing) and records the request heads it read."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                head, _ = _read_head(conn)
            except (AssertionError, OSError):
                return
            self.heads.append(head)
            conn.sendall(self.reply)
            try:
                while conn.recv(65536):  # until the proxy lets go
                    pass
            except OSError:
                pass


def _through(reply: bytes, request: bytes) -> tuple[bytes, list[bytes], str]:
    """``request`` through a proxy to a backend answering ``reply``: (what the
    client got, the heads the backend read, our server's log)."""
    port, = free_ports(1)
    with _Switcher(reply) as backend:
        with PyPerlbal(pool("p", [backend.port]) + proxy_service("px", port, "p")) as server:
            with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
                sock.sendall(request)
                got = b""
                while chunk := sock.recv(65536):
                    got += chunk
            out, err = server.output()
    return got, backend.heads, out + err


def test_only_the_listed_protocols_are_offered_and_a_switch_to_another_gets_502() -> None:
    got, heads, log = _through(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                               b"Connection: Upgrade\r\n\r\n\x00\x00\x00\x04", _WS_REQUEST)
    assert b"\r\nUpgrade: websocket\r\n" in heads[0] + b"\r\n", heads  # h2c taken off the offer
    assert got.startswith(b"HTTP/1.0 502 "), got
    assert b"switched to a protocol this proxy does not relay" in got
    assert "101 Switching Protocols to 'h2c', which was not offered (offered: websocket)" in log


def test_a_101_to_a_request_offered_no_upgrade_gets_502() -> None:
    request = (b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
               b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    got, heads, log = _through(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n"
                               b"Connection: Upgrade\r\n\r\n", request)
    assert heads[0].startswith(b"GET /x HTTP/1.0\r\n") and b"pgrade" not in heads[0].split(
        b"\r\n", 1)[1].replace(b"Connection: close", b""), heads
    assert got.startswith(b"HTTP/1.0 502 "), got
    assert "101 Switching Protocols to a request that was not offered an upgrade" in log


def test_dumpconfig_omits_the_defaults_and_keeps_other_values() -> None:
    """upgrade_protocols (a list of ours) compares with its default, unlike
    Perl's own lists; forwarded_headers (item 10) likewise."""
    from perlbal.interp import CommandContext, Interpreter

    def dump(*lines: str) -> list[str]:
        it = Interpreter()
        ctx = CommandContext()
        for line in (pool("p", [8001]) + proxy_service("px", 8080, "p", extra=lines)).splitlines():
            it.run_line(line, ctx)
        return [line.strip() for line in it.run_line("dumpconfig", ctx)]

    plain = dump()
    assert not [line for line in plain if "upgrade_protocols" in line or "forwarded_headers" in line]
    changed = dump("SET upgrade_protocols = websocket foo", "SET forwarded_headers = PERL")
    assert "SET upgrade_protocols = websocket, foo" in changed, changed
    assert "SET forwarded_headers = perl" in changed


def test_http_itself_is_never_relayed_even_when_listed() -> None:
    from perlbal.http.head import RequestHead
    from perlbal.http.upgrade import relayed_protocols

    def offer(value: str) -> tuple[str, ...]:
        head = RequestHead("GET", "/", (1, 1), (("Host", "h"), ("Connection", "upgrade"),
                                                ("Upgrade", value)), None, False)
        return relayed_protocols(head, ["h2c", "HTTP", "h2", "WebSocket", "irc/6.9"])

    assert offer("h2c, HTTP/2.0, h2, websocket/13, IRC/6.9, irc/7") == ("websocket/13", "IRC/6.9")
