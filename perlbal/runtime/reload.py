"""SIGHUP: re-read the config file and apply it whole, or not at all.

A reload has two steps, and only the first can fail:

1. ``prepare(runtime, path)`` changes nothing live.  It
   - checks the file as a whole (``perlbal.check.Checker``: the real
     interpreter on a dry graph, with the live server's rules, so a missing
     docroot is an error);
   - plans the console lines that turn the live graph into the new one
     (``reloadplan.plan``) and rehearses them on a copy of the live graph,
     so every answer the live interpreter will give is known in advance;
   - reads every file the new graph names (TLS certificates and keys, node
     files) and builds every TLS context it will need from those bytes;
   - binds every listener the lines will start (a new service, a changed
     ``listen``).
   Any failure closes what it bound and returns ``Refused``: one positioned
   reason (``FILE:LINE:COL: error: ...``) per problem, logged at ERROR.
2. ``Prepared.commit()`` runs the planned lines through the live interpreter
   (``Interpreter.run``, the one interpreter); the listeners take the
   prepared sockets (``Listeners.prepared``), the ENABLE checks see the files
   already read, a listener whose certificate or key changed on disk gets its
   new context on the same socket, and each node file's nodes are replaced by
   what was read.  Nothing in it can be refused after a clean rehearsal.

So a renewed certificate is served after a SIGHUP even when no config line
changed, and "reload INCOMPLETE" cannot happen.  Files are read by the process
that runs ``prepare``: after ``SERVER user`` a single process cannot read a
root-only key any more, and the refusal says so (docs/operating.md,
"Certificate renewal", names the setups that work).
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perlbal import nodefile
from perlbal.check import Checker
from perlbal.graph import Graph, Service
from perlbal.interp import CommandContext, DryEffects, Interpreter
from perlbal.paramkinds import CheckEnv
from perlbal.runtime import tls
from perlbal.runtime.listeners import Listener, Prepared as PreparedListener
from perlbal.runtime.reloadplan import Step, plan

if TYPE_CHECKING:
    import ssl

    from perlbal.runtime.server import Runtime

log = logging.getLogger("perlbal.runtime")

__all__ = ["Prepared", "Refused", "ReloadReport", "Step", "plan", "prepare", "reload_file"]


@dataclass
class ReloadReport:
    ok: bool
    errors: list[str] = field(default_factory=list)
    applied: list[tuple[str, list[str]]] = field(default_factory=list)  # line, reply
    not_applied: list[str] = field(default_factory=list)
    #: services whose TLS context was rebuilt because a file's content changed
    renewed: list[str] = field(default_factory=list)
    #: pools whose node file's content replaced their nodes
    nodefiles: list[str] = field(default_factory=list)
    #: lines the live interpreter refused after a clean rehearsal: a bug, logged at ERROR
    refused: list[tuple[str, list[str]]] = field(default_factory=list)

    def summary(self) -> list[str]:
        if not self.ok:
            return ["reload rejected, running configuration kept:", *self.errors]
        if not (self.applied or self.not_applied or self.refused or self.renewed
                or self.nodefiles):
            return ["reload: no changes"]
        out = [f"reload: {len(self.applied)} change(s)"]
        for line, reply in self.applied:
            out.append(f"  {line}" + (f"  -> {' / '.join(reply)}" if reply else ""))
        out.extend(f"  TLS certificate/key re-read for service {name}" for name in self.renewed)
        out.extend(f"  node file re-read for pool {name}" for name in self.nodefiles)
        for line, reply in self.refused:
            out.append(f"  BUG: refused after a clean rehearsal: {line}"
                       + (f"  -> {' / '.join(reply)}" if reply else ""))
        out.extend(f"  not applied: {note}" for note in self.not_applied)
        return out


@dataclass
class Refused:
    """A reload that changed nothing, and why (each reason positioned in the file)."""

    path: str
    reasons: list[str]

    def report(self) -> ReloadReport:
        return ReloadReport(False, errors=list(self.reasons))

    def log(self) -> None:
        for reason in self.reasons:
            log.error("reload of %s rejected, running configuration kept: %s",
                      self.path, reason.split("\n", 1)[0])


class _Rehearsal(DryEffects):
    """Effects of the rehearsal: which services the live lines will start or stop."""

    def __init__(self, live: "Runtime") -> None:
        super().__init__()
        for name, svc in live.graph.services.items():
            if svc.enabled and svc.listen is not None:
                key = svc.listen if ":" in svc.listen else f"0.0.0.0:{svc.listen}"
                self.bound[key] = name
        self.started: dict[str, Service] = {}

    def start_listener(self, svc: Service) -> str | None:
        # as Listeners.start: a service's new listener replaces its old one (REBIND)
        previous = {k: v for k, v in self.bound.items() if v == svc.name}
        self.bound = {k: v for k, v in self.bound.items() if v != svc.name}
        reason = super().start_listener(svc)
        if reason is None:
            self.started[svc.name] = svc
        else:
            self.bound.update(previous)
        return reason

    def stop_listener(self, svc: Service) -> None:
        super().stop_listener(svc)
        self.started.pop(svc.name, None)


class _Locator:
    """FILE:LINE for a reason found after the check (a port, a file): the first
    line of the config that names it."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                self.lines = fh.read().splitlines()
        except OSError:
            self.lines = []

    def at(self, reason: str, *needles: str) -> str:
        for needle in needles:
            for number, line in enumerate(self.lines, 1):
                text = line.split("#", 1)[0]
                if needle and needle.lower() in text.lower():
                    column = text.lower().index(needle.lower()) + 1
                    return f"{self.path}:{number}:{column}: error: {reason}"
        return f"{self.path}: error: {reason}"


@dataclass
class Prepared:
    """A reload that will succeed: ``commit()`` applies it, ``abort()`` drops it."""

    runtime: "Runtime"
    path: str
    steps: list[Step]
    notes: list[str]
    #: path -> bytes of every file the new graph names (certificates, keys, node files)
    material: dict[str, bytes] = field(default_factory=dict)
    listeners: dict[str, PreparedListener] = field(default_factory=dict)
    #: service -> (new context, its digest) for a listener kept on its socket
    renewals: dict[str, tuple["ssl.SSLContext | None", str]] = field(default_factory=dict)
    #: pool -> (node file path, its mtime when read)
    nodefiles: dict[str, tuple[str, float]] = field(default_factory=dict)
    #: what the reload leaves as it was, and why (logged at ERROR by ``commit``)
    problems: list[str] = field(default_factory=list)

    def abort(self) -> None:
        for prepared in self.listeners.values():
            prepared.close()
        self.listeners.clear()

    def commit(self) -> ReloadReport:
        live = self.runtime.interp
        sockets = self.runtime.sockets
        report = ReloadReport(True, not_applied=list(self.notes) + list(self.problems))
        for problem in self.problems:
            log.error("reload of %s: %s", self.path, problem)
        sockets.prepared.update(self.listeners)
        self.listeners = {}
        disk_env = live.env
        live.env = _ReadEnv(disk_env, self.material)
        try:
            for step in self.steps:
                ctx = CommandContext(verbose=False)
                if step.context is not None:
                    ctx.last_created = step.context
                reply = live.run(step.line, ctx, file=f"<reload {self.path}>")
                shown = _shown(step)
                if reply.ok:
                    report.applied.append((shown, list(reply.lines)))
                else:
                    report.refused.append((shown, list(reply.lines)))
                    log.error("reload: the running server refused '%s' after a clean "
                              "rehearsal (a bug): %s", shown, " / ".join(reply.lines))
        finally:
            live.env = disk_env
            for unused in sockets.prepared.values():
                unused.close()
            sockets.prepared.clear()
        for name, (context, digest) in self.renewals.items():
            lst = sockets.open.get(name)
            if lst is not None:
                lst.tls, lst.tls_digest = context, digest
                report.renewed.append(name)
        now = time.time()
        for name, (path, mtime) in self.nodefiles.items():
            pool = live.graph.pools.get(name)
            if pool is None or pool.nodefile != path:
                continue
            nodes = nodefile.parse(self.material[path].decode("latin-1"))
            pool.nodefile_mtime, pool.nodefile_checked = mtime, now
            if [n.ipport for n in nodes] != [n.ipport for n in pool.nodes]:
                pool.replace_nodes(nodes)
                report.nodefiles.append(name)
        return report


def _shown(step: Step) -> str:
    """A step as the report prints it, naming its service when the line does not."""
    if step.context is None:
        return step.line
    if step.line.startswith("SET "):
        return f"SET {step.context}.{step.line[4:]}"
    if step.line.startswith(("VHOST ", "HEADER ")):
        return step.line
    return f"{step.line} (service {step.context})"


class _ReadEnv:
    """The live interpreter's file checks during a commit: a file ``prepare`` read
    exists, even where this process may no longer look (after ``SERVER user``)."""

    def __init__(self, disk: CheckEnv, material: dict[str, bytes]) -> None:
        self._disk = disk
        self._material = material

    def is_file(self, path: str) -> bool:
        return path in self._material or self._disk.is_file(path)

    def exists(self, path: str) -> bool:
        return path in self._material or self._disk.exists(path)

    def pool_exists(self, name: str) -> bool:
        return self._disk.pool_exists(name)

    def service_exists(self, name: str) -> bool:
        return self._disk.service_exists(name)

    def plugin_role_exists(self, role: str) -> bool:
        return self._disk.plugin_role_exists(role)

    def is_dir(self, path: str) -> bool:
        return self._disk.is_dir(path)

    def content_dir(self, path: str) -> bool:
        return self._disk.content_dir(path)


def prepare(runtime: "Runtime", path: str) -> Prepared | Refused:
    """Everything a reload of ``path`` needs, done before anything changes."""
    live = runtime.interp
    checker = Checker(live_rules=True)
    checker.check_file(path)
    result = checker.finish()
    if result.errors:
        return Refused(path, _with_hint([d.render() for d in result.errors]))
    steps, notes = plan(live, checker.interp)
    steps += _plugin_file_steps(live, checker.interp)
    where = _Locator(path)
    rehearsal = _Rehearsal(runtime)
    try:
        graph_copy = _copy(live.graph)
    except Exception as exc:  # a plugin's state that cannot be copied: say so, change nothing
        log.exception("reload: the running configuration cannot be copied to rehearse it")
        return Refused(path, [f"{path}: error: the running configuration cannot be copied to "
                              f"rehearse the reload ({exc!r}); restart to apply the file"])
    copy_interp = Interpreter(graph_copy, effects=rehearsal, plugins=live.plugins)
    copy_interp.run_started = True
    copy_interp.xs_enabled = dict(live.xs_enabled)
    reasons: list[str] = []
    try:
        for step in steps:
            ctx = CommandContext(verbose=False)
            if step.context is not None:
                ctx.last_created = step.context
            reply = copy_interp.run(step.line, ctx, file=f"<reload {path}>")
            if not reply.ok:
                reasons.append(where.at(f"the running server would refuse '{step.line}': "
                                        + " / ".join(reply.lines), step.line.split(" = ")[-1],
                                        step.context or ""))
    finally:
        _forget(copy_interp)
    if reasons:
        return Refused(path, reasons)
    prepared = Prepared(runtime, path, steps, notes)
    reasons = _prepare_resources(prepared, copy_interp.graph, rehearsal, where)
    if reasons:
        prepared.abort()
        return Refused(path, _with_hint(reasons))
    return prepared


def _with_hint(reasons: list[str]) -> list[str]:
    """After ``SERVER user``, say why a file root can read may look missing or unreadable."""
    if os.geteuid() == 0 or not any("does not exist" in r or "doesn't exist" in r
                                    or "Permission denied" in r for r in reasons):
        return reasons
    return reasons + [f"note: this process runs as uid {os.geteuid()} (SERVER user), not root: "
                      "a file, or a directory on its path, that only root may read cannot be "
                      "read by a reload (SERVER workers = 1 keeps a supervisor with root's "
                      "rights that can); see 'Certificate renewal' in docs/operating.md"]


def _copy(graph: Graph) -> Graph:
    """A deep copy whose typed views read the copy's own values: a ``tunables`` object
    *is* its parameter mapping (``__dict__``), which ``deepcopy`` would snapshot."""
    copied = copy.deepcopy(graph)
    copied.__post_init__()
    for svc in copied.services.values():
        svc.__post_init__()
    for pool in copied.pools.values():
        pool.__post_init__()
    return copied


def _plugin_file_steps(live: Interpreter, new: Interpreter) -> list[Step]:
    """Lines the plugins ask for because a file they read changed (Throttle's lists):
    for each service that has the plugin in the running server and in the file."""
    steps: list[Step] = []
    for name, svc in new.graph.services.items():
        running = live.graph.services.get(name)
        if running is None:
            continue  # a new service: registering the plugin reads its files
        for plugin_name in svc.plugin_order:
            plugin = new.plugins.find(plugin_name)
            if plugin is not None and plugin_name in running.plugin_order:
                steps += [Step(line, name) for line in plugin.reload_lines(svc, running)]
    return steps


def _forget(rehearsed: Interpreter) -> None:
    """Plugins keep per-interpreter state (keyed by the interpreter): drop the rehearsal's."""
    for name in set(rehearsed.graph.plugins_loaded.values()):
        plugin = rehearsed.plugins.find(name)
        if plugin is not None:
            try:
                plugin.unload(rehearsed)
            except Exception:
                log.exception("reload: plugin %s failed to forget the rehearsal", name)


def _prepare_resources(prepared: Prepared, graph: Graph, rehearsal: _Rehearsal,
                       where: _Locator) -> list[str]:
    """Read the files, build the TLS contexts, bind the listeners; the reasons it failed."""
    runtime = prepared.runtime
    reasons: list[str] = []
    for name, svc in graph.services.items():
        if not svc.enabled or svc.listen is None:
            continue
        started = name in rehearsal.started
        live_lst = runtime.sockets.open.get(name)
        if not started and live_lst is None:
            continue  # an upload tracker, or a listener that failed at startup
        context: ssl.SSLContext | None = None
        digest = ""
        if svc.tunables.enable_ssl:
            try:
                material = tls.read_material(svc)
                prepared.material.update(material)
                digest = tls.digest(svc, material)
                if started or live_lst is None or digest != live_lst.tls_digest:
                    context = tls.build_context(svc, material)
            except tls.TLSConfigError as exc:
                old_svc = runtime.graph.services.get(name)
                if (exc.denied and not started and live_lst is not None
                        and live_lst.tls is not None and old_svc is not None
                        and tls.settings(old_svc) == tls.settings(svc)):
                    # unchanged settings, a file this process may no longer read (after
                    # SERVER user): the listener keeps its context; the rest applies
                    prepared.problems.append(
                        f"service {name}: {exc}; it keeps the certificate it has, a renewed "
                        "one is not served until a restart")
                    continue
                reasons.append(where.at(f"service {name}: {exc}", *_named_files(str(exc)),
                                        f"ENABLE {name}"))
                continue
        if not started:
            assert live_lst is not None
            if digest != live_lst.tls_digest:
                prepared.renewals[name] = (context, digest)
            continue
        holder = _released_holder(runtime, graph, name, svc.listen)
        bound = holder.sock.dup() if holder is not None \
            else runtime.sockets.bind(svc, svc.listen)
        if isinstance(bound, str):
            reasons.append(where.at(f"Can't start service '{name}' on {svc.listen}: {bound}",
                                    svc.listen, f"ENABLE {name}"))
            continue
        prepared.listeners[name] = PreparedListener(svc.listen, bound, context, digest)
    for name, pool in graph.pools.items():
        if not pool.nodefile:
            continue
        try:
            with open(pool.nodefile, "rb") as fh:
                prepared.material[pool.nodefile] = fh.read()
                mtime = os.fstat(fh.fileno()).st_mtime
        except OSError as exc:
            reasons.append(where.at(f"pool {name}: can't read node file {pool.nodefile}: "
                                    f"{exc.strerror}", pool.nodefile))
            continue
        prepared.nodefiles[name] = (pool.nodefile, mtime)
    return reasons


def _named_files(reason: str) -> list[str]:
    """Paths inside a TLS reason (``can't read /x: ...``, ``SSL key file (/x) ...``)."""
    words = reason.replace("(", " ").replace(")", " ").replace(":", " ").split()
    return [w for w in words if "/" in w or w.endswith((".pem", ".crt", ".key"))]


def _released_holder(runtime: "Runtime", graph: Graph, name: str,
                     listen: str) -> "Listener | None":
    """The live listener already bound to ``listen`` that ``name`` may take over: its
    own, or another service's that the new graph moves away or disables (a port
    handed from one service to another in one reload)."""
    for holder_name, lst in runtime.sockets.open.items():
        if not _same_address(lst.sock, listen):
            continue
        if holder_name == name:
            return lst
        after = graph.services.get(holder_name)
        if after is None or not after.enabled or after.listen is None \
                or not _same_address(lst.sock, after.listen):
            return lst
    return None


def _same_address(sock: object, listen: str) -> bool:
    from perlbal.runtime.listeners import parse_listen

    try:
        _family, host, port = parse_listen(listen)
        bound = getattr(sock, "getsockname")()
    except (ValueError, OSError):
        return False
    return bool(bound[1] == port and bound[0] in (host, "::" if host == "" else host))


def reload_file(runtime: "Runtime", path: str) -> ReloadReport:
    """Prepare, then commit if nothing failed (a refusal is logged at ERROR)."""
    outcome = prepare(runtime, path)
    if isinstance(outcome, Refused):
        outcome.log()
        return outcome.report()
    return outcome.commit()
