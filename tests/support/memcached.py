"""A real memcached (Debian's ``memcached``) on a free 127.0.0.1 port, for
Throttle's shared state; ``raw_get`` reads a key with the text protocol, as a
third party (another perlbal, Perl's included) would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from types import TracebackType

from tests.support.ports import LOOPBACK, free_port, port_accepts

BINARY = shutil.which("memcached") or "/usr/bin/memcached"


class Memcached:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def __enter__(self) -> "Memcached":
        args = [BINARY, "-l", LOOPBACK, "-p", str(self.port), "-U", "0", "-m", "8", "-t", "1"]
        if os.getuid() == 0:
            args += ["-u", "nobody"]  # memcached refuses to run as root
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("memcached did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def raw_get(self, key: str) -> tuple[int, bytes] | None:
        """(flags, value) stored under ``key``, or None."""
        with socket.create_connection((LOOPBACK, self.port), timeout=5) as sock:
            sock.sendall(f"get {key}\r\n".encode())
            data = b""
            while not data.endswith(b"END\r\n"):
                piece = sock.recv(4096)
                if not piece:
                    break
                data += piece
        if data == b"END\r\n":
            return None
        head, _, rest = data.partition(b"\r\n")
        _, _, flags, size = head.split()
        return int(flags), rest[:int(size)]
