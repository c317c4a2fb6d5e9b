"""perlbal explain on examples/routes/site.conf: steps, outcomes, JSON, route tests, console."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perlbal.cli import main
from perlbal.dryrun import load_graph
from perlbal.explain import ExplainArgs, Explanation, explain, parse_args
from perlbal.graph import Graph
from perlbal.interp import CommandContext, Interpreter
from perlbal.routetest import parse_routes, run_routes

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "routes" / "site.conf"
ROUTES = ROOT / "examples" / "routes" / "site.routes"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the example's docroot is relative to the repo root


@pytest.fixture
def graph() -> Graph:
    g, errors = load_graph(str(SITE))
    assert errors == []
    return g


def _explain(graph: Graph, *words: str) -> Explanation:
    return explain(graph, parse_args(list(words)))


def test_vhost_then_vpath_default(graph: Graph) -> None:
    exp = _explain(graph, "http://www.example.com:8000/")
    tried = [(s.kind, s.subject, s.decision) for s in exp.steps]
    assert ("vhost", "www.example.com", "match") in tried
    assert ("vpath", "^/api/", "skip") in tried
    assert ("default", "apisel", "match") in tried
    assert exp.outcome.kind == "proxy" and exp.outcome.pool == "app_nodes"
    assert exp.outcome.nodes == ["127.0.0.1:8081", "127.0.0.1:8082"]


def test_wildcards_tried_in_perl_order(graph: Graph) -> None:
    exp = _explain(graph, "http://a.b.example.org:8000/")
    vhosts = [s.subject for s in exp.steps if s.kind == "vhost" and s.decision != "strip"]
    assert vhosts == ["a.b.example.org", "*.a.b.example.org", "*.b.example.org",
                      "*.example.org", "*.org", "*"]
    assert exp.outcome.service == "static" and exp.outcome.file == "/index.html"


def test_file_details(graph: Graph) -> None:
    exp = _explain(graph, "http://static.example.com:8000/index.html", "-H", "Range: bytes=0-9")
    out = exp.outcome
    assert (out.status, out.file, out.mime, out.range) == (206, "/index.html", "text/html", (0, 9))
    assert out.size == os.path.getsize(ROOT / "examples/htdocs/index.html")


def test_index_file_and_missing_and_traversal(graph: Graph) -> None:
    assert _explain(graph, "http://static.example.com:8000/").outcome.index_file == "index.html"
    assert _explain(graph, "http://static.example.com:8000/no.png").outcome.status == 404
    bogus = _explain(graph, "http://static.example.com:8000/%2e%2e/etc/passwd").outcome
    assert (bogus.status, bogus.message) == (403, "Bogus URL")


def test_plugin_decisions(graph: Graph) -> None:
    denied = _explain(graph, "http://admin.example.com:8000/", "--from", "192.0.2.7").outcome
    assert (denied.status, denied.by, denied.service) == (403, "AccessControl", "admin")
    allowed = _explain(graph, "http://admin.example.com:8000/", "--from", "10.1.9.9").outcome
    assert allowed.kind == "proxy"
    moved = _explain(graph, "http://old.example.com:8000/x?y=1").outcome
    assert moved.status == 301 and ("Location", "http://www.example.com/x?y=1") in moved.headers
    big = _explain(graph, "POST", "http://www.example.com:8000/api/x", "-H",
                   "Content-Length: 2000000").outcome
    assert (big.status, big.by) == (413, "MaxContentLength")
    small = _explain(graph, "POST", "http://www.example.com:8000/api/x", "-H",
                     "Content-Length: 20").outcome
    assert small.kind == "proxy" and small.service == "api"


def test_not_modified_needs_the_header() -> None:
    it = Interpreter()
    it.load_config_text("LOAD NotModified\nCREATE SERVICE w\nSET role = web_server\n"
                        "SET listen = 127.0.0.1:8001\nSET plugins = NotModified\n"
                        "SET w.notmodified.host_pattern = ^cdn\\.\nENABLE w\n")
    without = explain(it.graph, ExplainArgs(url="http://cdn.example.com:8001/x"))
    hook = [s for s in without.steps if s.kind == "hook"]
    assert hook and "no If-Modified-Since" in hook[0].reason
    with_ims = explain(it.graph, ExplainArgs(url="http://cdn.example.com:8001/x",
                                             headers=["If-Modified-Since: yesterday"]))
    assert with_ims.outcome.status == 304


def test_listener_choice(graph: Graph) -> None:
    mgmt = _explain(graph, "http://127.0.0.1:60000/json").outcome
    assert (mgmt.kind, mgmt.service) == ("management", "mgmt")
    # an HTTP request line never becomes console input (DNS rebinding): 405, as served
    refused = _explain(graph, "--listen", "127.0.0.1:60000", "-X", "STATS", "http://x/").outcome
    assert (refused.kind, refused.status) == ("status", 405)
    foreign = _explain(graph, "--listen", "127.0.0.1:60000", "http://evil.example/").outcome
    assert (foreign.kind, foreign.status) == ("status", 403)
    nothing = _explain(graph, "--listen", "127.0.0.1:9", "http://x/").outcome
    assert nothing.kind == "unreachable"


def test_bad_head_is_the_parsers_answer(graph: Graph) -> None:
    out = _explain(graph, "--listen", "127.0.0.1:8000", "/").outcome  # HTTP/1.1, no Host
    assert out.status == 400


def test_cli_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-c", str(SITE), "http://shop.example.com:8000/cart"]) == 0
    text = capsys.readouterr().out
    assert "VHOST *.example.com = app" in text and text.rstrip().splitlines()[-1].startswith("=>")
    assert main(["explain", "-c", str(SITE), "--format", "json",
                 "http://shop.example.com:8000/cart"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"]["service"] == "app"
    assert {"kind", "subject", "decision", "reason", "rule"} <= set(data["steps"][0])


@pytest.mark.parametrize("words", [
    ["POST", "http://shop.example.com:8000/cart", "--from", "10.0.0.9"],
    ["--from", "10.0.0.9", "POST", "http://shop.example.com:8000/cart"],
    ["-X", "POST", "--from", "10.0.0.9", "http://shop.example.com:8000/cart"],
])
def test_cli_method_word_before_the_url(words: list[str]) -> None:
    """docs/explain.md: a method word may come first, options before or after it."""
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "explain", "-c", str(SITE),
                           *words], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        "request  POST /cart (Host: shop.example.com:8000) from 10.0.0.9\n"), proc.stdout


def test_cli_more_than_one_url_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "explain", "-c", str(SITE),
                           "http://a.example.com:8000/", "http://b.example.com:8000/"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "one URL" in proc.stderr, proc.stderr


def test_route_file_of_the_example_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-c", str(SITE), "--expect", str(ROUTES),
                 "--fail-under", "100"]) == 0
    assert "rule coverage 100%" in capsys.readouterr().out


def test_route_mismatch_and_coverage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    routes = tmp_path / "r.txt"
    routes.write_text("GET http://shop.example.com:8000/ -> service=static\n")
    assert main(["explain", "-c", str(SITE), "--expect", str(routes)]) == 1
    out = capsys.readouterr().out
    assert "r.txt:1: MISMATCH" in out and "service: expected static, got app" in out
    assert "never exercised: vhost front *" in out
    routes.write_text("GET http://shop.example.com:8000/ -> service=app\n")
    assert main(["explain", "-c", str(SITE), "--expect", str(routes)]) == 0
    assert main(["explain", "-c", str(SITE), "--expect", str(routes), "--fail-under", "50"]) == 1


def test_route_file_syntax_errors() -> None:
    cases, errors = parse_routes("GET http://x/\nGET http://x/ -> color=red\n# ok\n")
    assert cases == [] and len(errors) == 2 and errors[0].startswith("1:")


def test_status_of_proxy_is_the_backends(graph: Graph) -> None:
    cases, _ = parse_routes("http://www.example.com:8000/ -> status=200\n")
    report = run_routes(graph, cases)
    assert "backend decides" in report.failures[0][1][0]


def test_console_explain_on_live_graph(graph: Graph) -> None:
    it = Interpreter(graph)
    ctx = CommandContext(verbose=True)
    lines = it.run_line("EXPLAIN GET http://Static.Example.com:8000/Index.HTML", ctx)
    assert lines[-1] == "." and lines[-2].startswith("=> 404")
    assert "/Index.HTML" in lines[0]  # the path keeps its case
    assert it.run_line("vhost front static.example.com = app", ctx) == ["OK"]
    lines = it.run_line("explain http://static.example.com:8000/", ctx)
    assert lines[-2].startswith("=> proxy via service app")
    assert it.run_line("explain", ctx)[0].startswith("ERROR: usage: EXPLAIN")
    assert "explain" not in it.run_line("help", ctx)


@pytest.mark.parametrize(("upgrade", "decision", "relayed"), [
    ("websocket, h2c", "relay", "Upgrade: websocket goes"),  # only the listed protocol
    ("h2c", "drop", "Upgrade: h2c is not relayed"),  # never, issue 24 item 2
])
def test_upgrade_shows_what_is_relayed(graph: Graph, upgrade: str, decision: str,
                                       relayed: str) -> None:
    exp = _explain(graph, "http://www.example.com:8000/", "-H", f"Upgrade: {upgrade}",
                   "-H", "Connection: Upgrade")
    steps = [s for s in exp.steps if s.kind == "upgrade"]
    assert [s.decision for s in steps] == [decision]
    assert steps[0].reason.startswith(relayed)


@pytest.mark.parametrize("flag", ["-c", "--expect"])
def test_cli_reads_no_endless_file(flag: str) -> None:
    """``-c /dev/zero`` (or a route file there) is refused at the 16 MiB cap on
    files a config names, with the reason: before, explain read it until
    MemoryError and printed a traceback."""
    argv = ["-c", "/dev/zero", "http://x/"] if flag == "-c" else \
        ["-c", str(SITE), "--expect", "/dev/zero"]
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "explain", *argv],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot read /dev/zero: larger than the 16 MiB cap" in proc.stderr
    assert "Traceback" not in proc.stderr
