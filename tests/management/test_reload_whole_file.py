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
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

WEB = """
CREATE SERVICE w
SET role = web_server
SET listen = 127.0.0.1:{web}
SET docroot = {docroot}
{extra}
ENABLE w
CREATE SERVICE mgmt
SET role = management
SET listen = 127.0.0.1:{mgmt}
ENABLE mgmt
"""


def test_reload_with_a_refused_line_applies_nothing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    web, mgmt = free_ports(2)
    fill = dict(web=web, mgmt=mgmt, docroot=tmp_path)
    with PyPerlbal(WEB.format(extra="", **fill)) as server:
        assert b"Directory listing disabled" in request(web, "GET", "/sub/").body
        (server.workdir / "perlbal.conf").write_text(WEB.format(
            extra="SET w.dirindexing = 1\nSET w.docroot = /nonexistent/dir", **fill))
        report = _hup_and_wait(server, "reload rejected")
        assert "Directory not found for service w" in report
        assert "change(s)" not in report
        assert b"Directory listing disabled" in request(web, "GET", "/sub/").body  # not applied
        with console(LOOPBACK, mgmt) as con:
            dump = con.command("dumpconfig")
        assert "  SET dirindexing = on" not in dump and f"  SET docroot = {tmp_path}" in dump
        # the same edit with an existing docroot goes through whole
        (server.workdir / "perlbal.conf").write_text(WEB.format(
            extra="SET w.dirindexing = 1", **fill))
        report = _hup_and_wait(server, "reload:")
        assert "reload: 1 change(s)" in report and "SET w.dirindexing = on" in report
        assert b"Directory listing disabled" not in request(web, "GET", "/sub/").body


SELECTOR = """
LOAD vhosts
CREATE POOL pa
POOL pa ADD {a}
CREATE POOL pb
POOL pb ADD {b}
CREATE SERVICE a
SET role = reverse_proxy
SET pool = pa
ENABLE a
CREATE SERVICE b
SET role = reverse_proxy
SET pool = pb
ENABLE b
CREATE SERVICE sel
SET role = selector
SET listen = 127.0.0.1:{sel}
SET plugins = vhosts
VHOST x.example = {target}
ENABLE sel
"""


def test_changed_vhost_mapping_is_applied_and_reported() -> None:
    (sel,) = free_ports(1)
    with Backend("a") as a, Backend("b") as b:
        fill = dict(a=a.address, b=b.address, sel=sel)
        with PyPerlbal(SELECTOR.format(target="a", **fill)) as server:
            host = [("Host", "x.example")]
            assert request(sel, "GET", "/", host).header("X-Backend-Name") == "a"
            (server.workdir / "perlbal.conf").write_text(SELECTOR.format(target="b", **fill))
            report = _hup_and_wait(server, "reload:")
            assert "reload: 1 change(s)" in report
            assert "VHOST x.example = b" in report
            assert "cannot undo" not in report and "not applied" not in report
            assert request(sel, "GET", "/", host).header("X-Backend-Name") == "b"
