"""Issue 25 item 4 (and the notify half of item 3): each signal's effect on the real server.

HUP reloads (with RELOADING=1 + MONOTONIC_USEC, then READY=1, for
Type=notify-reload); USR1 reopens the log files and nothing else (Perl dies
on it), driven here by the real logrotate; TERM and QUIT drain; INT stops at
once; any other signal that would end the process is logged and ignored.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.operating.test_reload_all_or_nothing import perlbal_reload
from tests.support.backend import Backend
from tests.support.configs import management, proxy_config
from tests.support.ports import LOOPBACK, free_ports, port_accepts
from tests.support.pyserver import ROOT, PyPerlbal
from tests.support.rawhttp import RawResponse, request

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


def _until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a condition another process makes true (a log line, an exit)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.skipif(not Path(LOGROTATE).exists(), reason="logrotate not installed")
@pytest.mark.parametrize("workers", [None, 1], ids=["single", "supervised"])
def test_logrotate_with_reopen_logs_rotates_without_a_reload(tmp_path: Path,
                                                             workers: int | None) -> None:
    """With SERVER workers the worker writes the access log: the supervisor passes
    USR1 on, and the worker opens the file again by its name."""
    port, mgmt = free_ports(2)
    docroot = tmp_path / "htdocs"
    docroot.mkdir()
    (docroot / "f.txt").write_text("hi")
    access, errlog, pidfile = tmp_path / "access.log", tmp_path / "error.log", tmp_path / "p.pid"
    conf = (f"SERVER pidfile = {pidfile}\nSERVER error_log = {errlog}\n"
            "SERVER log_level = info\n" + (f"SERVER workers = {workers}\n" if workers else "")
            + f"CREATE SERVICE web\n  SET role = web_server\n  SET listen = {LOOPBACK}:{port}\n"
            f"  SET docroot = {docroot}\n  SET access_log = {access}\nENABLE web\n"
            + management(mgmt))
    rotate = tmp_path / "logrotate.conf"
    rotate.write_text(f"""{access} {errlog} {{
    rotate 1
    nocompress
    sharedscripts
    postrotate
        PYTHONPATH={ROOT} {sys.executable} -c 'import sys; from perlbal.cli import main; sys.exit(main())' reopen-logs --pidfile {pidfile}
    endscript
}}
""")
    with PyPerlbal(conf) as server:
        assert request(port, "GET", "/f.txt").status == 200
        _until(lambda: "/f.txt" in _text(access), "the first access log line")
        done = subprocess.run(
            [LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(rotate)],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "/f.txt" in _text(tmp_path / "access.log.1")
        _until(lambda: "SIGUSR1: log files reopened" in _text(errlog), "the reopened error_log")
        _until(access.exists, "the access log opened again by its writer")
        assert "beginning run" in _text(tmp_path / "error.log.1")
        assert request(port, "GET", "/again").status == 404
        _until(lambda: "/again" in _text(access), "a line in the new access log")
        assert "/again" not in _text(tmp_path / "access.log.1")
        assert server.proc is not None and server.proc.poll() is None
        assert "reload" not in server.output()[0]  # the config was not reloaded


def test_other_signals_are_logged_and_never_kill(tmp_path: Path) -> None:
    port, = free_ports(1)
    with PyPerlbal(management(port)) as server:
        assert server.proc is not None
        rt = int(signal.SIGRTMIN) + 3
        for signum, name in ((signal.SIGUSR2, "SIGUSR2"), (signal.SIGALRM, "SIGALRM"),
                             (signal.SIGPWR, "SIGPWR"), (rt, f"signal {rt}")):
            server.proc.send_signal(signum)
            _until(lambda: f"{name} received: ignored" in server.output()[1], f"{name} logged")
        assert server.proc.poll() is None and port_accepts(port)


def _slow(port: int, out: list[RawResponse | Exception]) -> None:
    try:
        out.append(request(port, "GET", "/slow"))
    except Exception as exc:
        out.append(exc)


def _stop_during_a_request(signum: int, delay: float, *then: int, workers: int | None = None
                           ) -> tuple[list[RawResponse | Exception], float, int]:
    web, mgmt = free_ports(2)
    server_lines = "" if workers is None else f"SERVER workers = {workers}\n"
    with Backend("slow", delay=delay) as slow:
        with PyPerlbal(server_lines + proxy_config(web, [slow.address], service="web",
                                                   mgmt_port=mgmt)) as server:
            assert server.proc is not None
            results: list[RawResponse | Exception] = []
            client = threading.Thread(target=_slow, args=(web, results))
            client.start()
            _until(lambda: bool(slow.requests()), "the request at the backend")
            sent = time.monotonic()
            server.proc.send_signal(signum)
            if then:
                _until(lambda: not port_accepts(web), "the listener to close")
            for later in then:  # during the drain
                server.proc.send_signal(later)
            status = server.proc.wait(timeout=20)
            took = time.monotonic() - sent
            client.join(timeout=20)
    return results, took, status


def test_quit_drains_like_term() -> None:
    results, took, status = _stop_during_a_request(signal.SIGQUIT, 1.0)
    assert status == 0
    (result,) = results
    assert not isinstance(result, Exception) and result.status == 200, result
    assert took >= 0.5  # it waited for the backend's reply


@pytest.mark.parametrize("workers", [None, 1], ids=["single", "supervised"])
def test_signals_during_the_drain_are_handled_not_fatal(workers: int | None) -> None:
    """HUP (and another TERM) while draining: logged and ignored, the drain goes on
    (the receiver used to close at the first stop, leaving HUP's default: death;
    a supervisor waiting for its workers' drains had Python's defaults too)."""
    results, took, status = _stop_during_a_request(signal.SIGTERM, 1.5, signal.SIGHUP,
                                                   signal.SIGTERM, workers=workers)
    assert status == 0
    (result,) = results
    assert not isinstance(result, Exception) and result.status == 200, result


def test_int_stops_at_once() -> None:
    results, took, status = _stop_during_a_request(signal.SIGINT, 8.0)
    assert status == 0
    assert took < 5, took  # not the backend's 8 s, not the 30 s drain
    (result,) = results
    assert isinstance(result, Exception) or result.status != 200



@pytest.mark.parametrize("workers", [None, 1], ids=["single", "supervised"])
def test_int_during_a_graceful_drain_stops_at_once(workers: int | None) -> None:
    """TERM starts a 30 s drain; an INT during it ends the drain there (an operator's
    second Ctrl-C), where it used to be logged and ignored until the request ended
    (and a supervisor waiting for its workers died of it with a traceback)."""
    results, took, status = _stop_during_a_request(signal.SIGTERM, 8.0, signal.SIGINT,
                                                   workers=workers)
    assert status == 0
    assert took < 5, took  # not the backend's 8 s
    (result,) = results
    assert isinstance(result, Exception) or result.status != 200

def test_reload_notifies_systemd_with_monotonic_usec(tmp_path: Path) -> None:
    port, = free_ports(1)
    pidfile = tmp_path / "p.pid"
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(notify))
        systemd.settimeout(20)
        os.environ["NOTIFY_SOCKET"] = str(notify)
        try:
            server = PyPerlbal(f"SERVER pidfile = {pidfile}\n" + management(port))
            server.start()
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            assert "READY=1" in systemd.recv(1024).decode()
            for edit, code in (("", 0), ("SET nonsense\n", 1)):
                (server.workdir / "perlbal.conf").write_text(
                    f"SERVER pidfile = {pidfile}\n" + management(port) + edit)
                before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                assert perlbal_reload("--pidfile", str(pidfile)).returncode == code
                after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                reloading = dict(line.split("=", 1)
                                 for line in systemd.recv(1024).decode().splitlines())
                assert reloading["RELOADING"] == "1"
                assert before <= int(reloading["MONOTONIC_USEC"]) <= after
                # READY=1 follows a refused reload too: the old config still serves
                assert systemd.recv(1024).decode() == "READY=1"
        finally:
            server.stop()
