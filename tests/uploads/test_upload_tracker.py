"""The upload_tracker role (UDP) and ``/__upload_status``, through the real servers.

- Against Perl Perlbal 1.80: the same progress datagrams are sent by hand to
  each server's upload_tracker, and ``/__upload_status`` asked of a reverse
  proxy with upload_status_listeners; the replies must be the same bytes
  (the ``nowtime`` clock aside).  Perl's own senders never deliver (see
  test_upload_status.py), hence datagrams by hand.
- Ours end to end: a slow 5 MB upload through one service reports to the
  tracker, and a page polls its progress through another service.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config, proxy_service
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import LOOPBACK, free_ports, socket_inodes
from tests.support.rawhttp import send_raw


def _conf(backend: Backend, status: int, mgmt: int, tracker: int, persist: str) -> str:
    return proxy_config(status, [backend], service="status", mgmt_port=mgmt, extra=[
        f"SET persist_client = {persist}", f"SET upload_status_listeners = {LOOPBACK}:{tracker}"])


# the UDP tracker is created on the console: the harnesses wait for TCP ports only
TRACKER = ("CREATE SERVICE tracker", "SET role = upload_tracker",
           "SET listen = 127.0.0.1:{tracker}", "ENABLE tracker")

Starter = Callable[[str], AbstractContextManager[object]]
_NOW = re.compile(rb"nowtime:(\d+)")


def _console(port: int, lines: list[str]) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        out = b""
        for line in lines:
            sock.sendall(line.encode() + b"\r\n")
            while not out.endswith(b"\r\n"):
                out += sock.recv(4096)
            out += b"|"
    return out


def _datagram(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, (LOOPBACK, port))
    time.sleep(0.1)


def _ask(port: int, session: str, method: str = "GET") -> bytes:
    return send_raw(port, f"{method} /__upload_status?client_up_sess={session} HTTP/1.0\r\n"
                          f"Connection: keep-alive\r\n\r\n".encode(), timeout=2)


def _session_with_perl(start: Starter, persist: str) -> list[bytes]:
    status, mgmt, tracker = free_ports(3)
    with Backend("b") as backend:
        conf = _conf(backend, status, mgmt, tracker, persist)
        with start(conf):
            enabled = _console(mgmt, [line.format(tracker=tracker) for line in TRACKER])
            seen = [enabled, _ask(status, "abcde")]
            _datagram(tracker, b"UPLOAD:abcde:1000:5000:1700000000:1700000003")
            _datagram(tracker, b"UPLOAD:bad!:1:2:3:4")  # not the format: ignored
            _datagram(tracker, b"UPLOAD:other_session:7:9:1:2 trailing")  # idem
            seen += [_ask(status, "abcde"), _ask(status, "abcde", "HEAD"),
                     _ask(status, "other_session"),
                     send_raw(status, b"GET /__upload_status?x=1 HTTP/1.0\r\n\r\n", timeout=2)]
            _datagram(tracker, b"UPLOAD:abcde:4000:5000:1700000000:1700000004")
            seen.append(_ask(status, "abcde"))
            # the status queries were answered by the proxy itself
            assert not [r for r in backend.requests() if "client_up_sess" in r.target]
    return [_NOW.sub(b"nowtime:N", reply) for reply in seen]


def test_status_replies_match_perl(need_perl_perlbal: None) -> None:
    for persist in ("on", "off"):
        perl = _session_with_perl(lambda conf: PerlPerlbal(conf), persist)
        ours = _session_with_perl(lambda conf: PyPerlbal(conf), persist)
        assert b"{done:1000,total:5000," in perl[2], perl
        assert perl[1].endswith(b"\r\n\r\n{}")
        # not a status query: forwarded.  send_raw half-closes after the request:
        # Perl's proxy takes that for the client leaving and answers nothing; ours
        # answers the complete request (docs/migrating.md; issue 24, item 13)
        assert perl[5] == b"" and b'"target": "/__upload_status?x=1"' in ours[5], ours[5]
        assert ours[:5] + ours[6:] == perl[:5] + perl[6:]


def test_slow_upload_progress_polled_through_another_service() -> None:
    up, status, mgmt, tracker = free_ports(4)
    total = 5 * 1024 * 1024
    with Backend("b") as backend:
        conf = _conf(backend, status, mgmt, tracker, "off") + proxy_service("up", up, "p", extra=[
            f"SET upload_status_listeners = {LOOPBACK}:{tracker}"])
        with PyPerlbal(conf) as server:
            assert _console(mgmt, [line.format(tracker=tracker) for line in TRACKER]) \
                == b"OK\r\n|" * 4
            reply: list[bytes] = []

            def upload() -> None:  # ~2 MB/s: about 2.5 s
                with socket.create_connection((LOOPBACK, up), timeout=10) as sock:
                    sock.sendall(f"POST /store?client_up_sess=slow_5mb HTTP/1.0\r\n"
                                 f"Content-Length: {total}\r\n\r\n".encode())
                    piece = b"u" * 65536
                    for _ in range(total // len(piece)):
                        sock.sendall(piece)
                        time.sleep(0.03)
                    reply.append(sock.recv(65536))

            thread = threading.Thread(target=upload)
            thread.start()
            polled: list[tuple[int, int]] = []
            while thread.is_alive():
                body = _ask(status, "slow_5mb").split(b"\r\n\r\n", 1)[1]
                match = re.fullmatch(rb"\{done:(\d+),total:(\d+),starttime:(\d+),nowtime:(\d+)\}",
                                     body)
                if match is not None:
                    done, seen_total, start, now = map(int, match.groups())
                    assert seen_total == total and start <= now <= time.time() + 1
                    polled.append((done, seen_total))
                time.sleep(0.4)
            thread.join()
            _, err = server.output()
    assert reply and reply[0].startswith(b"HTTP/1.0 200 OK")
    assert backend.requests("POST")[0].body == b"u" * total
    dones = [done for done, _ in polled]
    assert len(set(dones)) >= 2, polled  # progress moved while polled
    assert dones == sorted(dones) and 0 < dones[-1] < total
    assert "Traceback" not in err


def test_with_workers_every_worker_answers_from_the_supervisors_tracker() -> None:
    """SERVER workers = 2: the supervisor alone holds the tracker's UDP socket (a
    worker never binds) and passes each datagram on; each worker, served alone
    (the other SIGSTOPped), answers ``/__upload_status`` from the same table."""
    from tests.operating.test_workers_supervised import alone, children, wait_for

    status, mgmt, tracker = free_ports(3)
    with Backend("b") as backend:
        conf = proxy_config(status, [backend], service="status", mgmt_port=mgmt,
                            server=["workers = 2"], extra=[
                                "SET persist_client = off",
                                f"SET upload_status_listeners = {LOOPBACK}:{tracker}"])
        with PyPerlbal(conf) as server:
            assert server.proc is not None
            pid = server.proc.pid
            wait_for(lambda: len(children(pid)) == 2, what="the workers")
            workers = children(pid)
            assert _console(mgmt, [line.format(tracker=tracker) for line in TRACKER]) \
                == b"OK\r\n|" * 4
            sent = b"UPLOAD:abcde:1000:5000:1700000000:1700000003"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(sent, (LOOPBACK, tracker))
            for worker in workers:
                with alone(workers, worker):
                    wait_for(lambda: b"{done:1000,total:5000,starttime:1700000000,"
                             in _ask(status, "abcde"), what=f"worker {worker}'s table")
            assert children(pid) == workers  # the ENABLE gave no new generation
            assert [w for w in workers if _udp_bound(w, tracker)] == []
            assert _udp_bound(pid, tracker)


def _udp_bound(pid: int, port: int) -> bool:
    """Does process ``pid`` hold a UDP socket bound to ``port`` (from /proc)?"""
    inodes = socket_inodes(pid)
    with open("/proc/net/udp") as fh:
        rows = [line.split() for line in fh.readlines()[1:]]
    return any(row[9] in inodes and int(row[1].rsplit(":", 1)[1], 16) == port for row in rows)
