"""examples/perlbal.service (issue 25 item 3): its settings, and its commands run as
systemd runs them, against a fake NOTIFY_SOCKET.

No systemd can run here as a service manager (PID 1 is not systemd, and this
Debian's systemd 252 predates Type=notify-reload, which needs 253), so the
test plays systemd's part for a reload of a notify-reload unit: it sends
ReloadSignal to the main process, runs ExecReload, and reads the notify
messages; ExecReload's exit status is the reload job's result.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from perlbal.runtime.signals import DRAIN_SECONDS, HANDLED
from tests.support.configs import management
from tests.support.ports import free_ports
from tests.support.pyserver import ROOT

UNIT = ROOT / "examples" / "perlbal.service"
PERLBAL = [sys.executable, "-c", "import sys; from perlbal.cli import main; sys.exit(main())"]


def _settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            assert key not in out, f"{key} twice"
            out[key] = value
    return out


def _command(line: str, conf: Path) -> list[str]:
    words = shlex.split(line.replace("/etc/perlbal/perlbal.conf", str(conf)))
    assert words[0] == "/opt/perlbal/bin/perlbal"
    return PERLBAL + words[1:]


def _run(line: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(line, conf), capture_output=True, text=True, timeout=60,
                          cwd=conf.parent, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_the_unit_is_hardened_and_outlasts_the_drain() -> None:
    unit = _settings()
    assert unit["Type"] == "notify-reload"
    assert unit["User"] and unit["User"] != "root"
    assert "CAP_NET_BIND_SERVICE" in unit["AmbientCapabilities"].split()
    assert unit["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert unit["NoNewPrivileges"] == "yes"
    assert unit["ProtectSystem"] == "strict" and unit["ProtectHome"] == "yes"
    assert int(unit["TimeoutStopSec"]) > DRAIN_SECONDS
    assert unit["KillSignal"] == "SIGTERM"
    # systemd sends ReloadSignal itself: one perlbal neither acts on nor logs
    assert getattr(signal, unit["ReloadSignal"]) not in HANDLED
    assert " reload " in unit["ExecReload"] + " "


def test_the_units_commands_as_systemd_runs_them(tmp_path: Path) -> None:
    unit = _settings()
    port, = free_ports(1)
    conf = tmp_path / "perlbal.conf"
    good = f"SERVER pidfile = {tmp_path}/perlbal.pid\n" + management(port)
    conf.write_text(good + "SET nonsense\n")
    assert _run(unit["ExecStartPre"], conf).returncode != 0  # a broken config never starts
    conf.write_text(good)
    assert _run(unit["ExecStartPre"], conf).returncode == 0
    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(notify))
        systemd.settimeout(30)
        main = subprocess.Popen(_command(unit["ExecStart"], conf), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=str(ROOT),
                                         NOTIFY_SOCKET=str(notify)))
        try:
            assert "READY=1" in systemd.recv(4096).decode()
            for edit, result in (("SERVER log_level = info\n", 0), ("SET nonsense\n", 1)):
                conf.write_text(good + edit)
                begin = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
                main.send_signal(getattr(signal, unit["ReloadSignal"]))
                job = _run(unit["ExecReload"], conf)
                assert job.returncode == result, job
                message = dict(line.split("=", 1) for line in systemd.recv(4096).decode().split())
                assert message["RELOADING"] == "1" and int(message["MONOTONIC_USEC"]) >= begin
                assert systemd.recv(4096).decode() == "READY=1"
            main.send_signal(getattr(signal, unit["KillSignal"]))
            assert main.wait(timeout=int(unit["TimeoutStopSec"])) == 0
            assert "STOPPING=1" in systemd.recv(4096).decode()
            out, err = main.communicate(timeout=10)
            assert out.count("reload") == 2, out  # ReloadSignal itself reloaded nothing
            assert "SIGCONT" not in err
        finally:
            if main.poll() is None:
                main.kill()
                main.wait()
