"""Memory held by idle WebSocket tunnels through the reverse proxy.

Starts, on 127.0.0.1, a ``websockets`` echo server (the backend) in this
process and ours (reverse_proxy in front of it, one worker, idle_timeout
raised so nothing is reaped), opens ``--connections`` (default 1,000)
WebSockets through the proxy, exchanges one message on each, then leaves them
idle; reads the proxy's ``VmRSS`` before and with them open, and prints the
cost of one idle tunnel (a client connection and a backend connection each).
Every tunnel is checked to still echo at the end.

    .venv/bin/python bench/websocket_idle.py
    .venv/bin/python bench/websocket_idle.py --connections 200

Needs ``pip install websockets`` (the test extra has it) and a descriptor
limit above 3 x connections (``ulimit -n``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_bench import ROOT, free_port, start_perlbal, stop  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def run(args: argparse.Namespace) -> int:
    async with serve(echo, "127.0.0.1", 0, ping_interval=None) as server:
        backend_port = next(iter(server.sockets)).getsockname()[1]
        port = free_port()
        config = f"""
SERVER max_connections = {args.connections * 2 + 100}
CREATE POOL ws
  POOL ws ADD 127.0.0.1:{backend_port}
CREATE SERVICE proxy
  SET role = reverse_proxy
  SET listen = 127.0.0.1:{port}
  SET pool = ws
  SET idle_timeout = 600
ENABLE proxy
"""
        with tempfile.TemporaryDirectory(prefix="perlbal-ws-") as tmp:
            proc = await asyncio.to_thread(
                start_perlbal, Path(tmp), "ours", [sys.executable, "-m", "perlbal.runtime.main"],
                config, port)
            try:
                async with connect(f"ws://127.0.0.1:{port}/warm", ping_interval=None) as ws:
                    await ws.send("warm")
                    await ws.recv()
                before = rss_kib(proc.pid)
                sockets = []
                started = time.monotonic()
                for i in range(args.connections):
                    ws = await connect(f"ws://127.0.0.1:{port}/{i}", ping_interval=None)
                    await ws.send(f"m{i}")
                    assert await ws.recv() == f"m{i}"
                    sockets.append(ws)
                opened = time.monotonic() - started
                await asyncio.sleep(args.settle)
                after = rss_kib(proc.pid)
                for i, ws in enumerate(sockets):  # every tunnel still works
                    await ws.send(f"again{i}")
                    assert await ws.recv() == f"again{i}"
                for ws in sockets:
                    await ws.close()
            finally:
                stop(proc)
    per = (after - before) / args.connections
    print(f"{args.connections} idle WebSocket tunnels through ours (1 worker): "
          f"RSS {before / 1024:.1f} MB -> {after / 1024:.1f} MB, "
          f"{per:.1f} KiB per tunnel (opened in {opened:.1f} s; all still echo)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=2.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
