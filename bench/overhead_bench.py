"""What the access log and the /metrics counters cost: reverse-proxy req/s with them off vs on.

Same setup as ``proxy_bench.py`` (whose helpers it reuses): an nginx backend
serving 1 KiB on 127.0.0.1, ours in front of it (reverse_proxy, persist_client
and persist_backend on, one worker), driven by ``wrk``.  Two configurations:

- ``off``: ``SERVER metrics = off`` and no ``access_log``;
- ``on``:  metrics on (the default) and ``SET access_log = FILE`` in the
  given format (combined by default); ``/metrics`` is scraped once per run.

The machine may be shared, so the two alternate for ``--rounds`` rounds (each
configuration in a fresh process) and the medians are compared.  Prints each
round, the medians and on/off, and -- less sensitive to a shared machine --
the server's CPU time per request (from /proc, divided by the requests the
server counted); writes JSON to ``bench/results/``.  Target:
on/off >= 0.90 (logging and metrics cost under 10% of throughput).

    .venv/bin/python bench/overhead_bench.py
    .venv/bin/python bench/overhead_bench.py --rounds 7 --duration 5 --format json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_bench import (  # noqa: E402  (bench/ is not a package)
    LOOPBACK, RESULTS, ROOT, Result, free_port, perlbal_conf, run_wrk, start_nginx,
    start_perlbal, stop)


def config(port: int, mgmt: int, backend: int, workdir: Path, on: bool, fmt: str) -> str:
    text = perlbal_conf(port, backend, None)
    if on:
        log = workdir / f"access-{fmt}.log"
        text = text.replace("ENABLE proxy", f"  SET access_log = {log}\n"
                            f"  SET access_log_format = {fmt}\nENABLE proxy")
    else:
        text = "SERVER metrics = off\n" + text
    return text + (f"CREATE SERVICE mgmt\n  SET role = management\n"
                   f"  SET listen = {LOOPBACK}:{mgmt}\nENABLE mgmt\n")


def scrape(mgmt: int) -> tuple[float, int]:
    """(seconds one /metrics scrape took, perlbal_requests_total), as Prometheus would."""
    started = time.monotonic()
    data = b""
    try:
        with socket.create_connection((LOOPBACK, mgmt), timeout=30) as sock:
            sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        print(f"scrape failed: {exc}", file=sys.stderr)
    match = re.search(rb"^perlbal_requests_total (\d+)", data, re.M)
    return time.monotonic() - started, int(match.group(1)) if match else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), immune to others' load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(workdir: Path, backend: int, on: bool,
            args: argparse.Namespace) -> tuple[Result, float]:
    """wrk's result and the server's CPU microseconds per request."""
    port, mgmt = free_port(), free_port()
    name = "on" if on else "off"
    proc = start_perlbal(workdir, f"ours-{name}", [sys.executable, "-m", "perlbal.runtime.main"],
                         config(port, mgmt, backend, workdir, on, args.format), port)
    try:
        cpu0 = cpu_seconds(proc.pid)
        _took, before = scrape(mgmt)
        result = run_wrk(name, port, args)
        took, after = scrape(mgmt)
        cpu = cpu_seconds(proc.pid) - cpu0
        if took > 1:
            print(f"  /metrics took {took:.1f} s", flush=True)
        served = after - before - 1  # the scrape itself counts
        return result, (cpu / served * 1e6 if served > 0 else float("nan"))
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--format", choices=("combined", "json"), default="combined")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} not found: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2
    off: list[Result] = []
    on: list[Result] = []
    cpu: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="perlbal-overhead-") as tmp:
        workdir = Path(tmp)
        backend_port = free_port()
        backend = start_nginx(workdir, backend_port, None)
        try:
            for rnd in range(args.rounds):
                # alternate which goes first, so drift on a shared machine hits both
                order = (False, True) if rnd % 2 == 0 else (True, False)
                for enabled in order:
                    result, us = one_run(workdir, backend_port, enabled, args)
                    (on if enabled else off).append(result)
                    cpu[enabled].append(us)
                    print(f"round {rnd + 1} {result.name:>3}: {result.requests_per_sec:>8.0f} req/s"
                          f"  p99 {result.p99_ms:6.2f} ms  {us:6.1f} CPU us/req  {result.errors}",
                          flush=True)
            log = workdir / f"access-{args.format}.log"
            logged = sum(1 for _ in open(log, "rb")) if log.exists() else 0
        finally:
            stop(backend)
    med_off = statistics.median(r.requests_per_sec for r in off)
    med_on = statistics.median(r.requests_per_sec for r in on)
    ratio = med_on / med_off if med_off else 0.0
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, 1 KiB responses, "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds, access log format {args.format}")
    cpu_off, cpu_on = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(f"median req/s  off: {med_off:.0f}  on: {med_on:.0f}  on/off: {ratio:.3f} "
          f"(cost {100 * (1 - ratio):.1f}%)  lines logged: {logged}")
    print(f"median server CPU per request  off: {cpu_off:.1f} us  on: {cpu_on:.1f} us  "
          f"(cost {100 * (cpu_on / cpu_off - 1):.1f}%; CPU-bound throughput ratio "
          f"{cpu_off / cpu_on:.3f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({
        "args": vars(args), "cpus": os.cpu_count(), "median_off": med_off, "median_on": med_on,
        "ratio": ratio, "cpu_us_per_request_off": cpu[False],
        "cpu_us_per_request_on": cpu[True], "off": [r.requests_per_sec for r in off],
        "on": [r.requests_per_sec for r in on]}, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return 0 if ratio >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
