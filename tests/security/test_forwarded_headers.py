"""Issue 24 item 10: a client's own forwarding fields must not reach the backend.

Through the real server, on a plain listener and a TLS one, from an untrusted
client (bound to 127.0.0.2) and from a trusted upstream proxy (127.0.0.1,
``trusted_upstream_proxies = 127.0.0.1/32``): with ``forwarded_headers =
sanitize`` (the default) the untrusted client's ``X-Forwarded-Proto``,
``X-Forwarded-Port``, ``X-Forwarded-Host`` and ``Forwarded`` are dropped and
``X-Forwarded-Proto`` / ``X-Forwarded-Port`` say what the listener saw; the
trusted proxy's are kept (and only the missing ones filled in).  With
``forwarded_headers = perl`` they pass as Perl Perlbal passes them.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.operating.certs import make_pki
from tests.support.backend import Backend, ReceivedRequest
from tests.support.configs import pool, proxy_service
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal

TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.2"

#: what a client says about the hops before it, all of it false
FORGED = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Port", "443"),
          ("X-Forwarded-Host", "bank.example"), ("Forwarded", "for=1.2.3.4;proto=https"),
          ("X-Forwarded-For", "6.6.6.6")]
FORWARDING = ("x-forwarded-proto", "x-forwarded-port", "x-forwarded-host", "forwarded",
              "x-forwarded-for")


@dataclass
class Stack:
    plain: int
    tls: int
    perl: int
    backend: Backend
    client_tls: ssl.SSLContext


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    pki: dict[str, Path] = make_pki(tmp_path_factory.mktemp("pki"))
    plain, tls, perl = free_ports(3)
    trust = "SET trusted_upstream_proxies = 127.0.0.1/32"
    with Backend(name="b") as backend:
        config = (pool("p", [backend])
                  + proxy_service("plain", plain, "p", extra=[trust])
                  + proxy_service("secure", tls, "p", extra=[
                      trust, "SET enable_ssl = on", f"SET ssl_cert_file = {pki['server-cert']}",
                      f"SET ssl_key_file = {pki['server-key']}"])
                  + proxy_service("perlish", perl, "p", extra=[
                      trust, "SET forwarded_headers = perl"]))
        with PyPerlbal(config):
            yield Stack(plain, tls, perl, backend,
                        ssl.create_default_context(cafile=str(pki["ca-cert"])))


def _send(stack: Stack, port: int, source: str, fields: list[tuple[str, str]],
          tls: bool = False) -> dict[str, str | None]:
    """One request from ``source`` to ``port``; the forwarding fields the backend saw."""
    before = len(stack.backend.requests())
    head = "GET /who HTTP/1.0\r\nHost: app.example\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields) + "\r\n"
    with socket.create_connection((LOOPBACK, port), timeout=10,
                                  source_address=(source, 0)) as raw:
        sock = stack.client_tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
        sock.sendall(head.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200 OK"), reply
    seen: ReceivedRequest = stack.backend.requests()[before]
    return {name: seen.header(name) for name in FORWARDING}


def test_untrusted_client_on_plain_http_cannot_claim_tls(stack: Stack) -> None:
    assert _send(stack, stack.plain, UNTRUSTED, FORGED) == {
        "x-forwarded-proto": "http", "x-forwarded-port": str(stack.plain),
        "x-forwarded-host": None, "forwarded": None, "x-forwarded-for": UNTRUSTED}


def test_untrusted_client_on_tls_gets_https_from_the_listener(stack: Stack) -> None:
    assert _send(stack, stack.tls, UNTRUSTED, [("X-Forwarded-Proto", "http"),
                                               ("X-Forwarded-Port", "80")], tls=True) == {
        "x-forwarded-proto": "https", "x-forwarded-port": str(stack.tls),
        "x-forwarded-host": None, "forwarded": None, "x-forwarded-for": UNTRUSTED}


def test_trusted_proxy_keeps_its_fields(stack: Stack) -> None:
    assert _send(stack, stack.plain, TRUSTED, FORGED) == {
        "x-forwarded-proto": "https", "x-forwarded-port": "443",
        "x-forwarded-host": "bank.example", "forwarded": "for=1.2.3.4;proto=https",
        "x-forwarded-for": f"6.6.6.6, {TRUSTED}"}


def test_trusted_proxy_without_fields_gets_the_listeners(stack: Stack) -> None:
    assert _send(stack, stack.tls, TRUSTED, [], tls=True) == {
        "x-forwarded-proto": "https", "x-forwarded-port": str(stack.tls),
        "x-forwarded-host": None, "forwarded": None, "x-forwarded-for": TRUSTED}


def test_forwarded_headers_perl_passes_them_as_perl_does(stack: Stack) -> None:
    # Perl's assign_client: X-Forwarded-For replaced, X-Host / X-Forwarded-Host
    # dropped, everything else as the client sent it
    assert _send(stack, stack.perl, UNTRUSTED, FORGED) == {
        "x-forwarded-proto": "https", "x-forwarded-port": "443",
        "x-forwarded-host": None, "forwarded": "for=1.2.3.4;proto=https",
        "x-forwarded-for": UNTRUSTED}
