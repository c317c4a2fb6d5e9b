"""The one-way flow of STYLE.md, held by the import graph (every import that
runs, TYPE_CHECKING excluded): no import cycle; grammar, http and the pure
routing modules know nothing of the runtime; plugins see the server only
through their hooks' RequestView (perlbal/plugins/view.py)."""

from __future__ import annotations

from tests.architecture.imports import graph, cycles


def _reaches(edges: dict[str, set[str]], start: str, prefix: str) -> list[str]:
    """Modules under ``prefix`` that ``start`` imports, directly."""
    return sorted(t for t in edges[start] if t == prefix or t.startswith(prefix + "."))


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_pure_layers_import_nothing_of_the_runtime() -> None:
    edges = graph()
    pure = [m for m in edges if m.startswith(("perlbal.grammar", "perlbal.http", "perlbal.plugins"))
            or m in ("perlbal.graph", "perlbal.params", "perlbal.routing", "perlbal.docroot",
                     "perlbal.explain", "perlbal.dnsmessage")]
    offenders = {m: _reaches(edges, m, "perlbal.runtime") for m in pure}
    assert {m: r for m, r in offenders.items() if r} == {}


def test_the_runtime_never_parses_configuration_text() -> None:
    edges = graph()
    runtime = [m for m in edges if m.startswith("perlbal.runtime")]
    offenders = {m: _reaches(edges, m, "perlbal.grammar") for m in runtime}
    assert {m: r for m, r in offenders.items() if r} == {}
