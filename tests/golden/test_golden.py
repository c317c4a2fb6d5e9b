"""Golden tests: a .conf in, the graph dump out (tests/golden/NAME.json).

Regenerate after an intended change with:
    PERLBAL_REGEN_GOLDEN=1 .venv/bin/pytest tests/golden
and review the diff of the .json files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perlbal.interp import Interpreter
from perlbal.params import REGISTRY, ParamError

HERE = Path(__file__).parent
CONFS = sorted(HERE.glob("*.conf"))


class _NoDisk:
    """Coercing a default never needs the disk."""

    def pool_exists(self, name: str) -> bool:
        return False

    service_exists = plugin_role_exists = is_dir = content_dir = is_file = exists = pool_exists


def _is_default(name: str, value: object) -> bool:
    param = REGISTRY.service.get(name)
    if param is None or param.default is None or name == "index_files":
        return False
    try:
        return bool(param.coerce(param.default, _NoDisk(), "") == value)
    except ParamError:
        return False


def build(conf: Path) -> dict[str, object]:
    """The graph with parameters still at their registry default left out, so a
    new parameter elsewhere does not change every golden file."""
    interp = Interpreter()
    out: list[str] = []
    assert interp.load_config_text(conf.read_text(), file=conf.name, out=out.append), out
    graph = interp.graph.dump()
    for svc in graph["services"].values():
        svc["params"] = {k: v for k, v in svc["params"].items() if not _is_default(k, v)}
    return {"output": out, "graph": graph}


@pytest.mark.parametrize("conf", CONFS, ids=[c.stem for c in CONFS])
def test_golden(conf: Path) -> None:
    got = build(conf)
    expected_path = conf.with_suffix(".json")
    if os.environ.get("PERLBAL_REGEN_GOLDEN"):
        expected_path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    expected = json.loads(expected_path.read_text())
    assert json.loads(json.dumps(got)) == expected


@pytest.mark.parametrize("conf", CONFS, ids=[c.stem for c in CONFS])
def test_dumpconfig_round_trips(conf: Path) -> None:
    """dumpconfig's output, fed to a fresh interpreter, rebuilds the same graph."""
    first = Interpreter()
    assert first.load_config_text(conf.read_text())
    from perlbal.interp import CommandContext

    dumped = first.run_line("dumpconfig", CommandContext(verbose=False))
    second = Interpreter()
    out: list[str] = []
    # services are created DISABLED then ENABLEd; listeners are dry here
    assert second.load_config_text("\n".join(dumped), out=out.append), out
    a, b = first.graph.dump(), second.graph.dump()
    for dump in (a, b):
        dump.pop("defaults")  # DEFAULT lines are not part of Perl's dumpconfig
        dump.pop("server")
    assert a == b
