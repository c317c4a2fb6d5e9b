"""#15 defects 4 and 5: a SIGHUP reload takes the whole file or nothing, and reports truly.

- Defect 4: a web_server file gains ``SET w.dirindexing = 1`` and ``SET
  w.docroot = /nonexistent/dir``.  The dry run now applies the live server's
  rules (a missing docroot is an error, not ``perlbal check``'s warning), so the
  reload is rejected whole: dirindexing stays off.
- Defect 5: ``VHOST x = a`` changed to ``= b`` is applied and reported as a
  change, never as "cannot undo".
"""

from __future__ import annotations

from pathlib import Path

from tests.management.test_reload_and_stop import _hup_and_wait
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import pool, proxy_service, vhost_selector, web_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _web(web: int, mgmt: int, docroot: Path, *extra: str) -> str:
    return web_config(web, docroot, service="w", extra=extra, mgmt_port=mgmt)


def test_reload_with_a_refused_line_applies_nothing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    web, mgmt = free_ports(2)
    with PyPerlbal(_web(web, mgmt, tmp_path)) as server:
        assert b"Directory listing disabled" in request(web, "GET", "/sub/").body
        (server.workdir / "perlbal.conf").write_text(_web(
            web, mgmt, tmp_path, "SET w.dirindexing = 1", "SET w.docroot = /nonexistent/dir"))
        report = _hup_and_wait(server, "reload rejected")
        assert "Directory not found for service w" in report
        assert "change(s)" not in report
        assert b"Directory listing disabled" in request(web, "GET", "/sub/").body  # not applied
        with console(LOOPBACK, mgmt) as con:
            dump = con.command("dumpconfig")
        assert "  SET dirindexing = on" not in dump and f"  SET docroot = {tmp_path}" in dump
        # the same edit with an existing docroot goes through whole
        (server.workdir / "perlbal.conf").write_text(_web(
            web, mgmt, tmp_path, "SET w.dirindexing = 1"))
        report = _hup_and_wait(server, "reload:")
        assert "reload: 1 change(s)" in report and "SET w.dirindexing = on" in report
        assert b"Directory listing disabled" not in request(web, "GET", "/sub/").body


def _selector(a: Backend, b: Backend, sel: int, target: str) -> str:
    return ("LOAD vhosts\n" + pool("pa", [a]) + pool("pb", [b])
            + proxy_service("a", None, "pa") + proxy_service("b", None, "pb")
            + vhost_selector("sel", sel, {"x.example": target}))


def test_changed_vhost_mapping_is_applied_and_reported() -> None:
    (sel,) = free_ports(1)
    with Backend("a") as a, Backend("b") as b:
        with PyPerlbal(_selector(a, b, sel, "a")) as server:
            host = [("Host", "x.example")]
            assert request(sel, "GET", "/", host).header("X-Backend-Name") == "a"
            (server.workdir / "perlbal.conf").write_text(_selector(a, b, sel, "b"))
            report = _hup_and_wait(server, "reload:")
            assert "reload: 1 change(s)" in report
            assert "VHOST x.example = b" in report
            assert "cannot undo" not in report and "not applied" not in report
            assert request(sel, "GET", "/", host).header("X-Backend-Name") == "b"
