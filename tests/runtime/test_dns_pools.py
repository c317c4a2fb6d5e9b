"""Pools fed by DNS (``dns_name``): a dnslib server on loopback whose records the
test changes; real backends on 127.0.0.1, 127.0.0.2 and 127.0.0.3."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from perlbal.dnsmessage import A, SRV, DnsError, answers, query
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal

dnslib = pytest.importorskip("dnslib")
from dnslib import QTYPE, RR, A as RA, SRV as RSRV, DNSRecord  # noqa: E402


class Zone:
    """A UDP DNS server answering from ``records`` (name -> list of (qtype, rdata))."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[str, object]]] = {}
        self.ttl = 1
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1
            request = DNSRecord.parse(data)
            reply = request.reply()
            name = str(request.q.qname).rstrip(".").lower()
            wanted = QTYPE[request.q.qtype]
            for kind, rdata in self.records.get(name, []):
                if kind == wanted:
                    reply.add_answer(RR(name, getattr(QTYPE, kind), rdata=rdata, ttl=self.ttl))
                    if kind == "SRV":  # glue for the target, as Consul sends it
                        target = str(rdata.target).rstrip(".")  # type: ignore[attr-defined]
                        for kind2, rdata2 in self.records.get(target, []):
                            if kind2 == "A":
                                reply.add_ar(RR(target, QTYPE.A, rdata=rdata2, ttl=self.ttl))
            self.sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self.sock.close()


def test_codec_against_dnslib() -> None:
    raw = query("app.example", A, 0x1234)
    parsed = DNSRecord.parse(raw)
    assert str(parsed.q.qname) == "app.example." and parsed.q.qtype == QTYPE.A
    reply = parsed.reply()
    reply.add_answer(RR("app.example", QTYPE.A, rdata=RA("10.0.0.7"), ttl=42))
    assert answers(reply.pack(), 0x1234) == [("app.example", "A", "10.0.0.7", 42)]
    srv = DNSRecord.question("_http._tcp.app.example", "SRV").reply()
    srv.add_answer(RR("_http._tcp.app.example", QTYPE.SRV, ttl=9,
                      rdata=RSRV(priority=1, weight=5, port=8080, target="n1.app.example")))
    ident = srv.header.id
    assert answers(srv.pack(), ident) == [
        ("_http._tcp.app.example", "SRV", (1, 5, 8080, "n1.app.example"), 9)]
    with pytest.raises(DnsError):
        answers(reply.pack(), 0x9999)  # not our id
    with pytest.raises(DnsError):
        answers(reply.pack()[:20], 0x1234)  # truncated
    loop = bytearray(reply.pack())
    loop[12:14] = b"\xc0\x0c"  # a name pointing at itself
    with pytest.raises(DnsError):
        answers(bytes(loop), 0x1234)


@pytest.fixture
def zone() -> Iterator[Zone]:
    zone = Zone()
    yield zone
    zone.close()


def _served_by(port: int, count: int) -> list[str]:
    names = []
    for i in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(f"GET /n{i} HTTP/1.0\r\n\r\n".encode())
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        for line in reply.split(b"\r\n"):
            if line.startswith(b"X-Backend-Name: "):
                names.append(line.split(b": ", 1)[1].decode())
    return names


def _wait_until(check: "object", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize("form", ["address", "srv"])
def test_pool_follows_its_records(zone: Zone, form: str) -> None:
    ports = free_ports(2)
    with Backend(name="one", host="127.0.0.2", port=ports[0]) as one, \
            Backend(name="two", host="127.0.0.3", port=ports[0]) as two:
        if form == "address":
            dns_name = f"app.test:{ports[0]}"
            zone.records["app.test"] = [("A", RA("127.0.0.2"))]
        else:
            dns_name = "_http._tcp.app.test"
            zone.records["_http._tcp.app.test"] = [
                ("SRV", RSRV(priority=1, weight=1, port=ports[0], target="n1.app.test"))]
            zone.records["n1.app.test"] = [("A", RA("127.0.0.2"))]
        config = proxy_config(ports[1], [], pool="app", service="web", pool_extra=[
            f"SET app.dns_name = {dns_name}", f"SET app.dns_server = 127.0.0.1:{zone.port}"])
        with PyPerlbal(config):
            _wait_until(lambda: _served_by(ports[1], 1) == ["one"])
            # the record changes: the new node takes over within the TTL, the old drains
            if form == "address":
                zone.records["app.test"] = [("A", RA("127.0.0.3"))]
            else:
                zone.records["n1.app.test"] = [("A", RA("127.0.0.3"))]
            _wait_until(lambda: _served_by(ports[1], 3) == ["two"] * 3)
            # both: requests spread over the two
            if form == "address":
                zone.records["app.test"] = [("A", RA("127.0.0.2")), ("A", RA("127.0.0.3"))]
            else:
                zone.records["n1.app.test"] = [("A", RA("127.0.0.2")), ("A", RA("127.0.0.3"))]
            _wait_until(lambda: set(_served_by(ports[1], 12)) == {"one", "two"})
            # the DNS server goes away: the nodes are kept
            zone.records.clear()
            time.sleep(3.0)
            assert set(_served_by(ports[1], 12)) == {"one", "two"}
    assert one.connection_count and two.connection_count


def test_check_refuses_bad_dns_names(tmp_path: "object") -> None:
    from pathlib import Path

    from perlbal.check import check_paths

    conf = Path(str(tmp_path)) / "bad.conf"
    conf.write_text("CREATE POOL app\n  SET app.dns_name = no-port.example\n"
                    "  SET app.dns_server = example.com:53\n")
    result = check_paths([str(conf)])
    assert [d.line for d in result.errors] == [2, 3]


def test_check_knows_dns_pools_and_proxy_protocol_trust(tmp_path: "object") -> None:
    from pathlib import Path

    from perlbal.check import check_paths

    conf = Path(str(tmp_path)) / "ok.conf"
    conf.write_text(proxy_config(8080, [], pool="app", service="web",
                                 pool_extra=["SET app.dns_name = app.example:8080"],
                                 extra=["SET proxy_protocol = on"]))
    messages = [d.message for d in check_paths([str(conf)]).warnings]
    assert not [m for m in messages if "no nodes" in m]  # DNS will give them
    assert [m for m in messages if "trusts no peer" in m]


def test_explain_names_dns_pools_upgrades_and_proxy_protocol(tmp_path: "object") -> None:
    from pathlib import Path

    from perlbal.dryrun import load_graph
    from perlbal.explain import ExplainArgs, explain, render_text

    conf = Path(str(tmp_path)) / "site.conf"
    conf.write_text(proxy_config(8080, [], pool="app", service="web",
                                 pool_extra=["SET app.dns_name = _http._tcp.app.example"],
                                 extra=["SET proxy_protocol = on",
                                        "SET trusted_upstream_proxies = 127.0.0.1/32"]))
    graph, errors = load_graph(str(conf))
    assert errors == []
    exp = explain(graph, ExplainArgs(url="http://127.0.0.1:8080/chat", headers=[
        "Connection: Upgrade", "Upgrade: websocket"]))
    text = "\n".join(render_text(exp))
    assert exp.outcome.kind == "proxy" and exp.outcome.pool == "app"
    assert "nodes come from DNS (_http._tcp.app.example)" in text
    assert "Upgrade: websocket goes to the backend" in text
    assert "PROXY protocol header" in text


def test_with_workers_the_supervisor_resolves_and_every_worker_follows(zone: Zone) -> None:
    """SERVER workers = 2: the DNS refresh runs in the supervisor alone (a worker
    runs no resolver: docs/operating.md); the new node list reaches each worker,
    which is then served alone (the other SIGSTOPped)."""
    from tests.operating.test_workers_supervised import alone, children, wait_for

    ports = free_ports(2)
    with Backend(name="one", host="127.0.0.2", port=ports[0]), \
            Backend(name="two", host="127.0.0.3", port=ports[0]):
        zone.records["app.test"] = [("A", RA("127.0.0.2"))]
        config = proxy_config(ports[1], [], pool="app", service="web", server=["workers = 2"],
                              extra=["SET persist_client = off"], pool_extra=[
            f"SET app.dns_name = app.test:{ports[0]}",
            f"SET app.dns_server = 127.0.0.1:{zone.port}"])
        with PyPerlbal(config) as server:
            assert server.proc is not None
            pid = server.proc.pid
            wait_for(lambda: len(children(pid)) == 2, what="the workers")
            workers = children(pid)
            _wait_until(lambda: _served_by(ports[1], 1) == ["one"])
            zone.records["app.test"] = [("A", RA("127.0.0.3"))]
            _wait_until(lambda: _served_by(ports[1], 4) == ["two"] * 4)
            for worker in workers:
                with alone(workers, worker):
                    assert _served_by(ports[1], 3) == ["two"] * 3, worker
