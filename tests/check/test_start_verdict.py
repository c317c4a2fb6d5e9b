"""``perlbal check`` says plainly when a file that passes will not start on this host.

Debian's virtual-hosts.conf (missing docroots) and ssl.conf (missing TLS key)
pass with warnings; the summary must not read as a plain OK (#15 docs).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = Path("/usr/share/doc/perlbal/examples")


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perlbal.cli", "check", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


@pytest.mark.parametrize(("name", "count"), [("virtual-hosts.conf", 2), ("ssl.conf", 1)])
def test_debian_examples_are_said_not_to_start(name: str, count: int) -> None:
    if not (EXAMPLES / name).exists():
        pytest.skip("Debian's perlbal package is not installed")
    proc = _check(str(EXAMPLES / name))
    assert proc.returncode == 0
    assert proc.stdout.startswith("OK: checked 1 file(s)")
    assert proc.stdout.strip().endswith(
        f"warning(s). It will NOT start on this host as it is: {count} of the warnings name "
        "something it needs that this host lacks (--here makes them errors)")


def test_a_file_that_starts_gets_a_plain_ok(tmp_path: Path) -> None:
    conf = tmp_path / "ok.conf"
    conf.write_text(f"CREATE SERVICE w\n  SET role = web_server\n  SET docroot = {tmp_path}\n"
                    "  SET listen = 127.0.0.1:8089\nENABLE w\n")
    proc = _check(str(conf))
    assert proc.stdout.strip() == "OK: checked 1 file(s): 1 service(s), 0 pool(s); 0 warning(s)"
    assert json.loads(_check("--format", "json", str(conf)).stdout)["starts_here"] is True
    (tmp_path / "gone.conf").write_text(conf.read_text().replace(str(tmp_path), "/nonexistent"))
    missing = json.loads(_check("--format", "json", str(tmp_path / "gone.conf")).stdout)
    assert missing["ok"] is True and missing["starts_here"] is False
