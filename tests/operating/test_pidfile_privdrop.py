"""The pidfile written as root (#19 item 4, #15 defect 3) and the privilege
drop with an installation the new user cannot read (#19 item 15), through
the real server."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.operating.test_daemon import _run, _wait
from tests.support.pyserver import ROOT, PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, proxy_config, web_config
from tests.support.ports import LOOPBACK, free_ports, port_accepts
from tests.support.rawhttp import request


def _wait_closed(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_accepts(port):
            return True
        time.sleep(0.05)
    return False


# --- item 4: the pidfile --------------------------------------------------------------


def test_pidfile_symlink_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    pidfile = tmp_path / "perlbal.pid"
    pidfile.symlink_to(victim)  # planted by a local user where root writes its pidfile
    port, = free_ports(1)
    with PyPerlbal(f"SERVER pidfile = {pidfile}\n" + management(port)) as server:
        time.sleep(0.2)
        _out, err = server.output()
    assert victim.read_text() == "precious\n"
    assert pidfile.is_symlink()
    assert f"can't write pidfile {pidfile}: it is a symbolic link" in err


def test_pidfile_is_0644_whatever_the_umask(tmp_path: Path) -> None:
    pidfile = tmp_path / "perlbal.pid"
    port, = free_ports(1)
    server = PyPerlbal(f"SERVER pidfile = {pidfile}\n" + management(port))
    old = os.umask(0o077)  # inherited by the server
    try:
        server.start()
    finally:
        os.umask(old)
    try:
        assert server.proc is not None
        assert pidfile.read_text() == f"{server.proc.pid}\n"
        assert stat.S_IMODE(pidfile.stat().st_mode) == 0o644
    finally:
        server.stop()
    assert not pidfile.exists()


@pytest.mark.parametrize("problem", ["missing_directory", "symlink"])
def test_daemon_exits_non_zero_when_the_pidfile_cannot_be_written(tmp_path: Path,
                                                                  problem: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    if problem == "symlink":
        pidfile = tmp_path / "perlbal.pid"
        pidfile.symlink_to(victim)
    else:
        pidfile = tmp_path / "no-such-dir" / "perlbal.pid"
    port, = free_ports(1)
    conf = tmp_path / "perlbal.conf"
    conf.write_text(f"SERVER pidfile = {pidfile}\n" + management(port))
    proc = _run(conf, "--daemon")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert f"can't write pidfile {pidfile}" in proc.stderr
    assert "Error starting up." in proc.stderr
    assert victim.read_text() == "precious\n"
    assert _wait_closed(port), "a daemon is serving although startup failed"


# --- item 15: modules the dropped user cannot read ------------------------------------


@pytest.fixture()
def hidden_install() -> Iterator[Path]:
    """A root-only (0700) directory holding a copy of the perlbal package and
    links to every third-party package: after the drop, nothing in it can be
    imported any more (the interpreter's standard library, under /root here,
    may be unreadable to nobody as well)."""
    hidden = Path(tempfile.mkdtemp(prefix="perlbal-hidden-"))
    os.chmod(hidden, 0o700)
    shutil.copytree(ROOT / "perlbal", hidden / "perlbal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    import anyio

    site = Path(anyio.__file__).resolve().parents[1]
    for entry in site.iterdir():
        if entry.name.startswith("perlbal") or entry.name.startswith("__editable__"):
            continue
        (hidden / entry.name).symlink_to(entry)
    try:
        yield hidden
    finally:
        shutil.rmtree(hidden)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_server_user_serves_every_role_when_it_cannot_read_the_install(
        hidden_install: Path) -> None:
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    public = Path(tempfile.mkdtemp(prefix="perlbal-public-"))
    os.chmod(public, 0o755)
    (public / "f.txt").write_text("file\n")
    os.chmod(public / "f.txt", 0o644)
    proxy, web, mgmt = free_ports(3)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with Backend(name="b") as backend:
            conf = public / "perlbal.conf"
            conf.write_text(proxy_config(proxy, [backend], server=["user = nobody"])
                            + web_config(web, public, mgmt_port=mgmt))
            # -S: no site-packages of the venv; everything comes from the hidden copy
            env = dict(os.environ, PYTHONPATH=str(hidden_install))
            proc = subprocess.Popen(
                [sys.executable, "-S", "-m", "perlbal.runtime.main", f"--config={conf}"],
                cwd=public, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env)
            deadline = time.monotonic() + 30
            while not all(port_accepts(p) for p in (proxy, web, mgmt)):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            pid, nobody = proc.pid, [str(pwd.getpwnam("nobody").pw_uid)] * 4

            def uids() -> list[str]:
                status = Path(f"/proc/{pid}/status").read_text()
                return next(line for line in status.splitlines()
                            if line.startswith("Uid:")).split()[1:]

            _wait(lambda: uids() == nobody)  # listening comes before the drop
            assert uids() == nobody

            got = request(proxy, "GET", "/via-proxy", [("Host", "example.com")])
            assert got.status == 200 and backend.log[-1].target == "/via-proxy"
            got = request(web, "GET", "/f.txt")
            assert got.status == 200 and got.body == b"file\n"
            with socket.create_connection((LOOPBACK, mgmt), timeout=5) as sock:
                sock.sendall(b"show service\r\n")
                sock.settimeout(5)
                reply = b""
                while b"mgmt" not in reply:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
                assert b"proxy" in reply and b"mgmt" in reply, reply
            for page in ("/", "/json", "/metrics", "/webui/app.js", "/socks"):
                got = request(mgmt, "GET", page)
                assert got.status == 200, (page, got.status, got.body[:300])
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=10)
            text = err.decode(errors="replace")
            assert "Traceback" not in text and "ModuleNotFoundError" not in text, text
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(public)
