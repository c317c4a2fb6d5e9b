"""Run the reference Perl Perlbal 1.80 and talk to its management console.

``PerlPerlbal`` starts ``/usr/bin/perlbal --config=FILE`` in a private temp
directory, waits until every port the config listens on accepts connections,
and kills the process on exit.  ``console()`` opens a management connection.

How Perl frames console replies (Perlbal/ClientManage.pm, Perlbal.pm
``run_manage_command``):

* every management connection gets its own ``CommandContext`` with
  ``verbose`` switched ON, so a successful command prints ``OK``; config files
  use a context with verbose OFF, where success prints nothing;
* an error is one ``ERROR: <message>`` line, printed whatever ``verbose`` is;
* listing commands (``show``, ``uptime``, ``help``, ``mime`` ...) print their
  lines and end with a line holding a single ``.``;
* but several replies have NO terminator at all: ``xs`` status, ``mime set``
  and ``mime remove`` print one bare line, ``SET`` of an unknown pool key
  prints nothing, every success prints nothing when verbose is off, and a
  plugin setter may print nothing.

So reading "until '.' or OK or ERROR" would hang on those.  ``Console`` instead
sends the command followed by a sentinel line (an unknown command, whose reply
is always a single ``ERROR: unknown command: <sentinel>`` line and which does
not touch the connection's context) and returns everything before the
sentinel's reply.  That is exact for every command.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.ports import LOOPBACK, port_accepts

PERLBAL_BIN = "/usr/bin/perlbal"

# An unknown command: Perl answers it with exactly one ERROR line and leaves
# the per-connection context (verbose, last created name) alone.
SENTINEL = "zz_console_sentinel"
SENTINEL_REPLY = f"ERROR: unknown command: {SENTINEL}"

# "SET <anything> listen = [ip:]port" in a config; used to know what to wait for.
_LISTEN_RE = re.compile(r"^\s*set\s+.*?\blisten\s*=\s*(?:[\d.]+:)?(\d+)\s*$", re.I | re.M)


def perl_perlbal_available() -> bool:
    """True if the reference Perl Perlbal is installed and executable."""
    return os.access(PERLBAL_BIN, os.X_OK) and shutil.which("perl") is not None


requires_perl_perlbal = pytest.mark.skipif(
    not perl_perlbal_available(), reason=f"{PERLBAL_BIN} (Perl Perlbal) not installed"
)
"""Marker: skip the test when Perl Perlbal is missing."""


class PerlPerlbalError(RuntimeError):
    """Perl Perlbal exited or never started listening."""


def management_config(port: int, name: str = "mgmt") -> str:
    """Config text for a management service on 127.0.0.1:port."""
    return (
        f"CREATE SERVICE {name}\n"
        f"  SET role = management\n"
        f"  SET listen = {LOOPBACK}:{port}\n"
        f"ENABLE {name}\n"
    )


class PerlPerlbal:
    """Context manager running ``/usr/bin/perlbal`` on ``config_text``.

    With ``mgmt_port`` a management service on that port is appended to the
    config.  The ports to wait for are every ``SET ... listen = ...`` in the
    config plus ``mgmt_port``.
    """

    def __init__(
        self,
        config_text: str,
        *,
        mgmt_port: int | None = None,
        startup_timeout: float = 30.0,
        extra_wait_ports: tuple[int, ...] = (),
    ) -> None:
        if mgmt_port is not None:
            config_text = config_text.rstrip("\n") + "\n" + management_config(mgmt_port, "zz_test_mgmt")
        self.config_text = config_text
        self.mgmt_port = mgmt_port
        self.startup_timeout = startup_timeout
        self.wait_ports = sorted(
            {int(p) for p in _LISTEN_RE.findall(config_text)} | set(extra_wait_ports)
        )
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> PerlPerlbal:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def config_path(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "perlbal.conf"

    def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="perl-perlbal-")
        self.workdir = Path(self._tmp.name)
        self.config_path.write_text(self.config_text)
        self._stdout = open(self.workdir / "stdout.log", "wb")
        self._stderr = open(self.workdir / "stderr.log", "wb")
        self.proc = subprocess.Popen(
            [PERLBAL_BIN, f"--config={self.config_path}"],
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        deadline = time.monotonic() + self.startup_timeout
        pending = list(self.wait_ports)
        # With nothing to wait for, give a broken config a moment to die.
        settle = time.monotonic() + 0.5
        while True:
            if self.proc.poll() is not None:
                out, err = self.output()
                self.stop()
                raise PerlPerlbalError(
                    f"perlbal exited with {self.proc.returncode}\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
                )
            pending = [p for p in pending if not port_accepts(p)]
            if not pending and (self.wait_ports or time.monotonic() > settle):
                return
            if time.monotonic() > deadline:
                out, err = self.output()
                self.stop()
                raise PerlPerlbalError(
                    f"perlbal did not listen on {pending} within {self.startup_timeout}s\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}"
                )
            time.sleep(0.02)

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) written so far."""
        workdir = self.workdir
        assert workdir is not None
        for stream in (self._stdout, self._stderr):
            stream.flush()
        return (
            (workdir / "stdout.log").read_text(errors="replace"),
            (workdir / "stderr.log").read_text(errors="replace"),
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)
        for stream_name in ("_stdout", "_stderr"):
            stream = getattr(self, stream_name, None)
            if stream is not None and not stream.closed:
                stream.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def console(self, timeout: float = 5.0) -> Console:
        """A new management connection (its own context, verbose on)."""
        assert self.mgmt_port is not None, "started without mgmt_port"
        return console(LOOPBACK, self.mgmt_port, timeout=timeout)


@dataclass
class ConfigRun:
    """Outcome of ``run_config_file``."""

    status: int | None  # exit status, or None if Perl was still running at the timeout
    stdout: list[str]
    stderr: str

    @property
    def startup_failed(self) -> bool:
        """True if a config line failed (Perl dies "Error starting up.")."""
        return "Error starting up." in self.stderr


def run_config_file(config_text: str, timeout: float = 10.0) -> ConfigRun:
    """Run Perl Perlbal on a config that is expected to fail or to do nothing.

    Config lines run with verbose off and any reply lines go to stdout.  Perl
    stops at the first failing line and dies "Error starting up."; a config
    that listens on nothing dies "No services or management port configured".
    """
    with tempfile.TemporaryDirectory(prefix="perl-perlbal-cfg-") as tmp:
        path = Path(tmp) / "perlbal.conf"
        path.write_text(config_text)
        proc = subprocess.Popen(
            [PERLBAL_BIN, f"--config={path}"],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            status: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            status = None
    return ConfigRun(status, out.decode(errors="replace").splitlines(), err.decode(errors="replace"))


class ConsoleClosed(Exception):
    """Perl closed the management connection (``quit``/``exit``)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("management connection closed by peer")
        self.lines = lines


class Console:
    """One management connection.  Context (verbose, USE/CREATE target) lives
    as long as this object, exactly as on Perl's side."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.sock.settimeout(timeout)
        self._buf = b""

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def command(self, line: str, *, eol: str = "\r\n") -> list[str]:
        """Send one command line; return Perl's reply lines (no CRLF).

        A reply line may itself contain a bare ``\\n``: Perl strips only the
        final newline of a die message, so multi-line errors arrive as one
        ``\\r\\n``-terminated chunk.  Raises ``ConsoleClosed`` if Perl hangs up.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("one command line at a time")
        self.sock.sendall((line + eol + SENTINEL + "\r\n").encode())
        lines: list[str] = []
        while True:
            reply = self._read_line()
            if reply is None:
                raise ConsoleClosed(lines)
            if reply == SENTINEL_REPLY:
                return lines
            lines.append(reply)

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (for framing experiments)."""
        self.sock.sendall(data)

    def read_until_sentinel(self) -> list[str]:
        """Send only the sentinel and collect what arrives before its reply."""
        self.sock.sendall((SENTINEL + "\r\n").encode())
        lines: list[str] = []
        while True:
            reply = self._read_line()
            if reply is None:
                raise ConsoleClosed(lines)
            if reply == SENTINEL_REPLY:
                return lines
            lines.append(reply)

    def _read_line(self) -> str | None:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", errors="replace")


def console(host: str, port: int, *, timeout: float = 5.0) -> Console:
    """Open a management console connection to host:port."""
    return Console(socket.create_connection((host, port), timeout=timeout), timeout)
