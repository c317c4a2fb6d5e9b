"""Exercise the support helpers for real: backend, raw HTTP, Perl Perlbal, console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import (
    PERSIST,
    management,
    pool,
    proxy_config,
    proxy_service,
    serve_proxy,
    service,
    vhost_selector,
    web_config,
)
from tests.support.perl_perlbal import (
    ConsoleClosed,
    PerlPerlbal,
    PerlPerlbalError,
    management_config,
    requires_perl_perlbal,
    run_config_file,
)
from tests.support.ports import free_port, free_ports, port_accepts
from tests.support.pyserver import ANY_PORT
from tests.support.rawhttp import HTTPConnection, build_request, request, send_raw


def test_free_ports_are_distinct_and_unused() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert not port_accepts(free_port())


def test_free_ports_are_outside_the_kernels_ephemeral_range() -> None:
    """No port the kernel hands out itself (port 0, a source port) can take one."""
    low, high = (int(n) for n in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert all(not low <= port <= high for port in free_ports(50))


def test_backend_counts_connections_and_requests() -> None:
    with Backend(name="b1", extra_headers=[("X-Reproxy-URL", "http://127.0.0.1:1/x")]) as be:
        with HTTPConnection(be.port) as conn:
            first = conn.request("GET", "/a?x=1", [("X-Test", "yes")])
            second = conn.request("POST", "/b", body=b"hello")
        third = request(be.port, "GET", "/c")
        assert (first.header("X-Backend-Conn"), first.header("X-Backend-Req")) == ("1", "1")
        assert (second.header("X-Backend-Conn"), second.header("X-Backend-Req")) == ("1", "2")
        assert (third.header("X-Backend-Conn"), third.header("X-Backend-Req")) == ("2", "1")
        assert first.header("X-Backend-Name") == "b1"
        assert first.header("x-reproxy-url") == "http://127.0.0.1:1/x"
        echo = json.loads(first.body)
        assert echo["method"] == "GET" and echo["target"] == "/a?x=1"
        assert ["X-Test", "yes"] in echo["headers"]
        assert json.loads(second.body)["body_length"] == 5
        assert [(r.method, r.target) for r in be.requests()] == [("GET", "/a?x=1"), ("POST", "/b"), ("GET", "/c")]
        assert be.connection_count == 2


def test_backend_knobs_close_size_options_chunked() -> None:
    with Backend(response_size=1000, close_after_response=True) as be:
        with HTTPConnection(be.port) as conn:
            resp = conn.request("GET", "/big")
            assert resp.body == b"x" * 1000
            assert resp.header("Connection") == "close"
            assert conn.is_closed_by_peer()
        opts = request(be.port, "OPTIONS", "*")
        assert opts.status == 200 and opts.body == b""
        chunked = build_request(
            "PUT", "/up", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"
        )
        raw = send_raw(be.port, chunked)
        assert raw.startswith(b"HTTP/1.1 200")
        assert be.requests("PUT")[0].body == b"hello"


def test_backend_custom_handler_and_pipelining() -> None:
    def handler(req: ReceivedRequest) -> BackendReply | None:
        if req.target == "/teapot":
            return BackendReply(status=418, reason="Teapot", body=b"short and stout")
        return None

    with Backend(handler=handler) as be:
        with HTTPConnection(be.port) as conn:
            responses = conn.pipeline(
                [("GET", build_request("GET", "/teapot")), ("HEAD", build_request("HEAD", "/x"))]
            )
        assert responses[0].status == 418 and responses[0].body == b"short and stout"
        assert responses[1].status == 200 and responses[1].body == b""
        assert responses[1].header("X-Backend-Req") == "2"


@requires_perl_perlbal
def test_perl_perlbal_web_server_and_console(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello from perlbal\n")
    web, mgmt = free_ports(2)
    config = (
        "CREATE SERVICE web\n"
        "  SET role = web_server\n"
        f"  SET listen = 127.0.0.1:{web}\n"
        f"  SET docroot = {tmp_path}\n"
        "ENABLE web\n"
    )
    with PerlPerlbal(config, mgmt_port=mgmt) as perl:
        resp = request(web, "GET", "/hello.txt")
        assert resp.status == 200 and resp.body == b"hello from perlbal\n"
        with perl.console() as con:
            assert con.command("show service") == [
                f"web 127.0.0.1:{web} ENABLED",
                f"zz_test_mgmt 127.0.0.1:{mgmt} ENABLED",
                ".",
            ]
            assert con.command("show service web")[:3] == [
                "SERVICE web",
                f"     listening: 127.0.0.1:{web}",
                "          role: web_server",
            ]
            assert con.command("SET web.persist_client = yes") == ["OK"]
            assert con.command("verbose off") == []
            assert con.command("SET web.persist_client = maybe") == [
                "ERROR: Expecting boolean value for parameter 'persist_client'"
            ]
            with pytest.raises(ConsoleClosed):
                con.command("quit")


@requires_perl_perlbal
def test_perl_perlbal_startup_failure_is_reported() -> None:
    with pytest.raises(PerlPerlbalError, match="Error starting up"):
        with PerlPerlbal("CREATE SERVICE x\nSET x.role = bogus\n"):
            pass
    run = run_config_file("CREATE POOL p\nSET p.balance_method = nope\n")
    assert run.status != 0 and run.startup_failed
    assert run.stdout == ["ERROR: Unknown balance method"]


def test_config_builders_write_the_scaffolding_perl_writes() -> None:
    with Backend(name="b") as be:
        text = proxy_config(8080, [be, 9001, "10.0.0.1:80"], extra=PERSIST,
                            pool_extra=["SET balance_method = random"], mgmt_port=8081,
                            load=["vhosts"], server=["crash_backtrace = 1"])
        assert text == (
            "SERVER crash_backtrace = 1\nLOAD vhosts\n"
            f"CREATE POOL p\n  POOL p ADD {be.address}\n  POOL p ADD 127.0.0.1:9001\n"
            "  POOL p ADD 10.0.0.1:80\n  SET balance_method = random\n"
            "CREATE SERVICE proxy\n  SET role = reverse_proxy\n  SET listen = 127.0.0.1:8080\n"
            "  SET pool = p\n  SET persist_client = on\n  SET persist_backend = on\n"
            "ENABLE proxy\n"
            "CREATE SERVICE mgmt\n  SET role = management\n  SET listen = 127.0.0.1:8081\n"
            "ENABLE mgmt\n")
    assert web_config("0.0.0.0:80", "/srv", extra=["SET dirindexing = on"]) == (
        "CREATE SERVICE web\n  SET role = web_server\n  SET listen = 0.0.0.0:80\n"
        "  SET docroot = /srv\n  SET dirindexing = on\nENABLE web\n")
    assert proxy_service("inner", None, "q") == (
        "CREATE SERVICE inner\n  SET role = reverse_proxy\n  SET pool = q\nENABLE inner\n")
    assert service("s", "selector", listen=1, extra=["VHOST s * = inner"], enable=False) == (
        "CREATE SERVICE s\n  SET role = selector\n  SET listen = 127.0.0.1:1\n"
        "  VHOST s * = inner\n")
    assert vhost_selector("s", "80", {"a.example": "x", "*": "y"},
                          extra=["SET persist_client = on"]) == (
        "CREATE SERVICE s\n  SET role = selector\n  SET listen = 80\n  SET plugins = vhosts\n"
        "  SET persist_client = on\n  VHOST s a.example = x\n  VHOST s * = y\nENABLE s\n")
    assert pool("empty") == "CREATE POOL empty\n"
    assert management(5) == management_config(5)


def test_config_builders_pass_our_check(tmp_path: Path) -> None:
    from perlbal.check import check_paths

    conf = tmp_path / "site.conf"
    conf.write_text(proxy_config(free_port(), [1], extra=PERSIST, load=["vhosts"])
                    + web_config(free_port(), tmp_path, service="files")
                    + pool("q", [2]) + proxy_service("inner", None, "q")
                    + vhost_selector("sel", free_port(), {"*": "inner"})
                    + management(free_port()))
    result = check_paths([str(conf)])
    assert result.errors == [], result.errors


@pytest.mark.parametrize("perl", [False, pytest.param(True, marks=requires_perl_perlbal)])
def test_serve_proxy_starts_either_server_on_the_built_config(perl: bool) -> None:
    with Backend(name="b1") as be:
        with serve_proxy([be], extra=PERSIST, mgmt=True,
                         start=PerlPerlbal if perl else None) as px:
            # ours binds port 0 and reports what it got; Perl is given chosen ports
            listen: int | str = px.port if perl else ANY_PORT
            mgmt: int | str | None = px.mgmt_port if perl else ANY_PORT
            assert px.config == proxy_config(listen, [be], extra=PERSIST, mgmt_port=mgmt)
            with HTTPConnection(px.port) as conn:
                first = conn.request("GET", "/a")
                second = conn.request("GET", "/b")
            assert (first.status, second.status) == (200, 200)
            assert first.header("X-Backend-Name") == "b1"
            assert second.header("X-Backend-Conn") == first.header("X-Backend-Conn")
            assert px.mgmt_port is not None and port_accepts(px.mgmt_port)


def test_threaded_server_serves_each_connection_and_counts_them() -> None:
    import socket as _socket

    from tests.support.threadserver import ThreadedServer

    class Echo(ThreadedServer):
        def serve(self, conn: _socket.socket) -> None:
            with conn:
                conn.sendall(conn.recv(100).upper())

    with Echo() as server:
        for word in (b"a", b"b"):
            with _socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(word)
                assert sock.recv(100) == word.upper()
        assert server.connections == 2
    with pytest.raises(OSError):
        _socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
