"""Which node of a pool a request goes to: the balance methods, pure.

The server (``runtime.backends``) and ``perlbal explain`` both call
``choose`` -- one copy of the logic -- with what they know of the nodes: the
ones available (not down, not just refused a connect), the requests in flight
to each, the request's hash key and the pool's turn counter.  Nothing here
does I/O or keeps state between calls; the turn counter and the in-flight
counts are the caller's.

Methods (``SET <pool> balance_method``, docs/balancing.md):

- ``random``: Perl Perlbal's only one.  A request takes any idle connection;
  only a *new* connection's node is drawn at random.
- ``round_robin``: the available nodes in pool order, one request each.
- ``least_conn``: fewest requests in flight; ties go in turn.
- ``two_choices``: two distinct nodes at random, the one with fewer in flight
  (Mitzenmacher's power of two choices; the first drawn on a tie).
- ``hash``: a consistent-hash ring, ``VNODES`` points per node placed by
  MD5 of ``ip:port#i``; a key goes to the first point clockwise of its own
  hash whose node is available, so adding or removing one node of N moves
  about 1/N of the keys, and a down node's keys go to their next node only.
  A request without its key (no such header or cookie) goes to a random node.

Invariants: ``choose`` returns one of ``available`` (never empty); the ring
depends only on the set of nodes, not their order or the time.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

__all__ = ["METHODS", "VNODES", "HashRing", "PoolView", "choose", "describe", "request_key"]

METHODS = ("random", "round_robin", "least_conn", "two_choices", "hash")
#: ring points per node: 160, as ketama and nginx's ``hash ... consistent``
VNODES = 160


class Rng(Protocol):
    def choice(self, seq: Sequence[str]) -> str: ...

    def sample(self, population: Sequence[str], k: int) -> list[str]: ...


class HeadView(Protocol):
    """What a hash key is read from (``perlbal.http.RequestHead`` has it)."""

    @property
    def target(self) -> str: ...

    def get(self, name: str) -> str | None: ...


class _ModuleRandom:
    """The random module's own generator (reseeded in each forked worker)."""

    def choice(self, seq: Sequence[str]) -> str:
        return random.choice(seq)

    def sample(self, population: Sequence[str], k: int) -> list[str]:
        return random.sample(population, k)


_RANDOM: Rng = _ModuleRandom()


@dataclass
class PoolView:
    """What a server knows of a pool's nodes now, for explain and the console."""

    #: the nodes a request may be balanced to (None: all of them)
    available: list[str] | None = None
    #: requests in flight per node (in this worker)
    load: dict[str, int] = field(default_factory=dict)
    #: nodes out, and why ("down since 12:03:04 (3 failed checks, ...)")
    notes: dict[str, str] = field(default_factory=dict)
    #: round_robin's and least_conn's turn
    turn: int = 0
    #: per node: state, in flight, checks, ejections, history (show pool, nodes)
    nodes: dict[str, dict[str, object]] = field(default_factory=dict)


def _point(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8", "surrogateescape")).digest()[:8],
                          "big")


@dataclass(frozen=True)
class HashRing:
    """A consistent-hash ring over a set of nodes (``ip:port`` strings)."""

    points: tuple[int, ...]
    owners: tuple[str, ...]
    nodes: frozenset[str]

    @classmethod
    def build(cls, nodes: Sequence[str]) -> HashRing:
        pairs = sorted((_point(f"{node}#{i}"), node) for node in set(nodes)
                       for i in range(VNODES))
        return cls(tuple(p for p, _ in pairs), tuple(n for _, n in pairs), frozenset(nodes))

    def lookup(self, key: str, available: Sequence[str] | frozenset[str] | set[str]) -> str | None:
        """The node owning ``key``: the first available one clockwise of its hash."""
        if not self.points:
            return None
        start = bisect.bisect(self.points, _point(key))
        size = len(self.points)
        owners = self.owners
        if len(available) == len(self.nodes):  # every node available: no walk
            return owners[start % size]
        wanted = available if isinstance(available, (set, frozenset)) else set(available)
        for step in range(size):
            owner = owners[(start + step) % size]
            if owner in wanted:
                return owner
        return None


def request_key(spec: str, head: HeadView, peer_ip: str) -> str | None:
    """The text ``hash_key`` = ``spec`` names in a request; None when it has none."""
    if spec == "client_ip":
        return peer_ip
    if spec == "uri":
        return head.target
    kind, _, name = spec.partition(":")
    if kind == "header":
        return head.get(name)
    if kind == "cookie":
        for field in (head.get("Cookie") or "").split(";"):
            cname, eq, value = field.strip().partition("=")
            if eq and cname == name:
                return value
    return None


def choose(method: str, available: Sequence[str], load: Mapping[str, int], *,
           key: str | None = None, ring: HashRing | None = None, turn: int = 0,
           rng: Rng | None = None) -> str:
    """The node (one of ``available``, never empty) a request goes to."""
    if len(available) == 1:
        return available[0]
    if method == "round_robin":
        return available[turn % len(available)]
    if method == "least_conn":
        least = min(load.get(n, 0) for n in available)
        tied = [n for n in available if load.get(n, 0) == least]
        return tied[turn % len(tied)]
    draw: Rng = rng if rng is not None else _RANDOM
    if method == "two_choices":
        first, second = draw.sample(available, 2)
        return second if load.get(second, 0) < load.get(first, 0) else first
    if method == "hash" and key is not None and ring is not None:
        owner = ring.lookup(key, available)
        if owner is not None:
            return owner
    return draw.choice(available)


def describe(method: str, nodes: Sequence[str], available: Sequence[str],
             load: Mapping[str, int], notes: Mapping[str, str], *, key: str | None = None,
             key_spec: str = "", ring: HashRing | None = None, turn: int = 0,
             rng: Rng | None = None) -> tuple[str | None, str]:
    """``choose`` for ``perlbal explain``: the node (None: drawn per request) and why.

    ``notes`` says why a node is not available (``down since 12:03:04 (3
    failed checks)``); they end the reason."""
    down = "; ".join(f"{n} is {notes[n]}" for n in nodes if n in notes)
    tail = f"; {down}" if down else ""
    if not available:
        return None, f"{method}: no node{tail}"
    node = choose(method, available, load, key=key, ring=ring, turn=turn, rng=rng)
    if method == "random":
        return None, (f"random: any idle connection, else a new one to one of "
                      f"{len(available)} node(s) at random{tail}")
    if method == "round_robin":
        return node, f"round_robin: {node} is next in turn of {len(available)}{tail}"
    if method == "least_conn":
        return node, f"least_conn: {node} has {load.get(node, 0)} in flight{tail}"
    if method == "two_choices":
        return None, (f"two_choices: the node with fewer in flight of two drawn at random "
                      f"from {len(available)}{tail}")
    if key is None:
        return None, f"hash: the request has no {key_spec}: a random node{tail}"
    shown = key if len(key) <= 60 else key[:57] + "..."
    return node, f"hash: {key_spec} '{shown}' maps to {node}{tail}"
