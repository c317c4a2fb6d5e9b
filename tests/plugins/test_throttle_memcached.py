"""Throttle with memcached_servers, through the real server and a real memcached.

Two perlbals naming the same memcached and instance_name share what they know
about a client: a client seen through A is throttled (initial_delay) through
B; a third with another instance_name shares the memcached but not the state.
The stored value is Perl's: key ``<instance_name><ip>``, flags 0,
``pack('FS', start, count)``.  A memcached that is down, or silent, costs at
most the client's bounded timeout once, is logged once, and throttling goes on
with the process's own state.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.memcached import Memcached
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _conf(port: int, *, backend: str, servers: str, delay: int, name: str) -> str:
    return proxy_config(port, [backend], service="px", load=["Throttle"], extra=[
        f"SET initial_delay = {delay}", "SET throttle_threshold_seconds = 60",
        "SET max_concurrent = 10", f"SET memcached_servers = {servers}",
        "SET memcached_async_clients = 2", f"SET instance_name = {name}",
        "SET plugins = Throttle"])


def _timed_get(port: int, path: str) -> tuple[int, float]:
    started = time.monotonic()
    reply = request(port, "GET", path, [("Host", "h")], timeout=15)
    return reply.status, time.monotonic() - started


def test_throttled_through_one_instance_throttled_through_another() -> None:
    port_a, port_b, port_c = free_ports(3)
    with Memcached() as mc, Backend("b") as backend:
        conf = dict(backend=backend.address, servers=mc.address, delay=2)
        with PyPerlbal(_conf(port=port_a, name="site", **conf)), \
                PyPerlbal(_conf(port=port_b, name="site", **conf)), \
                PyPerlbal(_conf(port=port_c, name="other", **conf)):
            first = _timed_get(port_a, "/1")
            stored_first = mc.raw_get("site127.0.0.1")
            # A saw this client a moment ago; while B delays it, memcached holds
            # one violation (Perl's second set, expiring after the delay)
            timings: list[tuple[int, float]] = []
            waiter = threading.Thread(target=lambda: timings.append(_timed_get(port_b, "/2")))
            waiter.start()
            time.sleep(1.0)
            stored_second = mc.raw_get("site127.0.0.1")
            waiter.join(15)
            second = timings[0]
            other = _timed_get(port_c, "/3")    # same memcached, other instance_name
    assert first[0] == 200 and first[1] < 1.5
    assert second[0] == 200 and second[1] >= 1.9
    assert other[0] == 200 and other[1] < 1.5
    # Perl's value: flags 0, a native double (request start) and a 16-bit count
    assert stored_first is not None and stored_first[0] == 0 and len(stored_first[1]) == 10
    start, count = struct.unpack("=dH", stored_first[1])
    assert abs(start - time.time()) < 30 and count == 0
    assert stored_second is not None
    assert struct.unpack("=dH", stored_second[1])[1] == 1   # one violation, seen through B
    assert [r.target for r in backend.requests()] == ["/1", "/2", "/3"]


def _silent_server(stop: threading.Event) -> tuple[int, threading.Thread]:
    """Accepts connections and never answers: a memcached that hangs."""
    listener = socket.socket()
    listener.bind((LOOPBACK, 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []

    def run() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue
        for sock in held:
            sock.close()
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def test_memcached_down_or_silent_falls_back_to_local_state() -> None:
    (dead_port,) = free_ports(1)  # nothing listens there
    port_dead, port_silent = free_ports(2)
    stop = threading.Event()
    silent_port, thread = _silent_server(stop)
    try:
        with Backend("b") as backend:
            conf = dict(backend=backend.address, delay=1, name="site")
            with PyPerlbal(_conf(port=port_dead, servers=f"{LOOPBACK}:{dead_port}",
                                 **conf)) as dead, \
                    PyPerlbal(_conf(port=port_silent, servers=f"{LOOPBACK}:{silent_port}",
                                    **conf)) as silent:
                results = {}
                for name, port in (("dead", port_dead), ("silent", port_silent)):
                    results[name] = [_timed_get(port, f"/{name}{i}") for i in range(2)]
                _, dead_err = dead.output()
                _, silent_err = silent.output()
    finally:
        stop.set()
        thread.join(5)
    for name, timings in results.items():
        assert [status for status, _ in timings] == [200, 200], name
        # first: unseen (at most the 0.3 s memcached bound); then the local state
        # throttles it for initial_delay
        assert timings[0][1] < 1.0, (name, timings)
        assert 0.9 <= timings[1][1] < 1.8, (name, timings)
    assert dead_err.count("memcached 127.0.0.1") == 1, dead_err
    assert "(Connection refused)" in dead_err, dead_err
    assert silent_err.count("memcached 127.0.0.1") == 1, silent_err
    assert "no answer within 0.3s" in silent_err
    assert "Traceback" not in dead_err + silent_err
