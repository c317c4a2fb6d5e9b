"""SIGHUP reload (only the difference, through the live interpreter), and graceful stops.

- SIGHUP with an edited file: nodes swapped, a parameter changed, a new pool
  and a new service on a new port; the server reports what changed and
  serves the new graph without a restart (same pid, connections kept).
- SIGHUP with a file containing an error: rejected as a whole; nothing of
  it applies, not even its valid lines.
- SIGTERM and ``shutdown graceful``: no new connections are accepted, the
  request in flight completes, then the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, pool, proxy_config, proxy_service
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports, port_accepts
from tests.support.rawhttp import RawResponse, request


def _base(b1: str, web: int, mgmt: int) -> str:
    return proxy_config(web, [b1], service="web", mgmt_port=mgmt)


def _edited(b1: str, b2: str, web: int, other: int, mgmt: int) -> str:
    """``_base`` with p's node swapped, web's persist_client on, a new pool and service."""
    return (pool("p", [b2]) + pool("q", [b1])
            + proxy_service("web", web, "p", extra=["SET persist_client = on"])
            + proxy_service("other", other, "q") + management(mgmt))


def _hup_and_wait(server: PyPerlbal, marker: str) -> str:
    assert server.proc is not None
    before = server.output()[0]
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = server.output()[0][len(before):]
        if marker in out:
            time.sleep(0.2)  # the rest of the report
            return server.output()[0][len(before):]
        time.sleep(0.05)
    raise AssertionError(f"no {marker!r} after SIGHUP: {server.output()}")


def test_sighup_applies_only_the_difference() -> None:
    web, other, mgmt = free_ports(3)
    with Backend("b1") as b1, Backend("b2") as b2:
        with PyPerlbal(_base(b1.address, web, mgmt)) as server, console(LOOPBACK, mgmt) as con:
            assert request(web, "GET", "/").header("X-Backend-Name") == "b1"
            (server.workdir / "perlbal.conf").write_text(
                _edited(b1.address, b2.address, web, other, mgmt))
            report = _hup_and_wait(server, "reload:")
            assert "reload: " in report and "change(s)" in report
            for expected in (f"POOL p REMOVE {b1.address}", f"POOL p ADD {b2.address}",
                             "CREATE POOL q", f"POOL q ADD {b1.address}",
                             "SET web.persist_client = on", "CREATE SERVICE other",
                             "ENABLE other"):
                assert expected in report, (expected, report)
            assert "ENABLE web" not in report and "CREATE SERVICE web" not in report
            # the console connection opened before the reload still works
            assert con.command("show pool p") == [f"{b2.address} 0", "."]
            assert request(web, "GET", "/").header("X-Backend-Name") == "b2"
            assert request(other, "GET", "/").header("X-Backend-Name") == "b1"
            # the same file again: nothing to do
            assert "reload: no changes" in _hup_and_wait(server, "reload:")


def test_sighup_with_an_error_is_rejected_whole() -> None:
    web, mgmt = free_ports(2)
    with Backend("b1") as b1, Backend("b2") as b2:
        with PyPerlbal(_base(b1.address, web, mgmt)) as server:
            broken = _base(b1.address, web, mgmt).replace(
                f"POOL p ADD {b1.address}", f"POOL p ADD {b2.address}\nSET p.no_such_thing = 1")
            broken += "SET web.persist_client = maybe\n"
            (server.workdir / "perlbal.conf").write_text(broken)
            report = _hup_and_wait(server, "reload rejected")
            assert "persist_client" in report or "no_such_thing" in report
            with console(LOOPBACK, mgmt) as con:
                assert con.command("show pool p") == [f"{b1.address} 0", "."]
            assert request(web, "GET", "/").header("X-Backend-Name") == "b1"


def _slow_request(port: int, out: list[RawResponse | Exception]) -> None:
    try:
        out.append(request(port, "GET", "/slow"))
    except Exception as exc:
        out.append(exc)


def _graceful(stop: str) -> None:
    web, mgmt = free_ports(2)
    with Backend("slow", delay=1.0) as slow:
        with PyPerlbal(_base(slow.address, web, mgmt)) as server:
            assert server.proc is not None
            results: list[RawResponse | Exception] = []
            client = threading.Thread(target=_slow_request, args=(web, results))
            client.start()
            deadline = time.monotonic() + 5
            while not slow.requests() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert slow.requests(), "the request never reached the backend"
            if stop == "sigterm":
                server.proc.send_signal(signal.SIGTERM)
            else:
                with console(LOOPBACK, mgmt) as con:
                    assert con.command("shutdown graceful 10") == ["OK"]
            time.sleep(0.2)
            assert not port_accepts(web), "still accepting after the stop began"
            client.join(timeout=10)
            assert server.proc.wait(timeout=10) == 0
            (result,) = results
            assert not isinstance(result, Exception), result
            assert result.status == 200 and result.header("X-Backend-Name") == "slow"


def test_sigterm_finishes_in_flight_requests_then_exits() -> None:
    _graceful("sigterm")


def test_console_shutdown_graceful_finishes_in_flight_requests_then_exits() -> None:
    _graceful("console")
