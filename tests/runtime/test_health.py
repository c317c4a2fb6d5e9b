"""Node health through the real server: active checks (rise/fall) and passive
max_fails, with real backends; state on the console, /metrics and explain."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from tests.runtime.test_balancing import _backends, _proxy, _served_by
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import HTTPConnection, request


def _healthz(state: dict[str, int]) -> Callable[[ReceivedRequest], BackendReply | None]:
    def handler(req: ReceivedRequest) -> BackendReply | None:
        if req.target == "/healthz":
            return BackendReply(status=state["status"], reason="X", body=b"x")
        return None
    return handler


def _wait(predicate: Callable[[], bool], timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_active_checks_take_a_failing_node_out_and_bring_it_back_after_rise() -> None:
    state = {"status": 200}
    with _backends("a", "b") as bes:
        bes[0].handler = _healthz(state)
        with _proxy(bes, "round_robin", "SET p.health_check_uri = /healthz",
                    "SET p.health_check_interval = 0.2") as (port, mgmt), \
                console(LOOPBACK, mgmt) as con:
            assert _served_by(port, 4) == ["a", "b", "a", "b"]
            state["status"] = 503
            checks_at_fail = len([r for r in bes[0].requests() if r.target == "/healthz"])
            _wait(lambda: any("down since" in ln for ln in con.command("show pool p")))
            checks = [r for r in bes[0].requests() if r.target == "/healthz"]
            assert len(checks) - checks_at_fail >= 3  # fall 3
            assert checks[-1].method == "GET" and checks[-1].version == "HTTP/1.0"
            shown = con.command("show pool p")
            line = next(ln for ln in shown if ln.startswith(f"# {bes[0].address}"))
            assert re.fullmatch(rf"# {re.escape(bes[0].address)} down since \d\d:\d\d:\d\d "
                                r"\(3 failed checks, the last status 503\); 0 in flight; "
                                r"checks \d+ \(\d+ failed, last status 503\)", line), line
            assert any("down: 3 failed checks" in ln for ln in shown)  # the history
            assert _served_by(port, 6) == ["b"] * 6
            explained = " ".join(con.command(f"explain http://{LOOPBACK}:{port}/"))
            assert f"round_robin: {bes[1].address} is next in turn of 1; {bes[0].address} " \
                   "is down since" in explained, explained
            metrics = request(mgmt, "GET", "/metrics").body.decode()
            assert f'perlbal_node_up{{pool="p",node="{bes[0].address}"}} 0' in metrics
            assert re.search(rf'perlbal_node_health_checks_total{{pool="p",node='
                             rf'"{re.escape(bes[0].address)}",result="fail"}} [3-9]', metrics)
            assert f"{bes[0].address} state down" in con.command("nodes")
            state["status"] = 200
            _wait(lambda: any(f"# {bes[0].address} up" in ln for ln in con.command("show pool p")))
            assert any("up: 2 passed checks" in ln for ln in con.command("show pool p"))
            assert sorted(_served_by(port, 4)) == ["a", "a", "b", "b"]


def test_passive_max_fails_ejects_a_node_for_fail_timeout() -> None:
    with _backends("bad", "good") as bes:
        bes[0].status = 500
        with _proxy(bes, "round_robin", "SET p.max_fails = 2", "SET p.fail_timeout = 1.5") \
                as (port, mgmt), console(LOOPBACK, mgmt) as con:
            with HTTPConnection(port) as conn:
                statuses = [conn.request("GET", "/").status for _ in range(4)]
            assert statuses == [500, 200, 500, 200]  # two failures: ejected
            assert _served_by(port, 6) == ["good"] * 6
            shown = con.command("show pool p")
            assert any(ln.startswith(f"# {bes[0].address} ejected since") and
                       "2 failures, the last status 500" in ln for ln in shown), shown
            metrics = request(mgmt, "GET", "/metrics").body.decode()
            assert (f'perlbal_node_ejections_total{{pool="p",node="{bes[0].address}"}} 1'
                    in metrics)
            time.sleep(1.6)  # fail_timeout over: tried again
            with HTTPConnection(port) as conn:
                served = [conn.request("GET", "/").status for _ in range(4)]
            assert 500 in served


def test_a_node_refusing_connects_is_ejected_and_its_requests_go_elsewhere() -> None:
    (dead_port,) = free_ports(1)  # nothing listens there
    dead = f"{LOOPBACK}:{dead_port}"
    with Backend(name="good") as good, \
            _proxy([good], "round_robin", f"POOL p ADD {dead}", "SET p.max_fails = 1",
                   "SET p.fail_timeout = 30") as (port, mgmt), console(LOOPBACK, mgmt) as con:
        assert [request(port, "GET", "/").status for _ in range(6)] == [200] * 6
        shown = con.command("show pool p")
        assert any(ln.startswith(f"# {dead} ejected since") and "a failed connect" in ln
                   for ln in shown), shown
        metrics = request(mgmt, "GET", "/metrics").body.decode()
        assert f'perlbal_node_up{{pool="p",node="{dead}"}} 0' in metrics


def test_the_last_node_is_never_ejected() -> None:
    with Backend(name="only", status=503) as only, \
            _proxy([only], "least_conn", "SET p.max_fails = 1", "SET p.fail_statuses = 5xx") \
            as (port, mgmt), console(LOOPBACK, mgmt) as con:
        assert [request(port, "GET", "/").status for _ in range(5)] == [503] * 5
        assert len(only.requests()) == 5  # each one tried, none answered by us
        shown = con.command("show pool p")
        assert any(ln.startswith(f"# {only.address} up") for ln in shown), shown
        assert any("not ejected after 1 failures (status 503): the last node in" in ln
                   for ln in shown), shown
