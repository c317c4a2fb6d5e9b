"""SERVER workers = 2: a supervisor and two workers share the listener; console
changes and SIGHUP reloads reach both; /metrics and the web UI add them up."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


@contextmanager
def _two_workers(backend: Backend, mgmt: int, proxy: int) -> Iterator[PyPerlbal]:
    """A reverse proxy to ``backend`` on ``proxy`` with SERVER workers = 2 and
    a console on ``mgmt``; yields once both workers are running."""
    conf = proxy_config(proxy, [backend], server=["workers = 2"], mgmt_port=mgmt)
    with PyPerlbal(conf) as server:
        assert server.proc is not None
        deadline = time.monotonic() + 5
        while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield server


def test_two_workers_share_listener_and_follow_console() -> None:
    mgmt, proxy = free_ports(2)
    with Backend("b1") as b1, Backend("b2") as b2:
        with _two_workers(b1, mgmt, proxy) as server:
            assert server.proc is not None
            workers = _children(server.proc.pid)
            assert len(workers) == 2
            for _ in range(20):
                assert request(proxy, "GET", "/").header("X-Backend-Name") == "b1"
            with console(LOOPBACK, mgmt) as con:
                assert con.command(f"pool p add {b2.address}") == ["OK"]
                assert con.command(f"pool p remove {b1.address}") == ["OK"]
            time.sleep(0.3)  # the command travels down a pipe to the other worker
            names = {request(proxy, "GET", "/").header("X-Backend-Name") for _ in range(30)}
            assert names == {"b2"}
        assert all(not os.path.exists(f"/proc/{pid}") or
                   open(f"/proc/{pid}/stat").read().split()[2] == "Z" for pid in workers)


def test_sighup_reload_reaches_every_worker(tmp_path: "os.PathLike[str]") -> None:
    import signal
    from pathlib import Path

    proxy, = free_ports(1)
    with Backend("b1") as b1, Backend("b2") as b2:
        def conf(node: str) -> str:
            return proxy_config(proxy, [node], server=["workers = 2"],
                                extra=["SET persist_client = off"])
        with PyPerlbal(conf(b1.address)) as server:
            assert server.proc is not None
            for _ in range(10):
                assert request(proxy, "GET", "/").header("X-Backend-Name") == "b1"
            config_file = Path(server.workdir) / "perlbal.conf"
            config_file.write_text(conf(b2.address))
            server.proc.send_signal(signal.SIGHUP)
            time.sleep(1.0)  # worker 0 applies, then the steps travel down the pipe
            names = {request(proxy, "GET", "/").header("X-Backend-Name") for _ in range(40)}
            assert names == {"b2"}


def _metric(page: str, line_start: str) -> float:
    for line in page.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_start} not in /metrics:\n{page}")


def test_metrics_add_up_every_worker() -> None:
    """/metrics, the web UI and the console (all the supervisor's) count the
    requests every worker served."""
    mgmt, proxy = free_ports(2)
    with Backend("b1") as b1:
        with _two_workers(b1, mgmt, proxy) as server:
            assert server.proc is not None
            for _ in range(60):  # one connection each: the kernel spreads them over both
                assert request(proxy, "GET", "/").status == 200
            page = request(mgmt, "GET", "/metrics").body.decode()
            assert _metric(page, "perlbal_workers") == 2
            assert _metric(page, 'perlbal_service_requests_total{service="proxy"}') == 60
            assert _metric(page, f'perlbal_node_requests_total{{node="{b1.address}"}}') == 60
            assert _metric(page, "perlbal_info{version=\"1.80\"}") == 1  # not summed
            assert page.count("# TYPE perlbal_requests_total ") == 1
            # the web UI's numbers are every worker's
            status = json.loads(request(mgmt, "GET", "/json").body)
            assert status["worker"] == {"id": 0, "count": 2, "supervised": True}
            assert status["requests"] == 62  # and the supervisor's two pages
            nodes = status["pools"]["p"]["nodes"]
            assert [n["requests"] for n in nodes] == [60]
            # so are the console's, with Perl's lines and nothing before them
            with console(LOOPBACK, mgmt) as con:
                assert con.command("show service proxy")[0] == "SERVICE proxy"
                assert f"{b1.address} requests 60" in con.command("nodes")
                assert con.command("show service")[0].startswith("mgmt ")
