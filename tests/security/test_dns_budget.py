"""A DNS reply built to stall the decoder (issue 24 item 5).

Every record's owner is a 2-byte compression pointer back to one long name
of 1-byte labels: no loop, so the jump cap never tripped, and a 64 KB reply
cost seconds of CPU on the event loop, at every refresh.  Now one message has
a decoding budget (perlbal.dnsmessage): such a reply is refused cheaply,
logged once, and the pool keeps its last good nodes.

The sans-IO tests spend each part of the budget (name length, label octets,
pointers); the server test runs a real DNS server on loopback that turns
hostile after its first good answer.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from perlbal.dnsmessage import MAX_JUMPS, MAX_LABEL_OCTETS, DnsError, answers
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal

dnslib = pytest.importorskip("dnslib")
from dnslib import QTYPE, RR, A as RA, DNSRecord  # noqa: E402

IDENT = 0x2424
_HEADER = "!HHHHHH"
_A_RECORD = struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1])


def _reply(ident: int, question: bytes, records: list[bytes]) -> bytes:
    """A reply (QR, RD, RA) with one question and ``records`` in its answer section."""
    head = struct.pack(_HEADER, ident, 0x8180, 1, len(records), 0, 0)
    return head + question + struct.pack("!HH", 1, 1) + b"".join(records)


def pointer_flood(ident: int, labels: int, size: int = 65507) -> bytes:
    """The question's name is ``labels`` 1-byte labels; every A record's owner
    points back at it (``c0 0c``), as many as fit in ``size`` bytes."""
    question = b"\x01a" * labels + b"\x00"
    room = size - 12 - len(question) - 4
    return _reply(ident, question, [b"\xc0\x0c" + _A_RECORD] * (room // (2 + len(_A_RECORD))))


def pointer_chains(ident: int, records: int) -> bytes:
    """A short name behind a chain of 64 pointers; every owner points at the chain's end."""
    question = b"\x01a\x00"
    offset = 12 + len(question) + 4 + 12  # where the chain starts: the carrier's rdata
    chain = b""
    previous = 12
    for _ in range(64):
        chain += struct.pack("!H", 0xC000 | previous)
        previous = offset
        offset += 2
    # the chain rides in the rdata of a first (non-address) record
    carrier = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(chain)) + chain
    owner = struct.pack("!H", 0xC000 | (offset - 2))
    return _reply(ident, question, [carrier] + [owner + _A_RECORD] * records)


def test_a_name_of_one_byte_labels_past_255_octets_is_refused_at_once() -> None:
    started = time.process_time()
    with pytest.raises(DnsError, match="longer than 255 octets"):
        answers(pointer_flood(IDENT, 16000), IDENT)
    assert time.process_time() - started < 1.0  # (it took seconds before the fix)


def test_label_octets_over_the_budget_refuse_the_reply() -> None:
    message = pointer_flood(IDENT, 127)  # a legal 255-octet name, read some 4000 times
    with pytest.raises(DnsError, match=f"more than {MAX_LABEL_OCTETS} octets of labels"):
        answers(message, IDENT)
    # the same name behind a few pointers is fine
    assert len(answers(pointer_flood(IDENT, 127, size=2000), IDENT)) > 50


def test_pointers_over_the_budget_refuse_the_reply() -> None:
    per_record = 64
    with pytest.raises(DnsError, match=f"more than {MAX_JUMPS} compression pointers"):
        answers(pointer_chains(IDENT, MAX_JUMPS // per_record + 1), IDENT)
    assert len(answers(pointer_chains(IDENT, MAX_JUMPS // per_record - 2), IDENT)) == \
        MAX_JUMPS // per_record - 2


class TurningZone:
    """A UDP DNS server: ``app.test`` is 127.0.0.2 (TTL 1 s) until ``hostile``
    is set; then every query gets the pointer flood."""

    def __init__(self) -> None:
        self.hostile = False
        self.hostile_sent = 0
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
            request = DNSRecord.parse(data)
            if self.hostile:
                self.sock.sendto(pointer_flood(request.header.id, 16000), peer)
                self.hostile_sent += 1
                continue
            reply = request.reply()
            if QTYPE[request.q.qtype] == "A":
                reply.add_answer(RR("app.test", QTYPE.A, rdata=RA("127.0.0.2"), ttl=1))
            self.sock.sendto(reply.pack(), peer)

    def close(self) -> None:
        self.sock.close()


def _get(port: int, target: str) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.0\r\n\r\n".encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply, time.monotonic() - started


def test_a_hostile_reply_neither_stalls_the_server_nor_loses_the_nodes() -> None:
    zone = TurningZone()
    backend_port, port = free_ports(2)
    try:
        with Backend(name="one", host="127.0.0.2", port=backend_port), \
                PyPerlbal(proxy_config(port, [], pool="app", service="web", pool_extra=[
                    f"SET app.dns_name = app.test:{backend_port}",
                    f"SET app.dns_server = 127.0.0.1:{zone.port}",
                    "SET app.dns_refresh_min = 0.2"])) as server:
            deadline = time.monotonic() + 20
            while b"X-Backend-Name: one" not in _get(port, "/first")[0]:
                assert time.monotonic() < deadline, "the pool never got its node"
                time.sleep(0.1)
            zone.hostile = True
            slowest = 0.0
            served = 0
            deadline = time.monotonic() + 60
            # requests one after another while at least three hostile replies arrive
            while zone.hostile_sent < 4:
                assert time.monotonic() < deadline, "the server stopped asking"
                reply, took = _get(port, f"/during{served}")
                assert b"X-Backend-Name: one" in reply, reply[:300]
                slowest = max(slowest, took)
                served += 1
            _, err = server.output()
    finally:
        zone.close()
    # each flood took seconds of the event loop before (and again at each refresh)
    assert slowest < 3.0, f"a request waited {slowest:.1f} s while DNS replies were decoded"
    assert err.count("DNS name longer than 255 octets") == 1, err[-2000:]
    assert "nodes kept as they are" in err
