"""``perlbal explain --expect routes.txt``: route tests for CI, with rule coverage.

A routes file has one request per line, its expected target after ``->``::

    # comment
    GET http://www.example.com/              -> service=web file=/index.html status=200
    http://api.example.com/v1 --from 10.0.0.5 -> service=api pool=api_nodes
    POST /upload --host www.example.com -H 'Content-Length: 99999999' -> status=413

Left of ``->``: exactly what ``perlbal explain`` takes (an optional method
word, the URL, ``--listen --method/-X --header/-H --from --host``), split as
a shell would.  Right: ``key=value`` words, all of which must hold:
``service`` (the service that answers), ``pool``, ``file`` (path under the
docroot, e.g. ``/index.html``), ``status``, ``kind`` (proxy, file, listing,
management, console, status, unreachable) and ``location`` (a redirect's
Location).  Each request is explained by ``perlbal.explain.explain``.

Coverage: the config's routing rules (``explain.rules_of``: VHOST and VPATH
entries, default_service, ACCESS rules and policy, REDIRECT HOST entries)
that no request's explanation used.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from perlbal.explain import Explanation, explain, parse_args, render_text, rules_of
from perlbal.graph import Graph

__all__ = ["RouteCase", "RouteReport", "parse_routes", "run_routes"]

EXPECT_KEYS = ("service", "pool", "file", "status", "kind", "location")


@dataclass
class RouteCase:
    line: int
    text: str
    words: list[str]
    expect: dict[str, str]


@dataclass
class RouteReport:
    cases: int = 0
    failures: list[tuple[RouteCase, list[str], Explanation | None]] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    @property
    def coverage(self) -> float:
        if not self.rules:
            return 100.0
        return 100.0 * len([r for r in self.rules if r in self.used]) / len(self.rules)

    @property
    def unused(self) -> list[str]:
        return [r for r in self.rules if r not in self.used]

    def render(self, path: str) -> list[str]:
        out: list[str] = []
        for case, problems, exp in self.failures:
            out.append(f"{path}:{case.line}: MISMATCH {case.text}")
            out += [f"    {p}" for p in problems]
            if exp is not None:
                out += ["    " + ln for ln in render_text(exp)]
        passed = self.cases - len(self.failures)
        out.append(f"{passed}/{self.cases} route(s) as expected; rule coverage "
                   f"{self.coverage:.0f}% ({len(self.rules) - len(self.unused)}/"
                   f"{len(self.rules)})")
        out += [f"  never exercised: {rule}" for rule in self.unused]
        return out


def parse_routes(text: str) -> tuple[list[RouteCase], list[str]]:
    """The cases of a routes file, and its syntax errors as 'LINE: message'."""
    cases: list[RouteCase] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        left, sep, right = line.partition("->")
        if not sep:
            errors.append(f"{number}: no '->' between the request and the expected target")
            continue
        try:
            words = shlex.split(left)
            pairs = shlex.split(right)
        except ValueError as exc:
            errors.append(f"{number}: {exc}")
            continue
        expect: dict[str, str] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or key not in EXPECT_KEYS:
                errors.append(f"{number}: expected key=value with key one of "
                              f"{', '.join(EXPECT_KEYS)}, got '{pair}'")
                break
            expect[key] = value
        else:
            if not expect:
                errors.append(f"{number}: nothing expected after '->'")
                continue
            cases.append(RouteCase(number, line, words, expect))
    return cases, errors


def _observed(exp: Explanation, key: str) -> str | None:
    out = exp.outcome
    if key == "location":
        return next((v for k, v in out.headers if k.lower() == "location"), None)
    if key == "status":
        return None if out.status is None else str(out.status)
    value = getattr(out, key)
    return None if value is None else str(value)


def run_routes(graph: Graph, cases: list[RouteCase]) -> RouteReport:
    report = RouteReport(rules=rules_of(graph))
    for case in cases:
        report.cases += 1
        try:
            args = parse_args(case.words)
        except ValueError as exc:
            report.failures.append((case, [f"bad request: {exc}"], None))
            continue
        exp = explain(graph, args)
        report.used.update(s.rule for s in exp.steps if s.rule)
        problems = []
        for key, want in case.expect.items():
            got = _observed(exp, key)
            if key == "status" and got is None and exp.outcome.kind == "proxy":
                problems.append(f"status: expected {want}, but the backend decides it")
            elif got != want:
                problems.append(f"{key}: expected {want}, got {got if got is not None else '-'}")
        if problems:
            report.failures.append((case, problems, exp))
    return report
