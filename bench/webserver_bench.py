"""web_server throughput: Perl Perlbal 1.80, ours (workers 1 and 2) and nginx serving files, driven by wrk.

One run writes a docroot with ``1k.bin`` (1 KiB) and ``100k.bin`` (100 KiB),
starts each server on 127.0.0.1 in turn with the same Perlbal config
(role web_server, persist_client on) -- nginx with an equivalent static
config, sendfile on -- and drives each file with
``wrk -t2 -c50 -d<duration>s --latency`` (50 keep-alive connections; two wrk
threads because the box has two cores and wrk needs about one of them).

The machine is shared, so every (server, file) cell is measured ``--repeat``
times, in rounds that visit the servers in turn (noise spreads over all of
them, not one); the table shows the median req/s with the min..max spread,
the median p50/p99, and ours/Perl computed from the medians.  JSON with every
raw wrk output goes to ``bench/results/`` (gitignored).

    .venv/bin/python bench/webserver_bench.py
    .venv/bin/python bench/webserver_bench.py --duration 3 --repeat 1 --only perl,ours --workers 1

Target (issue): ours >= 2x Perl's req/s on both sizes.  Needs ``wrk``,
``nginx`` and ``/usr/bin/perlbal`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_bench import (LOOPBACK, Result, RunStats, drive, free_port,  # noqa: E402
                         launch_nginx, start_perlbal, stop, wait_port, write_nginx_conf)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FILES = {"1k": 1024, "100k": 100 * 1024}


@dataclass
class Cell(RunStats):
    server: str
    file: str
    runs: list[Result] = field(default_factory=list)


def write_docroot(workdir: Path) -> Path:
    docroot = workdir / "www"
    docroot.mkdir(exist_ok=True)
    for name, size in FILES.items():
        (docroot / f"{name}.bin").write_bytes(os.urandom(size))
    return docroot


def webserver_conf(port: int, docroot: Path, workers: int | None,
                   aio_mode: str | None = None) -> str:
    server = f"SERVER workers = {workers}\n" if workers else ""
    if aio_mode:
        server += f"SERVER aio_mode = {aio_mode}\n"
    return f"""{server}
CREATE SERVICE web
  SET role = web_server
  SET listen = {LOOPBACK}:{port}
  SET docroot = {docroot}
  SET persist_client = on
ENABLE web
"""


def start_nginx_static(workdir: Path, port: int, docroot: Path) -> subprocess.Popen[bytes]:
    conf = write_nginx_conf(workdir, port, "sendfile on;", f"root {docroot};")
    return launch_nginx(workdir, port, conf)


def run_wrk(url: str, args: argparse.Namespace, pid: int | None = None) -> Result:
    return drive(url, url, args, warmup=args.warmup, pid=pid)


def server_plan(args: argparse.Namespace) -> list[str]:
    only = set(args.only.split(","))
    plan: list[str] = []
    if "perl" in only:
        plan.append("perl")
    if "ours" in only:
        plan += [f"ours-w{int(w)}" for w in args.workers.split(",") if w]
        if args.baseline_root:
            plan += [f"base-w{int(w)}" for w in args.workers.split(",") if w]
        if args.aio_none:
            plan += [f"ours-w{int(w)}-aio-none" for w in args.workers.split(",") if w]
    if "nginx" in only:
        plan.append("nginx")
    return plan


def start_server(name: str, workdir: Path, docroot: Path, port: int,
                 baseline_root: str = "") -> subprocess.Popen[bytes]:
    if name == "perl":
        return start_perlbal(workdir, "perl", ["/usr/bin/perlbal"],
                             webserver_conf(port, docroot, None), port)
    if name.startswith(("ours-w", "base-w")):
        workers = int(name[len("ours-w"):].split("-")[0])
        aio = "none" if name.endswith("-aio-none") else None
        return start_perlbal(workdir, name, [sys.executable, "-m", "perlbal.runtime.main"],
                             webserver_conf(port, docroot, workers if workers > 1 else None,
                                            aio), port,
                             root=Path(baseline_root) if name.startswith("base") else ROOT)
    return start_nginx_static(workdir, port, docroot)


def check_reply(port: int, file: str) -> None:
    """One plain GET first: a server answering 404 would otherwise benchmark its error page."""
    import urllib.request

    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/{file}.bin", timeout=5) as reply:
        body = reply.read()
    if len(body) != FILES[file]:
        raise RuntimeError(f"{file}.bin: got {len(body)} bytes, expected {FILES[file]}")


def print_table(cells: list[Cell], args: argparse.Namespace) -> None:
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"{args.repeat} run(s) per cell, medians; {os.cpu_count()} CPUs; "
          f"load before: {args.load_before}")
    print(f"{'file':<5} {'server':<10} {'req/s':>9} {'min..max':>15} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'vs perl':>8} {'CPU us/req':>10}  errors")
    for file in FILES:
        perl = next((c for c in cells if c.server == "perl" and c.file == file), None)
        for cell in (c for c in cells if c.file == file):
            rps = cell.median("requests_per_sec")
            ratio = (f"{rps / perl.median('requests_per_sec'):.2f}x"
                     if perl and perl.median("requests_per_sec") else "-")
            errors = "; ".join(sorted({r.errors for r in cell.runs if r.errors}))
            print(f"{file:<5} {cell.server:<10} {rps:>9.0f} {cell.spread():>15} "
                  f"{cell.median('p50_ms'):>7.2f} {cell.median('p99_ms'):>7.2f} {ratio:>8} "
                  f"{cell.median('cpu_us'):>10.1f}  {errors}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per (server, file); medians shown")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="SERVER workers values to run ours with")
    parser.add_argument("--aio-none", action="store_true",
                        help="also run ours with SERVER aio_mode = none (disk calls inline)")
    parser.add_argument("--only", default="perl,ours,nginx", help="comma list among perl, ours, nginx")
    parser.add_argument("--files", default="1k,100k", help="comma list among 1k, 100k")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/*.json")
    parser.add_argument("--baseline-root", default="",
                        help="another checkout (e.g. a worktree of an older commit) also run "
                             "as base-wN, for a before/after comparison in the same run")
    args = parser.parse_args(argv)
    for tool in ("wrk", "nginx") if "nginx" in args.only else ("wrk",):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} not found: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2
    files = [f for f in args.files.split(",") if f in FILES]
    args.load_before = open("/proc/loadavg").read().split()[0]
    plan = server_plan(args)
    cells = [Cell(server, file) for file in files for server in plan]
    with tempfile.TemporaryDirectory(prefix="perlbal-webbench-") as tmp:
        workdir = Path(tmp)
        docroot = write_docroot(workdir)
        for _ in range(args.repeat):
            for server in plan:  # one start per round: every file measured on the same process
                port = free_port()
                proc = start_server(server, workdir, docroot, port, args.baseline_root)
                try:
                    for file in files:
                        check_reply(port, file)
                        run = run_wrk(f"http://{LOOPBACK}:{port}/{file}.bin", args, proc.pid)
                        next(c for c in cells if c.server == server and c.file == file).runs.append(run)
                finally:
                    stop(proc)
    print_table(cells, args)
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"webserver-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(),
                                   "cells": [asdict(c) for c in cells]}, indent=1))
        print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
