"""Run our server (``python -m perlbal.runtime.main``) on a config, like tests.support's PerlPerlbal.

The server is started with ``PERLBAL_PORTS_FILE`` naming a file in its work
directory: it writes there, as JSON, the address each listener got once every
listener of the config is bound (docs/operating.md, "Port 0").  So a config
says ``listen = 127.0.0.1:0`` and the test asks ``server.port("web")``: no port
is chosen by the test and released before the server binds it (the race
``tests.support.ports`` admits).  A config with fixed ports works the same way.
``stop()`` sends SIGTERM (graceful) and then kills after a grace period, so no
process outlives a test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.ports import LOOPBACK

#: a listen address that makes the kernel choose the port (read it with ``port(name)``)
ANY_PORT = f"{LOOPBACK}:0"
ROOT = Path(__file__).resolve().parents[2]


class PyPerlbal:
    def __init__(self, config_text: str, *, startup_timeout: float = 30.0,
                 extra_pythonpath: tuple[str, ...] = ()) -> None:
        self.config_text = config_text
        #: more sys.path entries for the server (third-party plugins' dist-info)
        self.extra_pythonpath = extra_pythonpath
        self.startup_timeout = startup_timeout
        #: service name -> the TCP/UDP port its listener got (read at start, ``refresh_ports``)
        self.ports: dict[str, int] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="py-perlbal-")
        self.workdir = Path(self._tmp.name)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PyPerlbal":
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        conf = self.workdir / "perlbal.conf"
        conf.write_text(self.config_text)
        ports_file = self.workdir / "ports.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), *self.extra_pythonpath)),
                   PERLBAL_PORTS_FILE=str(ports_file))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
            cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "stdout.log", "wb"),
            stderr=open(self.workdir / "stderr.log", "wb"), env=env)
        deadline = time.monotonic() + self.startup_timeout
        # the file appears once the config is loaded and every listener bound
        while not ports_file.exists():
            if self.proc.poll() is not None:
                out, err = self.output()
                raise RuntimeError(f"server exited {self.proc.returncode}\n{out}\n{err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not report its ports in {self.startup_timeout} s")
            time.sleep(0.02)
        self.refresh_ports()

    def refresh_ports(self) -> dict[str, int]:
        """Read the ports file again (after a console ``SET listen`` or a reload)."""
        report = json.loads((self.workdir / "ports.json").read_text())
        self.ports = {name: int(entry["port"]) for name, entry in report["services"].items()}
        return self.ports

    def port(self, service: str) -> int:
        """The port ``service``'s listener is bound to."""
        try:
            return self.ports[service]
        except KeyError:
            raise KeyError(f"{service!r} does not listen (listening: {sorted(self.ports)})") from None

    def output(self) -> tuple[str, str]:
        return ((self.workdir / "stdout.log").read_text(errors="replace"),
                (self.workdir / "stderr.log").read_text(errors="replace"))

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._tmp.cleanup()
