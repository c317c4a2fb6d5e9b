"""SET <pool> send_proxy_protocol = v1 | v2: each backend connection starts with a
PROXY header naming its client, and is never handed to another client."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from perlbal.http.proxyproto import parse
from tests.support.configs import PERSIST, proxy_config
from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal
from tests.support.threadserver import ThreadedServer


class ProxyAwareBackend(ThreadedServer):
    """Reads a PROXY header, then HTTP/1.0 requests; answers with the client the
    header named, keeping the connection open (keep-alive) as long as asked."""

    backlog = 32

    def __init__(self) -> None:
        self.headers: list[tuple[str, int] | None] = []
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while (header := parse(buf)) is None:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            self.headers.append(header.client)
            buf = buf[header.consumed:]
            client = header.client
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buf += data
                _head, _, buf = buf.partition(b"\r\n\r\n")
                body = f"{client[0]}:{client[1]}".encode() if client else b"none"
                conn.sendall(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: %d"
                             b"\r\n\r\n" % len(body) + body)


@pytest.fixture(scope="module", params=["v1", "v2"])
def proxy(request: pytest.FixtureRequest) -> Iterator[tuple[int, ProxyAwareBackend]]:
    backend = ProxyAwareBackend()
    (port,) = free_ports(1)
    config = proxy_config(port, [backend.port],
                          pool_extra=[f"SET p.send_proxy_protocol = {request.param}"],
                          extra=[*PERSIST, "SET verify_backend = on"])
    try:
        with PyPerlbal(config):
            yield port, backend
    finally:
        backend.close()


def _get_twice(port: int, source: str) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source, 0)) as sock:
        local_port = sock.getsockname()[1]
        bodies = []
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(str(local_port).encode()):
                chunk = sock.recv(4096)
                assert chunk, data
                data += chunk
            bodies.append(data.partition(b"\r\n\r\n")[2])
    return bodies + [str(local_port).encode()]


def test_each_client_gets_its_own_introduced_connection(
        proxy: tuple[int, ProxyAwareBackend]) -> None:
    port, backend = proxy
    first = _get_twice(port, "127.0.0.5")
    second = _get_twice(port, "127.0.0.6")
    assert first[:2] == [b"127.0.0.5:" + first[2]] * 2
    assert second[:2] == [b"127.0.0.6:" + second[2]] * 2  # never the other client's connection
    assert all(client is not None for client in backend.headers)  # verify_backend was skipped
