"""Pools whose nodes come from DNS (``SET <pool> dns_name = ...``), kept current.

``dns_name`` is ``host:port`` (its A and AAAA records, every address a node on
that port) or an SRV name, ``_service._proto.domain`` (each target and port a
node; the targets' addresses from the reply's additional section, else asked
for).  This is how Kubernetes headless Services and Consul's DNS interface are
consumed.

Each such pool is resolved again when its records' TTL runs out, clamped to
``dns_refresh_min``..``dns_refresh_max`` seconds, by asking ``dns_server``
(default: the first nameserver of /etc/resolv.conf) over UDP with
``perlbal.dnsmessage`` -- the system resolver hides TTLs.  The loop never
blocks on DNS: one query waits 2 s at most, on anyio.

Membership changes keep requests in flight: new addresses become nodes, nodes
that vanished leave the pool at once (no new request goes to them), and
their connections drain -- an idle one is closed when next picked, a busy
one when its request ends (``BackendManager`` drops connections to nodes no
longer in the pool).  A failed lookup keeps the nodes as they were and is
tried again after ``dns_refresh_min``; it is logged once per outage.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Callable

import anyio

from perlbal.dnsmessage import A, AAAA, SRV, DnsError, Record, answers, query
from perlbal.graph import Pool

if TYPE_CHECKING:
    from perlbal.runtime.server import Runtime

__all__ = ["run", "resolve", "default_server", "apply_nodes"]

log = logging.getLogger("perlbal.runtime")

QUERY_TIMEOUT = 2.0
_TICK = 0.25


def default_server() -> tuple[str, int]:
    try:
        with open("/etc/resolv.conf") as conf:
            for line in conf:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1], 53
    except OSError:
        pass
    return "127.0.0.1", 53


def _server(pool: Pool) -> tuple[str, int]:
    raw = pool.tunables.dns_server
    if raw:
        host, _, port = raw.rpartition(":")
        return host.strip("[]"), int(port)
    return default_server()


async def _ask(server: tuple[str, int], name: str, qtype: int) -> list[Record]:
    ident = random.randrange(1 << 16)
    async with await anyio.create_connected_udp_socket(server[0], server[1]) as udp:
        await udp.send(query(name, qtype, ident))
        with anyio.fail_after(QUERY_TIMEOUT):
            while True:  # ignore stray datagrams (another id): wait for ours
                try:
                    return answers(await udp.receive(), ident)
                except DnsError as exc:
                    if "not the reply" not in str(exc):
                        raise


async def resolve(dns_name: str, server: tuple[str, int]) -> tuple[list[tuple[str, int]], int]:
    """The nodes ``dns_name`` names now, and the smallest TTL of the records used."""
    ttls: list[int] = []
    nodes: list[tuple[str, int]] = []
    if dns_name.startswith("_"):
        records = await _ask(server, dns_name, SRV)
        for _owner, kind, value, ttl in records:
            if kind != "SRV" or not isinstance(value, tuple):
                continue
            _priority, _weight, port, target = value
            ttls.append(ttl)
            found = [(str(v), t) for owner, k, v, t in records
                     if owner == target and k in ("A", "AAAA")]
            if not found:  # not in the additional section: ask for the target's addresses
                for qtype in (A, AAAA):
                    found += [(str(v), t) for owner, k, v, t in await _ask(server, target, qtype)
                              if k in ("A", "AAAA")]
            for address, address_ttl in found:
                nodes.append((address, int(port)))
                ttls.append(address_ttl)
    else:
        host, _, port_text = dns_name.rpartition(":")
        for qtype in (A, AAAA):
            for _owner, kind, value, ttl in await _ask(server, host, qtype):
                if kind in ("A", "AAAA"):
                    nodes.append((str(value), int(port_text)))
                    ttls.append(ttl)
    unique = list(dict.fromkeys(nodes))
    return unique, min(ttls) if ttls else 0


def apply_nodes(pool: Pool, nodes: list[tuple[str, int]]) -> tuple[int, int]:
    """Make the pool's nodes these; (added, removed)."""
    wanted = {f"{ip}:{port}" for ip, port in nodes}
    current = {node.ipport: node for node in pool.nodes}
    removed = 0
    for ipport, node in current.items():
        if ipport not in wanted:
            pool.remove(node.ip, node.port)
            removed += 1
    added = 0
    for ip, port in nodes:
        if f"{ip}:{port}" not in current:
            pool.add(ip, port)
            added += 1
    return added, removed


def _clamp(pool: Pool, ttl: int) -> float:
    low = max(pool.tunables.dns_refresh_min, 0.1)
    high = max(pool.tunables.dns_refresh_max, low)
    return min(max(float(ttl), low), high)


async def run(runtime: "Runtime",
              changed: Callable[[Pool, list[tuple[str, int]]], None] | None = None) -> None:
    """Keep every DNS-fed pool current, until the runtime stops; ``changed`` hears
    each pool whose nodes changed (SERVER workers: the supervisor tells the workers)."""
    due: dict[str, float] = {}
    failing: set[str] = set()
    while True:
        now = time.monotonic()
        for pool in list(runtime.graph.pools.values()):
            name = pool.tunables.dns_name
            if not name:
                due.pop(pool.name, None)
                continue
            key = f"{pool.name}\0{name}"
            if due.get(key, 0.0) > now:
                continue
            try:
                nodes, ttl = await resolve(name, _server(pool))
            except (DnsError, OSError, TimeoutError, ValueError) as exc:
                if key not in failing:
                    failing.add(key)
                    log.warning("pool %s: DNS lookup of %s failed (%s); nodes kept as they "
                                "are, trying again", pool.name, name, exc or type(exc).__name__)
                due[key] = time.monotonic() + _clamp(pool, 0)
                continue
            if key in failing:
                failing.discard(key)
                log.warning("pool %s: DNS lookup of %s answers again", pool.name, name)
            if nodes:  # an empty answer keeps the nodes: never drain a pool on a glitch
                added, removed = apply_nodes(pool, nodes)
                if added or removed:
                    log.info("pool %s: %s now gives %d node(s) (+%d, -%d)", pool.name, name,
                             len(pool.nodes), added, removed)
                    if changed is not None:
                        changed(pool, nodes)
            due[key] = time.monotonic() + _clamp(pool, ttl)
        await anyio.sleep(_TICK)
