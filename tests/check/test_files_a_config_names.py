"""#24 item 8: ``perlbal check`` reads only regular files under the cap, whatever a config names.

``INCLUDE = /dev/zero`` (or a node file there) made check die with MemoryError,
``INCLUDE`` of a FIFO blocked it for ever.  Every such file now gets a
positioned error naming what the path is, and check goes on to the end.
Each case runs the real command as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MAX_FILE_BYTES = 16 * 1024 * 1024  # perlbal.safefile.MAX_FILE_BYTES, the documented cap

REPO = Path(__file__).resolve().parents[2]

WEB = ("CREATE SERVICE w\n  SET role = web_server\n  SET docroot = {tmp}\n"
       "  SET listen = 127.0.0.1:8089\nENABLE w\n")


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    # (stdin is a pipe nobody writes to: a check that reads it never ends)
    return subprocess.run([sys.executable, "-m", "perlbal.cli", "check", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          stdin=subprocess.PIPE)


def _target(tmp_path: Path, kind: str) -> tuple[str, str]:
    """A path of the given kind, and how check must describe it."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
        return str(tmp_path / "fifo"), "a FIFO (named pipe), not a regular file"
    if kind == "zero":
        return "/dev/zero", "a character device, not a regular file"
    if kind == "directory":
        (tmp_path / "dir").mkdir()
        return str(tmp_path / "dir"), "a directory, not a regular file"
    big = tmp_path / "big.conf"
    with open(big, "wb") as handle:  # sparse: no 17 MiB written
        handle.truncate(MAX_FILE_BYTES + 1)
    return str(big), (f"larger than the 16 MiB cap on files a config names "
                      f"({MAX_FILE_BYTES + 1} bytes)")


KINDS = ["fifo", "zero", "directory", "oversized"]


@pytest.mark.parametrize("kind", KINDS)
def test_include_of_anything_but_a_regular_file(tmp_path: Path, kind: str) -> None:
    path, why = _target(tmp_path, kind)
    conf = tmp_path / "c.conf"
    conf.write_text(f"LOAD Include\nINCLUDE = {path}\n" + WEB.format(tmp=tmp_path))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert f"{conf}:2:11: error: Error opening config file ({path}): {why}\n" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("FAILED: 1 error(s), 0 warning(s) in 1 file(s)")


@pytest.mark.parametrize("kind", KINDS)
def test_nodefile_of_anything_but_a_regular_file(tmp_path: Path, kind: str) -> None:
    path, why = _target(tmp_path, kind)
    if kind == "directory":
        why = "a directory, not a regular file"
    conf = tmp_path / "n.conf"
    conf.write_text(f"CREATE POOL p\n  SET nodefile = {path}\n" + WEB.format(tmp=tmp_path))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert f"{conf}:2:18: error: Node file {path} not read: {why}\n" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_throttle_list_over_the_cap(tmp_path: Path) -> None:
    path, why = _target(tmp_path, "oversized")
    conf = tmp_path / "t.conf"
    conf.write_text(WEB.format(tmp=tmp_path).replace(
        "ENABLE w", f"  SET whitelist_file = {path}\n  SET plugins = Throttle\nENABLE w")
        .replace("CREATE SERVICE", "LOAD Throttle\nCREATE SERVICE"))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert f"Unable to open file {path}: {why}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_named_on_the_command_line(tmp_path: Path) -> None:
    """The operator's own file may be a pipe (check <(...)) but stays under the cap;
    one that cannot be read is named without a made-up line 0 (#27)."""
    conf = tmp_path / "secret.conf"
    conf.write_text(WEB.format(tmp=tmp_path))
    proc = run_check("/dev/zero", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[:2] == [
        f"/dev/zero: error: cannot read: larger than the 16 MiB cap on files a config names",
        f"{tmp_path}: error: cannot read: Is a directory"]
    piped = subprocess.run(f"{sys.executable} -m perlbal.cli check <(cat {conf})", shell=True,
                           executable="/bin/bash", capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("OK: checked 1 file(s): 1 service(s)")


def test_the_server_refuses_them_too(tmp_path: Path) -> None:
    """The same interpreter starts the server: an INCLUDE of a FIFO stops start-up
    with the reason (Perl blocks at the open for ever)."""
    path, why = _target(tmp_path, "fifo")
    conf = tmp_path / "s.conf"
    conf.write_text(f"LOAD Include\nINCLUDE = {path}\n" + WEB.format(tmp=tmp_path))
    proc = subprocess.run([sys.executable, "-m", "perlbal.runtime.main", f"--config={conf}"],
                          capture_output=True, text=True, cwd=REPO, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert f"ERROR: Error opening config file ({path}): {why}" in proc.stdout + proc.stderr
