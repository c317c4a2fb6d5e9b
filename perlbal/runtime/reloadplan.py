"""SIGHUP's plan: the console lines that turn the live graph into the file's graph.

``plan(live, dry)`` compares the two graphs and returns console command lines
(``CREATE POOL``, ``POOL ADD/REMOVE``, ``SET``, ``ENABLE`` ...), each with the
service or pool it is run in the context of.  What the console language
cannot undo (deleting a pool or service, removing a HEADER rule or a VHOST
entry) is reported, not faked: a service gone from the file is disabled, a
pool is kept.  SERVER settings that apply at startup only (``user``,
``workers``, ``error_log``...) are reported as needing a restart, never run
(the live interpreter would refuse them).

The plan is built from ``queries.service_dump`` and ``queries.pool_dump``, the
same lines ``dumpconfig`` prints, so "what a service looks like" is defined once.
"""

from __future__ import annotations

from dataclasses import dataclass

from perlbal import queries
from perlbal.interp import Interpreter
from perlbal.params import REGISTRY

__all__ = ["Step", "plan"]


@dataclass
class Step:
    line: str
    context: str | None = None  # ``USE``d before the line (implicit-target SET, VHOST)



#: Dump lines that set one entry of a mapping: a new value for the same left side
#: replaces the old one (``VHOST x = a`` then ``VHOST x = b`` leaves only b), so
#: such a change is applied, not reported as something that cannot be undone.
#: (VPATH rules are an ordered list where a repeated regex appends: not here.)
_MAPPING_KEYWORDS = ("VHOST ",)


def _set_lines(lines: list[str]) -> dict[str, str]:
    """``SET key = value`` lines of a service dump -> {key: line}; ``VHOST host = svc``
    lines keyed by ``VHOST host``; other lines keyed by their text."""
    out: dict[str, str] = {}
    for line in lines:
        if line.startswith("SET ") and " = " in line:
            out[line[4:].split(" = ", 1)[0]] = line
        elif line.startswith(_MAPPING_KEYWORDS) and " = " in line:
            out[line.split(" = ", 1)[0]] = line
        else:
            out[line] = line
    return out


def _default_line(live: Interpreter, key: str, role: str | None) -> str | None:
    if key == "plugins":
        return "SET plugins = none"
    param = REGISTRY.service.get(key)
    if param is None:
        return None
    raw = live.graph.defaults.get(key, param.default)
    return None if raw is None else f"SET {key} = {raw}"


def plan(live: Interpreter, new: Interpreter) -> tuple[list[Step], list[str]]:
    """Console lines turning ``live.graph`` into ``new.graph``, and what cannot be done."""
    old_g, new_g = live.graph, new.graph
    steps: list[Step] = []
    notes: list[str] = []
    for name in sorted(set(new_g.plugins_loaded.values()) - set(old_g.plugins_loaded.values())):
        steps.append(Step(f"LOAD {name}"))
    for key, value in new_g.defaults.items():
        if old_g.defaults.get(key) != value:
            steps.append(Step(f"DEFAULT {key} = {value}"))
    for key, value in new_g.server.items():
        if old_g.server.get(key) == value:
            continue
        declared = REGISTRY.server.get(key)
        if key == "pidfile" or (declared is not None and not declared.live):
            notes.append(f"SERVER {key} = {value}: read at startup only; restart to apply")
        else:
            steps.append(Step(f"SERVER {key} = {value}"))
    # pools first: services refer to them
    for name, pool in new_g.pools.items():
        old = old_g.pools.get(name)
        if old is None:
            steps.append(Step(f"CREATE POOL {name}"))
        if (old.balance_method if old else "random") != pool.balance_method:
            steps.append(Step(f"SET {name}.balance_method = {pool.balance_method}"))
        if pool.nodefile:
            if old is None or old.nodefile != pool.nodefile:
                steps.append(Step(f"SET {name}.nodefile = {pool.nodefile}"))
            continue
        if old is not None and old.nodefile:
            steps.append(Step(f"SET {name}.nodefile = none"))
        old_nodes = [] if old is None else [n.ipport for n in old.nodes]
        new_nodes = [n.ipport for n in pool.nodes]
        steps += [Step(f"POOL {name} REMOVE {n}") for n in old_nodes if n not in new_nodes]
        steps += [Step(f"POOL {name} ADD {n}") for n in new_nodes if n not in old_nodes]
    for name in old_g.pools:
        if name not in new_g.pools:
            notes.append(f"pool {name} is gone from the file; kept (pools cannot be deleted)")
    for name, svc in new_g.services.items():
        old_svc = old_g.services.get(name)
        if old_svc is None:
            steps.append(Step(f"CREATE SERVICE {name}"))
        want = _set_lines(queries.service_dump(new, svc))
        have = _set_lines(queries.service_dump(live, old_svc)) if old_svc else {}
        role_changed = old_svc is None or old_svc.role != svc.role
        if role_changed:
            have = {}  # SET role re-initialises every parameter (Perl's Service::init)
        for key, line in want.items():
            if have.get(key) != line:
                steps.append(Step(line, name))
        for key in have:
            if key not in want:
                reset = _default_line(live, key, svc.role) if have[key].startswith("SET ") else None
                if reset is not None:
                    steps.append(Step(reset, name))
                else:
                    notes.append(f"service {name}: cannot undo '{have[key]}'")
        old_rm = old_svc.headers.remove if old_svc else []
        old_ins = old_svc.headers.insert if old_svc else []
        if svc.headers.remove[:len(old_rm)] == old_rm and svc.headers.insert[:len(old_ins)] == old_ins:
            steps += [Step(f"HEADER {name} REMOVE {h}") for h in svc.headers.remove[len(old_rm):]]
            steps += [Step(f"HEADER {name} INSERT {h}: {v}") for h, v in svc.headers.insert[len(old_ins):]]
        else:
            notes.append(f"service {name}: HEADER rules changed in a way the console cannot express; "
                         "restart to apply")
        was_enabled = bool(old_svc and old_svc.enabled)
        if svc.enabled and not was_enabled:
            steps.append(Step(f"ENABLE {name}"))
        elif was_enabled and not svc.enabled:
            steps.append(Step(f"DISABLE {name}"))
    for name, old_svc in old_g.services.items():
        if name not in new_g.services:
            if old_svc.enabled and old_svc.role != "management":
                steps.append(Step(f"DISABLE {name}"))
            notes.append(f"service {name} is gone from the file; "
                         + ("kept" if old_svc.role == "management" else "disabled, not deleted"))
    return steps, notes
