"""`perlbal serve DIR`: a web server with no config file, through the real interpreter."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.ports import free_port, port_accepts
from tests.support.rawhttp import request

REPO = Path(__file__).resolve().parents[2]


def perlbal(*args: str) -> list[str]:
    return [sys.executable, "-m", "perlbal.cli", *args]


def test_print_config_is_a_config_that_checks(tmp_path: Path) -> None:
    proc = subprocess.run(perlbal("serve", str(tmp_path), "--listen", "127.0.0.1:7500",
                                  "--put", "--delete", "--print-config"),
                          capture_output=True, text=True, cwd=REPO, timeout=30)
    assert proc.returncode == 0
    text = proc.stdout
    assert "SET role           = web_server" in text
    assert f"SET docroot        = {tmp_path}" in text
    assert "SET enable_put     = on" in text and "SET enable_delete  = on" in text
    assert "SET listen         = 127.0.0.1:7500" in text
    conf = tmp_path / "serve.conf"
    conf.write_text(text)
    check = subprocess.run(perlbal("check", str(conf)), capture_output=True, text=True,
                           cwd=REPO, timeout=30)
    assert check.returncode == 0, check.stderr


def test_serve_get_put_delete(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello\n")
    port = free_port()
    proc = subprocess.Popen(perlbal("serve", str(tmp_path), "--listen", f"127.0.0.1:{port}",
                                    "--put", "--delete"),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 10
        while not port_accepts(port):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        got = request(port, "GET", "/hello.txt")
        assert got.status == 200 and got.body == b"hello\n"
        put = request(port, "PUT", "/new.bin", body=b"\x00\x01data")
        assert put.status in (200, 201, 204)
        assert (tmp_path / "new.bin").read_bytes() == b"\x00\x01data"
        dele = request(port, "DELETE", "/new.bin")
        assert dele.status == 204
        assert not (tmp_path / "new.bin").exists()
        # no dirindex by default: Perl's "listing disabled" page
        listing = request(port, "GET", "/")
        assert b"hello.txt" not in listing.body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_usage_errors(tmp_path: Path) -> None:
    assert subprocess.run(perlbal("serve"), capture_output=True, cwd=REPO,
                          timeout=30).returncode == 2
    missing = subprocess.run(perlbal("serve", str(tmp_path / "nope"), "--listen",
                                     f"127.0.0.1:{free_port()}"),
                             capture_output=True, text=True, cwd=REPO, timeout=30)
    assert missing.returncode == 1
    assert "ERROR: Directory not found for service serve" in missing.stdout + missing.stderr
