"""--daemon with a pidfile, SERVER user, error_log/log_level, sd_notify and max_connections."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pyserver import ROOT, PyPerlbal
from tests.support.ports import LOOPBACK, free_ports, port_accepts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait(cond: "object", timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.02)
    return False


def _run(conf: Path, *extra: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}",
                           *extra], capture_output=True, text=True, timeout=20, cwd=conf.parent,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def test_daemon_detaches_writes_pidfile_and_sigterm_removes_it(tmp_path: Path) -> None:
    port, = free_ports(1)
    pidfile = tmp_path / "perlbal.pid"
    errlog = tmp_path / "error.log"
    notify = tmp_path / "notify.sock"
    conf = tmp_path / "perlbal.conf"
    conf.write_text(f"SERVER pidfile = {pidfile}\nSERVER error_log = {errlog}\n"
                    f"SERVER log_level = info\n"
                    f"CREATE SERVICE mgmt\n  SET role = management\n"
                    f"  SET listen = {LOOPBACK}:{port}\nENABLE mgmt\n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(notify))
        systemd.settimeout(5)
        started = time.monotonic()
        proc = _run(conf, "--daemon", env={"NOTIFY_SOCKET": str(notify)})
        # the command returns only once the daemon is ready: the pidfile is there
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 10
        assert "Running." not in proc.stdout
        pid = int(pidfile.read_text().strip())
        try:
            assert _alive(pid) and pid != os.getpid()
            assert os.getsid(pid) != os.getsid(0)  # a session of its own: detached
            assert port_accepts(port)
            ready = systemd.recv(1024).decode()
            assert "READY=1" in ready and f"MAINPID={pid}" in ready
            os.kill(pid, signal.SIGTERM)
            assert _wait(lambda: not pidfile.exists()), errlog.read_text()
            assert _wait(lambda: not _alive(pid))
        finally:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    text = errlog.read_text()
    assert "INFO beginning run" in text and "INFO ending run" in text


def test_daemon_startup_error_is_reported_before_detaching(tmp_path: Path) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_text("CREATE SERVICE x\n  SET role = nonsense\n")
    proc = _run(conf, "--daemon")
    assert proc.returncode == 1
    assert "Error starting up." in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_server_user_drops_root_after_binding(tmp_path: Path) -> None:
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    port, = free_ports(1)
    with PyPerlbal(f"SERVER user = nobody\nCREATE SERVICE mgmt\n  SET role = management\n"
                   f"  SET listen = {LOOPBACK}:{port}\nENABLE mgmt\n") as server:
        assert server.proc is not None
        pid = server.proc.pid

        def uids() -> list[str]:
            status = Path(f"/proc/{pid}/status").read_text()
            return next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]

        # listening comes first (ports below 1024), the drop right after (preload.py first)
        _wait(lambda: uids() == [str(nobody.pw_uid)] * 4)
        assert uids() == [str(nobody.pw_uid)] * 4


def test_server_user_unknown_refuses_to_start(tmp_path: Path) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_text("SERVER user = no-such-user-here\nCREATE SERVICE mgmt\n"
                    "  SET role = management\n  SET listen = 127.0.0.1:0\nENABLE mgmt\n")
    proc = _run(conf)
    assert proc.returncode == 1
    assert "SERVER user: no such user 'no-such-user-here'" in proc.stderr


def test_max_connections_refuses_with_a_503_page(tmp_path: Path) -> None:
    port, mgmt = free_ports(2)
    (tmp_path / "f.txt").write_text("hi")
    conf = f"""
SERVER max_connections = 2
CREATE SERVICE web
  SET role = web_server
  SET listen = {LOOPBACK}:{port}
  SET docroot = {tmp_path}
ENABLE web
CREATE SERVICE mgmt
  SET role = management
  SET listen = {LOOPBACK}:{mgmt}
ENABLE mgmt
"""
    with PyPerlbal(conf):
        time.sleep(0.3)  # PyPerlbal's own probe connections are gone
        held = [socket.create_connection((LOOPBACK, port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.2)  # both accepted and open
            with socket.create_connection((LOOPBACK, port), timeout=5) as third:
                third.sendall(b"GET /f.txt HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := third.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.0 503 Service Unavailable\r\n")
            assert b"Too many connections" in data and b"at most 2" in data
            # management stays reachable, and counts the refusal
            with socket.create_connection((LOOPBACK, mgmt), timeout=5) as sock:
                sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                page = b""
                while chunk := sock.recv(65536):
                    page += chunk
            assert b'perlbal_connections_refused_total{reason="max_connections"} 1' in page
        finally:
            for sock in held:
                sock.close()
        # once the others are gone, clients are served again
        assert _wait(lambda: _get_ok(port))


def _get_ok(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(b"GET /f.txt HTTP/1.0\r\n\r\n")
        return sock.recv(65536).startswith(b"HTTP/1.0 200")
