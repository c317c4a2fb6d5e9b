"""Time `perlbal check` as a command: interpreter start-up included.

Two configs: a 5-line one (what an editor or a pre-commit hook checks on every
save) and a generated 11,352-line one (1,000 pools and 1,000 services: reverse
proxies, web servers and selectors with vhosts).  Each runs ``--runs`` times
as ``python -m perlbal.cli check FILE`` in a fresh process (hyperfine's
method, without needing hyperfine); the wall time of the command is what is
judged, by the median of the runs, against the targets of issue #16:
small < 0.2 s, 11k lines < 0.6 s.  MET is printed only for a median under its
target; the exit status is 1 when a target is missed or a check fails.

    .venv/bin/python bench/check_bench.py             # 9 runs each
    .venv/bin/python bench/check_bench.py --runs 3 --no-targets   (smoke)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

SMALL = """\
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:8080
  SET docroot = {docroot}
ENABLE web
"""

TARGETS = {"small": 0.2, "11k": 0.6}


def generate(pools: int = 1000, services: int = 1000) -> str:
    lines = ["LOAD vhosts", ""]
    for i in range(pools):
        lines += [f"CREATE POOL pool{i}", f"  POOL pool{i} ADD 10.{i // 250}.{i % 250}.1:8080",
                  f"  POOL pool{i} ADD 10.{i // 250}.{i % 250}.2:8080", ""]
    docroot = tempfile.gettempdir()
    selectors = services // 10
    for i in range(services - selectors):
        if i % 2:
            lines += [f"CREATE SERVICE svc{i}", "  SET role = reverse_proxy",
                      f"  SET pool = pool{i % pools}", "  SET persist_backend = on",
                      "  SET buffer_size = 512k", f"ENABLE svc{i}", ""]
        else:
            lines += [f"CREATE SERVICE svc{i}", "  SET role = web_server",
                      f"  SET docroot = {docroot}", "  SET dirindexing = off",
                      f"ENABLE svc{i}", ""]
    for j in range(selectors):
        lines += [f"CREATE SERVICE sel{j}", "  SET role = selector",
                  f"  SET listen = 127.0.0.1:{20000 + j}", "  SET plugins = vhosts"]
        for k in range(9):
            lines.append(f"  VHOST host{k}.site{j}.example.com = svc{(j * 9 + k) % (services - selectors)}")
        lines += [f"ENABLE sel{j}", ""]
    return "\n".join(lines) + "\n"


def time_command(path: str, runs: int) -> tuple[list[float], subprocess.CompletedProcess[str]]:
    """Wall time of ``runs`` fresh ``perlbal check`` processes (one warm-up run first,
    so the page cache and Lark's parser cache are what an editor would see)."""
    cmd = [sys.executable, "-m", "perlbal.cli", "check", path]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
    return times, proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-targets", action="store_true",
                        help="report only; exit 0 even when a target is missed (smoke runs)")
    args = parser.parse_args(argv)
    configs = {"small": SMALL.format(docroot=tempfile.gettempdir()), "11k": generate()}
    status = 0
    for name, text in configs.items():
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
            fh.write(text)
            path = fh.name
        try:
            times, proc = time_command(path, args.runs)
        finally:
            os.unlink(path)
        median, best = statistics.median(times), min(times)
        target = TARGETS[name]
        verdict = "MET" if median < target else "MISSED"
        print(f"{name:5} {text.count(chr(10)):6d} lines: median {median:.3f} s, min {best:.3f} s, "
              f"max {max(times):.3f} s over {args.runs} runs (exit {proc.returncode}); "
              f"target < {target} s -> {verdict}")
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            status = 1
        elif verdict != "MET" and not args.no_targets:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
