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
                     "perlbal.nodefile",
                     "perlbal.explain", "perlbal.dnsmessage")]
    offenders = {m: _reaches(edges, m, "perlbal.runtime") for m in pure}
    assert {m: r for m, r in offenders.items() if r} == {}


def test_the_runtime_never_parses_configuration_text() -> None:
    edges = graph()
    runtime = [m for m in edges if m.startswith("perlbal.runtime")]
    offenders = {m: _reaches(edges, m, "perlbal.grammar") for m in runtime}
    assert {m: r for m, r in offenders.items() if r} == {}


def test_a_misspelt_hook_is_refused_when_the_plugin_is_added() -> None:
    import pytest

    from perlbal.plugins import Plugin, PluginRegistry

    class Typo(Plugin):
        name = "Typo"

        def start_proxy_requst(self, hook: object) -> bool:
            return False

    with pytest.raises(ValueError, match="did you mean 'start_proxy_request'"):
        PluginRegistry().add(Typo())


def test_a_third_party_decide_takes_part_in_routing_and_explain() -> None:
    from perlbal.graph import Service
    from perlbal.http.connection import parse_request_head
    from perlbal.routing import HookDecision, Request, Respond, dispatch

    class Gate:
        def decide(self, svc: Service, request: Request) -> HookDecision | None:
            if request.head.target.startswith("/closed"):
                return HookDecision(respond=True, status=403, message="gate shut",
                                    plugin="Gate", reason="closed path")
            return None

    svc = Service("web", role="web_server", plugin_order=["Gate"])
    head = parse_request_head(b"GET /closed HTTP/1.0\r\n\r\n")
    from perlbal.graph import Graph

    graph = Graph()
    graph.services["web"] = svc
    result = dispatch(graph, svc, Request(head, "127.0.0.1"), run_hooks=True,
                      plugins={"Gate": Gate()}.get)
    assert isinstance(result, Respond) and result.status == 403
