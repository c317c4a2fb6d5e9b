"""Plugins at run time through our real server (no Perl counterpart, or beyond Perl).

- third-party plugins found through the ``perlbal.plugins`` entry-point group:
  the example package (examples/plugin-example) and a plugin that raises;
  a raising hook answers 500 and the next request is served;
- Cgilike with Python handlers (plain, declined, status, raising, postponed);
- Palimg's still GIF (beyond Perl) decodes to one frame; a corrupt image is
  refused cleanly and the server goes on;
- the HookRunner's chain rules (order, first true stops a HANDLER hook, GENERAL
  runs all, a raising plugin is isolated).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from perlbal.graph import Service
from perlbal.plugins import Plugin, PluginRegistry, default_plugin_registry
from perlbal.plugins.hooks import EndProxyRequest, HookRunner, StartWebRequest
from tests.plugins.imagecodec import decode_gif, make_gif
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import (
    management, pool, proxy_service, serve_proxy, vhost_selector, web_config)
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SRC = ROOT / "examples" / "plugin-example" / "src"


def _dist_info(where: Path, name: str, entry_points: dict[str, str]) -> None:
    """What ``pip install`` leaves in site-packages, as far as entry points go."""
    info = where / f"{name}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[perlbal.plugins]\n{lines}")


@pytest.fixture
def plugin_site(tmp_path: Path) -> Path:
    site = tmp_path / "site-packages"
    _dist_info(site, "perlbal_example", {"Greeting": "perlbal_example:Greeting"})
    _dist_info(site, "perlbal_failing", {"Failing": "tests.plugins.failing_plugin:Failing"})
    return site


def test_entry_points_are_discovered(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [str(plugin_site), str(EXAMPLE_SRC), *sys.path])
    registry = default_plugin_registry()
    assert registry.find("Greeting") is not None and registry.find("Failing") is not None
    assert registry.command_owner("greetings") == "Greeting"


def test_entry_points_are_read_only_when_something_asks(
        plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stock lookup never reads the entry points; a miss reads them once."""
    calls: list[int] = []

    def discover() -> list[Plugin]:
        calls.append(1)
        return []

    registry = PluginRegistry(discover=discover)
    stock = default_plugin_registry()
    for name in stock.names():
        registry.add(stock.get(name))
    assert registry.find("Vhosts") is not None and registry.command_owner("vhost") == "Vhosts"
    assert registry.syntax_extensions(discover=False)
    assert calls == []
    assert registry.find("NoSuchPlugin") is None and registry.find("Other") is None
    assert registry.command_owner("nosuch") is None and registry.names()
    assert calls == [1]


def test_a_third_party_command_is_parsed_before_anything_asked_for_its_plugin(
        plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interpreter's parser starts with the stock commands only; the first
    line naming another command makes the registry read its entry points, and
    the grammar grows by that plugin's commands."""
    from perlbal.grammar import ast as nodes
    from perlbal.interp import Interpreter

    monkeypatch.setattr(sys, "path", [str(plugin_site), str(EXAMPLE_SRC), *sys.path])
    it = Interpreter()
    assert "greetings" not in it.parser.ext_by_keyword
    node = it.parser.parse_line("GREETINGS")
    assert isinstance(node, nodes.PluginCommand) and node.plugin == "Greeting"
    assert isinstance(it.parser.parse_line("GREETINGZ"), nodes.UnknownCommand)
    assert it.plugins.find("Greeting") is not None


def test_check_of_a_stock_config_reads_no_entry_points(tmp_path: Path) -> None:
    """What makes it lazy: a check using only stock plugins never imports
    importlib.metadata (about a tenth of a small check's wall time)."""
    conf = tmp_path / "site.conf"
    web, sel = free_ports(2)
    conf.write_text("LOAD vhosts\n" + web_config(web, tmp_path)
                    + vhost_selector("sel", sel, {"example.com": "web"}))
    probe = ("import sys\n"
             "from perlbal.check import check_paths\n"
             f"result = check_paths([{str(conf)!r}], perl=False)\n"
             "assert not result.errors, [d.render() for d in result.errors]\n"
             "print('importlib.metadata' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def _conf(ports: list[int], root: Path, backend: Backend) -> str:
    web, px, cgi, cgilater, mgmt = ports
    return ("".join(f"LOAD {name}\n" for name in ("Greeting", "Failing", "Cgilike", "Palimg"))
            + pool("p", [backend])
            + web_config(web, root, extra=[
                "SET plugins = Failing, Greeting, Palimg", "SET greeting_text = hi there",
                "SET greeting_path = /__hello", "SET persist_client = on"])
            + proxy_service("px", px, "p", extra=["SET plugins = Failing"])
            + web_config(cgi, root, service="cgi", extra=[
                "SET plugins = Cgilike", "PERLHANDLER = tests.plugins.cgi_handlers:hello"])
            + web_config(cgilater, root, service="cgilater", extra=[
                "SET plugins = Cgilike", "PERLHANDLER = tests.plugins.cgi_handlers:later"])
            + management(mgmt))

PALETTE = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255)]
FRAME_A = [[0, 1, 2, 3], [3, 2, 1, 0]]
FRAME_B = [[1, 1, 1, 1], [2, 2, 2, 2]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("plugins-live")
    site = tmp / "site-packages"
    _dist_info(site, "perlbal_example", {"Greeting": "perlbal_example:Greeting"})
    _dist_info(site, "perlbal_failing", {"Failing": "tests.plugins.failing_plugin:Failing"})
    root = tmp / "htdocs"
    (root / "palimg").mkdir(parents=True)
    (root / "a.txt").write_text("plain a\n")
    anim = make_gif(PALETTE, [FRAME_A, FRAME_B])
    (root / "palimg" / "anim.gif").write_bytes(anim)
    (root / "palimg" / "broken.gif").write_bytes(anim[:40])  # cut inside the first image
    ports = free_ports(5)
    with Backend("b") as backend:
        conf = _conf(ports, root, backend)
        with PyPerlbal(conf, extra_pythonpath=(str(site), str(EXAMPLE_SRC))) as srv:
            yield ports, srv


def test_example_plugin_hooks_and_command(server: Any) -> None:
    ports, _ = server
    resp = request(ports[0], "GET", "/a.txt", [("Host", "t")])
    assert resp.status == 200 and resp.header("X-Greeting") == "hi there"
    assert resp.body == b"plain a\n"
    own = request(ports[0], "GET", "/__greeting", [("Host", "t")])
    assert (own.status, own.body) == (200, b"greetings\n")
    with console(LOOPBACK, ports[4]) as con:
        lines = con.command("greetings")
    assert lines[-1] == "." and lines[0].startswith("greeted ")
    hello = request(ports[0], "GET", "/__hello?x=1", [("Host", "t")])  # decide() answers
    assert (hello.status, hello.body) == (200, b"hi there\n")
    assert hello.header("X-Greeting") is None  # answered before the web server's hooks


def _explain(config: Path, site: Path, url: str) -> dict[str, Any]:
    """``perlbal explain --format json`` in a process that has the example installed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), str(site), str(EXAMPLE_SRC))))
    done = subprocess.run([sys.executable, "-m", "perlbal.cli", "explain", "-c", str(config),
                           "--format", "json", url], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_example_plugin_decides_on_a_live_proxy_and_in_explain(plugin_site: Path) -> None:
    """The example's decide() answers GET <greeting_path> on a reverse proxy, in the
    running server over a socket and in ``perlbal explain``, which agree; other
    requests pass it and go to the backend through its typed hooks."""
    greeting = ["SET plugins = Greeting", "SET greeting_text = hi proxy",
                "SET greeting_path = /__hello"]

    def ours(text: str) -> PyPerlbal:
        return PyPerlbal(text, extra_pythonpath=(str(plugin_site), str(EXAMPLE_SRC)))

    with Backend("b") as backend, serve_proxy([backend], load=["Greeting"], extra=greeting,
                                              start=ours) as px:
        hello = request(px.port, "GET", "/__hello", [("Host", "t")])
        assert (hello.status, hello.body) == (200, b"hi proxy\n")
        assert hello.header("Content-Type") == "text/plain"
        assert backend.requests() == []  # decided before any backend was asked
        passed = request(px.port, "GET", "/x", [("Host", "t")])
        assert passed.status == 200 and passed.header("X-Backend-Name") == "b"
        assert passed.header("X-Greeting") == "hi proxy"  # modify_response_headers
        assert passed.header("X-Greeting-Via") == "proxy"  # scratch from start_proxy_request
        (seen,) = backend.requests()
        assert seen.header("X-Greeted-Peer") == "127.0.0.1"  # view.peer_ip

        config = plugin_site.parent / "greeting.conf"
        config.write_text(px.config)
        answered = _explain(config, plugin_site, f"http://127.0.0.1:{px.port}/__hello")
        outcome = answered["outcome"]
        assert (outcome["status"], outcome["by"], outcome["service"]) == (
            hello.status, "Greeting", "proxy")
        hook = [s for s in answered["steps"] if s["kind"] == "hook"]
        assert hook == [{"kind": "hook", "subject": "Greeting on proxy", "decision": "respond",
                         "reason": "greeting_path = /__hello",
                         "rule": "greeting_path proxy"}]
        proxied = _explain(config, plugin_site, f"http://127.0.0.1:{px.port}/x")
        assert proxied["outcome"]["kind"] == "proxy"
        assert [s["decision"] for s in proxied["steps"] if s["kind"] == "hook"] == ["pass"]


def test_example_plugin_imports_nothing_of_the_runtime() -> None:
    for source in EXAMPLE_SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith("perlbal.runtime")], (source, names)


@pytest.mark.parametrize("which", [0, 1])
def test_a_raising_plugin_gets_500_and_the_next_request_is_served(server: Any,
                                                                   which: int) -> None:
    ports, srv = server
    boom = request(ports[which], "GET", "/boom", [("Host", "t")])
    assert boom.status == 500 and b"Failing" in boom.body
    after = request(ports[which], "GET", "/a.txt", [("Host", "t")])
    assert after.status == 200
    assert srv.proc.poll() is None
    assert "boom in start_" in srv.output()[1]  # logged, with the traceback


@pytest.mark.parametrize("which", [0, 1])
def test_an_unexpected_fault_is_answered_500_not_a_closed_connection(server: Any,
                                                                      which: int) -> None:
    """A fault nothing else catches (here a plugin's decide() raising, on the web
    server and the proxy) is logged and answered 500 before the connection
    closes; the server goes on."""
    ports, srv = server
    crash = request(ports[which], "GET", "/crash", [("Host", "t")])
    assert crash.status == 500 and b"Internal error" in crash.body
    assert crash.header("Connection") == "close"
    assert request(ports[which], "GET", "/a.txt", [("Host", "t")]).status == 200
    assert srv.proc.poll() is None
    log = srv.output()[1]
    assert "request GET /crash on " in log and "LookupError: crash in decide" in log


def test_cgilike_python_handlers(server: Any) -> None:
    ports, _ = server
    hello = request(ports[2], "GET", "/hello?name=py", [("Host", "t")])
    assert hello.status == 200 and hello.body == b"<p>Hello, py</p>"
    assert hello.header("X-Handler") == "hello" and hello.header("Content-type") == "text/html"
    declined = request(ports[2], "GET", "/a.txt", [("Host", "t")])
    assert declined.status == 404  # the handler's own 404, as Perl's send_response(404, 404)
    passed = request(ports[2], "GET", "/declined", [("Host", "t")])
    assert passed.status == 404 and b"404" in passed.body  # DECLINED: the web server answers
    broke = request(ports[2], "GET", "/raise", [("Host", "t")])
    assert broke.status == 500 and b"Error in handler: ValueError: handler broke" in broke.body
    later = request(ports[3], "GET", "/x", [("Host", "t")])
    assert later.status == 200 and later.body == b"done later"


def test_palimg_still_gif(server: Any) -> None:
    ports, _ = server
    full = request(ports[0], "GET", "/palimg/anim.gif", [("Host", "t")])
    assert len(decode_gif(full.body)) == 2
    still = request(ports[0], "GET", "/palimg/anim.gif/still", [("Host", "t")])
    frames = decode_gif(still.body)
    assert still.status == 200 and len(frames) == 1
    assert int(still.header("Content-Length") or 0) == len(still.body)
    recoloured = request(ports[0], "GET", "/palimg/anim.gif/p0ff0000/still", [("Host", "t")])
    assert decode_gif(recoloured.body)[0][0][0] == (255, 0, 0)
    broken = request(ports[0], "GET", "/palimg/broken.gif/still", [("Host", "t")])
    assert broken.status == 404
    assert request(ports[0], "GET", "/a.txt", [("Host", "t")]).status == 200


# --- the chain rules, in process ----------------------------------------------------


@dataclass
class _Ctx:
    service: Service
    response_started: bool = False
    last_keep_alive: bool = True
    sent: list[int] = field(default_factory=list)

    async def send_simple(self, status: int, message: str | None = None,
                          *, keep_alive: bool | None = None) -> bool:
        self.sent.append(status)
        self.response_started = True
        return False


def _plugin(name: str, result: bool, calls: list[str], boom: bool = False) -> Plugin:
    def hook(self: Plugin, event: Any) -> bool:
        calls.append(name)
        if boom:
            raise RuntimeError(name)
        return result

    cls = type(name, (Plugin,), {"name": name, "start_web_request": hook,
                                 "end_proxy_request": hook})
    return cls()  # type: ignore[no-any-return]


def test_hook_runner_chain_rules() -> None:
    calls: list[str] = []
    registry = PluginRegistry()
    for plugin in (_plugin("A", False, calls), _plugin("B", True, calls),
                   _plugin("C", True, calls), _plugin("X", False, calls, boom=True)):
        registry.add(plugin)
    runner = HookRunner(registry)
    svc = Service("s", plugin_order=["A", "B", "C"])
    ctx = _Ctx(svc)
    assert anyio.run(runner.run, svc, StartWebRequest(ctx))  # type: ignore[arg-type]
    assert calls == ["A", "B"]  # B handled it: C never ran
    calls.clear()
    assert not anyio.run(runner.run, svc, EndProxyRequest(ctx))  # type: ignore[arg-type]
    assert calls == ["A", "B", "C"]  # GENERAL: all run, returns ignored
    calls.clear()
    svc.plugin_order = ["X", "A"]
    assert not anyio.run(runner.run, svc, EndProxyRequest(ctx))  # type: ignore[arg-type]
    assert calls == ["X", "A"] and ctx.sent == []  # a GENERAL failure is only logged
    calls.clear()
    assert anyio.run(runner.run, svc, StartWebRequest(ctx))  # type: ignore[arg-type]
    assert calls == ["X"] and ctx.sent == [500] and ctx.last_keep_alive is False
