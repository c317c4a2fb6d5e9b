"""Bounded soak: our reverse proxy in front of chaos backends, watched for descriptor and memory growth.

On 127.0.0.1 only, the script starts ``chaos_backend.py`` listening on
``--nodes`` ports (a pool of that many nodes; each request there is answered
normally or reset, hung, garbled or truncated at random) and our server as a
reverse proxy in front (persist_client and persist_backend on).  Then:

1. warm-up: ``--clients`` threads send requests for ``--warmup`` seconds;
   every client connection is closed, the server left to settle, and its fd
   count and RSS (``/proc/<pid>``, summed over workers) taken as "start";
2. load: the same for ``--duration`` seconds (or ``--max-requests``,
   whichever comes first), sampling fds/RSS every ``--sample`` seconds;
3. end: clients closed, settle, fds/RSS again ("end"); every process stopped.

Clients use keep-alive, 1 in 10 requests is a small POST; each reply is
classified by status code, or as ``reset``, ``closed`` (no reply),
``truncated`` (fewer body bytes than announced), ``timeout`` or ``bad_reply``.
Every client read has a timeout, every loop a deadline: the run stops by
itself.  Issue targets: no fd growth, RSS growth under 10 %.

    .venv/bin/python bench/soak.py                      # ~2 minutes
    .venv/bin/python bench/soak.py --duration 600 --clients 32
    .venv/bin/python bench/soak.py --duration 3 --warmup 1 --clients 2   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idle_rss import fd_count, rss_kib  # noqa: E402
from proxy_bench import LOOPBACK, free_port, start_perlbal, stop  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Sample:
    at: float
    fds: int
    rss_kib: int


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[outcome] += 1

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.outcomes.values())


def proxy_conf(port: int, nodes: list[int], workers: int) -> str:
    server = f"SERVER workers = {workers}\n" if workers > 1 else ""
    adds = "".join(f"  POOL chaos ADD {LOOPBACK}:{p}\n" for p in nodes)
    return f"""{server}
CREATE POOL chaos
{adds}
CREATE SERVICE proxy
  SET role = reverse_proxy
  SET listen = {LOOPBACK}:{port}
  SET pool = chaos
  SET persist_client = on
  SET persist_backend = on
  SET backend_persist_cache = 8
  SET verify_backend = off
ENABLE proxy
"""


class _Closed(Exception):
    pass


def _recv_until(sock: socket.socket, buf: bytes, need: bytes) -> tuple[bytes, bytes]:
    while need not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Closed(buf)
        buf += chunk
    head, rest = buf.split(need, 1)
    return head, rest


def exchange(sock: socket.socket, request: bytes) -> tuple[str, bool]:
    """Send one request, read its reply: (outcome, connection still usable)."""
    sock.sendall(request)
    try:
        head, body = _recv_until(sock, b"", b"\r\n\r\n")
    except _Closed as exc:
        return ("closed" if not exc.args[0] else "bad_reply"), False
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return "bad_reply", False
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    length = int(headers.get(b"content-length", b"-1") or b"-1")
    chunked = headers.get(b"transfer-encoding") == b"chunked"
    keep = headers.get(b"connection") != b"close" and (length >= 0 and not chunked)
    if length >= 0:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return "truncated", False
            body += chunk
    else:  # no length: read to close (chunked is never sent by the chaos backend)
        while sock.recv(65536):
            pass
    return parts[1].decode(), keep


def client_loop(port: int, deadline: float, budget: list[int], budget_lock: threading.Lock,
                tally: Tally, seed: int, timeout: float) -> None:
    rng = random.Random(seed)
    sock: socket.socket | None = None
    while time.monotonic() < deadline:
        with budget_lock:
            if budget[0] <= 0:
                break
            budget[0] -= 1
        if rng.random() < 0.1:
            body = b"p" * rng.randrange(1, 200)
            request = (b"POST /soak/%d HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n%s"
                       % (rng.randrange(10**6), len(body), body))
        else:
            request = b"GET /soak/%d HTTP/1.1\r\nHost: soak\r\n\r\n" % rng.randrange(10**6)
        try:
            if sock is None:
                sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
            outcome, keep = exchange(sock, request)
        except socket.timeout:
            outcome, keep = "timeout", False
        except ConnectionResetError:
            outcome, keep = "reset", False
        except OSError as exc:
            outcome, keep = f"oserror:{exc.errno}", False
        tally.add(outcome)
        if not keep and sock is not None:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()


def drive(port: int, seconds: float, max_requests: int, args: argparse.Namespace,
          tally: Tally, sampler: "Sampler | None" = None) -> float:
    deadline = time.monotonic() + seconds
    budget, lock = [max_requests], threading.Lock()
    threads = [threading.Thread(target=client_loop, daemon=True,
                                args=(port, deadline, budget, lock, tally,
                                      args.seed * 1000 + i, args.client_timeout))
               for i in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=min(1.0, args.sample))
        if sampler is not None:
            sampler.maybe()
    # every read has a timeout, so the last thread ends at most client_timeout after the deadline
    return time.monotonic() - started


class Sampler:
    def __init__(self, pid: int, every: float) -> None:
        self.pid, self.every = pid, every
        self.t0 = time.monotonic()
        self.samples: list[Sample] = []
        self.next = self.t0

    def take(self) -> Sample:
        sample = Sample(round(time.monotonic() - self.t0, 1), fd_count(self.pid), rss_kib(self.pid))
        self.samples.append(sample)
        return sample

    def maybe(self) -> None:
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + self.every
            self.take()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=120, help="seconds of load after warm-up")
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--max-requests", type=int, default=5_000_000, help="upper bound on requests")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--nodes", type=int, default=3, help="chaos backend ports in the pool")
    parser.add_argument("--workers", type=int, default=1, help="SERVER workers for our proxy")
    parser.add_argument("--weights", default=None, help="chaos_backend.py --weights")
    parser.add_argument("--hang", type=float, default=3.0, help="seconds a backend hang lasts")
    parser.add_argument("--client-timeout", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0, help="idle seconds before start/end samples")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--strict", action="store_true", help="exit 1 if fds grew or RSS grew >= 10%%")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    nodes = [free_port() for _ in range(args.nodes)]
    chaos_cmd = [sys.executable, str(Path(__file__).with_name("chaos_backend.py")),
                 "--ports", ",".join(map(str, nodes)), "--seed", str(args.seed), "--hang", str(args.hang)]
    if args.weights:
        chaos_cmd += ["--weights", args.weights]
    chaos = subprocess.Popen(chaos_cmd, stdout=subprocess.PIPE, text=True)
    proxy: subprocess.Popen[bytes] | None = None
    warm, tally = Tally(), Tally()
    chaos_report = ""
    try:
        assert chaos.stdout is not None
        if chaos.stdout.readline().strip() != "ready":
            raise RuntimeError("chaos backend did not start")
        with tempfile.TemporaryDirectory(prefix="perlbal-soak-") as tmp:
            port = free_port()
            proxy = start_perlbal(Path(tmp), "ours", [sys.executable, "-m", "perlbal.runtime.main"],
                                  proxy_conf(port, nodes, args.workers), port)
            drive(port, args.warmup, args.max_requests, args, warm)
            time.sleep(args.settle)
            sampler = Sampler(proxy.pid, args.sample)
            start = sampler.take()
            print(f"warm-up: {warm.total} requests; start: {start.fds} fds, "
                  f"{start.rss_kib / 1024:.1f} MB RSS", flush=True)
            elapsed = drive(port, args.duration, args.max_requests, args, tally, sampler)
            time.sleep(args.settle)
            end = sampler.take()
            alive = proxy.poll() is None
            if alive:
                with socket.create_connection((LOOPBACK, port), timeout=5):
                    pass  # still accepting
            stop(proxy)
            proxy = None
    finally:
        if proxy is not None:
            stop(proxy)
        if chaos.poll() is None:
            chaos.send_signal(signal.SIGTERM)
            try:
                chaos_report = chaos.communicate(timeout=5)[0].strip()
            except subprocess.TimeoutExpired:
                chaos.kill()
                chaos.wait(timeout=5)
    served = tally.outcomes.get("200", 0)
    growth = (end.rss_kib - start.rss_kib) / start.rss_kib * 100
    fd_ok = end.fds <= start.fds
    rss_ok = growth < 10
    print(f"\nsoak: {args.clients} clients, {args.nodes} chaos nodes, {elapsed:.0f}s, "
          f"ours workers={args.workers}, seed {args.seed}")
    print(f"requests: {tally.total}  served 200: {served}  ({tally.total / elapsed:.0f} req/s)")
    print("outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(tally.outcomes.items())))
    print(f"chaos backend: {chaos_report}")
    print("samples (s, fds, RSS MB): " + " ".join(
        f"({s.at:.0f},{s.fds},{s.rss_kib / 1024:.1f})" for s in sampler.samples))
    print(f"fds  start {start.fds:>6}  end {end.fds:>6}   {'OK' if fd_ok else 'GREW'}")
    print(f"RSS  start {start.rss_kib / 1024:>5.1f}MB end {end.rss_kib / 1024:>5.1f}MB "
          f"{growth:+.1f}%  {'OK' if rss_ok else 'GREW >= 10%'}")
    print(f"server alive at end: {alive}")
    if not args.no_json:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"args": vars(args), "outcomes": dict(tally.outcomes),
                                   "warmup_outcomes": dict(warm.outcomes), "chaos": chaos_report,
                                   "samples": [s.__dict__ for s in sampler.samples]}, indent=1))
        print(f"written {out.relative_to(ROOT)}")
    if args.strict and not (fd_ok and rss_ok and alive):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
