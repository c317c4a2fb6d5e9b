"""SET role applies every default of the role; after the first service of a role
the text-only defaults come from a plan (issue #16 part 6).  Every service must
still get what the first one got, in the same order, and its own lists."""

from __future__ import annotations

from pathlib import Path

from perlbal.interp import CommandContext, Interpreter


def _params(it: Interpreter, name: str) -> list[tuple[str, object]]:
    return list(it.graph.services[name].params.items())


def _run(it: Interpreter, lines: list[str]) -> None:
    ctx = CommandContext()
    for line in lines:
        reply = it.run(line, ctx)
        assert reply.ok, (line, reply.lines)


def test_later_services_of_a_role_get_what_the_first_got(tmp_path: Path) -> None:
    Interpreter._role_plans.clear()
    it = Interpreter()
    roles = ["reverse_proxy", "web_server", "selector", "management", "upload_tracker"]
    lines = ["CREATE POOL p", "LOAD vhosts", "LOAD palimg"]
    for i, role in enumerate(roles * 3):
        lines += [f"CREATE SERVICE s{i}", f"SET role = {role}"]
        if i == len(roles):  # a DEFAULT between services: another plan from here on
            lines.append("DEFAULT buffer_size = 512k")
    _run(it, lines)
    for i, role in enumerate(roles):
        first = _params(it, f"s{i}")
        again = _params(it, f"s{i + 2 * len(roles)}")
        assert again != [] and [k for k, _ in again] == [k for k, _ in first]
        differ = {k for (k, a), (_, b) in zip(first, again) if a != b}
        assert differ <= {"buffer_size"}, (role, differ)

    # a fresh interpreter without plans makes the very same services
    Interpreter._role_plans.clear()
    fresh = Interpreter()
    _run(fresh, lines)
    for i in range(3 * len(roles)):
        assert _params(fresh, f"s{i}") == _params(it, f"s{i}")


def test_kept_lists_are_not_shared_between_services() -> None:
    Interpreter._role_plans.clear()
    it = Interpreter()
    _run(it, ["CREATE SERVICE a", "SET role = reverse_proxy",
              "CREATE SERVICE b", "SET role = reverse_proxy",
              "CREATE SERVICE c", "SET role = reverse_proxy"])
    lists = [k for k, v in it.graph.services["a"].params.items() if isinstance(v, list)]
    for key in lists:
        values = [it.graph.services[n].params[key] for n in "abc"]
        assert values[0] == values[1] == values[2]
        assert len({id(v) for v in values}) == 3, key


def test_defaults_that_ask_the_disk_are_asked_again(tmp_path: Path) -> None:
    """A default whose coercion looks at the file system or the graph is not kept:
    the answer may change between two services."""
    from perlbal.grammar import ast
    from perlbal.interp import Call, _EnvProbe
    from perlbal.params import REGISTRY

    asked = []
    for param in REGISTRY.service.values():
        if param.default is None:
            continue
        probe = _EnvProbe(Interpreter().env)
        try:
            param.coerce(param.default, probe, "x")  # type: ignore[arg-type]
        except Exception:
            pass
        if probe.asked:
            asked.append(param.name)
    Interpreter._role_plans.clear()
    it = Interpreter()
    _run(it, ["CREATE SERVICE a", "SET role = web_server"])
    plan = next(iter(Interpreter._role_plans.values()))
    from perlbal.interp import _Recoerce

    recoerced = {p.name for p, _, kept in plan.steps if kept is _Recoerce}
    assert set(asked) & {p.name for p, _, _ in plan.steps} <= recoerced
    assert Call(ast.construct(ast.Blank), CommandContext()).lines == []


def test_a_default_the_role_refuses_fails_set_role_every_time() -> None:
    """Perl's init applies each DEFAULT through the parameter's setter and dies
    on a bad one, failing the SET role line: the first service of the role and
    the later ones (from the plan) alike; every other default is still applied."""
    Interpreter._role_plans.clear()
    it = Interpreter()
    ctx = CommandContext()
    _run(it, ["DEFAULT persist_client = abc", "DEFAULT buffer_size = 512k"])
    for name in ("a", "b", "c"):
        _run(it, [f"CREATE SERVICE {name}"])
        reply = it.run(f"SET {name}.role = reverse_proxy", ctx)
        assert not reply.ok
        assert reply.lines == ["ERROR: Expecting boolean value for parameter 'persist_client' "
                               "(from DEFAULT persist_client = abc)"]
        assert it.graph.services[name].tunables.buffer_size == 512 * 1024
        assert it.graph.services[name].role == "reverse_proxy"
    _run(it, ["DEFAULT persist_client = on", "CREATE SERVICE d", "SET d.role = reverse_proxy"])
    assert it.graph.services["d"].tunables.persist_client is True
