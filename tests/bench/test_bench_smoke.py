"""Smoke runs of the bench scripts with tiny parameters, so they cannot rot.

Each script runs as a subprocess for a second or two on 127.0.0.1 and must
exit 0 and print its table; the numbers themselves are not judged here (see
bench/README.md for real runs).  Skipped when wrk (or Perl Perlbal, where it
is the only thing compared) is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.perl_perlbal import perl_perlbal_available

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def run_script(name: str, *args: str, timeout: float = 60) -> str:
    done = subprocess.run([sys.executable, str(BENCH / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def servers() -> str:
    return "perl,ours" if perl_perlbal_available() else "ours"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install -y wrk)")
def test_webserver_bench_smoke() -> None:
    out = run_script("webserver_bench.py", "--duration", "1", "--warmup", "0", "--repeat", "1",
                     "--connections", "4", "--threads", "1", "--workers", "1",
                     "--files", "1k", "--only", servers(), "--no-json")
    line = next(line for line in out.splitlines() if line.startswith("1k    ours-w1"))
    assert float(line.split()[2]) > 0, out  # some requests per second were measured


@pytest.mark.skipif(shutil.which("wrk") is None or not Path("/usr/sbin/nginx").exists(),
                    reason="wrk or nginx not installed (apt-get install -y wrk nginx-light)")
def test_proxy_bench_smoke() -> None:
    out = run_script("proxy_bench.py", "--duration", "1", "--repeat", "2", "--connections", "4",
                     "--threads", "1", "--workers", "1", "--only", servers(), "--no-json")
    line = next(line for line in out.splitlines() if line.startswith("ours (workers=1)"))
    assert float(line.split()[2]) > 0, out  # some requests per second were measured
    assert "2 run(s) per target" in out, out


def test_idle_rss_smoke() -> None:
    out = run_script("idle_rss.py", "--connections", "100", "--settle", "0.2",
                     "--only", servers(), "--no-json")
    line = next(line for line in out.splitlines() if line.startswith("ours "))
    assert line.split()[1] == "100", out  # all 100 idle connections still open when measured


def test_soak_smoke() -> None:
    out = run_script("soak.py", "--duration", "2", "--warmup", "0.5", "--clients", "2",
                     "--hang", "0.3", "--settle", "0.3", "--sample", "1", "--no-json")
    assert "served 200:" in out and "server alive at end: True" in out, out
    assert '"chosen"' in out, out  # the chaos backend reported and was stopped


def test_check_bench_smoke() -> None:
    out = run_script("check_bench.py", "--runs", "1", "--no-targets", timeout=120)
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["small", "11k"], out
    assert all("(exit 0)" in line and ("-> MET" in line or "-> MISSED" in line)
               for line in lines), out
