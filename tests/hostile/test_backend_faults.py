"""Backend faults (RFC 9110 §9.2.2 for retries): a POST is never sent twice, a
pooled connection closed by the backend as it is reused is retried once for a
GET, oversized or extra reply bytes are never served, truncated bodies close
the client.  Each case uses a scripted backend and checks the next request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.configs import PERSIST, pool, proxy_config, proxy_service
from tests.support.pyserver import PyPerlbal
from tests.support.scripted_backend import OK, Script, _reset, _send
from tests.support.ports import free_ports
from tests.support.rawhttp import HTTPConnection, request

@pytest.fixture
def proxy_for() -> Iterator[Callable[[Script], int]]:
    started: list[tuple[Script, PyPerlbal]] = []

    def start(script: Script) -> int:
        (port,) = free_ports(1)
        server = PyPerlbal(proxy_config(port, [script.port], extra=(
            *PERSIST, "SET backend_response_timeout = 3")))
        server.start()
        started.append((script, server))
        return port

    yield start
    for script, server in started:
        server.stop()
        script.close()


def test_post_reset_before_reply_is_never_sent_twice(proxy_for: Callable[[Script], int]) -> None:
    script = Script([_reset])
    port = proxy_for(script)
    got = request(port, "POST", "/pay", [("Host", "x")], b"amount=100")
    assert got.status == 502
    time.sleep(0.3)
    assert [s for s in script.seen if s.startswith(b"POST")] == [b"POST /pay HTTP/1.0"]
    assert request(port, "GET", "/next", [("Host", "x")]).status == 200


def test_pooled_connection_closed_on_reuse_retries_a_get_once(
        proxy_for: Callable[[Script], int]) -> None:
    # first reply keeps the connection, then the backend closes it while idle
    script = Script([_send(OK), _reset])
    port = proxy_for(script)
    assert request(port, "GET", "/one", [("Host", "x")]).body == b"ok"
    got = request(port, "GET", "/two", [("Host", "x")])
    assert got.status == 200 and got.body == b"ok"
    assert script.seen.count(b"GET /two HTTP/1.0") == 2  # retried exactly once
    assert script.connections == 2


def test_oversized_reply_head_is_refused(proxy_for: Callable[[Script], int]) -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 300_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    script = Script([_send(huge, close=True)])
    port = proxy_for(script)
    got = request(port, "GET", "/big", [("Host", "x")])
    assert got.status == 502
    assert b"a" * 1000 not in got.body
    assert request(port, "GET", "/next", [("Host", "x")]).status == 200


def test_extra_bytes_after_a_reply_are_never_served(proxy_for: Callable[[Script], int]) -> None:
    smuggled = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhijack!"
    script = Script([_send(smuggled)])
    port = proxy_for(script)
    with HTTPConnection(port) as conn:
        first = conn.request("GET", "/a", [("Host", "x")])
        second = conn.request("GET", "/b", [("Host", "x")])
    assert first.body == b"ok"
    assert second.body == b"ok" and b"hijack" not in second.body
    assert script.connections == 2  # the connection with extra bytes was not reused


def test_truncated_body_closes_the_client(proxy_for: Callable[[Script], int]) -> None:
    short = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!"
    script = Script([_send(short, close=True)])
    port = proxy_for(script)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"only ten!!")
    assert request(port, "GET", "/next", [("Host", "x")]).status == 200


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 abc Broken\r\n\r\n", b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
], ids=["bad-status", "not-http", "cl-and-te", "negative-cl"])
def test_malformed_replies_give_502(proxy_for: Callable[[Script], int], reply: bytes) -> None:
    script = Script([_send(reply, close=True)])
    port = proxy_for(script)
    assert request(port, "GET", "/m", [("Host", "x")]).status == 502
    assert request(port, "GET", "/next", [("Host", "x")]).status == 200


def test_each_fault_is_logged_once_with_enough_to_find_it() -> None:
    dead = free_ports(1)[0]  # nothing listens: the node is down for the whole test
    script = Script([_send(b"NOT HTTP AT ALL\r\n\r\n", close=True)])
    port, port2 = free_ports(2)
    server = PyPerlbal(pool("broken", [script.port]) + pool("down", [dead])
                       + proxy_service("garbage", port, "broken")
                       + proxy_service("gone", port2, "down", extra=["SET idle_timeout = 2"]))
    try:
        with server:
            assert request(port, "GET", "/bad?x=1", [("Host", "x")]).status == 502
            for _ in range(3):
                assert request(port2, "GET", "/d", [("Host", "x")], timeout=10).status == 503
            time.sleep(0.3)
            _out, err = server.output()
    finally:
        script.close()
    faults = [ln for ln in err.splitlines() if "gets 502" in ln]
    assert len(faults) == 1, err
    assert f"127.0.0.1:{script.port}" in faults[0] and "service garbage" in faults[0]
    assert "GET /bad?x=1" in faults[0]
    outages = [ln for ln in err.splitlines() if "unreachable" in ln]
    assert len(outages) == 1, err  # one line per outage, not one per retry
    assert f"127.0.0.1:{dead}" in outages[0]
