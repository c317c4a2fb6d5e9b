"""The per-second samples behind the web UI's graphs (perlbal/runtime/timeline.py).

The ring and the reservoir stay bounded however long and busy the server is;
percentiles are nearest-rank over the second's durations; and through the real
server, /timeline carries the node states the pool's health view gives (a node
ejected by max_fails) and /json shows the same state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from perlbal.graph import Graph, Pool, Service
from perlbal.runtime.stats import RuntimeStats
from perlbal.runtime.timeline import CAPACITY, RESERVOIR, Timeline
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import proxy_config
from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal
from tests.support.rawhttp import request


def _graph() -> Graph:
    graph = Graph()
    graph.services["web"] = Service("web", role="reverse_proxy", params={"pool": "apps"})
    pool = Pool("apps")
    pool.add("10.0.0.1", 80)
    graph.pools["apps"] = pool
    return graph


def test_ring_keeps_900_samples_and_counts_every_request() -> None:
    graph, live, timeline = _graph(), RuntimeStats(), Timeline()
    for second in range(CAPACITY + 100):
        for _ in range(3):
            timeline.request("web", 200, 0.010)
        timeline.request("web", 502, 0.030)
        timeline.node_reply("apps", "10.0.0.1:80", 200, 0.008)
        timeline.tick(graph, live, 1_000_000 + second)
    assert len(timeline.samples) == CAPACITY
    first, last = timeline.samples[0], timeline.samples[-1]
    assert first["t"] == 1_000_100 and last["t"] == 1_000_000 + CAPACITY + 99
    web = last["services"]["web"]
    assert (web["requests"], web["5xx"], web["p50"], web["p99"]) == (4, 1, 10.0, 30.0)
    assert web["queue"] == [0, 0, 0] and (web["in_use"], web["idle"]) == (0, 0)
    node = last["nodes"]["apps 10.0.0.1:80"]
    assert (node["requests"], node["p50"], node["state"]) == (1, 8.0, "up")
    assert [s["t"] for s in timeline.since(last["t"] - 2)] == [last["t"] - 1, last["t"]]


def test_a_busy_second_keeps_a_bounded_reservoir_and_exact_counts() -> None:
    graph, live, timeline = _graph(), RuntimeStats(), Timeline()
    for i in range(10_000):
        timeline.request("web", 500 if i % 10 == 0 else 200, (i % 100) / 1000)
    assert len(timeline._services["web"].durations) == RESERVOIR
    web = timeline.tick(graph, live, 1.0)["services"]["web"]
    assert (web["requests"], web["5xx"]) == (10_000, 1_000)
    assert 30 <= web["p50"] <= 70 and web["p99"] >= 90  # uniform 0..99 ms, sampled
    quiet = timeline.tick(graph, live, 2.0)["services"]["web"]
    assert (quiet["requests"], quiet["p50"], quiet["p99"]) == (0, None, None)


@pytest.fixture
def ejecting() -> Iterator[tuple[int, int, Backend, Backend]]:
    def fail(req: ReceivedRequest) -> BackendReply:
        return BackendReply(status=503, reason="Unavailable", body=b"no\n")

    web, mgmt = free_ports(2)
    with Backend("b1") as b1, Backend("b2", handler=fail) as b2:
        with PyPerlbal(proxy_config(web, [b1, b2], pool="apps", service="web", mgmt_port=mgmt,
                                    pool_extra=["SET max_fails = 1", "SET fail_timeout = 30"])):
            yield web, mgmt, b1, b2


def test_node_state_from_the_pools_health(ejecting: tuple[int, int, Backend, Backend]) -> None:
    web, mgmt, b1, b2 = ejecting
    deadline = time.monotonic() + 10
    while not b2.log:  # random balancing: until b2 has answered one 503
        request(web, "GET", "/x")
        assert time.monotonic() < deadline
    status = json.loads(request(mgmt, "GET", "/json").body)
    states = {n["ipport"]: n["state"] for n in status["pools"]["apps"]["nodes"]}
    assert states == {b1.address: "up", b2.address: "ejected"}
    asked = time.time()
    while True:
        ring = json.loads(request(mgmt, "GET", f"/timeline?since={int(asked)}").body)
        if ring["samples"]:
            break
        assert time.monotonic() < deadline + 5
        time.sleep(0.2)
    nodes = ring["samples"][-1]["nodes"]
    assert nodes[f"apps {b2.address}"]["state"] == "ejected"
    assert nodes[f"apps {b1.address}"]["state"] == "up"
    assert ring["capacity"] == CAPACITY and all(s["t"] > int(asked) for s in ring["samples"])
