"""run_server start-up messages, selector routing and console shutdown, as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.pyserver import ROOT, PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, pool, proxy_service, vhost_selector
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _run_config(text: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "p.conf"
        conf.write_text(text)
        return subprocess.run([sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
                              capture_output=True, text=True, timeout=20,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_nothing_to_do() -> None:
    done = _run_config("CREATE POOL p\n")
    assert done.returncode == 1
    assert done.stderr == "No services or management port configured.  Nothing to do.  Stopping.\n"


def test_address_in_use_is_perls_error() -> None:
    (port,) = free_ports(1)
    text = "".join(f"CREATE SERVICE m{i}\nSET role = management\nSET listen = {LOOPBACK}:{port}\n"
                   f"ENABLE m{i}\n" for i in range(2))
    done = _run_config(text)
    assert done.returncode == 1
    assert done.stdout == (f"ERROR: Can't start service 'm1' on {LOOPBACK}:{port}: Error creating "
                           "listening socket: IO::Socket::INET: Address already in use\n")
    assert done.stderr == "Error starting up.\n"


def test_selector_vhosts_and_console_shutdown() -> None:
    sel, mgmt = free_ports(2)
    with Backend("one") as one, Backend("two") as two:
        conf = ("LOAD vhosts\n" + pool("p1", [one]) + pool("p2", [two])
                + proxy_service("s1", None, "p1") + proxy_service("s2", None, "p2")
                + vhost_selector("sel", sel, {"www.example.com": "s1", "*.example.com": "s2"})
                + management(mgmt))
        with PyPerlbal(conf) as server:
            def who(host: str) -> str | None:
                resp = request(sel, "GET", "/", [("Host", host)])
                return resp.header("X-Backend-Name") if resp.status == 200 else str(resp.status)

            assert who("www.example.com") == "one"
            assert who("WWW.Example.com:8080") == "one"
            assert who("a.b.example.com") == "two"
            assert who("example.org") == "404"
            with console(LOOPBACK, mgmt) as con:
                assert con.command("vhost sel * = s1") == ["OK"]
                assert who("example.org") == "one"
                con.send_raw(b"shutdown\r\n")
            assert server.proc is not None
            assert server.proc.wait(timeout=10) == 0
