"""TLS on listeners: handshake with a generated certificate, SNI, client certificates,
and Perl's ENABLE-time errors for missing files."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from perlbal.interp import CommandContext, Interpreter
from tests.operating.certs import make_pki
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config, service
from tests.support.ports import LOOPBACK, free_ports


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _client_context(pki: dict[str, Path], *, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca-cert"]))
    if cert:
        ctx.load_cert_chain(str(pki["client-cert"]), str(pki["client-key"]))
    return ctx


def _get(port: int, ctx: ssl.SSLContext, server_name: str, path: str = "/") -> tuple[str, bytes]:
    """(the peer certificate's CN, the whole response) over TLS."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            peer = tls.getpeercert() or {}
            cn = next(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName")
            tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {server_name}\r\n\r\n".encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    return str(cn), data


def _conf(port: int, backend: int, pki: dict[str, Path], *extra: str) -> str:
    return proxy_config(port, [backend], service="secure", extra=[
        "SET enable_ssl = on", f"SET ssl_cert_file = {pki['server-cert']}",
        f"SET ssl_key_file = {pki['server-key']}", *extra])


def test_tls_handshake_and_proxied_request(pki: dict[str, Path]) -> None:
    port, = free_ports(1)
    with Backend(name="b1") as be, PyPerlbal(_conf(port, be.port, pki)):
        cn, data = _get(port, _client_context(pki), "localhost", "/hello")
        assert cn == "localhost"
        assert data.startswith(b"HTTP/1.0 200 OK")
        assert b"X-Backend-Name: b1" in data
        assert be.requests()[0].target == "/hello"
        # a client speaking plain HTTP to the TLS port gets no answer in clear text
        with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert b"200 OK" not in raw.recv(65536)


def test_sni_picks_the_certificate_for_the_name(pki: dict[str, Path]) -> None:
    port, = free_ports(1)
    sni = (f"SET ssl_sni_certs = a.test={pki['a-cert']}:{pki['a-key']}, "
           f"*.b.test={pki['b-cert']}:{pki['b-key']}, b.test={pki['b-cert']}:{pki['b-key']}")
    with Backend() as be, PyPerlbal(_conf(port, be.port, pki, sni)):
        ctx = _client_context(pki)
        assert _get(port, ctx, "a.test")[0] == "a.test"
        assert _get(port, ctx, "b.test")[0] == "b.test"
        loose = _client_context(pki)
        loose.check_hostname = False
        assert _get(port, loose, "www.b.test")[0] == "b.test"  # the wildcard entry
        assert _get(port, ctx, "localhost")[0] == "localhost"  # no entry: the default


def test_client_certificate_required_with_verify_mode_3(pki: dict[str, Path]) -> None:
    port, = free_ports(1)
    with Backend() as be, PyPerlbal(_conf(port, be.port, pki, "SET ssl_verify_mode = 3",
                                          f"SET ssl_ca_path = {pki['cadir']}")):
        cn, data = _get(port, _client_context(pki, cert=True), "localhost")
        assert data.startswith(b"HTTP/1.0 200 OK")
        # TLS 1.3: the refusal arrives with the first read after the handshake,
        # as an alert (SSLError) or a closed connection; never a response
        try:
            _cn, refused = _get(port, _client_context(pki, cert=False), "localhost")
        except (ssl.SSLError, ConnectionError):
            refused = b""
        assert refused == b""
        assert len(be.requests()) == 1


def test_enable_answers_perl_messages_for_missing_files(tmp_path: Path,
                                                        pki: dict[str, Path]) -> None:
    it = Interpreter()
    it.owns_process = True  # as the server's interpreter (a dry run only warns)
    ctx = CommandContext(verbose=True)
    for line in ("CREATE SERVICE s", "SET role = reverse_proxy", "SET listen = 127.0.0.1:1",
                 "SET enable_ssl = on"):
        assert it.run_line(line, ctx) == ["OK"], line
    # the defaults (certs/server-key.pem) do not exist here
    assert it.run_line("ENABLE s", ctx) == ["ERROR: SSL key file (certs/server-key.pem) "
                                            "doesn't exist"]
    it.run_line(f"SET ssl_key_file = {pki['server-key']}", ctx)
    assert it.run_line("ENABLE s", ctx) == ["ERROR: SSL cert file (certs/server-cert.pem) "
                                            "doesn't exist"]
    it.run_line(f"SET ssl_cert_file = {pki['server-cert']}", ctx)
    assert it.run_line(f"SET ssl_sni_certs = a.test={tmp_path}/nope.pem", ctx) == ["OK"]
    assert it.run_line("ENABLE s", ctx) == [f"ERROR: SSL cert file ({tmp_path}/nope.pem) "
                                            "doesn't exist"]
    bad = it.run_line("SET ssl_sni_certs = a.test", ctx)
    assert bad[0].startswith("ERROR: Expecting host=cert_file[:key_file]")


def test_check_warns_about_missing_certificates(tmp_path: Path) -> None:
    from perlbal.check import check_paths

    conf = tmp_path / "ssl.conf"
    conf.write_text(service("s", "reverse_proxy", listen="443", extra=["SET enable_ssl = on"]))
    result = check_paths([str(conf)])
    assert result.errors == []
    assert [w.message for w in result.warnings if "SSL" in w.message] == [
        "SSL key file (certs/server-key.pem) doesn't exist here: the server would refuse "
        "ENABLE s without it"]


def test_unusable_certificate_is_refused_at_enable(tmp_path: Path, pki: dict[str, Path]) -> None:
    port, = free_ports(1)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    conf = f"""
CREATE SERVICE secure
  SET role = web_server
  SET docroot = {tmp_path}
  SET listen = {LOOPBACK}:{port}
  SET enable_ssl = on
  SET ssl_cert_file = {junk}
  SET ssl_key_file = {pki['server-key']}
ENABLE secure
"""
    server = PyPerlbal(conf, startup_timeout=5)
    with pytest.raises(RuntimeError) as info:
        server.start()
    assert f"Can't start service 'secure' on {LOOPBACK}:{port}: SSL certificate" in str(info.value)


def test_example_ssl_conf_builds_its_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from perlbal.runtime.tls import build_context

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    it = Interpreter()
    assert it.load_config_text((repo / "examples/ssl.conf").read_text(), file="ssl.conf",
                               out=lambda line: None)
    ctx = build_context(it.graph.services["site"])
    assert ctx.verify_mode == ssl.CERT_NONE


def _conf_xff(port: int, backend: int, pki: dict[str, Path]) -> str:
    return "LOAD XFFExtras\n" + _conf(port, backend, pki, "  SET plugins = XFFExtras\n"
                                      "  SET send_backend_proto = on\n"
                                      "  SET send_backend_port = on")


def test_backend_learns_the_client_came_over_tls(pki: dict[str, Path]) -> None:
    """XFFExtras' X-Forwarded-Proto says https on a TLS listener (Perl's is_ssl)."""
    port, = free_ports(1)
    with Backend() as be, PyPerlbal(_conf_xff(port, be.port, pki)):
        _cn, data = _get(port, _client_context(pki), "localhost", "/proto")
        assert data.startswith(b"HTTP/1.0 200 OK")
        seen = be.requests()[-1]
        assert seen.header("X-Forwarded-Proto") == "https"
        assert seen.header("X-Forwarded-Port") == str(port)


def _start_refused(conf: str) -> str:
    server = PyPerlbal(conf, startup_timeout=10)
    with pytest.raises(RuntimeError) as info:
        server.start()
    return str(info.value)


def test_a_cipher_list_openssl_refuses_stops_startup_with_the_reason(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    """set_ciphers raises an SSLError with no ``reason``: reading it killed the
    server with a traceback instead of Perl's 'Can't start service' line."""
    port, = free_ports(1)
    out = _start_refused(_conf(port, 9, pki, "SET ssl_cipher_list = NOPE-CIPHER"))
    assert "SSL cipher list (NOPE-CIPHER) unusable: No cipher can be selected." in out
    assert "Traceback" not in out


def test_a_fifo_among_the_ca_files_is_refused_not_waited_on(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    """A FIFO named *.pem in ssl_ca_path blocked the server at its open, forever."""
    cadir = tmp_path / "cas"
    cadir.mkdir()
    (cadir / "ca.pem").write_bytes(pki["ca-cert"].read_bytes())
    os.mkfifo(cadir / "z-fifo.pem")
    port, = free_ports(1)
    out = _start_refused(_conf(port, 9, pki, "SET ssl_verify_mode = 3",
                               f"SET ssl_ca_path = {cadir}"))
    assert f"SSL CA path ({cadir}) unusable" in out and "a FIFO" in out, out
