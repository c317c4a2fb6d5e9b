"""Upload attacks on the web server's PUT/DELETE: traversal, size limits before
the body, missing lengths, refused Expect: 100-continue, aborted uploads."""

from __future__ import annotations

import socket
import time

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of


def leftovers(hostile: Hostile) -> list[str]:
    return sorted(p.name for p in hostile.docroot.rglob("*")
                  if p.name not in ("ok.txt", "sub", "a.txt", "escape", "big.bin"))


@pytest.mark.parametrize("path", ["/../evil.txt", "/%2e%2e/evil.txt", "/sub/../../evil.txt",
                                  "/sub/%2e%2e%2f%2e%2e%2fevil.txt", "/a\\..\\..\\evil.txt"])
def test_put_traversal_refused(hostile: Hostile, path: str) -> None:
    reply = raw_exchange(hostile.web, f"PUT {path} HTTP/1.0\r\nContent-Length: 4\r\n\r\nevil"
                         .encode())
    assert status_of(reply) in (400, 403, 404), reply[:200]
    assert not (hostile.docroot.parent / "evil.txt").exists()
    assert leftovers(hostile) == []


def test_max_put_size_answered_before_the_body(hostile: Hostile) -> None:
    with socket.create_connection(("127.0.0.1", hostile.web), timeout=3) as sock:
        sock.sendall(b"PUT /too-big.bin HTTP/1.0\r\nContent-Length: 10000000\r\n\r\n")
        start = time.monotonic()
        reply = sock.recv(4096)  # answered without us sending any body
        assert time.monotonic() - start < 2.5
    assert status_of(reply) in (400, 413), reply[:200]
    assert leftovers(hostile) == []


def test_put_without_length_is_refused(hostile: Hostile) -> None:
    reply = raw_exchange(hostile.web, b"PUT /nolen.txt HTTP/1.0\r\n\r\nabc")
    assert status_of(reply) == 411, reply[:200]
    assert leftovers(hostile) == []


def test_expect_100_on_forbidden_put_gets_the_refusal_not_continue(hostile: Hostile) -> None:
    with socket.create_connection(("127.0.0.1", hostile.web), timeout=3) as sock:
        sock.sendall(b"PUT /../x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reply = sock.recv(4096)
    assert not reply.startswith(b"HTTP/1.1 100") and not reply.startswith(b"HTTP/1.0 100")
    assert status_of(reply) in (400, 403, 404)


def test_aborted_upload_leaves_no_file(hostile: Hostile) -> None:
    with socket.create_connection(("127.0.0.1", hostile.web), timeout=3) as sock:
        sock.sendall(b"PUT /partial.bin HTTP/1.0\r\nContent-Length: 1000\r\n\r\n" + b"x" * 300)
        time.sleep(0.3)
    deadline = time.monotonic() + 3
    while leftovers(hostile) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(hostile) == []
    hostile.assert_healthy()


def test_delete_of_directory_or_outside_refused(hostile: Hostile) -> None:
    for path in ("/sub", "/sub/", "/../etc/passwd", "/%2e%2e/x", "/escape/secret.txt"):
        reply = raw_exchange(hostile.web, f"DELETE {path} HTTP/1.0\r\n\r\n".encode())
        assert status_of(reply) in (400, 403, 404), (path, reply[:200])
    assert (hostile.docroot / "sub" / "a.txt").exists()
    assert (hostile.docroot / "escape").exists()
