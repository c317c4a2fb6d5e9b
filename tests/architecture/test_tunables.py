"""Parameters are read through the generated, typed ``perlbal/tunables.py``.

- the file is exactly what ``perlbal.tunables_gen`` makes of the registry now;
- each kind's declared type is the type its coercer stores, so a property never
  falls back to its default for a value that was set;
- a SET (config line or live) is seen by the next typed read;
- no code in perlbal/ reads a declared parameter by its name as a string
  (``svc.get("buffer_size")``, ``svc.params.get(...)``, ``pool.get(...)``): a
  misspelt string returned None in silence, a misspelt attribute is a mypy error.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from perlbal import tunables, tunables_gen
from perlbal.graph import Pool, Service
from perlbal.interp import CommandContext, Interpreter
from perlbal.paramkinds import Kind
from perlbal.params import REGISTRY
from perlbal.plugins import default_plugin_registry

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "perlbal"


def test_generated_file_is_current() -> None:
    committed = (PACKAGE / "tunables.py").read_text(encoding="utf-8")
    assert committed == tunables_gen.generate(), (
        "perlbal/tunables.py is stale: run python -m perlbal.tunables_gen perlbal/tunables.py")


def test_every_kind_has_a_type() -> None:
    assert set(tunables_gen.KIND_TYPES) == set(Kind)


def _all_params() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [(p.name, p) for p in REGISTRY.service.values()]
    out += [(p.name, p) for p in REGISTRY.pool.values()]
    registry = default_plugin_registry()
    out += [(p.name, p) for name in registry.names() for p in registry.get(name).params]
    return out


@pytest.mark.parametrize("name,param", _all_params(), ids=lambda v: v if isinstance(v, str) else "")
def test_kind_type_matches_what_coercion_stores(name: str, param: object) -> None:
    from perlbal.paramkinds import Param

    assert isinstance(param, Param)
    value = tunables_gen.default_value(param)
    if value is None:
        return
    check = {"bool": bool, "int": int, "str": str, "list": list}[
        tunables_gen.KIND_TYPES[param.kind].check]
    assert isinstance(value, check), (name, value)


def _graph_after(lines: list[str], tmp_path: Path) -> Interpreter:
    it = Interpreter()
    ctx = CommandContext()
    for line in lines:
        result = it.run(line.replace("{tmp}", str(tmp_path)), ctx)
        assert result.ok, (line, result.lines)
    return it


def test_a_set_is_seen_by_the_next_typed_read(tmp_path: Path) -> None:
    it = _graph_after([
        "CREATE POOL p", "SET p.health_check_interval = .5", "SET p.max_fails = 4",
        "CREATE SERVICE s", "SET role = reverse_proxy", "SET pool = p",
        "SET buffer_size = 512k", "SET persist_backend = on",
        "SET trusted_upstream_proxies = 10.0.0.0/8, 127.0.0.1",
        "CREATE SERVICE w", "SET role = web_server", "SET docroot = {tmp}",
    ], tmp_path)
    svc, web, pool = it.graph.services["s"], it.graph.services["w"], it.graph.pools["p"]
    assert svc.tunables.buffer_size == 512 * 1024
    assert svc.tunables.persist_backend is True
    assert svc.tunables.trusted_upstream_proxies == ["10.0.0.0/8", "127.0.0.1"]
    assert svc.tunables.idle_timeout == 30  # a default the role set
    assert pool.tunables.health_check_interval == 0.5  # seconds: stored as text, read as float
    assert pool.tunables.max_fails == 4
    assert pool.tunables.fail_timeout == 10.0  # never set: the registry default
    assert web.tunables.docroot == str(tmp_path)
    assert web.tunables.pool is None  # not of its role, no default
    assert it.run("SET s.buffer_size = 1k", CommandContext()).ok
    assert svc.tunables.buffer_size == 1024


def test_plugin_tunables_read_the_service_params(tmp_path: Path) -> None:
    it = _graph_after(["LOAD Throttle", "CREATE SERVICE t", "SET role = reverse_proxy",
                       "SET plugins = Throttle", "SET max_delay = 7",
                       "SET path_regex = ^/api"], tmp_path)
    view = tunables.ThrottleTunables(it.graph.services["t"].params)
    assert (view.max_delay, view.path_regex, view.initial_delay) == (7, "^/api", 3)


def test_views_are_bound_once_to_the_live_mapping() -> None:
    svc, pool = Service("x"), Pool("p")
    svc.params["buffer_size"] = 5
    pool.params["hash_key"] = "uri"
    assert (svc.tunables.buffer_size, pool.tunables.hash_key) == (5, "uri")
    assert svc.tunables.buffer_size_reproxy_url == 51200


# --- no string reads ---------------------------------------------------------------

def _declared_names() -> set[str]:
    names = set(REGISTRY.service) | set(REGISTRY.pool) | set(REGISTRY.server)
    registry = default_plugin_registry()
    names |= {p.name for name in registry.names() for p in registry.get(name).params}
    return names


#: what a parameter is read from: a service or pool (``svc``, ``ctx.service``,
#: ``listener``, ``pool``, ...), directly or through its ``params`` mapping, or the
#: SERVER settings (``graph.server``)
_OWNERS = ("svc", "service", "listener", "selector", "owner", "pool", "target", "mgmt",
           "server")
#: files allowed to name parameters as strings: the generated views and the
#: interpreter and commands that store, show and dump them
_WRITERS = {"tunables.py", "tunables_gen.py", "interp.py", "params.py", "paramkinds.py",
            "docs.py", "fmt.py", "lsp.py", "lsp_features.py", "textmate.py"}


def _string_reads(path: Path, names: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        receiver = key = None
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and node.args
                and isinstance(node.args[0], ast.Constant)):
            receiver, key = node.func.value, node.args[0].value
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)
              and isinstance(node.slice, ast.Constant)):
            receiver, key = node.value, node.slice.value
        if receiver is None or key not in names:
            continue
        text = ast.unparse(receiver)
        if text.startswith("REGISTRY."):  # a declaration looked up, not a value read
            continue
        last = text.removesuffix(".params").rsplit(".", 1)[-1]
        if any(owner in last for owner in _OWNERS):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_parameter_is_read_by_its_name_as_a_string() -> None:
    names = _declared_names()
    found: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name not in _WRITERS:
            found += _string_reads(path, names)
    assert not found, "read these through .tunables:\n" + "\n".join(found)


# --- what the views read is what coercion stored -----------------------------------

def _configs() -> list[Path]:
    found = sorted((ROOT / "examples").glob("*.conf"))
    found += sorted(Path("/usr/share/doc/perlbal/examples").glob("*.conf"))
    return found


def _declared() -> dict[str, object]:
    out: dict[str, object] = {p.name: p for p in REGISTRY.service.values()}
    out.update((p.name, p) for p in REGISTRY.pool.values())
    registry = default_plugin_registry()
    out.update((p.name, p) for name in registry.names() for p in registry.get(name).params)
    return out


@pytest.mark.parametrize("config", _configs(), ids=lambda p: p.name)
def test_every_stored_value_has_its_kinds_type(config: Path) -> None:
    """The views hand stored values out unchecked (a read is the dict's own
    lookup), so every value the interpreter stores must have the type its
    attribute is annotated with: checked over real configs, every service and pool."""
    from perlbal.dryrun import load_graph
    from perlbal.paramkinds import Param

    graph, _errors = load_graph(str(config))
    declared = _declared()
    checks = {"bool": bool, "int": int, "str": str, "list": list}
    owners = [*graph.services.values(), *graph.pools.values()]
    assert owners, config
    for owner in owners:
        for name, value in owner.params.items():
            param = declared.get(name)
            if not isinstance(param, Param) or value is None:
                continue
            expected = checks[tunables_gen.KIND_TYPES[param.kind].check]
            assert isinstance(value, expected), (config.name, owner.name, name, value)
            if expected is int:
                assert not isinstance(value, bool), (config.name, owner.name, name)
