"""backend_persist_linger (beyond Perl): used backend connections beyond
backend_persist_cache stay open while traffic goes on, and are closed once
idle for the linger time; 0 closes them at once, as Perl does.

Each burst is six concurrent requests to a backend that thinks for 0.3 s, so
it needs six backend connections; the backend numbers its connections in
accept order, so how many it has accepted tells how many were reopened."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

BURST = 6


def _burst(port: int) -> list[int]:
    statuses: list[int] = []

    def one() -> None:
        statuses.append(request(port, "GET", "/", timeout=10).status)

    threads = [threading.Thread(target=one) for _ in range(BURST)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend(name="slow", delay=0.3) as be:
        yield be


def _config(backend: Backend, linger: int | None) -> str:
    (port,) = free_ports(1)
    extra = ["SET persist_backend = on", "SET backend_persist_cache = 2"]
    if linger is not None:
        extra.append(f"SET backend_persist_linger = {linger}")
    return proxy_config(port, [backend], service="svc", extra=extra)


def _serve(backend: Backend, linger: int) -> PyPerlbal:
    return PyPerlbal(_config(backend, linger))


def _port(server: PyPerlbal | PerlPerlbal) -> int:
    if isinstance(server, PyPerlbal):
        return server.port("svc")
    return server.wait_ports[0]


def test_busy_service_keeps_its_connections_then_trims_to_the_cache(backend: Backend) -> None:
    with _serve(backend, linger=1) as server:
        assert _burst(_port(server)) == [200] * BURST
        opened = backend.connection_count
        assert opened >= BURST
        assert _burst(_port(server)) == [200] * BURST  # at once: all reused
        assert backend.connection_count == opened
        time.sleep(1.8)  # idle past the linger: trimmed to backend_persist_cache (2)
        assert _burst(_port(server)) == [200] * BURST
        assert backend.connection_count == opened + BURST - 2


@pytest.mark.parametrize("server", ["ours", "perl"])
def test_linger_zero_closes_at_once_as_perl(backend: Backend, server: str) -> None:
    proxy = (_serve(backend, linger=0) if server == "ours"
             else PerlPerlbal(_config(backend, None)))
    with proxy:
        assert _burst(_port(proxy)) == [200] * BURST
        opened = backend.connection_count
        assert _burst(_port(proxy)) == [200] * BURST  # only the cache (2) was kept
        assert backend.connection_count == opened + BURST - 2
