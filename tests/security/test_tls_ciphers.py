"""Security #19 item 12: the default TLS 1.2 cipher list is Mozilla's "intermediate" one.

A client offering only an RSA-key-exchange suite (AES128-GCM-SHA256) or only a
CBC-SHA1 suite (ECDHE-RSA-AES128-SHA) is refused by default, and accepted when
the config asks for Perl's ``ALL:!LOW:!EXP``; a forward-secret AEAD suite works
with both.  The server key is RSA so that every one of these suites could be used.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from perlbal.params import INTERMEDIATE_CIPHERS, PERL_CIPHERS, REGISTRY
from tests.operating.certs import OPENSSL
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import pool, proxy_service
from tests.support.ports import LOOPBACK, free_ports

RSA_KX = "AES128-GCM-SHA256"
CBC_SHA1 = "ECDHE-RSA-AES128-SHA"
MODERN = "ECDHE-RSA-AES128-GCM-SHA256"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PyPerlbal, int, int]]:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    where = tmp_path_factory.mktemp("rsa")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "key.pem", "-out", "cert.pem", "-subj", "/CN=localhost", "-days", "2"],
                   cwd=where, check=True, capture_output=True, timeout=60)
    default_port, perl_port = free_ports(2)
    tls = ["SET enable_ssl = on", f"SET ssl_cert_file = {where / 'cert.pem'}",
           f"SET ssl_key_file = {where / 'key.pem'}"]
    with Backend("b") as backend:
        with PyPerlbal(pool("p", [backend]) + proxy_service("modern", default_port, "p", extra=tls)
                       + proxy_service("legacy", perl_port, "p", extra=[
                           *tls, f"SET ssl_cipher_list = {PERL_CIPHERS}"])) as running:
            yield running, default_port, perl_port


@pytest.fixture(scope="module")
def ports(server: tuple[PyPerlbal, int, int]) -> tuple[int, int]:
    return server[1], server[2]


def _handshake(port: int, cipher: str) -> str | None:
    """The suite negotiated when the client offers only ``cipher`` (TLS 1.2), or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(f"{cipher}:@SECLEVEL=0")
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                info = tls.cipher()
                return info[0] if info else None
        except (ssl.SSLError, ConnectionResetError):
            return None


def test_default_refuses_rsa_key_exchange_and_cbc_sha1(ports: tuple[int, int]) -> None:
    default_port, _ = ports
    assert _handshake(default_port, RSA_KX) is None
    assert _handshake(default_port, CBC_SHA1) is None
    assert _handshake(default_port, MODERN) == MODERN


def test_perls_cipher_string_is_reachable_by_config(ports: tuple[int, int]) -> None:
    _, perl_port = ports
    assert _handshake(perl_port, RSA_KX) == RSA_KX
    assert _handshake(perl_port, CBC_SHA1) == CBC_SHA1
    assert _handshake(perl_port, MODERN) == MODERN


def test_registry_default_is_the_intermediate_list() -> None:
    assert REGISTRY.service["ssl_cipher_list"].default == INTERMEDIATE_CIPHERS
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all(("ECDHE" in n or "DHE" in n) and ("GCM" in n or "CHACHA" in n)
                         for n in names), names


def test_tls_connections_log_nothing_to_stderr(server: tuple[PyPerlbal, int, int]) -> None:
    """#15 defect 7: asyncio warned "returning true from eof_received() has no effect
    when using ssl" for every TLS connection the client closed."""
    running, default_port, _ = server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for _ in range(3):
        with socket.create_connection((LOOPBACK, default_port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                assert tls.recv(65536).startswith(b"HTTP/1.0 200")
                tls.unwrap()  # close_notify, then the server sees EOF
    import time
    time.sleep(0.3)
    _out, err = running.output()
    assert "eof_received" not in err, err
