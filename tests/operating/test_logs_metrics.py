"""Access log lines (Combined Log Format and JSON) and /metrics after real traffic."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from perlbal.runtime.metrics import Family, merge, parse_families
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config, web_config
from tests.support.ports import LOOPBACK, free_ports


def _request(port: int, raw: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _wait_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= count:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"{path} has fewer than {count} lines")


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                     r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)?\})? (-?[0-9.e+]+|NaN|[+-]Inf)$')


def parse_prometheus(text: str) -> dict[str, float]:
    """A strict reader of the text format: every sample belongs to a declared family."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helped: set[str] = set()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"second TYPE for {name}"
            types[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            assert m.group(1) in types, f"sample before its TYPE: {line!r}"
            key = line.rsplit(" ", 1)[0]
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(line.rsplit(" ", 1)[1])
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), name
    return samples


def test_access_logs_and_metrics_after_traffic(tmp_path: Path) -> None:
    port, web_port, mgmt = free_ports(3)
    docroot = tmp_path / "htdocs"
    docroot.mkdir()
    (docroot / "file.txt").write_bytes(b"x" * 3000)
    clf = tmp_path / "proxy.log"
    jsonl = tmp_path / "web.log"
    with Backend(name="b1", response_size=1234) as be:
        conf = (proxy_config(port, [be.port], extra=[
                    "SET persist_backend = on", f"SET access_log = {clf}"])
                + web_config(web_port, docroot, extra=[
                    f"SET access_log = {jsonl}", "SET access_log_format = json"],
                    mgmt_port=mgmt))
        with PyPerlbal(conf):
            r1 = _request(port, b'GET /a?b=1 HTTP/1.0\r\nReferer: http://x/"q"\r\n'
                                b"User-Agent: tester/1.0\r\n\r\n")
            assert r1.startswith(b"HTTP/1.0 200")
            _request(port, b"POST /up HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello")
            r3 = _request(web_port, b"GET /file.txt HTTP/1.0\r\nHost: w\r\n\r\n")
            assert r3.endswith(b"x" * 3000)
            _request(web_port, b"GET /missing HTTP/1.0\r\n\r\n")

            lines = _wait_lines(clf, 2)
            m = re.fullmatch(r'127\.0\.0\.1 - - \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
                             r'"GET /a\?b=1 HTTP/1\.0" 200 1234 "http://x/\\x22q\\x22" '
                             r'"tester/1\.0"', lines[0])
            assert m, lines[0]
            assert re.fullmatch(r'127\.0\.0\.1 - - \[.*\] "POST /up HTTP/1\.0" 200 1234 "-" "-"',
                                lines[1]), lines[1]

            records = [json.loads(x) for x in _wait_lines(jsonl, 2)]
            assert records[0]["uri"] == "/file.txt" and records[0]["status"] == 200
            assert records[0]["bytes_sent"] == 3000 and records[0]["service"] == "web"
            assert records[0]["host"] == "w" and records[0]["remote_addr"] == "127.0.0.1"
            assert records[1]["status"] == 404 and records[1]["uri"] == "/missing"

            page = _request(mgmt, b"GET /metrics HTTP/1.0\r\n\r\n")
            head, _, body = page.partition(b"\r\n\r\n")
            assert b"Content-Type: text/plain; version=0.0.4" in head
            samples = parse_prometheus(body.decode())
            node = f'{LOOPBACK}:{be.port}'
            assert samples['perlbal_service_requests_total{service="proxy"}'] == 2
            assert samples['perlbal_service_responses_total{service="proxy",code="200"}'] == 2
            assert samples['perlbal_service_responses_total{service="web",code="404"}'] == 1
            assert samples['perlbal_service_sent_bytes_total{service="web"}'] > 3000
            assert samples['perlbal_service_received_bytes_total{service="proxy"}'] > 100
            sent = samples[f'perlbal_node_sent_bytes_total{{pool="p",node="{node}"}}']
            got = samples[f'perlbal_node_received_bytes_total{{pool="p",node="{node}"}}']
            assert sent > 5 and got > 2 * 1234
            assert samples['perlbal_pool_received_bytes_total{pool="p"}'] == got
            assert samples[f'perlbal_node_requests_total{{node="{node}"}}'] == 2
            assert samples['perlbal_queue_depth{service="proxy",queue="normal"}'] == 0
            assert samples["perlbal_connections_open"] >= 1  # this very request
            assert 'perlbal_buffer_bytes{kind="relay"}' in samples


def test_metrics_count_connect_failures_and_can_be_off(tmp_path: Path) -> None:
    port, mgmt, dead = free_ports(3)
    conf = proxy_config(port, [dead], server=["metrics = off"], extra=["SET idle_timeout = 1"],
                        mgmt_port=mgmt)
    with PyPerlbal(conf):
        assert _request(port, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 503")
        samples = parse_prometheus(_request(mgmt, b"GET /metrics HTTP/1.0\r\n\r\n")
                                   .partition(b"\r\n\r\n")[2].decode())
        assert samples[f'perlbal_node_connect_failures_total{{node="{LOOPBACK}:{dead}"}}'] >= 1
        assert samples["perlbal_metrics_enabled"] == 0
        assert not any(k.startswith("perlbal_service_requests_total{") for k in samples)
        # Perl's own request counter is always kept (this /metrics request included)
        assert samples["perlbal_requests_total"] == 2


def test_sighup_reopens_access_log_for_rotation(tmp_path: Path) -> None:
    import signal

    port, = free_ports(1)
    (tmp_path / "f.txt").write_text("hi")
    log = tmp_path / "access.log"
    conf = (f"CREATE SERVICE web\n  SET role = web_server\n  SET listen = {LOOPBACK}:{port}\n"
            f"  SET docroot = {tmp_path}\n  SET access_log = {log}\nENABLE web\n")
    with PyPerlbal(conf) as server:
        assert server.proc is not None
        _request(port, b"GET /f.txt HTTP/1.0\r\n\r\n")
        _wait_lines(log, 1)
        log.rename(tmp_path / "access.log.1")  # what logrotate does
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _request(port, b"GET /again HTTP/1.0\r\n\r\n")
        assert '"GET /again HTTP/1.0" 404' in _wait_lines(log, 1)[0]
        assert len((tmp_path / "access.log.1").read_text().splitlines()) == 1


def test_worker_metrics_merge_rules() -> None:
    """SERVER workers > 1: counters and gauges add up, shared values are worker
    0's, the oldest queue age is the largest, and a worker's snapshot survives
    the trip through its pipe (metrics.families_data as JSON / parse_families)."""
    svc = (("service", "web"),)
    own = [Family("perlbal_info", "gauge", "v", [((("version", "1.80"),), 1)]),
           Family("perlbal_requests_total", "counter", "r", [((), 10)]),
           Family("perlbal_queue_oldest_seconds", "gauge", "q", [(svc, 2)]),
           Family("perlbal_node_requests_total", "counter", "n", [((("node", "a"),), 4)])]
    other = [Family("perlbal_info", "gauge", "v", [((("version", "1.80"),), 1)]),
             Family("perlbal_requests_total", "counter", "r", [((), 5)]),
             Family("perlbal_queue_oldest_seconds", "gauge", "q", [(svc, 7)]),
             Family("perlbal_node_requests_total", "counter", "n", [((("node", "b"),), 3)])]
    wire = json.dumps([[f.name, f.kind, f.doc, [[list(map(list, lb)), v] for lb, v in f.samples]]
                       for f in other]).encode()
    merged = {f.name: dict(f.samples) for f in merge(own, [parse_families(json.loads(wire))])}
    assert merged["perlbal_info"] == {(("version", "1.80"),): 1}
    assert merged["perlbal_requests_total"] == {(): 15}
    assert merged["perlbal_queue_oldest_seconds"] == {svc: 7}
    assert merged["perlbal_node_requests_total"] == {(("node", "a"),): 4, (("node", "b"),): 3}
    with pytest.raises(ValueError):
        parse_families(json.loads(b"[[1, 2]]"))
