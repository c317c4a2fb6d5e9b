"""``listen = 127.0.0.1:0`` and PERLBAL_PORTS_FILE: the server binds a port the
kernel chooses and reports it (docs/operating.md, "Port 0"), so whoever started
it (tests/support/pyserver.py) never chooses a port and releases it first.

Through the real server: the reported ports accept connections and serve, the
file follows ENABLE/DISABLE on the console (a UDP upload_tracker included), a
worker supervisor reports its listeners, and ``perlbal check`` takes two
``:0`` listens as no clash.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK
from tests.support.pyserver import ANY_PORT, ROOT, PyPerlbal
from tests.support.rawhttp import request


def _config(docroot: Path, server: str = "") -> str:
    return (server + f"CREATE SERVICE web\n  SET role = web_server\n  SET listen = {ANY_PORT}\n"
            f"  SET docroot = {docroot}\nENABLE web\n"
            f"CREATE SERVICE mgmt\n  SET role = management\n  SET listen = {ANY_PORT}\n"
            "ENABLE mgmt\n")


def _report(server: PyPerlbal) -> dict[str, dict[str, object]]:
    report = json.loads((server.workdir / "ports.json").read_text())
    assert report["pid"] == (server.proc.pid if server.proc else None)
    services: dict[str, dict[str, object]] = report["services"]
    return services


def test_port_zero_listeners_are_bound_reported_and_serve(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    with PyPerlbal(_config(tmp_path)) as server:
        web, mgmt = server.port("web"), server.port("mgmt")
        assert web != mgmt and 0 not in (web, mgmt)
        assert _report(server) == {
            "web": {"host": LOOPBACK, "port": web, "transport": "tcp"},
            "mgmt": {"host": LOOPBACK, "port": mgmt, "transport": "tcp"}}
        resp = request(web, "GET", "/hello.txt")
        assert (resp.status, resp.body) == (200, b"hello\n")
        with console(LOOPBACK, mgmt) as con:
            # a listener enabled on the console is reported, a disabled one dropped
            for line in ("CREATE SERVICE web2", "SET role = web_server",
                         f"SET listen = {ANY_PORT}", f"SET docroot = {tmp_path}",
                         "ENABLE web2", "CREATE SERVICE tracker",
                         "SET role = upload_tracker", f"SET listen = {ANY_PORT}",
                         "ENABLE tracker"):
                assert con.command(line) == ["OK"], line
            ports = server.refresh_ports()
            assert set(ports) == {"web", "web2", "mgmt", "tracker"}
            assert _report(server)["tracker"]["transport"] == "udp"
            assert request(ports["web2"], "GET", "/hello.txt").status == 200
            assert con.command("DISABLE web2") == ["OK"]
            assert set(server.refresh_ports()) == {"web", "mgmt", "tracker"}


def test_a_supervisor_reports_the_ports_its_workers_serve(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    with PyPerlbal(_config(tmp_path, server="SERVER workers = 2\n")) as server:
        # written once, by the supervisor (workers bind nothing)
        assert set(_report(server)) == {"web", "mgmt"}
        for _ in range(4):
            assert request(server.port("web"), "GET", "/hello.txt").status == 200


def test_check_takes_two_port_zero_listens_as_no_clash(tmp_path: Path) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_text(_config(tmp_path))
    done = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", str(conf)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Address already in use" not in done.stdout + done.stderr


def test_an_unwritable_ports_file_is_an_error_logged_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    conf = tmp_path / "perlbal.conf"
    conf.write_text(_config(tmp_path))
    with subprocess.Popen([sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
                          cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
                               "PERLBAL_PORTS_FILE": str(tmp_path / "no-such-dir" / "p")}) as proc:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        proc.terminate()
        proc.wait(timeout=10)
    assert "can't write the bound ports to PERLBAL_PORTS_FILE=" in line, line
    assert "No such file or directory" in line, line
