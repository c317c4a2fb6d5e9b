"""#15 defect 2: a listen address that cannot be bound is refused where it is SET.

``127.0.0.1:99999`` (Perl silently wraps the port) and ``127.0.0.300:8080``
(Perl fails at ENABLE with "IO::Socket::INET: Bad hostname '...'") are refused
by the registry's value kind, so ``perlbal check`` names the line, start-up
stops with Perl's "Error starting up." and no traceback, and the console
answers one ERROR line that keeps Perl's "Bad hostname '...'" wording.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal, console, requires_perl_perlbal
from tests.support.ports import LOOPBACK, free_ports

REPO = Path(__file__).resolve().parents[2]
BAD_PORT = "Bad port '99999' in '127.0.0.1:99999' (a port is 0-65535)"
BAD_HOST = "Bad hostname '127.0.0.300:8080' (each part of an IPv4 address is 0-255)"


def _conf(listen: str) -> str:
    return (f"CREATE SERVICE w\n  SET role = web_server\n  SET docroot = /tmp\n"
            f"  SET listen = {listen}\nENABLE w\n")


@pytest.mark.parametrize(("listen", "message"), [("127.0.0.1:99999", BAD_PORT),
                                                 ("127.0.0.300:8080", BAD_HOST),
                                                 ("[1:2:3:4:5:6:7:8:9]:80",
                                                  "Bad hostname '[1:2:3:4:5:6:7:8:9]:80'")])
def test_check_names_the_line(tmp_path: Path, listen: str, message: str) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_text(_conf(listen))
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", str(conf)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert f"{conf}:4:3: error: {message}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize("listen", ["127.0.0.1:99999", "127.0.0.300:8080"])
def test_startup_refuses_without_traceback(tmp_path: Path, listen: str) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_text(_conf(listen))
    proc = subprocess.run([sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "ERROR: Bad " in proc.stdout + proc.stderr
    assert "Error starting up." in proc.stdout + proc.stderr


def _console_replies(start: type[PyPerlbal] | type[PerlPerlbal]) -> list[list[str]]:
    (mgmt,) = free_ports(1)
    conf = (f"CREATE SERVICE mgmt\nSET role = management\nSET listen = 127.0.0.1:{mgmt}\n"
            "ENABLE mgmt\n")
    with start(conf), console(LOOPBACK, mgmt, timeout=10) as con:
        assert con.command("CREATE SERVICE a") == ["OK"]
        assert con.command("SET role = web_server") == ["OK"]
        assert con.command("SET docroot = /tmp") == ["OK"]
        return [con.command("SET listen = 127.0.0.1:99999"),
                con.command("SET listen = 127.0.0.300:8080") + con.command("ENABLE a")]


@requires_perl_perlbal
def test_console_refuses_and_keeps_perls_wording() -> None:
    ours = _console_replies(PyPerlbal)
    # refused at SET, so the service is enabled without a listener (as Perl allows)
    assert ours == [[f"ERROR: {BAD_PORT}"], [f"ERROR: {BAD_HOST}", "OK"]]
    perl = _console_replies(PerlPerlbal)
    # Perl takes both at SET (it wraps 99999 to 34463) and refuses the bad host at ENABLE
    assert perl[0] == ["OK"]
    assert perl[1][0] == "OK"
    assert "Bad hostname '127.0.0.300:8080'" in perl[1][1]
    assert "Bad hostname '127.0.0.300:8080'" in ours[1][0]
