"""SERVER max_reproxy_connections, reproxy_state and the reproxy cache lines of ``show service`` (ours)."""

from __future__ import annotations

import threading
import time

from tests.reproxy.harness import TARGET_BODY, target_handler
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _conf(primary: Backend, port: int, mgmt: int) -> str:
    return proxy_config(port, [primary], mgmt_port=mgmt,
                        extra=["SET enable_reproxy = on", "SET reproxy_cache_maxsize = 4"],
                        server=["max_reproxy_connections = 1"])


def test_max_reproxy_connections_bounds_target_connections() -> None:
    port, mgmt = free_ports(2)

    def slow_target(req: ReceivedRequest) -> BackendReply:
        time.sleep(1.0)
        return target_handler(req)

    with Backend("target", handler=slow_target) as target:
        def primary(req: ReceivedRequest) -> BackendReply:
            return BackendReply(headers=[("X-REPROXY-URL", f"http://{target.address}{req.target}"),
                                         ("X-REPROXY-CACHE-FOR", "60")])

        with Backend("primary", handler=primary) as backend, \
                PyPerlbal(_conf(backend, port, mgmt)):
            results: list[int] = []

            def fetch(path: str) -> None:
                resp = request(port, "GET", path, [("Host", "h")], timeout=30)
                results.append(resp.status if resp.body == TARGET_BODY else -1)

            threads = [threading.Thread(target=fetch, args=(f"/f{i}",)) for i in range(3)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 8  # generous: the machine may be busy
            with console(LOOPBACK, mgmt, timeout=10) as con:
                while True:
                    during = con.command("reproxy_state")
                    queued = [line for line in during if line.startswith("clients_queued ")]
                    if (queued and not queued[0].endswith(" 0")) or time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
            for thread in threads:
                thread.join(30)
            fetch("/f0")  # cached: no primary request
            with console(LOOPBACK, mgmt, timeout=10) as con:
                after = con.command("reproxy_state")
                show = con.command("show service proxy")
        assert results == [200, 200, 200, 200]
        assert target.connection_count == 1  # the one allowed connection, reused
        assert len(backend.requests()) == 3
    ipport = target.address
    assert f"backends {ipport} 1" in during
    assert any(line.startswith(f"clients_queued {ipport} ") and not line.endswith(" 0")
               for line in during), during
    assert during[-2:] == ["SERVER max_reproxy_connections = 1", "."]
    assert f"bored {ipport} 1" in after and f"clients_queued {ipport} 0" in after
    assert "    cache size: 3/4 (75.00%)" in show
    assert "    cache hits: 1" in show
    assert "cache hit rate: 25.00%" in show
