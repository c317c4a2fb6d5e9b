"""SIGHUP: re-read the config file and apply only what changed, through the live interpreter.

1. The file runs through ``perlbal.check.Checker`` (the real interpreter on a
   dry graph, no sockets) with the live server's rules (``live_rules``: a
   missing docroot is an error, as the live SET would refuse it).  Any error
   rejects the whole file: nothing is applied and the running graph stays as
   it was.
2. ``plan(live, dry)`` compares the two graphs and returns console command
   lines (``CREATE POOL``, ``POOL ADD/REMOVE``, ``SET``, ``ENABLE`` ...) that
   turn the live graph into the new one, each with the service or pool it is
   run in the context of.  What the console language cannot undo (deleting a
   pool or service, removing a HEADER rule or a VHOST entry) is reported, not
   faked: a service gone from the file is disabled, a pool is kept.
3. ``apply`` runs those lines through ``Interpreter.run`` (the one
   interpreter), stopping at nothing: each line's reply is logged with it.

The plan is built from ``queries.service_dump`` and ``queries.pool_dump``, the
same lines ``dumpconfig`` prints, so "what a service looks like" is defined once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from perlbal import queries
from perlbal.check import Checker
from perlbal.interp import CommandContext, Interpreter
from perlbal.params import REGISTRY

log = logging.getLogger("perlbal.runtime")

__all__ = ["ReloadReport", "plan", "reload_file"]


@dataclass
class Step:
    line: str
    context: str | None = None  # ``USE``d before the line (implicit-target SET, VHOST)


@dataclass
class ReloadReport:
    ok: bool
    errors: list[str] = field(default_factory=list)
    applied: list[tuple[str, list[str]]] = field(default_factory=list)  # line, reply
    not_applied: list[str] = field(default_factory=list)
    #: steps the live interpreter still refused after a clean dry run, with its reply
    refused: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> list[str]:
        if not self.ok:
            return ["reload rejected, running configuration kept:", *self.errors]
        if not self.applied and not self.not_applied and not self.refused:
            return ["reload: no changes"]
        out = [f"reload: {len(self.applied)} change(s)"]
        if self.refused:
            out = [f"reload INCOMPLETE: {len(self.applied)} change(s) applied, "
                   f"{len(self.refused)} refused by the running server"]
        for line, reply in self.applied:
            out.append(f"  {line}" + (f"  -> {' / '.join(reply)}" if reply else ""))
        for line, reply in self.refused:
            out.append(f"  refused: {line}" + (f"  -> {' / '.join(reply)}" if reply else ""))
        out.extend(f"  not applied: {note}" for note in self.not_applied)
        return out


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
        if old_g.server.get(key) != value and key != "pidfile":
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


def reload_file(live: Interpreter, path: str) -> ReloadReport:
    """Check ``path`` as a whole; if clean, apply the difference to ``live``.

    The dry run uses the rules the live server applies (``live_rules``: a
    missing docroot is an error here, not the warning ``perlbal check`` gives
    for content deployed elsewhere), so a file is taken whole or not at all.
    What only the live server can find out (a port already in use at ENABLE)
    may still refuse a step; such a step is listed as refused and the report
    no longer says the reload succeeded.
    """
    checker = Checker(live_rules=True)
    checker.check_file(path)
    result = checker.finish()
    if result.errors:
        return ReloadReport(False, errors=[d.render() for d in result.errors])
    steps, notes = plan(live, checker.interp)
    report = ReloadReport(True, not_applied=notes)
    for step in steps:
        ctx = CommandContext(verbose=False)
        if step.context is not None:
            ctx.last_created = step.context
        reply = live.run(step.line, ctx, file=f"<reload {path}>")
        shown = step.line if step.context is None or not step.line.startswith("SET ") \
            else f"SET {step.context}.{step.line[4:]}"
        if reply.ok:
            report.applied.append((shown, list(reply.lines)))
        else:
            report.refused.append((shown, list(reply.lines)))
    return report
