"""Several Perlbals behind an L4 balancer (docs/scale-out.md): Debian's HAProxy in
TCP mode with send-proxy (v1) and send-proxy-v2 in front of two of ours.

The client connects from 127.0.0.5, HAProxy from 127.0.0.1: the backend must
see 127.0.0.5 in X-Forwarded-For, through either instance; a peer that is not
a trusted upstream proxy, or one that sends no PROXY header, is turned away
with a log line; and one instance stopped gracefully while requests flow
fails none of them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import free_ports, port_accepts
from tests.support.pyserver import PyPerlbal

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CLIENT_IP = "127.0.0.5"

pytestmark = pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy not installed")


def _instance(port: int, backend: Backend) -> PyPerlbal:
    return PyPerlbal(proxy_config(port, [backend], pool="app", service="web", extra=[
        "SET proxy_protocol = on", "SET trusted_upstream_proxies = 127.0.0.1/32"]))


@dataclass
class Cluster:
    front: int
    ports: list[int]
    instances: list[PyPerlbal]
    backend: Backend


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    front, a, b = free_ports(3)
    with Backend(name="app") as backend:
        instances = [_instance(a, backend), _instance(b, backend)]
        for instance in instances:
            instance.start()
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(f"""
global
  maxconn 256
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
  retries 3
  option redispatch
frontend fe
  bind 127.0.0.1:{front}
  default_backend be
backend be
  balance roundrobin
  server a 127.0.0.1:{a} send-proxy check check-send-proxy inter 100ms fall 1 rise 2
  server b 127.0.0.1:{b} send-proxy-v2 check check-send-proxy inter 100ms fall 1 rise 2
""")
        haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not port_accepts(front):
                assert haproxy.poll() is None and time.monotonic() < deadline, "haproxy failed"
                time.sleep(0.05)
            time.sleep(0.5)  # both servers checked up
            yield Cluster(front, [a, b], instances, backend)
        finally:
            haproxy.terminate()
            haproxy.wait(10)
            for instance in instances:
                instance.stop()


def _get(port: int, path: str, source: str = CLIENT_IP, data: bytes | None = None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data if data is not None else
                     f"GET {path} HTTP/1.0\r\nHost: app\r\n\r\n".encode())
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
    return out


def test_client_address_reaches_the_backend_through_both_versions(cluster: Cluster) -> None:
    for i in range(6):  # round robin: both instances, v1 and v2
        assert _get(cluster.front, f"/r{i}").startswith(b"HTTP/1.0 200")
    seen = [r for r in cluster.backend.log if r.target.startswith("/r")]
    assert len(seen) == 6
    assert {r.header("X-Forwarded-For") for r in seen} == {CLIENT_IP}
    for instance in cluster.instances:  # each instance served some, and logged no refusal
        assert "PROXY" not in instance.output()[1], instance.output()[1][-600:]


def test_untrusted_or_headerless_peers_are_turned_away(cluster: Cluster) -> None:
    port = cluster.ports[0]
    before = len(cluster.backend.log)
    assert _get(port, "/direct") == b""  # 127.0.0.5 is no trusted proxy
    assert _get(port, "/nohdr", source="127.0.0.1") == b""  # trusted, but no header
    forged = b"PROXY TCP4 10.9.9.9 127.0.0.1 1 2\r\nGET /forged HTTP/1.0\r\n\r\n"
    assert _get(port, "/forged", data=forged) == b""  # a header from an untrusted peer
    time.sleep(0.3)
    assert len(cluster.backend.log) == before
    err = cluster.instances[0].output()[1]
    assert "not a trusted upstream proxy" in err
    assert "did not start with a PROXY header" in err


def test_graceful_stop_of_one_instance_fails_no_request(cluster: Cluster) -> None:
    results: list[bytes] = []
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            results.append(_get(cluster.front, f"/roll{i}"))
            i += 1

    worker = threading.Thread(target=client)
    worker.start()
    time.sleep(1.0)
    proc = cluster.instances[0].proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)  # graceful: finish what it has, take nothing new
    proc.wait(10)
    time.sleep(1.0)
    stop.set()
    worker.join(20)
    assert len(results) > 20
    failed = [r[:60] for r in results if not r.startswith(b"HTTP/1.0 200")]
    assert failed == [], f"{len(failed)} of {len(results)} failed: {failed[:3]}"
