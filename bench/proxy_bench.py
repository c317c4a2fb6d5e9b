"""Reverse-proxy throughput: Perl Perlbal 1.80, ours and nginx on loopback, driven by wrk.

One run starts an nginx backend serving a 1 KiB body on 127.0.0.1, then, one
at a time, each proxy in front of it with the same Perlbal config
(reverse_proxy, persist_client on, persist_backend on) -- plus a plain nginx
proxy (keepalive upstream) for reference -- and drives each with
``wrk -t2 -c50 -d10s``.  The machine is shared and its speed drifts, so this
is done ``--repeat`` times (default 3) in rounds that visit every target in
turn; it prints the median req/s with the min..max spread, median p50/p99
latency and the ratio ours/Perl of the medians, and writes every run as JSON
to ``bench/results/`` (gitignored).

Needs Debian's ``wrk``, ``nginx-light`` (or any nginx) and ``perlbal``; it
installs nothing itself (see bench/README.md).  Run::

    .venv/bin/python bench/proxy_bench.py                 # all targets, ours with workers=1 and 2
    .venv/bin/python bench/proxy_bench.py --workers 1 --duration 5 --only perl,ours

Target (issue: runtime core): ours >= 2x Perl's req/s, p99 no worse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOOPBACK = "127.0.0.1"


@dataclass
class Result:
    name: str
    requests_per_sec: float
    p50_ms: float
    p99_ms: float
    errors: str
    raw: str
    #: the server's CPU (user + system, every process of it) per request served, in
    #: microseconds: steadier than req/s on a shared machine
    cpu_us: float = float("nan")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def nginx_conf(workdir: Path, port: int, upstream_port: int | None) -> Path:
    """An nginx serving 1 KiB (upstream None) or proxying to the backend with keepalive."""
    if upstream_port is None:
        (workdir / "www").mkdir(exist_ok=True)
        (workdir / "www" / "1k.bin").write_bytes(b"x" * 1024)
        server = f"""
        location / {{ root {workdir}/www; try_files /1k.bin =404; }}"""
        upstream = ""
    else:
        upstream = f"""
    upstream be {{ server {LOOPBACK}:{upstream_port}; keepalive 64; }}"""
        server = """
        location / { proxy_pass http://be; proxy_http_version 1.1;
                     proxy_set_header Connection ""; }"""
    return write_nginx_conf(workdir, port, upstream, server)


def write_nginx_conf(workdir: Path, port: int, http_extra: str, server_body: str) -> Path:
    """One single-worker nginx config on LOOPBACK:port (shared by the benches)."""
    conf = workdir / f"nginx-{port}.conf"
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes 1;
user root;
pid {workdir}/nginx-{port}.pid;
error_log {workdir}/nginx-{port}.err warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {workdir}/tmp-{port};
    proxy_temp_path {workdir}/ptmp-{port};
    {http_extra}
    server {{
        listen {LOOPBACK}:{port};
        {server_body}
    }}
}}
""")
    return conf


def launch_nginx(workdir: Path, port: int, conf: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([binary, "-p", str(workdir), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc


def start_nginx(workdir: Path, port: int, upstream_port: int | None) -> subprocess.Popen[bytes]:
    return launch_nginx(workdir, port, nginx_conf(workdir, port, upstream_port))


def perlbal_conf(port: int, backend_ports: int | list[int], workers: int | None,
                 balance: str = "random") -> str:
    server = f"SERVER workers = {workers}\n" if workers else ""
    if isinstance(backend_ports, int):
        backend_ports = [backend_ports]
    nodes = "\n".join(f"  POOL web ADD {LOOPBACK}:{p}" for p in backend_ports)
    method = f"  SET web.balance_method = {balance}\n" if balance != "random" else ""
    return f"""{server}
CREATE POOL web
{nodes}
{method}
CREATE SERVICE proxy
  SET role = reverse_proxy
  SET listen = {LOOPBACK}:{port}
  SET pool = web
  SET persist_client = on
  SET persist_backend = on
  SET backend_persist_cache = 64
  SET verify_backend = off
ENABLE proxy
"""


def start_perlbal(workdir: Path, name: str, command: list[str], conf_text: str,
                  port: int, root: Path = ROOT) -> subprocess.Popen[bytes]:
    conf = workdir / f"{name}.conf"
    conf.write_text(conf_text)
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.Popen([*command, f"--config={conf}"], cwd=workdir, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(workdir / f"{name}.err", "wb"))
    wait_port(port, proc)
    return proc


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(name: str, port: int, args: argparse.Namespace, pid: int | None = None) -> Result:
    # warm-up: connections opened, backend connections cached, code paths hot
    return drive(name, f"http://{LOOPBACK}:{port}/", args, warmup=1.0, pid=pid)


def drive(name: str, url: str, args: argparse.Namespace, warmup: float,
          pid: int | None = None) -> Result:
    """``warmup`` seconds of light load, then one measured wrk run (shared by the
    benches); with ``pid``, the server's CPU per request over the measured run."""
    if warmup > 0:
        subprocess.run(["wrk", "-t1", "-c10", f"-d{warmup:g}s", url],
                       capture_output=True, check=False)
    cpu_before = tree_cpu_seconds(pid) if pid is not None else 0.0
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}",
                          f"-d{args.duration}s", "--latency", url],
                         capture_output=True, text=True, check=False).stdout
    cpu = tree_cpu_seconds(pid) - cpu_before if pid is not None else float("nan")
    served = re.search(r"(\d+) requests in", out)
    cpu_us = cpu / int(served.group(1)) * 1e6 if served and int(served.group(1)) else float("nan")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    errors = " ".join(line.strip() for line in out.splitlines()
                      if "Socket errors" in line or "Non-2xx" in line)
    return Result(name, float(rps.group(1)) if rps else 0.0,
                  _ms(p50.group(1)) if p50 else float("nan"),
                  _ms(p99.group(1)) if p99 else float("nan"), errors, out, cpu_us)


class RunStats:
    """Medians over ``self.runs`` (the machine is shared: one run proves little)."""

    runs: list[Result]

    def median(self, attr: str) -> float:
        values = [getattr(r, attr) for r in self.runs]
        return statistics.median(values) if values else float("nan")

    def spread(self) -> str:
        values = [r.requests_per_sec for r in self.runs]
        return f"{min(values):.0f}..{max(values):.0f}" if values else "-"


@dataclass
class Cell(RunStats):
    """Every run of one target."""

    name: str
    runs: list[Result] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; each round runs every target once; medians shown")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="1,2",
                        help="comma list of SERVER workers values to run ours with")
    parser.add_argument("--balance", default="random",
                        help="comma list of balance methods to run ours with (random, "
                             "round_robin, least_conn, two_choices, hash); hash uses "
                             "hash_key client_ip")
    parser.add_argument("--nodes", type=int, default=1,
                        help="backend nodes in the pool (each its own nginx)")
    parser.add_argument("--only", default="perl,ours,nginx",
                        help="comma list among perl, ours, nginx")
    parser.add_argument("--no-json", action="store_true",
                        help="do not write bench/results/*.json")
    parser.add_argument("--baseline-root", default="",
                        help="another checkout of this project (e.g. a git worktree of an "
                             "older commit) also run as 'base (workers=N)', for a before/after "
                             "comparison in the same run")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} not found: apt-get install -y wrk nginx-light", file=sys.stderr)
            return 2
    only = set(args.only.split(","))
    plan: list[str] = []
    if "perl" in only:
        plan.append("perl")
    if "ours" in only:
        plan += [f"ours (workers={int(w)})" + ("" if m == "random" else f" {m}")
                 for w in args.workers.split(",") if w for m in args.balance.split(",") if m]
        if args.baseline_root:
            plan += [f"base (workers={int(w)})" for w in args.workers.split(",") if w]
    if "nginx" in only:
        plan.append("nginx proxy")
    plan.append("backend direct")
    cells = {name: Cell(name) for name in plan}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="perlbal-bench-") as tmp:
        workdir = Path(tmp)
        backend_ports = [free_port() for _ in range(max(args.nodes, 1))]
        backends = []
        try:
            for i, backend_port in enumerate(backend_ports):
                node_dir = workdir / f"node{i}"
                node_dir.mkdir()
                backends.append(start_nginx(node_dir, backend_port, None))
            for _ in range(args.repeat):
                for name in plan:  # a round visits every target: noise spreads over all
                    cells[name].runs.append(_measure(name, workdir, backend_ports, args))
        finally:
            for backend in backends:
                stop(backend)
    perl = cells.get("perl")
    perl_rps = perl.median("requests_per_sec") if perl else 0.0
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, 1 KiB responses, "
          f"{len(backend_ports)} backend node(s), "
          f"{args.repeat} run(s) per target, medians; {os.cpu_count()} CPUs; "
          f"load before: {load_before:.2f}")
    print(f"{'target':<30} {'req/s':>8} {'min..max':>13} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'vs perl':>8} {'CPU us/req':>10}  errors")
    for cell in cells.values():
        rps = cell.median("requests_per_sec")
        ratio = f"{rps / perl_rps:.2f}x" if perl_rps else "-"
        errors = "; ".join(sorted({r.errors for r in cell.runs if r.errors}))
        print(f"{cell.name:<30} {rps:>8.0f} {cell.spread():>13} {cell.median('p50_ms'):>7.2f} "
              f"{cell.median('p99_ms'):>7.2f} {ratio:>8} {cell.median('cpu_us'):>10.1f}  {errors}")
    if args.no_json:
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"proxy-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "cpus": os.cpu_count(),
                               "load_before": load_before,
                               "results": {c.name: [asdict(r) for r in c.runs]
                                           for c in cells.values()}}, indent=1))
    print(f"written {out.relative_to(ROOT)}")
    return 0


def _measure(name: str, workdir: Path, backend_ports: list[int],
             args: argparse.Namespace) -> Result:
    """Start target ``name`` in front of the backends, drive it once, stop it."""
    backend_port = backend_ports[0]
    if name == "backend direct":
        return run_wrk(name, backend_port, args)
    port = free_port()
    if name == "perl":
        proc = start_perlbal(workdir, "perl", ["/usr/bin/perlbal"],
                             perlbal_conf(port, backend_ports, None), port)
    elif name.startswith(("ours", "base")):
        found = re.search(r"workers=(\d+)\)(?: (\w+))?", name)
        assert found is not None
        workers, method = int(found.group(1)), found.group(2) or "random"
        proc = start_perlbal(workdir, f"{name[:4]}-w{workers}-{method}",
                             [sys.executable, "-m", "perlbal.runtime.main"],
                             perlbal_conf(port, backend_ports, workers if workers > 1 else None,
                                          method),
                             port, root=Path(args.baseline_root) if name.startswith("base")
                             else ROOT)
    else:
        proc = start_nginx(workdir, port, backend_port)
    try:
        return run_wrk(name, port, args, proc.pid)
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.exit(main())
