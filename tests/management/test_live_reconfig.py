"""Live reconfiguration through the console while traffic flows, and the round trip of dumpconfig.

- Under load: client threads loop requests (new connections and kept-alive
  ones) while the console adds a node, removes one, changes parameters and
  switches the service to a new pool.  No request may fail; once a node is
  removed it gets no new requests, and the ones it had open complete.
- ``dumpconfig`` of a running server, fed to a fresh server, rebuilds the
  same graph (same ``dumpconfig`` again, same ``show service``/``show pool``).
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import (
    PERSIST,
    management,
    pool,
    proxy_config,
    proxy_service,
    service,
    vhost_selector,
    web_config,
)
from tests.support.perl_perlbal import PerlPerlbal, console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import HTTPConnection, request


class Load:
    """Client threads hammering ``port`` until stopped; every outcome recorded."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.seen: list[tuple[float, str]] = []  # (time, backend name)
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _record(self, status: int, name: str | None, what: str) -> None:
        with self._lock:
            if status == 200 and name:
                self.ok += 1
                self.seen.append((time.monotonic(), name))
            else:
                self.failures.append(f"{what}: {status}")

    def _run(self, index: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                if index % 2:  # a kept-alive connection for a few requests
                    with HTTPConnection(self.port) as conn:
                        for i in range(5):
                            resp = conn.request("GET", f"/t{index}/{n}/{i}", [("Host", "x")])
                            self._record(resp.status, resp.header("X-Backend-Name"), "keepalive")
                else:
                    resp = request(self.port, "GET", f"/t{index}/{n}")
                    self._record(resp.status, resp.header("X-Backend-Name"), "new conn")
            except Exception as exc:  # any exception is a failed request
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")


def test_nodes_and_parameters_change_under_load_without_a_failed_request() -> None:
    web, mgmt = free_ports(2)
    with Backend("b1", delay=0.01) as b1, Backend("b2", delay=0.01) as b2, \
            Backend("b3", delay=0.01) as b3:
        with PyPerlbal(proxy_config(web, [b1], service="web", extra=PERSIST, mgmt_port=mgmt)), \
                console(LOOPBACK, mgmt) as con, Load(web) as load:
            time.sleep(0.4)
            assert con.command(f"POOL p ADD {b2.address}") == ["OK"]
            time.sleep(0.4)
            assert con.command("SET web.persist_backend = off") == ["OK"]
            assert con.command("SET web.max_backend_uses = 3") == ["OK"]
            time.sleep(0.3)
            assert con.command("SET web.persist_backend = on") == ["OK"]
            assert con.command(f"POOL p REMOVE {b1.address}") == ["OK"]
            removed_at = time.monotonic()
            b1_count_at_removal = len(b1.requests())
            time.sleep(0.5)
            assert con.command("CREATE POOL q") == ["OK"]
            assert con.command(f"POOL q ADD {b3.address}") == ["OK"]
            assert con.command("SET web.pool = q") == ["OK"]
            switched_at = time.monotonic()
            time.sleep(0.5)
        assert not load.failures, load.failures[:10]
        assert load.ok > 100
        names = {name for _, name in load.seen}
        assert names == {"b1", "b2", "b3"}
        # a removed node: requests already sent when it left may complete (one per
        # client thread at most), none are sent afterwards
        assert len(b1.requests()) <= b1_count_at_removal + 4
        late_b1 = [t for t, name in load.seen if name == "b1" and t > removed_at + 0.2]
        assert not late_b1
        late_p = [t for t, name in load.seen if name in ("b1", "b2") and t > switched_at + 0.2]
        assert not late_p


def test_dumpconfig_rebuilds_the_same_graph_on_a_fresh_server() -> None:
    web, sel, mgmt = free_ports(3)
    with Backend("b1") as b1, Backend("b2") as b2:
        conf = ("LOAD vhosts\n" + pool("p", [b1, b2], extra=["SET p.balance_method = random"])
                + pool("spare")
                + proxy_service("web", web, "p", extra=[
                    "SET persist_client = on", "SET idle_timeout = 17", "SET connect_ahead = 2",
                    "HEADER web INSERT X-Via: perlbal", "HEADER web REMOVE X-Secret"])
                + service("off", "web_server", extra=["SET docroot = /tmp"], enable=False)
                + vhost_selector("sel", sel, {"www.example.com": "web"})
                + management(mgmt))
        queries = ["dumpconfig", "show service", "show pool", "show service web",
                   "show service off", "plugins"]

        def snapshot() -> dict[str, list[str]]:
            with console(LOOPBACK, mgmt) as con:
                # live changes too: they must survive the round trip
                return {q: con.command(q) for q in queries}

        with PyPerlbal(conf) as first:
            with console(LOOPBACK, mgmt) as con:
                assert con.command(f"POOL spare ADD {b2.address}") == ["OK"]
                assert con.command("SET web.max_backend_uses = 9") == ["OK"]
            before = snapshot()
        dumped = before["dumpconfig"]
        assert dumped[-1] == "OK"
        with PyPerlbal("\n".join(dumped[:-1]) + "\n"):
            after = snapshot()
            assert request(sel, "GET", "/", [("Host", "www.example.com")]).status == 200
        for q in queries:
            assert after[q] == before[q], q


def test_listen_zero_stops_listening_as_in_perl(tmp_path: Path) -> None:
    """SET listen = 0 on an enabled service: Perl takes '0' for false and closes
    the port without opening another; so do we (we had bound a system-chosen
    port); a real address afterwards listens again.  Same replies as Perl's."""
    replies = {}
    for name, server in (("python", PyPerlbal), ("perl", PerlPerlbal)):
        web, web2, mgmt = free_ports(3)
        conf = web_config(web, tmp_path) + management(mgmt)
        with server(conf), console(LOOPBACK, mgmt) as con:
            got = [con.command("SET web.listen = 0"), con.command("SHOW SERVICE web")]
            with pytest.raises(OSError):
                socket.create_connection((LOOPBACK, web), timeout=1).close()
            got.append(con.command(f"SET web.listen = {LOOPBACK}:{web2}"))
            socket.create_connection((LOOPBACK, web2), timeout=2).close()
            replies[name] = [[line.replace(str(web2), "WEB2") for line in r] for r in got]
    assert replies["python"] == replies["perl"]
    assert "     listening: --" in replies["perl"][1]
