"""The one interpreter: executes AST nodes against a configuration graph.

A config file at start-up, a live console command, ``perlbal check`` and
``perlbal explain`` all come through ``Interpreter.execute``.  Replies follow
Perl Perlbal 1.80 to the byte: ``OK`` (only when the context is verbose, as on
a console connection), ``ERROR: ...``, and multi-line answers ended by ``.``.

What touches the outside world goes through two narrow interfaces, so a dry
run is the real code path with other implementations behind them:
- ``params.CheckEnv`` (``self.env``): what exists on disk;
- ``Effects`` (``self.effects``): listeners, backends, shutdown and the live
  numbers that query commands print.  ``DryEffects`` binds nothing.
"""

from __future__ import annotations

import operator
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Protocol, cast

from perlbal import PERL_COMPAT_VERSION
from perlbal import nodefile, queries
from perlbal.graph import Graph, Pool, Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PERL_HELP, Parser
from perlbal.params import REGISTRY, CheckEnv, Effect, Param, ParamError, ParamValue
from perlbal.plugins import PluginError, PluginRegistry, default_plugin_registry

# after the classes commands.py names only for typing: no import cycle at run time
from perlbal.commands import HANDLERS, create_pool  # noqa: E402

DEFAULT_MIME = {
    "css": "text/css", "doc": "application/msword", "gif": "image/gif",
    "htm": "text/html", "html": "text/html", "jpg": "image/jpeg",
    "js": "application/x-javascript", "mp3": "audio/mpeg", "mpg": "video/mpeg",
    "pdf": "application/pdf", "png": "image/png", "tif": "image/tiff",
    "tiff": "image/tiff", "torrent": "application/x-bittorrent", "txt": "text/plain",
    "zip": "application/zip",
}


@dataclass
class CommandContext:
    """Per console connection (or per config file): Perl's CommandContext."""

    verbose: bool = False
    last_created: str | None = None


@dataclass
class Reply:
    ok: bool
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # where in the line the (first) error points, when the handler knows the token
    error_column: int | None = None
    notes: list[str] = field(default_factory=list)


class Effects(Protocol):
    """What the interpreter asks of the runtime (or of a dry run)."""

    def start_listener(self, svc: Service) -> str | None:
        """Open ``svc``'s listener; return Perl's error reason on failure."""

    def stop_listener(self, svc: Service) -> None: ...

    def spawn_backends(self, svc: Service) -> None: ...

    def shutdown(self, graceful: bool, timeout: int | None) -> None: ...

    def stats(self) -> queries.LiveStats: ...

    #: a running server owns its process: process-wide settings (rlimits, nice,
    #: log level) are applied; check, explain and tests running dry only warn
    owns_process: bool


#: what ``Interpreter.run`` tells its line observers: the raw line, where it
#: came from, the target an implicit SET/VHOST named *before* it ran, and the reply
LineObserver = Callable[[str, str, "str | None", "Reply"], None]


class DryEffects:
    """Effects for check/explain: nothing is bound; address clashes are found."""

    owns_process = False

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}  # normalised listen address -> service
        self.shutdown_requested = False
        self._stats = queries.LiveStats()

    def start_listener(self, svc: Service) -> str | None:
        listen = svc.listen
        if listen is None:
            return None
        key = listen if ":" in listen else f"0.0.0.0:{listen}"
        if key.endswith(":0"):
            return None  # port 0: the kernel gives each listener a port of its own
        other = self.bound.get(key)
        if other is not None and other != svc.name:
            return "Address already in use"
        self.bound[key] = svc.name
        return None

    def stop_listener(self, svc: Service) -> None:
        self.bound = {k: v for k, v in self.bound.items() if v != svc.name}

    def spawn_backends(self, svc: Service) -> None:
        return None

    def shutdown(self, graceful: bool, timeout: int | None) -> None:
        self.shutdown_requested = True

    def stats(self) -> queries.LiveStats:
        return self._stats


class DiskEnv:
    """``CheckEnv`` on the real file system and the current graph."""

    def __init__(self, interp: "Interpreter", base_dir: str | None = None) -> None:
        self.interp = interp
        self.base_dir = base_dir

    def _path(self, path: str) -> str:
        if self.base_dir and not os.path.isabs(path):
            return os.path.join(self.base_dir, path)
        return path

    def pool_exists(self, name: str) -> bool:
        return name in self.interp.graph.pools

    def service_exists(self, name: str) -> bool:
        return name in self.interp.graph.services

    def plugin_role_exists(self, role: str) -> bool:
        return role in self.interp.plugin_roles()

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self._path(path))

    def content_dir(self, path: str) -> bool:
        return self.is_dir(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(self._path(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(self._path(path))


class Call:
    """One command being executed: Perl's ManageCommand (out/ok/err/end)."""

    def __init__(self, node: ast.Node, ctx: CommandContext) -> None:
        self.node = node
        self.ctx = ctx
        self.lines: list[str] = []
        # things Perl prints to stderr with warn(); check turns them into warnings
        self.warnings: list[str] = []
        self.notes: list[str] = []  # a dry run's word on what it did not do (check: notes)
        self.error_column: int | None = None

    def out(self, *lines: str) -> bool:
        self.lines.extend(lines)
        return True

    def ok(self) -> bool:
        if self.ctx.verbose:
            self.lines.append("OK")
        return True

    def err(self, message: str, column: int | None = None) -> bool:
        """An ERROR line; ``column`` is the token it is about (for check)."""
        self.lines.append("ERROR: " + message.rstrip("\n"))
        if self.error_column is None:
            self.error_column = column
        return False

    def end(self) -> bool:
        self.lines.append(".")
        return True




class _Recoerce:
    """In a role's plan: this default is coerced again for each service."""


class _RolePlan:
    """The defaults one role gets: (param, raw text, value kept or _Recoerce)."""

    def __init__(self, params: list[Param]) -> None:
        self.params = params
        self.steps: list[tuple[Param, str, ParamValue | type[_Recoerce]]] = []
        #: the steps again, each run of kept values that only set svc.params (no
        #: effect, not a list) as one dict: dict.update keeps their order
        self.ops: list[dict[str, ParamValue] | tuple[Param, str,
                                                      ParamValue | type[_Recoerce]]] = []

    def compile(self) -> None:
        run: dict[str, ParamValue] = {}
        for step in self.steps:
            param, _, kept = step
            if kept is not _Recoerce and not isinstance(kept, list) and \
                    param.effect is Effect.NONE:
                run[param.name] = cast(ParamValue, kept)
                continue
            if run:
                self.ops.append(run)
                run = {}
            self.ops.append(step)
        if run:
            self.ops.append(run)

    def params_are(self, params: list[Param]) -> bool:
        return len(params) == len(self.params) and all(map(operator.is_, params,
                                                           self.params))


class _EnvProbe:
    """A ``CheckEnv`` that answers as ``env`` and notes whether it was asked."""

    def __init__(self, env: CheckEnv) -> None:
        self._env = env
        self.asked = False

    def __getattr__(self, name: str) -> Any:
        self.asked = True
        return getattr(self._env, name)


class Interpreter:
    def __init__(self, graph: Graph | None = None, *, effects: Effects | None = None,
                 plugins: PluginRegistry | None = None, base_dir: str | None = None) -> None:
        self.graph = graph if graph is not None else Graph()
        if not self.graph.mime:
            self.graph.mime.update(DEFAULT_MIME)
        self.effects: Effects = effects if effects is not None else DryEffects()
        self.plugins = plugins if plugins is not None else default_plugin_registry()
        # third-party plugins' commands join the grammar when a line first needs
        # one (the registry reads its entry points then, not at every start)
        self.parser = Parser(self.plugins.syntax_extensions(discover=False),
                             more=self.plugins.syntax_extensions)
        self.env: CheckEnv = DiskEnv(self, base_dir)
        self.start_time = int(time.time())
        self.run_started = False
        # process-wide settings (rlimits, nice) are applied only by a real server,
        # never by check/explain/tests running the interpreter dry
        self.owns_process = self.effects.owns_process
        self.xs_enabled = {"headers": False}
        # perlbal check: run every line, and watch each one with its reply
        self.keep_going = False
        self.observer: Callable[[ast.Node, Reply], None] | None = None
        #: called after every ``run`` (console lines, SIGHUP reload steps): with
        #: SERVER workers the supervisor passes what it ran on to the workers this way
        self.line_observers: list[LineObserver] = []

    # --- entry points ---------------------------------------------------------

    def run_line(self, raw: str, ctx: CommandContext, *, file: str = "<console>",
                 line: int = 1) -> list[str]:
        return self.run(raw, ctx, file=file, line=line).lines

    def run(self, raw: str, ctx: CommandContext, *, file: str = "<console>",
            line: int = 1) -> Reply:
        node = self.parser.parse_line(raw, file=file, line=line)
        if not self.line_observers:
            return self.execute(node, ctx)
        implied = ctx.last_created  # what an implicit SET / VHOST refers to
        reply = self.execute(node, ctx)
        for observe in self.line_observers:
            observe(raw, file, implied, reply)
        return reply

    def execute(self, node: ast.Node, ctx: CommandContext) -> Reply:
        call = Call(node, ctx)
        reply = Reply(False, call.lines, call.warnings, notes=call.notes)
        # a plugin's typed node (Vpath, AccessRule...) runs its base class's handler
        handler = next((HANDLERS[c] for c in type(node).__mro__ if c in HANDLERS), None)
        if handler is None:  # pragma: no cover - every node type has one
            ok = call.err(f"unknown command: {node.keyword}")
        else:
            try:
                ok = handler(self, node, call)
            except PluginError as exc:
                ok = call.err(str(exc))
        reply.ok = bool(ok)
        reply.error_column = call.error_column
        return reply

    def load_config_text(self, text: str, *, file: str = "<config>",
                         out: Callable[[str], None] | None = None,
                         ctx: CommandContext | None = None) -> bool:
        """Run a config file as Perl does: quietly, stopping at the first failure.

        With ``keep_going`` set (perlbal check) every line runs, and
        ``observer`` sees each node with its reply, included files too.
        """
        ctx = ctx if ctx is not None else CommandContext(verbose=False)
        all_ok = True
        for number, raw in enumerate(text.splitlines(), start=1):
            node = self.parser.parse_line(raw, file=file, line=number)
            reply = self.execute(node, ctx)
            if self.observer is not None:
                self.observer(node, reply)
            if out is not None:
                for ln in reply.lines:
                    out(ln)
            if not reply.ok:
                all_ok = False
                if not self.keep_going:
                    return False
        return all_ok

    def plugin_roles(self) -> set[str]:
        return self.plugins.roles_of_loaded(self.graph.plugins_loaded.values())

    # --- service parameter setting (Perl's Service::set) ----------------------

    def service_set(self, svc: Service, key: str, raw: str, call: Call) -> bool:
        graph = self.graph
        if key in ("nodefile", "balance_method"):
            return self._pool_set_via_service(svc, key, raw, call)
        param = self.plugins.service_param(key, graph.plugins_loaded.values())
        if param is None:
            param = REGISTRY.service.get(key)
        if param is not None:
            if not param.applies_to(svc.role):
                return call.err(f"The '{key}' option can only be set on a "
                                f"'{param.role_text}' service")
            try:
                value = param.coerce(raw, self.env, svc.name)
            except ParamError as exc:
                return call.err(str(exc))
            return self._apply(svc, param, value, call)
        if key == "plugins":
            return self._set_plugins(svc, raw, call)
        if key.startswith("extra.") and len(key) > len("extra."):
            svc.extra.setdefault("extra_config", {})[key[len("extra."):]] = raw
            return call.ok()
        if "." in key:
            plugin_name, _, sub = key.rpartition(".")
            handled = self.plugins.plugin_setter(self, svc, plugin_name, sub, raw, call)
            if handled is not None:
                return handled
        return call.err(f"Unknown service parameter '{key}'")

    def _apply(self, svc: Service, param: Param, value: ParamValue, call: Call) -> bool:
        effect = param.effect
        if effect is Effect.INIT_ROLE:
            assert isinstance(value, str)
            svc.role = value
            svc.params["role"] = value
            refused = self._init_role(svc)
            if refused is not None:  # a DEFAULT this role cannot take: Perl's init dies
                return call.err(refused)
            return call.ok()
        if effect is Effect.REBIND:
            old = svc.listen
            if svc.enabled and value != (old or ""):
                self.effects.stop_listener(svc)
                svc.params["listen"] = value
                reason = self.effects.start_listener(svc)
                if reason is not None:
                    svc.enabled = False
                    return call.err(f"Can't start service '{svc.name}' on {value}: {reason}")
            svc.params["listen"] = value
            return call.ok()
        if effect is Effect.POOL_REF:
            assert isinstance(value, str)
            old_pool = self.graph.pools.get(svc.pool_name or "")
            if old_pool is not None:
                old_pool.use_count -= 1
            self.graph.pools[value].use_count += 1
            svc.params["pool"] = value
            svc.generation += 1
            return call.ok()
        if effect is Effect.NOT_STORED:
            svc.extra["reproxy_cache_maxsize"] = value
            return call.ok()
        if effect is Effect.SET_BOTH_TIMEOUTS:
            svc.params["persist_client_idle_timeout"] = value
            svc.params["idle_timeout"] = value
            return call.ok()
        svc.params[param.name] = value
        if effect is Effect.SPAWN_BACKENDS and svc.enabled:
            self.effects.spawn_backends(svc)
        return call.ok()

    #: per role, the plan of its defaults (see _init_role); shared by interpreters,
    #: as what is cached in it depends on the parameter and its text alone
    _role_plans: ClassVar[dict[tuple[str, tuple[tuple[str, str], ...]], _RolePlan]] = {}

    def _init_role(self, svc: Service) -> str | None:
        """Perl's Service::init: every applicable parameter back to its default.

        A value set by ``DEFAULT`` that this parameter refuses is skipped and its
        error returned (the first), for ``SET role`` to answer, as Perl refuses the
        line whose init applied it; the registry's own defaults never refuse.

        Coercing every default at every ``SET role`` was a third of checking a large
        config, so the first time a role is set (with these plugins loaded and these
        DEFAULTs) the defaults are coerced through a probe that sees whether the
        coercion asked ``self.env`` anything: those whose value depends on their
        text alone are kept (lists copied for each service); the others (a pool, a
        directory, a file) are coerced again each time, in the same order as ever.
        """
        params = list(REGISTRY.service.values())
        params += self.plugins.loaded_params(self.graph.plugins_loaded.values())
        key = (svc.role or "", tuple(self.graph.defaults.items()))
        plan = self._role_plans.get(key)
        quiet = Call(ast.construct(ast.Blank), CommandContext(verbose=False))
        refused: str | None = None
        if plan is not None and plan.params_are(params):
            for op in plan.ops:
                if isinstance(op, dict):
                    svc.params.update(op)
                    continue
                param, text, kept = op
                value: ParamValue
                if kept is _Recoerce:
                    try:
                        value = param.coerce(text, self.env, svc.name)
                    except ParamError as exc:
                        refused = refused or self._bad_default(param, text, exc)
                        continue
                else:
                    value = list(kept) if isinstance(kept, list) else cast(ParamValue, kept)
                if param.effect is Effect.NONE:
                    svc.params[param.name] = value  # all that _apply does for these
                else:
                    self._apply(svc, param, value, quiet)
            return refused
        plan = _RolePlan(params)
        for param in params:
            if param.roles != "*" and (svc.role or "") not in param.roles:
                continue
            raw = self.graph.defaults.get(param.name, param.default)
            if raw is None:
                continue
            probe = _EnvProbe(self.env)
            # a plugin's own coerce may read anything: never kept
            pure = type(param).coerce is Param.coerce
            try:
                value = param.coerce(raw, cast(CheckEnv, probe), svc.name)
            except ParamError as exc:
                bad = self._bad_default(param, raw, exc)
                refused = refused or bad
                if probe.asked or not pure or bad is not None:
                    plan.steps.append((param, raw, _Recoerce))
                continue
            pure = pure and not probe.asked
            plan.steps.append((param, raw, (list(value) if isinstance(value, list) else value)
                               if pure else _Recoerce))
            self._apply(svc, param, value, quiet)
        plan.compile()
        if len(self._role_plans) >= 64:
            self._role_plans.clear()
        self._role_plans[key] = plan
        return refused

    def _bad_default(self, param: Param, raw: str, exc: ParamError) -> str | None:
        """The error of a ``DEFAULT`` value ``param`` refused (None: not a DEFAULT's)."""
        if self.graph.defaults.get(param.name) != raw:
            return None
        return f"{exc} (from DEFAULT {param.name} = {raw})"

    def _pool_set_via_service(self, svc: Service, key: str, raw: str, call: Call) -> bool:
        # Perl passes pool-only parameters through, vivifying NAME_pool if allowed
        graph = self.graph
        if svc.pool_name is None:
            if not graph.vivify_pools:
                return call.err(
                    f"ERROR: Attempt to vivify pool {svc.name}_pool but one or more pools\n"
                    f"       have already been created manually.  Please set {key} on a\n"
                    "       previously created pool.")
            pool_name = f"{svc.name}_pool"
            create = Call(ast.Create(kind="pool", name=pool_name), CommandContext())
            create_pool(self, pool_name, create)
            call.lines.extend(create.lines)
            if svc.role == "reverse_proxy" and pool_name in graph.pools:
                self._apply(svc, REGISTRY.service["pool"], pool_name,
                            Call(ast.Blank(), CommandContext()))
            graph.vivify_pools = True
        if graph.vivify_pools:
            call.warnings.append(
                f"'{key}' set on service {svc.name} on auto-vivified pool; this is obsolete "
                "in Perl Perlbal too: set it on a pool object instead")
        pool = graph.pools.get(svc.pool_name or "")
        if pool is None:
            return call.err("No pool defined for service")
        return self.pool_set(pool, key, raw, call)

    def pool_set(self, pool: Pool, key: str, raw: str, call: Call) -> bool:
        param = REGISTRY.pool.get(key)
        if param is None:
            # Perl's Pool::set answers nothing at all for other keys and fails
            return False
        try:
            value = param.coerce(raw, self.env, pool.name)
        except ParamError as exc:
            return call.err(str(exc))
        if key == "balance_method":
            assert isinstance(value, str)
            pool.balance_method = value
            return call.ok()
        if key != "nodefile":  # beyond Perl: hash_key, health checks, max_fails...
            pool.params[key] = value
            pool.generation += 1
            return call.ok()
        if value is None:
            pool.nodefile = None
            pool.nodefile_mtime = 0.0
            return call.ok()
        assert isinstance(value, str)
        error, warnings = nodefile.set_file(pool, value)
        call.warnings.extend(warnings)
        if error is not None:  # (a device, a FIFO, a file over the cap: #24 item 8)
            return call.err(error, call.node.column + max(call.node.orig.rfind(value), 0))
        return call.ok()

    def _set_plugins(self, svc: Service, raw: str, call: Call) -> bool:
        for name in list(svc.plugin_order):
            self.plugins.get(name).unregister(self, svc)
        svc.plugin_order = []
        seen: set[str] = set()
        import re

        for word in re.split(r"[\s,]+", raw):
            if not word or word == "none":
                continue
            # (plugin_case holds every LOADed name, the loaded ones included)
            proper = self.graph.plugin_case.get(word.lower(), word.lower())
            if proper in seen:
                continue
            if proper not in self.graph.plugins_loaded.values():
                call.err(f"Plugin {proper} not loaded; not registered for {svc.name}.")
                continue
            self.plugins.get(proper).register(self, svc)
            seen.add(proper)
            svc.plugin_order.append(proper)
        return call.ok()
