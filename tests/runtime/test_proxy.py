"""Reverse proxy and management console through real sockets on 127.0.0.1.

One server process (``python -m perlbal.runtime.main``) per module carries
several services, so the whole file costs one start-up.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, management, pool, proxy_service
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK
from tests.support.rawhttp import HTTPConnection, request


def send_all(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` and read until the server closes, without half-closing first.

    (Perl's ClientProxy takes a half-close for a disconnect; ours answers a
    complete request whatever follows it: tests/hostile/test_conformance.py.)
    """
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def _dead_port() -> int:
    """A port nobody listens on (bound then closed)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


class Env:
    def __init__(self, server: PyPerlbal, ports: dict[str, int], b1: Backend, b2: Backend) -> None:
        self.server = server
        self.ports = ports
        self.b1 = b1
        self.b2 = b2


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    # every listener on port 0: the server reports what it got (server.ports)
    dead = _dead_port()
    with Backend("b1") as b1, Backend("b2") as b2:
        conf = (pool("one", [b1]) + pool("two", [b2]) + pool("mixedpool", [dead, b2])
                + pool("deadpool", [dead]) + pool("emptypool")
                + management(ANY_PORT)
                + proxy_service("plain", ANY_PORT, "one")
                + proxy_service("persist", ANY_PORT, "two", extra=PERSIST)
                + proxy_service("trusted", ANY_PORT, "one",
                                extra=["SET trusted_upstream_proxies = 127.0.0.0/8"])
                + proxy_service("mixed", ANY_PORT, "mixedpool")
                + proxy_service("dead", ANY_PORT, "deadpool", extra=["SET idle_timeout = 2"])
                + proxy_service("empty", ANY_PORT, "emptypool"))
        with PyPerlbal(conf) as server:
            yield Env(server, server.ports, b1, b2)


def _echo(body: bytes) -> dict[str, object]:
    data = json.loads(body)
    assert isinstance(data, dict)
    return data


def test_get_reaches_backend_with_http10_and_forwarded_for(env: Env) -> None:
    resp = request(env.ports["plain"], "GET", "/hello?x=1")
    assert resp.status == 200
    assert resp.version == "HTTP/1.0"
    echo = _echo(resp.body)
    assert echo["target"] == "/hello?x=1"
    assert echo["version"] == "HTTP/1.0"
    headers = dict((k, v) for k, v in echo["headers"])  # type: ignore[misc, union-attr]
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["Connection"] == "close"
    # persist_client is off: the client is told to close
    assert resp.header("Connection") == "close"


def test_post_body_streams_to_backend(env: Env) -> None:
    body = b"x" * 300_000
    resp = request(env.ports["plain"], "POST", "/upload", body=body)
    assert resp.status == 200
    echo = _echo(resp.body)
    assert echo["method"] == "POST"
    assert env.b1.requests("POST")[-1].body == body


def test_chunked_upload_is_sent_with_content_length(env: Env) -> None:
    raw = (b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    out = send_all(env.ports["plain"], raw)
    assert out.startswith(b"HTTP/1.0 200 ")
    last = env.b1.requests("POST")[-1]
    assert last.body == b"hello world"
    assert last.header("Content-Length") == "11"
    assert last.header("Transfer-Encoding") is None


def test_persist_backend_reuses_one_backend_connection(env: Env) -> None:
    with HTTPConnection(env.ports["persist"]) as conn:
        seen = []
        for _ in range(4):
            resp = conn.request("GET", "/k")
            assert resp.status == 200
            assert resp.header("Connection") == "keep-alive"
            seen.append((resp.header("X-Backend-Conn"), resp.header("X-Backend-Req")))
    assert len({c for c, _ in seen}) == 1
    assert [int(r or 0) for _, r in seen] == sorted(int(r or 0) for _, r in seen)
    # a fresh client connection still gets the parked backend connection
    resp = request(env.ports["persist"], "GET", "/again")
    assert resp.header("X-Backend-Conn") == seen[0][0]


def test_pipelined_requests_answered_in_order(env: Env) -> None:
    raw = b"".join(f"GET /p{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(3))
    raw += b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = send_all(env.ports["persist"], raw)
    targets = [json.loads(part.split(b"\r\n\r\n", 1)[1][: part.split(b"\r\n\r\n", 1)[1].index(b"}") + 1])
               ["target"] for part in out.split(b"HTTP/1.0 200 OK\r\n")[1:]]
    assert targets == ["/p0", "/p1", "/p2", "/last"]


def test_forwarded_for_untrusted_replaced_trusted_appended(env: Env) -> None:
    spoof = [("X-Forwarded-For", "6.6.6.6"), ("X-Host", "evil")]
    echo = _echo(request(env.ports["plain"], "GET", "/", spoof).body)
    headers = {k: v for k, v in echo["headers"]}  # type: ignore[misc, union-attr]
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert "X-Host" not in headers
    echo = _echo(request(env.ports["trusted"], "GET", "/", spoof).body)
    headers = {k: v for k, v in echo["headers"]}  # type: ignore[misc, union-attr]
    assert headers["X-Forwarded-For"] == "6.6.6.6, 127.0.0.1"
    assert headers["X-Host"] == "evil"


def test_down_node_is_skipped(env: Env) -> None:
    for _ in range(6):
        resp = request(env.ports["mixed"], "GET", "/m")
        assert resp.status == 200
        assert resp.header("X-Backend-Name") == "b2"


def test_no_reachable_node_gives_perl_503(env: Env) -> None:
    for port in (env.ports["dead"], env.ports["empty"]):
        out = send_all(port, b"GET / HTTP/1.0\r\n\r\n")
        assert out == (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\n"
                       b"Content-Length: 35\r\nServer: Perlbal\r\nConnection: close\r\n\r\n"
                       b"<h1>503 - Service Unavailable</h1>\n")


def test_console_commands_and_live_pool_add(env: Env) -> None:
    with console(LOOPBACK, env.ports["mgmt"]) as con:
        assert con.command("create pool fresh") == ["OK"]
        assert con.command(f"pool fresh add {env.b1.address}") == ["OK"]
        assert con.command("show pool fresh") == [f"{env.b1.address} 0", "."]
        assert con.command("set empty.pool = fresh") == ["OK"]
        resp = request(env.ports["empty"], "GET", "/now")
        assert resp.status == 200 and resp.header("X-Backend-Name") == "b1"
        assert con.command("show pool fresh") == [f"{env.b1.address} 1", "."]
        assert con.command("set empty.pool = emptypool") == ["OK"]
        assert request(env.ports["empty"], "GET", "/").status == 503
        assert con.command(f"pool emptypool add {env.b2.address}") == ["OK"]
        resp = request(env.ports["empty"], "GET", "/")
        assert resp.status == 200 and resp.header("X-Backend-Name") == "b2"
        assert con.command(f"pool emptypool remove {env.b2.address}") == ["OK"]


def test_console_overlong_line_is_refused(env: Env) -> None:
    with socket.create_connection((LOOPBACK, env.ports["mgmt"]), timeout=5) as sock:
        try:
            sock.sendall(b"x" * (1024 * 1024))
        except OSError:
            pass
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"ERROR")


def test_management_http_is_read_only(env: Env) -> None:
    resp = request(env.ports["mgmt"], "GET", "/json")
    assert resp.status == 200
    data = json.loads(resp.body)
    assert "plain" in data["services"]
    before = data["pools"]
    resp = request(env.ports["mgmt"], "POST", "/", body=b"create pool sneaky")
    assert resp.status == 200
    after = json.loads(request(env.ports["mgmt"], "GET", "/json").body)["pools"]
    assert "sneaky" not in after and set(before) <= set(after)
