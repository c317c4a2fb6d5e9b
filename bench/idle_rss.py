"""Memory held by idle keep-alive clients: RSS of ours and Perl Perlbal with 10,000 connections open.

For each server (same web_server config, persist_client on, idle timeouts
raised to 600 s so nothing is reaped while the connections are being opened)
the script:

1. starts it on 127.0.0.1, serves one request, and reads ``VmRSS`` from
   ``/proc/<pid>/status`` ("before"; summed over the process and its
   children, so ``--workers 2`` counts both workers);
2. opens ``--connections`` (default 10,000) TCP connections, each sends one
   ``GET /1k.bin`` with keep-alive, reads the whole reply and then stays idle;
3. waits ``--settle`` seconds, checks that every connection is still open
   (the server's fd count, and a non-blocking peek on each client socket),
   and reads RSS again ("open"); the difference divided by the number of
   connections is the cost of one idle keep-alive client.

Both servers and the client need a descriptor each per connection: the
script raises its own RLIMIT_NOFILE soft limit to the hard limit (children
inherit it), so the hard limit must be at least connections + ~100, e.g.
``ulimit -n 20000`` before running it for 10,000 connections.

    .venv/bin/python bench/idle_rss.py
    .venv/bin/python bench/idle_rss.py --connections 500 --only ours

Target (issue): ours must not exceed Perl's RSS with the connections open.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_bench import LOOPBACK, free_port, start_perlbal, stop  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REQUEST = b"GET /1k.bin HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"


@dataclass
class Measure:
    server: str
    connections_open: int
    server_fds_before: int
    server_fds_open: int
    rss_before_kib: int
    rss_open_kib: int

    @property
    def per_connection_bytes(self) -> float:
        if not self.connections_open:
            return 0.0
        return (self.rss_open_kib - self.rss_before_kib) * 1024 / self.connections_open


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (SERVER workers fork children)."""
    pids = [pid]
    for parent in pids:
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            pids += [int(c) for c in children if int(c) not in pids]
    return pids


def rss_kib(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def fd_count(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return total


def raise_nofile(need: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {need} needed: run `ulimit -n {need}` "
                         "(as root, or raise the hard limit) or pass fewer --connections")
    return int(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def webserver_conf(port: int, docroot: Path, workers: int | None) -> str:
    server = f"SERVER workers = {workers}\n" if workers else ""
    return f"""{server}
CREATE SERVICE web
  SET role = web_server
  SET listen = {LOOPBACK}:{port}
  SET docroot = {docroot}
  SET persist_client = on
  SET idle_timeout = 600
  SET persist_client_idle_timeout = 600
ENABLE web
"""


def _read_reply(sock: socket.socket) -> bool:
    """Read one whole reply (head + Content-Length body) with a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n", 1)[0] + b" "


def open_idle(port: int, count: int, batch: int = 200) -> list[socket.socket]:
    """``count`` connections that each completed one keep-alive request and now idle.

    Opened in batches of ``batch`` (connect all, send all, read all) so the
    listen backlog is never the bottleneck and it takes seconds, not minutes."""
    socks: list[socket.socket] = []
    while len(socks) < count:
        wave: list[socket.socket] = []
        for _ in range(min(batch, count - len(socks))):
            sock = socket.create_connection((LOOPBACK, port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # keep the client side small
            wave.append(sock)
        for sock in wave:
            sock.sendall(REQUEST)
        for sock in wave:
            if not _read_reply(sock):
                raise RuntimeError(f"connection {len(socks)} got no complete 200 reply")
            socks.append(sock)
    return socks


def still_open(socks: list[socket.socket]) -> int:
    """How many client sockets the server has not closed (no EOF, no reset pending)."""
    alive = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            alive += 0 if sock.recv(1, socket.MSG_PEEK) == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
        sock.setblocking(True)
    return alive


def measure(name: str, command: list[str], workdir: Path, docroot: Path,
            args: argparse.Namespace) -> Measure:
    port = free_port()
    workers = args.workers if name == "ours" and args.workers > 1 else None
    proc = start_perlbal(workdir, name, command, webserver_conf(port, docroot, workers), port)
    socks: list[socket.socket] = []
    try:
        warm = open_idle(port, 1)  # first request: lazily imported code paths loaded
        warm[0].close()
        time.sleep(args.settle)
        before = rss_kib(proc.pid), fd_count(proc.pid)
        started = time.monotonic()
        socks = open_idle(port, args.connections)
        print(f"  {name}: {len(socks)} connections opened in {time.monotonic() - started:.1f}s",
              flush=True)
        time.sleep(args.settle)
        opened = rss_kib(proc.pid), fd_count(proc.pid)
        alive = still_open(socks)
        return Measure(name, alive, before[1], opened[1], before[0], opened[0])
    finally:
        for sock in socks:
            sock.close()
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds to wait before each RSS reading")
    parser.add_argument("--workers", type=int, default=1, help="SERVER workers for ours")
    parser.add_argument("--only", default="perl,ours", help="comma list among perl, ours")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    limit = raise_nofile(args.connections + 100)
    print(f"RLIMIT_NOFILE soft limit now {limit} (client and servers inherit it)")
    only = args.only.split(",")
    commands = {"perl": ["/usr/bin/perlbal"],
                "ours": [sys.executable, "-m", "perlbal.runtime.main"]}
    results: list[Measure] = []
    with tempfile.TemporaryDirectory(prefix="perlbal-idle-") as tmp:
        workdir = Path(tmp)
        docroot = workdir / "www"
        docroot.mkdir()
        (docroot / "1k.bin").write_bytes(b"x" * 1024)
        for name in ("perl", "ours"):
            if name in only:
                results.append(measure(name, commands[name], workdir, docroot, args))
    print(f"{args.connections} idle keep-alive connections (one GET /1k.bin each), "
          f"ours with workers={args.workers}")
    print(f"{'server':<7} {'open':>6} {'fds before':>10} {'fds open':>9} "
          f"{'RSS before':>11} {'RSS open':>10} {'per conn':>9}")
    for m in results:
        print(f"{m.server:<7} {m.connections_open:>6} {m.server_fds_before:>10} {m.server_fds_open:>9} "
              f"{m.rss_before_kib / 1024:>9.1f}MB {m.rss_open_kib / 1024:>8.1f}MB "
              f"{m.per_connection_bytes / 1024:>7.1f}KB")
    by_name = {m.server: m for m in results}
    if "perl" in by_name and "ours" in by_name:
        verdict = "OK" if by_name["ours"].rss_open_kib <= by_name["perl"].rss_open_kib else "EXCEEDS"
        print(f"ours/perl RSS with connections open: "
              f"{by_name['ours'].rss_open_kib / by_name['perl'].rss_open_kib:.2f} ({verdict})")
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"idle-rss-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"args": vars(args),
                                   "results": [dict(asdict(m), per_connection_bytes=m.per_connection_bytes)
                                               for m in results]}, indent=1))
        print(f"written {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
