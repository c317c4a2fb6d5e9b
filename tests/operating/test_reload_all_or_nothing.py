"""Issue 25 items 2 and 3: a reload is applied whole or not at all, re-reads the files
the config names, and `perlbal reload` says which it was (exit status and reason).

Each test runs the real server (``python -m perlbal.runtime.main``) and the real
``perlbal reload`` command, which sends SIGHUP to the pid in the pidfile and
waits for the outcome the server writes (no sleeping on our side).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.operating.certs import make_pki
from tests.support.backend import Backend
from tests.support.configs import management, pool, proxy_service
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import ROOT, PyPerlbal
from tests.support.rawhttp import request


def perlbal_reload(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from perlbal.cli import main; "
                           "sys.exit(main())", "reload", "--timeout", "20", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _proxy(server: str, web: int, mgmt: int, backend: Backend, *more: str) -> str:
    return (server + pool("p", [backend])
            + proxy_service("web", web, "p", extra=list(more)) + management(mgmt))


def test_a_taken_port_refuses_the_whole_reload(tmp_path: Path) -> None:
    web, other, mgmt = free_ports(3)
    pidfile, errlog = tmp_path / "perlbal.pid", tmp_path / "error.log"
    head = f"SERVER pidfile = {pidfile}\nSERVER error_log = {errlog}\n"
    with Backend("b1") as b1, PyPerlbal(_proxy(head, web, mgmt, b1)) as server:
        conf = server.workdir / "perlbal.conf"
        taken = socket.socket()
        taken.bind((LOOPBACK, other))
        taken.listen(1)
        try:
            edited = (_proxy(head, web, mgmt, b1, "SET persist_client = on")
                      + proxy_service("other", other, "p"))
            conf.write_text(edited)
            refused = perlbal_reload("-c", str(conf))
            assert refused.returncode == 1, refused
            where = f"{conf}:{_line_of(edited, f'{LOOPBACK}:{other}')}:"
            assert where in refused.stderr and "Can't start service 'other'" in refused.stderr
            assert "Address already in use" in refused.stderr
            log_lines = [ln for ln in errlog.read_text().splitlines() if " ERROR " in ln]
            assert any(where in ln and "Can't start service 'other'" in ln for ln in log_lines)
            assert "INCOMPLETE" not in server.output()[0]
            with console(LOOPBACK, mgmt) as con:  # nothing of the file was applied
                assert "  SET persist_client = on" not in "\n".join(con.command("dumpconfig"))
                assert con.command("show service other")[0].startswith("ERROR")
        finally:
            taken.close()
        applied = perlbal_reload("--pidfile", str(pidfile))
        assert applied.returncode == 0, applied
        assert "SET web.persist_client = on" in applied.stdout
        assert "ENABLE other" in applied.stdout
        assert request(other, "GET", "/").header("X-Backend-Name") == "b1"
        again = perlbal_reload("--pidfile", str(pidfile))
        assert again.returncode == 0 and again.stdout.strip() == "reload: no changes"


def test_reload_exit_status_when_the_server_cannot_be_asked(tmp_path: Path) -> None:
    no_pid = perlbal_reload("--pidfile", str(tmp_path / "none.pid"))
    assert no_pid.returncode == 2 and "can't read pidfile" in no_pid.stderr
    conf = tmp_path / "p.conf"
    conf.write_text("CREATE SERVICE m\n  SET role = management\n  SET listen = 127.0.0.1:1\n")
    no_setting = perlbal_reload("-c", str(conf))
    assert no_setting.returncode == 2 and "SERVER pidfile" in no_setting.stderr
    stale = tmp_path / "stale.pid"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.write_text(f"{dead.pid}\n")
    (tmp_path / "stale.pid.reload").write_text("")
    assert perlbal_reload("--pidfile", str(stale)).returncode == 2


def test_reopen_logs_names_itself_when_the_server_cannot_be_reached(tmp_path: Path) -> None:
    """Its errors said 'perlbal reload:' (the shared helper's name), confusing in
    logrotate's mail."""
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "reopen-logs", "--pidfile",
                           str(tmp_path / "none.pid")], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2
    assert proc.stderr.startswith("perlbal reopen-logs: can't read pidfile"), proc.stderr


def test_a_config_error_is_refused_with_its_position(tmp_path: Path) -> None:
    web, mgmt = free_ports(2)
    pidfile = tmp_path / "perlbal.pid"
    head = f"SERVER pidfile = {pidfile}\n"
    with Backend("b1") as b1, PyPerlbal(_proxy(head, web, mgmt, b1)) as server:
        conf = server.workdir / "perlbal.conf"
        broken = _proxy(head, web, mgmt, b1, "SET persist_client = maybe")
        conf.write_text(broken)
        refused = perlbal_reload("--pidfile", str(pidfile))
        assert refused.returncode == 1
        assert f"{conf}:{_line_of(broken, 'maybe')}:" in refused.stderr
        assert "reload rejected, running configuration kept" in refused.stderr
        _out, err = server.output()  # the default error_log: stderr, ERROR and above
        assert re.search(rf"perlbal: reload of {re.escape(str(conf))} rejected, running "
                         rf"configuration kept: {re.escape(str(conf))}:\d+:\d+: error: "
                         r"Expecting boolean value for parameter 'persist_client'", err), err


# --- renewal: the files a config names are read again ----------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _served_cn(port: int, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            peer = tls.getpeercert() or {}
    return str(next(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName"))


def _tls_config(tmp_path: Path, port: int, mgmt: int, backend: Backend, *server: str) -> str:
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    return ("".join(f"{line}\n" for line in server) + f"SERVER pidfile = {tmp_path}/perlbal.pid\n"
            + pool("p", [backend])
            + proxy_service("tls", port, "p", extra=[
                "SET enable_ssl = on", f"SET ssl_cert_file = {cert}",
                f"SET ssl_key_file = {key}"]) + management(mgmt))


def _install(pki: dict[str, Path], tmp_path: Path, name: str) -> None:
    """Replace the live certificate and key in place, as certbot's deploy hook would."""
    for kind in ("cert", "key"):
        target = tmp_path / f"live-{kind}.pem"
        target.write_bytes(pki[f"{name}-{kind}"].read_bytes())
        os.chmod(target, 0o600 if kind == "key" else 0o644)  # a root-only key


def test_a_renewed_certificate_is_served_after_reload_with_no_config_change(
        tmp_path: Path, pki: dict[str, Path]) -> None:
    port, mgmt = free_ports(2)
    _install(pki, tmp_path, "a")
    with Backend("b1") as b1, PyPerlbal(_tls_config(tmp_path, port, mgmt, b1)):
        assert _served_cn(port, pki["ca-cert"]) == "a.test"
        _install(pki, tmp_path, "b")
        assert _served_cn(port, pki["ca-cert"]) == "a.test"  # until the reload
        done = perlbal_reload("--pidfile", str(tmp_path / "perlbal.pid"))
        assert done.returncode == 0, done
        assert "TLS certificate/key re-read for service tls" in done.stdout
        assert _served_cn(port, pki["ca-cert"]) == "b.test"
        # a broken renewal (a key that does not match) is refused; the old pair stays
        (tmp_path / "live-cert.pem").write_bytes(pki["a-cert"].read_bytes())
        broken = perlbal_reload("--pidfile", str(tmp_path / "perlbal.pid"))
        assert broken.returncode == 1 and "service tls" in broken.stderr
        assert _served_cn(port, pki["ca-cert"]) == "b.test"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's own is root's 0700)."""
    where = Path(tempfile.mkdtemp(prefix="perlbal-renewal-"))
    os.chmod(where, 0o755)
    yield where
    shutil.rmtree(where, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="SERVER user needs root")
def test_after_server_user_a_root_only_key_is_kept_and_the_reason_logged(
        open_dir: Path, pki: dict[str, Path]) -> None:
    """One process, no supervisor: after the drop the 0600 root key cannot be read
    again.  The listener keeps the pair it has, the reason is logged at ERROR and
    printed by `perlbal reload`, and the file's other changes are applied."""
    nobody = pwd.getpwnam("nobody")
    port, mgmt = free_ports(2)
    _install(pki, open_dir, "a")
    errlog = open_dir / "error.log"
    with Backend("b1") as b1, PyPerlbal(_tls_config(
            open_dir, port, mgmt, b1, "SERVER user = nobody",
            f"SERVER error_log = {errlog}")) as server:
        os.chmod(server.workdir, 0o755)  # the config stays readable to nobody: only the key is not
        assert _served_cn(port, pki["ca-cert"]) == "a.test"  # served: the drop is done
        assert server.proc is not None
        status = Path(f"/proc/{server.proc.pid}/status").read_text()
        uids = next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1:]
        assert uids == [str(nobody.pw_uid)] * 4
        _install(pki, open_dir, "b")
        conf = server.workdir / "perlbal.conf"
        conf.write_text(conf.read_text() + "SET tls.persist_client = on\n")
        done = perlbal_reload("--pidfile", str(open_dir / "perlbal.pid"))
        assert done.returncode == 0, done
        assert "SET tls.persist_client = on" in done.stdout
        assert "Permission denied" in done.stdout and "not root" in done.stdout
        assert "keeps the certificate it has" in done.stdout
        logged = [ln for ln in errlog.read_text().splitlines() if " ERROR " in ln]
        assert any("Permission denied" in ln and "live-key.pem" in ln for ln in logged), logged
        assert _served_cn(port, pki["ca-cert"]) == "a.test"


def test_a_changed_node_file_is_read_at_reload_with_no_config_change(tmp_path: Path) -> None:
    web, mgmt = free_ports(2)
    nodes = tmp_path / "nodes.txt"
    pidfile = tmp_path / "perlbal.pid"
    with Backend("b1") as b1, Backend("b2") as b2:
        nodes.write_text(f"{b1.address}\n")
        config = (f"SERVER pidfile = {pidfile}\n" + pool("p", extra=[f"SET nodefile = {nodes}"])
                  + proxy_service("web", web, "p") + management(mgmt))
        with PyPerlbal(config), console(LOOPBACK, mgmt) as con:
            assert con.command("show pool p") == [f"{b1.address} 0", "."]
            nodes.write_text(f"{b2.address}\n")
            done = perlbal_reload("--pidfile", str(pidfile))
            assert done.returncode == 0, done
            assert "node file re-read for pool p" in done.stdout
            assert con.command("show pool p") == [f"{b2.address} 0", "."]
            assert request(web, "GET", "/").header("X-Backend-Name") == "b2"


def test_a_changed_throttle_list_is_read_at_reload_with_no_config_change(tmp_path: Path) -> None:
    web, mgmt = free_ports(2)
    blacklist, pidfile = tmp_path / "black.txt", tmp_path / "perlbal.pid"
    blacklist.write_text("10.0.0.0/8\n")
    with Backend("b1") as b1:
        config = (f"SERVER pidfile = {pidfile}\nLOAD Throttle\n" + pool("p", [b1])
                  + proxy_service("web", web, "p", extra=[
                      f"SET blacklist_file = {blacklist}", "SET blacklist_action = deny",
                      "SET default_action = allow", "SET plugins = Throttle"])
                  + management(mgmt))
        with PyPerlbal(config):
            assert request(web, "GET", "/").status == 200
            blacklist.write_text("127.0.0.0/8\n")
            done = perlbal_reload("--pidfile", str(pidfile))
            assert done.returncode == 0, done
            assert "throttle reload blacklist" in done.stdout
            assert request(web, "GET", "/").status == 403
            again = perlbal_reload("--pidfile", str(pidfile))
            assert again.stdout.strip() == "reload: no changes"
            blacklist.write_text("no networks here\n")  # Throttle refuses such a list
            refused = perlbal_reload("--pidfile", str(pidfile))
            assert refused.returncode == 1 and "no recognizable CIDRs" in refused.stderr
            assert request(web, "GET", "/").status == 403


def test_a_port_handed_from_one_service_to_another_in_one_reload(tmp_path: Path) -> None:
    x, y, mgmt = free_ports(3)
    pidfile = tmp_path / "perlbal.pid"
    with Backend("b1") as b1, Backend("b2") as b2:
        head = f"SERVER pidfile = {pidfile}\n" + pool("p1", [b1]) + pool("p2", [b2])
        with PyPerlbal(head + proxy_service("a", x, "p1") + management(mgmt)) as server:
            assert request(x, "GET", "/").header("X-Backend-Name") == "b1"
            (server.workdir / "perlbal.conf").write_text(
                head + proxy_service("a", y, "p1") + proxy_service("b", x, "p2")
                + management(mgmt))
            done = perlbal_reload("--pidfile", str(pidfile))
            assert done.returncode == 0, done
            assert request(y, "GET", "/").header("X-Backend-Name") == "b1"
            assert request(x, "GET", "/").header("X-Backend-Name") == "b2"


def test_a_previous_runs_outcome_never_answers_for_this_run(tmp_path: Path) -> None:
    """PIDFILE.reload left by an earlier run (a root-only directory after SERVER user,
    a crash) holding a far-future start: the new server empties it at startup, so
    `perlbal reload` waits for this run's own outcome."""
    port, = free_ports(1)
    pidfile = tmp_path / "perlbal.pid"
    (tmp_path / "perlbal.pid.reload").write_text(
        "perlbal-reload 1\nstarted_usec=99999999999999999\nresult=refused\nstale\n")
    config = f"SERVER pidfile = {pidfile}\n" + management(port)
    with PyPerlbal(config):
        done = perlbal_reload("--pidfile", str(pidfile))
        assert done.returncode == 0 and done.stdout.strip() == "reload: no changes", done


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])


@pytest.mark.skipif(os.geteuid() != 0, reason="SERVER user needs root")
def test_with_a_supervisor_a_root_only_key_is_renewed_after_server_user(
        open_dir: Path, pki: dict[str, Path]) -> None:
    """SERVER workers = 1: the supervisor keeps root, so the reload reads the renewed
    0600 root key that the worker (running as nobody) could not, and the new
    generation of workers, forked from the committed state, serves the new pair."""
    nobody = pwd.getpwnam("nobody")
    port, mgmt = free_ports(2)
    _install(pki, open_dir, "a")
    with Backend("b1") as b1, PyPerlbal(_tls_config(
            open_dir, port, mgmt, b1, "SERVER user = nobody", "SERVER workers = 1")) as server:
        os.chmod(server.workdir, 0o755)
        assert _served_cn(port, pki["ca-cert"]) == "a.test"
        assert server.proc is not None
        assert _uid(server.proc.pid) == 0  # the supervisor kept root
        children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()]
        assert workers and {_uid(pid) for pid in workers} == {nobody.pw_uid}
        _install(pki, open_dir, "b")
        done = perlbal_reload("--pidfile", str(open_dir / "perlbal.pid"))
        assert done.returncode == 0, done
        assert "TLS certificate/key re-read for service tls" in done.stdout
        # the new generation is forked right after the commit; the old worker stops
        # accepting when it hears of it: a new connection gets the new pair from then on
        deadline = time.monotonic() + 10
        while _served_cn(port, pki["ca-cert"]) != "b.test":
            assert time.monotonic() < deadline, "the renewed certificate was never served"
        for _ in range(5):
            assert _served_cn(port, pki["ca-cert"]) == "b.test"
