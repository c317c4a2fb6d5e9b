"""A misbehaving HTTP/1.1 backend for soak runs: it answers, resets, hangs, garbles and truncates at random.

For every request that arrives it picks one behaviour (weights settable):

* ``normal``: a 200 with a Content-Length body of 0..8 KiB, kept alive;
* ``reset``: the connection is aborted (SO_LINGER 0: the peer sees RST);
* ``hang``: nothing is sent for ``--hang`` seconds, then the connection is closed;
* ``garble``: a status line that is not HTTP (random junk, or ``HTTP/1.1 abc``),
  then close;
* ``truncate``: a 200 announcing N bytes, fewer are sent, then close;
* ``close_early``: the connection is closed without a byte of reply.

Listens on 127.0.0.1 only, on one or more ports (each one a "node" of the
pool).  Prints ``ready`` once listening, and on SIGTERM/SIGINT prints one JSON
line with how many times each behaviour was chosen, then exits.

    .venv/bin/python bench/chaos_backend.py --ports 8081,8082 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import sys
from collections import Counter

LOOPBACK = "127.0.0.1"
BEHAVIOURS = ("normal", "reset", "hang", "garble", "truncate", "close_early")
DEFAULT_WEIGHTS = "normal=80,reset=4,hang=1,garble=4,truncate=5,close_early=5"


class Chaos:
    def __init__(self, weights: dict[str, int], hang: float, seed: int) -> None:
        self.names = [name for name in BEHAVIOURS if weights.get(name, 0) > 0]
        self.weights = [weights[name] for name in self.names]
        self.hang = hang
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.connections = 0
        self.open_connections = 0

    def pick(self) -> str:
        choice = self.rng.choices(self.names, self.weights)[0]
        self.counts[choice] += 1
        return choice

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self.open_connections -= 1
            if not writer.is_closing():
                writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request, answer it one way or another; False ends the connection."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await reader.readexactly(length)
        behaviour = self.pick()
        if behaviour == "normal":
            body = b"n" * self.rng.randrange(0, 8193)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            return True
        if behaviour == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if behaviour == "hang":
            await asyncio.sleep(self.hang)
            return False
        if behaviour == "garble":
            junk = (bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 64)))
                    if self.rng.random() < 0.5 else b"HTTP/1.1 abc Garbled\r\n")
            writer.write(junk + b"\r\n\r\n")
            await writer.drain()
            return False
        if behaviour == "truncate":
            announced = self.rng.randrange(100, 8193)
            sent = self.rng.randrange(0, announced)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (announced, b"t" * sent))
            await writer.drain()
            return False
        return False  # close_early


def parse_weights(text: str) -> dict[str, int]:
    weights: dict[str, int] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in BEHAVIOURS:
            raise SystemExit(f"unknown behaviour {name!r}; known: {', '.join(BEHAVIOURS)}")
        weights[name.strip()] = int(value)
    return weights


async def run(ports: list[int], chaos: Chaos) -> None:
    servers = [await asyncio.start_server(chaos.serve, LOOPBACK, port, backlog=1024) for port in ports]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    print(json.dumps({"chosen": dict(chaos.counts), "connections": chaos.connections}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--ports", required=True, help="comma list of ports on 127.0.0.1")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS,
                        help=f"behaviour=weight list (default {DEFAULT_WEIGHTS})")
    parser.add_argument("--hang", type=float, default=3.0, help="seconds a hang lasts before close")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    chaos = Chaos(parse_weights(args.weights), args.hang, args.seed)
    asyncio.run(run([int(p) for p in args.ports.split(",")], chaos))
    return 0


if __name__ == "__main__":
    sys.exit(main())
