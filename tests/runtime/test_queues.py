"""Backend queues, spares, retries and faults through real sockets (one server per module).

- queue order: backends are made one at a time (verify_backend with a slow
  OPTIONS reply), so waiting clients are served strictly by queue, and a
  high_priority_cookie request overtakes a normal one that came earlier;
- connect_ahead spares show in ``show service``;
- enable_error_retries hides 500s while the schedule lasts;
- a client whose connection is reset while its backend thinks frees that
  backend at once (a FIN is a half-close: the request is still answered,
  tests/hostile/test_conformance.py);
- garbage and resets from a backend give 502 and that connection is never reused;
- no descriptor leak after a burst of normal and aborted requests.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import management, pool, proxy_service
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK
from tests.support.rawhttp import HTTPConnection, request
from tests.support.threadserver import ThreadedServer


class RawBackend(ThreadedServer):
    """Accepts connections; ``behaviour`` decides what each does after reading a head."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.eof_seen: list[float] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            if self.behaviour == "garbage":
                conn.sendall(b"HTTP/1.1 ok-ish\r\nthis is not a header\r\n\r\n")
            elif self.behaviour == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            elif self.behaviour == "think":
                conn.settimeout(10)
                try:
                    while conn.recv(65536):
                        pass
                except OSError:
                    pass
                self.eof_seen.append(time.monotonic())


class Env:
    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.server: PyPerlbal | None = None


_OPTIONS_DELAY = 0.4


def _slow_options(req: ReceivedRequest) -> BackendReply | None:
    if req.method == "OPTIONS":
        time.sleep(_OPTIONS_DELAY)
    return None


_fail_counter = {"n": 0}


def _fails_twice(req: ReceivedRequest) -> BackendReply | None:
    if req.target == "/flaky":
        _fail_counter["n"] += 1
        if _fail_counter["n"] <= 2:
            return BackendReply(status=500, reason="Oops", body=b"no")
    if req.target == "/always500":
        return BackendReply(status=500, reason="Oops", body=b"no")
    return None


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = Env()
    think, garbage, reset = RawBackend("think"), RawBackend("garbage"), RawBackend("reset")
    with Backend("slowverify", handler=_slow_options) as slow, \
            Backend("spare") as spare, Backend("flaky", handler=_fails_twice) as flaky:
        e.slow, e.spare, e.flaky = slow, spare, flaky  # type: ignore[attr-defined]
        e.think, e.garbage, e.reset = think, garbage, reset  # type: ignore[attr-defined]
        conf = (pool("slowpool", [slow]) + pool("sparepool", [spare])
                + pool("flakypool", [flaky]) + pool("thinkpool", [think.port])
                + pool("garbagepool", [garbage.port]) + pool("resetpool", [reset.port])
                + management(ANY_PORT)
                + proxy_service("queue", ANY_PORT, "slowpool", extra=[
                    "SET verify_backend = on", "SET high_priority_cookie = vip",
                    "SET high_priority_cookie_contents = yes"])
                + proxy_service("ahead", ANY_PORT, "sparepool", extra=[
                    "SET connect_ahead = 2", "SET persist_client = on"])
                + proxy_service("retry", ANY_PORT, "flakypool", extra=[
                    "SET enable_error_retries = on", "SET error_retry_schedule = 0,0.1,0"])
                + proxy_service("noretry", ANY_PORT, "flakypool", extra=[
                    "SET enable_error_retries = on", "SET error_retry_schedule = 0"])
                + proxy_service("think", ANY_PORT, "thinkpool")
                + proxy_service("garbage", ANY_PORT, "garbagepool",
                                extra=["SET persist_backend = on"])
                + proxy_service("reset", ANY_PORT, "resetpool",
                                extra=["SET persist_backend = on"]))
        try:
            with PyPerlbal(conf) as server:
                e.server, e.ports = server, server.ports  # each listener on port 0
                yield e
        finally:
            for raw in (think, garbage, reset):
                raw.close()


def test_queue_order_and_high_priority_cookie(env: Env) -> None:
    port = env.ports["queue"]
    results: dict[str, float] = {}

    def get(name: str, cookie: str | None) -> None:
        headers = [("Cookie", cookie)] if cookie else []
        resp = request(port, "GET", f"/{name}", headers, timeout=20)
        assert resp.status == 200
        results[name] = time.monotonic()

    threads = []
    # first, second (normal) and vip (high priority, arrives last): Perl's get_client
    # hands each new backend to the high-priority queue first, then in arrival order
    for name, cookie in (("first", None), ("second", "other=1; vip=no"), ("vip", "a=b; vip=yes!")):
        t = threading.Thread(target=get, args=(name, cookie))
        t.start()
        threads.append(t)
        time.sleep(0.1)
    for t in threads:
        t.join(30)
    order = [r.target for r in env.slow.requests("GET")]  # type: ignore[attr-defined]
    assert order == ["/vip", "/first", "/second"]


def test_connect_ahead_spares_show_in_show_service(env: Env) -> None:
    deadline = time.monotonic() + 10
    with console(LOOPBACK, env.ports["mgmt"]) as con:
        while True:
            lines = con.command("show service ahead")
            if any(line.strip() == "connect-ahead: 2/2" for line in lines):
                break
            assert time.monotonic() < deadline, lines
            time.sleep(0.05)
    assert env.spare.connection_count >= 2  # type: ignore[attr-defined]
    assert request(env.ports["ahead"], "GET", "/").status == 200


def test_error_retries_hide_500_while_the_schedule_lasts(env: Env) -> None:
    _fail_counter["n"] = 0
    resp = request(env.ports["retry"], "GET", "/flaky")
    assert resp.status == 200
    assert _fail_counter["n"] == 3
    # one retry allowed, the backend always fails: the client sees the (second) 500
    before = len(env.flaky.requests("GET"))  # type: ignore[attr-defined]
    resp = request(env.ports["noretry"], "GET", "/always500")
    assert resp.status == 500
    assert len(env.flaky.requests("GET")) - before == 2  # type: ignore[attr-defined]


def test_client_reset_frees_its_backend(env: Env) -> None:
    think: RawBackend = env.think  # type: ignore[attr-defined]
    before = len(think.eof_seen)
    with socket.create_connection((LOOPBACK, env.ports["think"]), timeout=5) as sock:
        sock.sendall(b"GET /slow HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        # a reset, not a FIN (a FIN is a half-close after a complete request)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left = time.monotonic()
    deadline = left + 5
    while len(think.eof_seen) == before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(think.eof_seen) > before
    assert think.eof_seen[-1] - left < 2.0


@pytest.mark.parametrize("name", ["garbage", "reset"])
def test_broken_backend_gives_502_and_is_never_reused(env: Env, name: str) -> None:
    backend: RawBackend = getattr(env, name)
    before = backend.connections
    for _ in range(2):
        resp = request(env.ports[name], "GET", "/")
        assert resp.status == 502
    assert backend.connections - before == 2


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_no_descriptor_leak_after_burst(env: Env) -> None:
    assert env.server is not None and env.server.proc is not None
    pid = env.server.proc.pid
    port = env.ports["ahead"]
    request(port, "GET", "/warm")
    time.sleep(0.3)
    start = _fds(pid)
    for i in range(30):
        if i % 3 == 0:  # aborted mid-request
            with socket.create_connection((LOOPBACK, port)) as sock:
                sock.sendall(b"GET /x HTTP/1.0\r\nHost: a\r\n")
        elif i % 3 == 1:
            with HTTPConnection(port) as conn:
                for _ in range(3):
                    assert conn.request("GET", "/k").status == 200
        else:
            assert request(port, "GET", "/p").status == 200
    # leftovers may be a few connect-ahead spares; everything else is closed
    deadline = time.monotonic() + 5
    while _fds(pid) > start + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds(pid) <= start + 2
