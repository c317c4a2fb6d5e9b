"""One live server for the hostile-input suite: a reverse proxy in front of a
recording backend, a web server with PUT, and a management console."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, proxy_config, web_config
from tests.support.rawhttp import request


@dataclass
class Hostile:
    proxy: int
    web: int
    mgmt: int
    backend: Backend
    docroot: Path
    server: PyPerlbal

    def assert_healthy(self) -> None:
        """The next normal request on a fresh connection is still served."""
        got = request(self.proxy, "GET", "/healthy", [("Host", "example.com")])
        assert got.status == 200, got
        got = request(self.web, "GET", "/ok.txt", [("Host", "example.com")])
        assert got.status == 200 and got.body == b"ok\n", got

    def smuggled(self) -> list[str]:
        return [r.target for r in self.backend.log if "smuggle" in r.target]


def raw_exchange(port: int, data: bytes, *, timeout: float = 3.0) -> bytes:
    """Send bytes and read until the server closes (or the timeout), without
    half-closing (test_conformance.py sends the same with a FIN after them)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before we finished sending
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def status_of(reply: bytes) -> int | None:
    if not reply.startswith(b"HTTP/"):
        return None
    return int(reply.split(b" ", 2)[1])


@pytest.fixture(scope="package")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    docroot = tmp_path_factory.mktemp("docroot")
    (docroot / "ok.txt").write_text("ok\n")
    (docroot / "sub").mkdir()
    (docroot / "sub" / "a.txt").write_text("a\n")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret\n")
    (docroot / "escape").symlink_to(outside)
    with Backend(name="b1") as backend:
        # each listener on port 0: the server reports the ports it got
        config = proxy_config(ANY_PORT, [backend], extra=PERSIST) + web_config(
            ANY_PORT, docroot, mgmt_port=ANY_PORT, extra=[
                "SET persist_client = on", "SET enable_put = on", "SET enable_delete = on",
                "SET max_put_size = 1k", "SET enable_concatenate_get = on"])
        with PyPerlbal(config) as server:
            yield Hostile(server.port("proxy"), server.port("web"), server.port("mgmt"),
                          backend, docroot, server)
