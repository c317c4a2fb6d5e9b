"""The web UI's live graphs in headless Chromium, under load.

A reverse proxy with a pool of two live nodes (one answers 503 to /fail, both
take 20 ms) and a dead one serves several client threads while the page is
open.  When the load stops and the server has closed its last busy second:

- each chart's <path data-sum> equals the counter for the same thing: the
  service's requests and 5xx (perlbal_service_requests_total and
  perlbal_service_responses_total from /metrics), each node's requests (the
  pool's node_used in /json) and 5xx (the 503s that node's backend sent);
- every latency point of the delayed nodes is at least the 20 ms they wait;
- the dead node's state band holds red ("down") stretches, the live ones' none;
- the page holds as many samples as /timeline, never more than 900.

A screenshot of the graphs goes to tests/artifacts/webui-graphs.png.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.management.cdp import Browser, chromium_available
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import proxy_config
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal
from tests.support.rawhttp import request

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
DELAY = 0.02

pytestmark = pytest.mark.skipif(not chromium_available(), reason="/usr/bin/chromium not installed")


def _conf(b1: Backend, b2: Backend, dead: str, web: int, mgmt: int) -> str:
    return proxy_config(web, [b1, b2, dead], pool="apps", service="web", mgmt_port=mgmt,
                        extra=["SET persist_backend = on", "SET persist_client = on"])


def _fail_on_path(req: ReceivedRequest) -> BackendReply | None:
    if req.target.startswith("/fail"):
        return BackendReply(status=503, reason="Unavailable", body=b"no\n")
    return None


@pytest.fixture
def setup() -> Iterator[tuple[int, int, Backend, Backend, str]]:
    web, mgmt, dead = free_ports(3)
    with Backend("b1", delay=DELAY) as b1, \
            Backend("b2", delay=DELAY, handler=_fail_on_path) as b2:
        conf = _conf(b1, b2, f"{LOOPBACK}:{dead}", web, mgmt)
        with PyPerlbal(conf):
            yield web, mgmt, b1, b2, f"{LOOPBACK}:{dead}"


def _load(web: int, stop: threading.Event, sent: list[int]) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        request(web, "GET", f"/fail{i}" if i % 5 == 0 else f"/ok{i}", timeout=10)
        sent.append(1)


def _metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _paths(browser: Browser, group: str) -> dict[str, dict[str, Any]]:
    """chart title -> series -> its path's data attributes, in one graph group."""
    found = browser.evaluate(f"""(() => {{
      const out = {{}};
      document.querySelectorAll({json.dumps(group)} + " svg.chart").forEach(svg => {{
        const chart = out[svg.dataset.chart] = {{}};
        svg.querySelectorAll("path.line").forEach(p => {{
          chart[p.dataset.series] = {{count: +p.dataset.count, sum: +p.dataset.sum,
            values: p.dataset.values ? p.dataset.values.split(" ").map(
              v => +v.split(":")[1]) : []}};
        }});
      }});
      return out;
    }})()""")
    assert isinstance(found, dict)
    return found


def test_live_graphs_match_the_counters(setup: tuple[int, int, Backend, Backend, str]) -> None:
    web, mgmt, b1, b2, dead = setup
    stop, sent = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(web, stop, sent)) for _ in range(4)]
    with Browser(timeout=30) as browser:
        browser.navigate(f"http://{LOOPBACK}:{mgmt}/?interval=0.5")
        for worker in workers:
            worker.start()
        try:
            # the page draws while the load runs
            browser.wait_for("document.querySelector(\"[data-graph='services'][data-name='web'] "
                             "path[data-series='requests'][data-count]\") !== null && "
                             "+document.querySelector(\"[data-graph='services'][data-name='web'] "
                             "path[data-series='requests']\").dataset.sum > 0", timeout=20)
            time.sleep(3)
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)
        ended = time.time()
        # the server closes the second the last request finished in; the page fetches it
        deadline = time.monotonic() + 15
        while True:
            ring = json.loads(request(mgmt, "GET", "/timeline").body)
            if ring["samples"] and ring["samples"][-1]["t"] >= int(ended) + 1:
                break
            assert time.monotonic() < deadline, "no sample after the load ended"
            time.sleep(0.2)
        last_t = ring["samples"][-1]["t"]
        browser.wait_for(f"+document.body.dataset.lastSample >= {last_t}", timeout=15)
        metrics = request(mgmt, "GET", "/metrics").body.decode()
        status = json.loads(request(mgmt, "GET", "/json").body)
        service = _paths(browser, "[data-graph='services'][data-name='web']")
        nodes = {ipport: _paths(browser, f"[data-graph='nodes'][data-name='apps {ipport}']")
                 for ipport in (b1.address, b2.address, dead)}
        down_bands = {ipport: browser.evaluate(
            f"document.querySelectorAll(\"[data-graph='nodes'][data-name='apps {ipport}'] "
            f"rect.state[data-state='down']\").length") for ipport in nodes}
        held = int(browser.evaluate("document.body.dataset.samples"))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.evaluate("document.getElementById('live').scrollIntoView()")
        browser.screenshot(ARTIFACTS / "webui-graphs.png")

    total = _metric(metrics, "perlbal_service_requests_total", 'service="web"')
    errors = _metric(metrics, "perlbal_service_responses_total", 'service="web",code="503"')
    assert total >= len(sent) > 20 and errors > 0
    assert service["requests/s"]["requests"]["sum"] == total
    assert service["5xx/s"]["5xx"]["sum"] == errors
    assert min(service["latency ms"]["p50"]["values"]) >= DELAY * 1000
    assert set(service["queue depth"]) == {"normal", "highpri", "lowpri"}
    assert max(service["backend connections"]["idle"]["values"]) >= 1
    used = {n["ipport"]: n["requests"] for n in status["pools"]["apps"]["nodes"]}
    backend_503s = {b1.address: 0, b2.address: sum(
        1 for r in b2.log if r.target.startswith("/fail"))}
    for backend in (b1, b2):
        charts = nodes[backend.address]
        assert charts["requests/s"]["requests"]["sum"] == used[backend.address] > 0
        assert charts["5xx/s"]["5xx"]["sum"] == backend_503s[backend.address]
        assert min(charts["latency ms"]["p50"]["values"]) >= DELAY * 1000
        assert down_bands[backend.address] == 0
    assert nodes[dead]["requests/s"]["requests"]["sum"] == 0
    assert down_bands[dead] > 0  # its failed connects kept it out: drawn red
    assert held == len(ring["samples"]) <= 900
