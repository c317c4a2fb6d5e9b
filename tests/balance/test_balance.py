"""perlbal.balance, pure: each method's choice, and the hash ring's 1/N property."""

from __future__ import annotations

import random
from collections import Counter

from perlbal.balance import HashRing, PoolView, choose, describe, request_key
from perlbal.http import parse_request_head

NODES = [f"10.0.0.{i}:80" for i in range(1, 11)]
KEYS = [f"user-{i}" for i in range(20000)]


def _owners(ring: HashRing, nodes: list[str]) -> dict[str, str | None]:
    return {key: ring.lookup(key, nodes) for key in KEYS}


def test_adding_a_node_moves_about_one_nth_of_the_keys_all_to_the_new_node() -> None:
    before = _owners(HashRing.build(NODES), NODES)
    grown = NODES + ["10.0.0.11:80"]
    after = _owners(HashRing.build(grown), grown)
    moved = [k for k in KEYS if before[k] != after[k]]
    assert 0.06 < len(moved) / len(KEYS) < 0.13  # 1/11 = 0.091
    assert {after[k] for k in moved} == {"10.0.0.11:80"}


def test_removing_a_node_moves_only_its_keys_and_spreads_them() -> None:
    before = _owners(HashRing.build(NODES), NODES)
    gone = "10.0.0.3:80"
    rest = [n for n in NODES if n != gone]
    after = _owners(HashRing.build(rest), rest)
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == gone}
    assert len({after[k] for k in moved}) >= 5  # spread, not all to one neighbour


def test_a_down_node_is_walked_past_without_moving_other_keys() -> None:
    ring = HashRing.build(NODES)
    before = _owners(ring, NODES)
    available = [n for n in NODES if n != "10.0.0.5:80"]
    after = {k: ring.lookup(k, available) for k in KEYS}
    assert {k for k in KEYS if before[k] != after[k]} == {
        k for k in KEYS if before[k] == "10.0.0.5:80"}


def test_ring_is_balanced_and_independent_of_node_order() -> None:
    counts = Counter(_owners(HashRing.build(NODES), NODES).values())
    assert min(counts.values()) > 0.6 * len(KEYS) / len(NODES)
    assert max(counts.values()) < 1.4 * len(KEYS) / len(NODES)
    assert HashRing.build(list(reversed(NODES))) == HashRing.build(NODES)


def test_round_robin_and_least_conn_ties_take_turns() -> None:
    nodes = NODES[:3]
    assert [choose("round_robin", nodes, {}, turn=t) for t in range(4)] == [
        nodes[0], nodes[1], nodes[2], nodes[0]]
    load = {nodes[0]: 2, nodes[1]: 1, nodes[2]: 1}
    assert [choose("least_conn", nodes, load, turn=t) for t in range(3)] == [
        nodes[1], nodes[2], nodes[1]]


def test_two_choices_never_picks_the_busiest_of_three() -> None:
    nodes = NODES[:3]
    load = {nodes[0]: 5, nodes[1]: 1, nodes[2]: 0}
    rng = random.Random(7)
    picks = Counter(choose("two_choices", nodes, load, rng=rng) for _ in range(600))
    assert picks[nodes[0]] == 0
    assert picks[nodes[2]] > picks[nodes[1]] > 100  # the idlest wins both of its pairs


def test_hash_without_its_key_is_random_and_keys_are_read_from_the_request() -> None:
    head = parse_request_head(b"GET /a?b HTTP/1.1\r\nHost: x\r\nX-User: bob\r\n"
                              b"Cookie: a=1; sid=xyz; c=3\r\n\r\n")
    assert request_key("client_ip", head, "1.2.3.4") == "1.2.3.4"
    assert request_key("uri", head, "") == "/a?b"
    assert request_key("header:X-User", head, "") == "bob"
    assert request_key("cookie:sid", head, "") == "xyz"
    assert request_key("cookie:nope", head, "") is None
    ring = HashRing.build(NODES)
    rng = random.Random(1)
    assert len({choose("hash", NODES, {}, key=None, ring=ring, rng=rng) for _ in range(50)}) > 3
    assert len({choose("hash", NODES, {}, key="k", ring=ring, rng=rng) for _ in range(50)}) == 1


def test_describe_names_the_node_and_the_nodes_out() -> None:
    nodes = NODES[:2]
    view = PoolView(available=[nodes[1]], load={nodes[1]: 0},
                    notes={nodes[0]: "down since 12:03:04 (3 failed checks)"})
    node, why = describe("least_conn", nodes, view.available or nodes, view.load, view.notes)
    assert node == nodes[1]
    assert why == (f"least_conn: {nodes[1]} has 0 in flight; {nodes[0]} is down since "
                   "12:03:04 (3 failed checks)")
