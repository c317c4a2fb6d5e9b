"""Run our server (``python -m perlbal.runtime.main``) on a config, like tests.support's PerlPerlbal.

Every ``listen = [ip:]port`` in the config is waited for; ``stop()`` sends
SIGTERM (graceful) and then kills after a grace period, so no process
outlives a test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from tests.support.ports import port_accepts

_LISTEN_RE = re.compile(r"listen\s*=\s*(?:[\d.]+:)?(\d+)", re.IGNORECASE)
ROOT = Path(__file__).resolve().parents[2]


class PyPerlbal:
    def __init__(self, config_text: str, *, startup_timeout: float = 30.0,
                 extra_pythonpath: tuple[str, ...] = ()) -> None:
        self.config_text = config_text
        #: more sys.path entries for the server (third-party plugins' dist-info)
        self.extra_pythonpath = extra_pythonpath
        self.startup_timeout = startup_timeout
        self.wait_ports = sorted({int(p) for p in _LISTEN_RE.findall(config_text)})
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
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), *self.extra_pythonpath)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
            cwd=self.workdir, stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "stdout.log", "wb"),
            stderr=open(self.workdir / "stderr.log", "wb"), env=env)
        deadline = time.monotonic() + self.startup_timeout
        pending = list(self.wait_ports)
        while pending:
            if self.proc.poll() is not None:
                out, err = self.output()
                raise RuntimeError(f"server exited {self.proc.returncode}\n{out}\n{err}")
            pending = [p for p in pending if not port_accepts(p)]
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not listen on {pending}")
            time.sleep(0.02)

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
