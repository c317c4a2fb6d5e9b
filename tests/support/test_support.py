"""Exercise the support helpers for real: backend, raw HTTP, Perl Perlbal, console."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.perl_perlbal import (
    ConsoleClosed,
    PerlPerlbal,
    PerlPerlbalError,
    requires_perl_perlbal,
    run_config_file,
)
from tests.support.ports import free_port, free_ports, port_accepts
from tests.support.rawhttp import HTTPConnection, build_request, request, send_raw


def test_free_ports_are_distinct_and_unused() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    assert not port_accepts(free_port())


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
