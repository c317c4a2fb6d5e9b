"""The balancing and health pool parameters (#17) in perlbal check, --perl
(checked against Perl Perlbal 1.80 itself), explain, and dumpconfig."""

from __future__ import annotations

from pathlib import Path

import pytest

from perlbal.check import check_paths
from perlbal.dryrun import load_graph
from perlbal.explain import ExplainArgs, explain
from perlbal.params import REGISTRY
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import PerlPerlbal, console, perl_perlbal_available
from tests.support.ports import free_ports

OURS_POOL = sorted(n for n, p in REGISTRY.pool.items() if p.beyond_perl)


def _conf(lines: str) -> str:
    """Pool p of three nodes with ``lines`` (its parameters), proxy s on :8080 in front."""
    return proxy_config(8080, [8001, 8002, 8003], service="s", pool_extra=lines.splitlines())


def _check(tmp_path: Path, lines: str, perl: bool = False) -> list[str]:
    conf = tmp_path / "p.conf"
    conf.write_text(_conf(lines))
    return [d.message for d in check_paths([str(conf)], perl=perl).diagnostics]


def test_misspellings_get_a_did_you_mean(tmp_path: Path) -> None:
    assert _check(tmp_path, "SET p.balance_method = leastconn") == [
        "Unknown balance method (did you mean 'least_conn'?)"]
    assert _check(tmp_path, "SET p.helth_check_uri = /h")[0].startswith(
        "unknown pool parameter 'helth_check_uri' (did you mean 'health_check_uri'?)")
    assert _check(tmp_path, "SET p.hash_key = headers:X") == [
        "Expecting client_ip, uri, header:<Name> or cookie:<name> for 'hash_key', "
        "got 'headers:X'"]
    assert _check(tmp_path, "SET p.fail_statuses = 5xx,50") == [
        "Expecting HTTP statuses (500, 5xx, ...) separated by commas for 'fail_statuses', "
        "got '50'"]
    assert _check(tmp_path, "SET p.health_check_interval = 1.5\nSET p.health_check_uri = /h"
                  "\nSET p.balance_method = two_choices") == []


def test_perl_flag_names_every_line_perl_refuses(tmp_path: Path) -> None:
    found = _check(tmp_path, "SET p.balance_method = random\nSET p.balance_method = hash\n"
                   "SET p.max_fails = 3", perl=True)
    assert found == [
        "Perl Perlbal 1.80 knows only random for 'balance_method' ('hash' is ours only: Perl "
        "answers \"Unknown balance method\")",
        "Perl Perlbal 1.80 has no pool parameter 'max_fails' (ours only: Perl fails the line "
        "silently)"]


@pytest.mark.skipif(not perl_perlbal_available(), reason="Perl Perlbal not installed")
def test_perl_refuses_what_we_flag_and_accepts_random() -> None:
    (mgmt,) = free_ports(1)
    with PerlPerlbal("CREATE POOL p\n", mgmt_port=mgmt), console("127.0.0.1", mgmt) as con:
        assert con.command("SET p.balance_method = random") == ["OK"]
        for method in REGISTRY.pool["balance_method"].choices[1:]:
            assert con.command(f"SET p.balance_method = {method}") == [
                "ERROR: Unknown balance method"]
        for name in OURS_POOL:
            # Perl's Pool::set answers nothing for a key it does not know
            assert con.command(f"SET p.{name} = 1") == [], name


def test_explain_names_the_node_a_hash_key_maps_to(tmp_path: Path) -> None:
    conf = tmp_path / "p.conf"
    conf.write_text(_conf("SET p.balance_method = hash\nSET p.hash_key = uri"))
    graph, _ = load_graph(str(conf))
    nodes = set()
    for path in ("/a", "/b", "/c", "/d", "/e", "/f"):
        first = explain(graph, ExplainArgs(url=f"http://127.0.0.1:8080{path}")).outcome
        again = explain(graph, ExplainArgs(url=f"http://127.0.0.1:8080{path}")).outcome
        assert first.node == again.node and first.node is not None
        nodes.add(first.node)
    assert len(nodes) > 1
    exp = explain(graph, ExplainArgs(url="http://127.0.0.1:8080/a"))
    assert any(s.reason.startswith(f"hash: uri '/a' maps to {exp.outcome.node}")
               for s in exp.steps)


def test_dumpconfig_keeps_the_pool_parameters(tmp_path: Path) -> None:
    from perlbal.interp import CommandContext, Interpreter

    it = Interpreter()
    for line in _conf("SET p.balance_method = least_conn\n"
                      "SET p.health_check_uri = /hz\nSET p.max_fails = 2").splitlines():
        it.run_line(line, CommandContext())
    dump = it.run_line("dumpconfig", CommandContext())
    again = Interpreter()  # the dump rebuilds the same pool
    ctx = CommandContext()
    for line in dump:
        again.run_line(line.strip(), ctx)
    assert again.graph.dump()["pools"] == it.graph.dump()["pools"]
    assert "  SET balance_method = least_conn" in dump
    assert "  SET health_check_uri = /hz" in dump and "  SET max_fails = 2" in dump
