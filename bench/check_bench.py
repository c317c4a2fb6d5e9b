"""Time `perlbal check` as a command: interpreter start-up included.

Two configs: a 5-line one (what an editor or a pre-commit hook checks on every
save) and a generated 11,352-line one (1,000 pools and 1,000 services: reverse
proxies, web servers and selectors with vhosts).  Each runs ``--runs`` times
as ``python -m perlbal.cli check FILE`` in a fresh process (hyperfine's
method, without needing hyperfine); the wall time of the command is what is
judged, by the median of the runs, against the targets of issue #16:
small < 0.2 s, 11k lines < 0.6 s.  MET is printed only for a median under its
target; the exit status is 1 when a target is missed or a check fails.

perlbal is byte-compiled first (``python -m compileall -q perlbal``), as
installing a wheel does: the environment sets PYTHONDONTWRITEBYTECODE=1, so
otherwise every run compiles our modules from source (``--no-compile`` times
that).  ``--baseline-root DIR`` also times the perlbal package of another
checkout (``git archive OLD perlbal | tar -x -C DIR``), alternating with ours
run by run so both see the same load.

    .venv/bin/python bench/check_bench.py             # 9 runs each
    .venv/bin/python bench/check_bench.py --runs 3 --no-targets   (smoke)
    .venv/bin/python bench/check_bench.py --no-targets --baseline-root /tmp/old

Measured 2026-12-02, quiet machine (load 0.6), median (min) of 9 runs
alternating with the commit before issue #16 part 6 (e97931c), .pyc for both:

    config   before (e97931c)     now                 target
    small    0.191 s (0.183)      0.137 s (0.134)     0.2 s: MET
    11k      0.677 s (0.660)      0.291 s (0.272)     0.6 s: MET

``python -c pass`` took 10 ms that day.  In an earlier session the same
machine was about 2.5x slower (``python -c pass`` 48 ms; before 0.471 /
1.833 s, now 0.378 / 0.759 s, both targets missed): compare the ratios
(small 0.72x, 11k 0.43x), and see bench/README.md for what the floor is made
of (imports: pydantic, the AST node classes, the plugin registry).
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


def compile_pyc(root: str) -> None:
    """Byte-compile ``root``/perlbal, as installing a wheel does (the environment
    sets PYTHONDONTWRITEBYTECODE, so without this every run compiles from source)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "perlbal"], cwd=root, check=True)


def time_command(path: str, runs: int, roots: list[str]) -> tuple[
        dict[str, list[float]], dict[str, subprocess.CompletedProcess[str]]]:
    """Wall time of ``runs`` fresh ``perlbal check`` processes per root (one warm-up
    run first, so the page cache and Lark's parser cache are what an editor would
    see).  With a baseline the two alternate run by run, so both see the same load."""
    cmd = [sys.executable, "-m", "perlbal.cli", "check", path]
    procs = {root: subprocess.run(cmd, capture_output=True, text=True, cwd=root)
             for root in roots}
    times: dict[str, list[float]] = {root: [] for root in roots}
    for _ in range(runs):
        for root in roots:
            start = time.perf_counter()
            procs[root] = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
            times[root].append(time.perf_counter() - start)
    return times, procs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--no-targets", action="store_true",
                        help="report only; exit 0 even when a target is missed (smoke runs)")
    parser.add_argument("--baseline-root", metavar="DIR",
                        help="also time the perlbal package under DIR (a checkout of an "
                             "older commit), alternating with ours run by run")
    parser.add_argument("--no-compile", action="store_true",
                        help="do not byte-compile perlbal first (every run then compiles "
                             "our modules from source, as PYTHONDONTWRITEBYTECODE=1 does)")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    roots = [here] + ([os.path.abspath(args.baseline_root)] if args.baseline_root else [])
    if not args.no_compile:
        for root in roots:
            compile_pyc(root)
        print("perlbal byte-compiled first (python -m compileall -q perlbal), as installing "
              "a wheel does", file=sys.stderr)
    how = "source compiled on each run" if args.no_compile else ".pyc precompiled"
    configs = {"small": SMALL.format(docroot=tempfile.gettempdir()), "11k": generate()}
    status = 0
    for name, text in configs.items():
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
            fh.write(text)
            path = fh.name
        try:
            times, procs = time_command(path, args.runs, roots)
        finally:
            os.unlink(path)
        for root in roots:
            proc, runs = procs[root], times[root]
            median, best = statistics.median(runs), min(runs)
            target = TARGETS[name]
            verdict = "MET" if median < target else "MISSED"
            who = "" if root == here else " (baseline)"
            print(f"{name:5} {text.count(chr(10)):6d} lines{who}: median {median:.3f} s, "
                  f"min {best:.3f} s, max {max(runs):.3f} s over {args.runs} runs "
                  f"(exit {proc.returncode}); target < {target} s -> {verdict}; {how}")
            if proc.returncode != 0:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                status = 1
            elif verdict != "MET" and not args.no_targets and root == here:
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
