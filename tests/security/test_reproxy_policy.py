"""Security #19 item 10: reproxy_file_roots and reproxy_url_hosts through the real server.

The primary backend answers ``/file/<path>`` with ``X-REPROXY-FILE: <path>`` and
``/url/<host:port>/<path>`` with ``X-REPROXY-URL: http://<host:port>/<path>``.
One server carries three reverse proxies: ``open`` (the defaults, i.e. Perl's
behaviour), ``roots`` (reproxy_file_roots) and ``poolonly`` (reproxy_url_hosts
= pool) and ``named`` (one host:port).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reproxy.harness import TARGET_BODY, target_handler
from tests.support.pyserver import ANY_PORT, PyPerlbal
from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import management, pool, proxy_service
from tests.support.perl_perlbal import PerlPerlbal, console, requires_perl_perlbal
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import RawResponse, request

def _reproxy(name: str, port: int | str, *extra: str) -> str:
    return proxy_service(name, port, "p", extra=["SET enable_reproxy = on", *extra])


def primary_handler(target_port: int) -> "object":
    def handle(req: ReceivedRequest) -> BackendReply:
        if req.target.startswith("/file/"):
            return BackendReply(headers=[("X-REPROXY-FILE", req.target[len("/file"):])])
        if req.target.startswith("/url/"):
            where = req.target[len("/url/"):]
            return BackendReply(headers=[("X-REPROXY-URL", f"http://{where}")])
        if req.target.startswith("/both"):
            return BackendReply(headers=[(
                "X-REPROXY-URL", f"http://127.0.0.1:{target_port}/a http://localhost:1/b")])
        return target_handler(req)  # the pool node itself as a reproxy target
    return handle


@dataclass
class Env:
    ports: dict[str, int]
    inside: Path
    outside: Path
    target: Backend
    primary: Backend
    server: PyPerlbal

    def get(self, service: str, path: str) -> RawResponse:
        return request(self.ports[service], "GET", path, [("Host", "h")], timeout=20)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("reproxy-policy")
    inside, outside = base / "inside", base / "outside"
    inside.mkdir()
    outside.mkdir()
    (inside / "ok.txt").write_bytes(b"inside file\n")
    (outside / "secret.txt").write_bytes(b"outside secret\n")
    os.symlink(outside / "secret.txt", inside / "link.txt")
    with Backend("target", handler=target_handler) as target:
        with Backend("primary", handler=primary_handler(target.port)) as primary:  # type: ignore[arg-type]
            conf = (pool("p", [primary]) + _reproxy("open", ANY_PORT)
                    + _reproxy("roots", ANY_PORT, f"SET reproxy_file_roots = {inside}")
                    + _reproxy("poolonly", ANY_PORT, "SET reproxy_url_hosts = pool")
                    + _reproxy("named", ANY_PORT,
                               f"SET reproxy_url_hosts = 127.0.0.1:{target.port}")
                    + management(ANY_PORT))
            with PyPerlbal(conf) as server:
                yield Env(server.ports, inside, outside, target, primary, server)


def test_defaults_serve_any_file_and_url_as_perl_does(env: Env) -> None:
    assert env.get("open", f"/file{env.outside}/secret.txt").body == b"outside secret\n"
    assert env.get("open", f"/url/127.0.0.1:{env.target.port}/x").body == TARGET_BODY


def test_file_roots_allow_files_under_them(env: Env) -> None:
    resp = env.get("roots", f"/file{env.inside}/ok.txt")
    assert (resp.status, resp.body) == (200, b"inside file\n")


@pytest.mark.parametrize("path", ["{outside}/secret.txt", "{inside}/link.txt",
                                  "{inside}/../outside/secret.txt"])
def test_file_roots_refuse_outside_files_and_symlinks_out(env: Env, path: str) -> None:
    wanted = path.format(inside=env.inside, outside=env.outside)
    resp = env.get("roots", f"/file{wanted}")
    assert resp.status == 502
    assert b"outside secret" not in resp.body
    assert b"Reproxy refused: X-REPROXY-FILE" in resp.body and b"reproxy_file_roots" in resp.body
    _out, err = env.server.output()
    assert f"service roots: reproxy refused for GET /file{wanted}" in err


def test_url_hosts_pool_allows_only_pool_nodes(env: Env) -> None:
    ok = env.get("poolonly", f"/url/{env.primary.address}/t")
    assert (ok.status, ok.body) == (200, TARGET_BODY)
    before = len(env.target.requests())
    for where in (f"127.0.0.1:{env.target.port}/x", f"127.0.0.1:{env.ports['mgmt']}/"):
        resp = env.get("poolonly", f"/url/{where}")
        assert resp.status == 502
        assert b"is not allowed by reproxy_url_hosts (pool)" in resp.body
    assert len(env.target.requests()) == before  # a refused target is never contacted


def test_url_hosts_named_host_port_and_mixed_lists(env: Env) -> None:
    assert env.get("named", f"/url/127.0.0.1:{env.target.port}/x").body == TARGET_BODY
    assert env.get("named", f"/url/127.0.0.1:{env.ports['mgmt']}/").status == 502
    # one forbidden member refuses the whole list
    assert env.get("named", "/both").status == 502


def test_settings_are_validated_live_and_shown(env: Env) -> None:
    with console(LOOPBACK, env.ports["mgmt"], timeout=10) as con:
        assert con.command("SET named.reproxy_url_hosts = any pool") == [
            "ERROR: Expecting 'any', 'pool' or host[:port] names for 'reproxy_url_hosts' "
            "('any' stands alone)"]
        assert con.command("SET named.reproxy_url_hosts = bad_host!") == [
            "ERROR: Expecting host or host:port in 'reproxy_url_hosts', got 'bad_host!'"]
        assert con.command("SET roots.reproxy_file_roots = relative/dir") == [
            "ERROR: Directory 'relative/dir' for 'reproxy_file_roots' must be an absolute path"]
        assert con.command("SET roots.reproxy_file_roots = /nonexistent/dir") == [
            "ERROR: Directory '/nonexistent/dir' not found for 'reproxy_file_roots'"]
        assert con.command(f"SET roots.reproxy_file_roots = {env.outside}") == ["OK"]
        dump = con.command("dumpconfig")
        assert f"  SET reproxy_file_roots = {env.outside}" in dump
        assert f"  SET reproxy_url_hosts = 127.0.0.1:{env.target.port}" in dump
    try:
        assert env.get("roots", f"/file{env.outside}/secret.txt").status == 200
        assert env.get("roots", f"/file{env.inside}/ok.txt").status == 502
    finally:
        with console(LOOPBACK, env.ports["mgmt"], timeout=10) as con:
            assert con.command(f"SET roots.reproxy_file_roots = {env.inside}") == ["OK"]


@requires_perl_perlbal
def test_perl_serves_any_reproxy_file(tmp_path: Path) -> None:
    """The default is Perl's behaviour: Perl serves a file anywhere (hence the opt-in)."""
    (tmp_path / "secret.txt").write_bytes(b"outside secret\n")
    port, = free_ports(1)
    with Backend("primary", handler=primary_handler(1)) as primary:  # type: ignore[arg-type]
        conf = pool("p", [primary]) + _reproxy("open", port)
        with PerlPerlbal(conf):
            resp = request(port, "GET", f"/file{tmp_path}/secret.txt", [("Host", "h")], timeout=20)
    assert resp.body == b"outside secret\n"
