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

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

from perlbal import PERL_COMPAT_VERSION
from perlbal import queries
from perlbal.graph import Graph, Pool, Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PERL_HELP, Parser
from perlbal.params import REGISTRY, CheckEnv, Effect, Param, ParamError, ParamValue
from perlbal.plugins import PluginError, PluginRegistry, default_plugin_registry

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


class Effects(Protocol):
    """What the interpreter asks of the runtime (or of a dry run)."""

    def start_listener(self, svc: Service) -> str | None:
        """Open ``svc``'s listener; return Perl's error reason on failure."""

    def stop_listener(self, svc: Service) -> None: ...

    def spawn_backends(self, svc: Service) -> None: ...

    def shutdown(self, graceful: bool, timeout: int | None) -> None: ...

    def stats(self) -> queries.LiveStats: ...


class DryEffects:
    """Effects for check/explain: nothing is bound; address clashes are found."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}  # normalised listen address -> service
        self.shutdown_requested = False
        self._stats = queries.LiveStats()

    def start_listener(self, svc: Service) -> str | None:
        listen = svc.listen
        if listen is None:
            return None
        key = listen if ":" in listen else f"0.0.0.0:{listen}"
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

    def out(self, *lines: str) -> bool:
        self.lines.extend(lines)
        return True

    def ok(self) -> bool:
        if self.ctx.verbose:
            self.lines.append("OK")
        return True

    def err(self, message: str) -> bool:
        self.lines.append("ERROR: " + message.rstrip("\n"))
        return False

    def end(self) -> bool:
        self.lines.append(".")
        return True


Handler = Callable[["Interpreter", ast.Node, Call], bool]


class Interpreter:
    def __init__(self, graph: Graph | None = None, *, effects: Effects | None = None,
                 plugins: PluginRegistry | None = None, base_dir: str | None = None) -> None:
        self.graph = graph if graph is not None else Graph()
        if not self.graph.mime:
            self.graph.mime.update(DEFAULT_MIME)
        self.effects: Effects = effects if effects is not None else DryEffects()
        self.plugins = plugins if plugins is not None else default_plugin_registry()
        self.parser = Parser(self.plugins.syntax_extensions())
        self.env: CheckEnv = DiskEnv(self, base_dir)
        self.start_time = int(time.time())
        self.run_started = False
        # process-wide settings (rlimits, nice) are applied only by a real server,
        # never by check/explain/tests running the interpreter dry
        self.owns_process = not isinstance(self.effects, DryEffects)
        self.xs_enabled = {"headers": False}
        # perlbal check: run every line, and watch each one with its reply
        self.keep_going = False
        self.observer: Callable[[ast.Node, Reply], None] | None = None

    # --- entry points ---------------------------------------------------------

    def run_line(self, raw: str, ctx: CommandContext, *, file: str = "<console>",
                 line: int = 1) -> list[str]:
        return self.run(raw, ctx, file=file, line=line).lines

    def run(self, raw: str, ctx: CommandContext, *, file: str = "<console>",
            line: int = 1) -> Reply:
        node = self.parser.parse_line(raw, file=file, line=line)
        return self.execute(node, ctx)

    def execute(self, node: ast.Node, ctx: CommandContext) -> Reply:
        call = Call(node, ctx)
        reply = Reply(False, call.lines, call.warnings)
        handler = _HANDLERS.get(type(node))
        if handler is None:  # pragma: no cover - every node type has one
            ok = call.err(f"unknown command: {node.keyword}")
        else:
            try:
                ok = handler(self, node, call)
            except PluginError as exc:
                ok = call.err(str(exc))
        reply.ok = bool(ok)
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
            self._init_role(svc)
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

    def _init_role(self, svc: Service) -> None:
        """Perl's Service::init: every applicable parameter back to its default."""
        quiet = Call(ast.Blank(), CommandContext(verbose=False))
        params = list(REGISTRY.service.values())
        params += self.plugins.loaded_params(self.graph.plugins_loaded.values())
        for param in params:
            if param.roles != "*" and (svc.role or "") not in param.roles:
                continue
            raw = self.graph.defaults.get(param.name, param.default)
            if raw is None:
                continue
            try:
                value = param.coerce(raw, self.env, svc.name)
            except ParamError:
                continue
            self._apply(svc, param, value, quiet)

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
            _h_create_pool(self, pool_name, create)
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
        if value is None:
            pool.nodefile = None
            pool.nodefile_mtime = 0.0
            return call.ok()
        assert isinstance(value, str)
        pool.nodefile = value
        pool.nodefile_mtime = 0.0
        queries.load_nodefile(pool, self.env)
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
            proper = self.graph.plugins_loaded.get(word.lower(), word.lower())
            if proper in seen:
                continue
            if proper not in self.graph.plugins_loaded.values():
                call.err(f"Plugin {proper} not loaded; not registered for {svc.name}.")
                continue
            self.plugins.get(proper).register(self, svc)
            seen.add(proper)
            svc.plugin_order.append(proper)
        return call.ok()


# --- handlers, one per node type --------------------------------------------------


def _h_blank(it: Interpreter, node: ast.Node, call: Call) -> bool:
    return True


def _h_invalid(it: Interpreter, node: ast.Node, call: Call) -> bool:
    return call.err("invalid command")


def _h_unknown(it: Interpreter, node: ast.Node, call: Call) -> bool:
    return call.err(f"unknown command: {node.keyword}")


def _h_syntax(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.SyntaxFailure)
    owner = it.plugins.command_owner(node.keyword)
    if owner is not None and owner not in it.graph.plugins_loaded.values():
        return call.err(f"unknown command: {node.keyword}")
    return call.err(node.usage)


def _h_create_pool(it: Interpreter, name: str, call: Call) -> bool:
    graph = it.graph
    if name in graph.pools:
        return call.err(f"pool '{name}' already exists")
    if name in graph.services:
        return call.err(f"service '{name}' already exists")
    graph.vivify_pools = False
    graph.pools[name] = Pool(name)
    call.ctx.last_created = name
    return call.ok()


def _h_create(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Create)
    graph = it.graph
    if node.kind == "pool":
        return _h_create_pool(it, node.name, call)
    if node.name in graph.services:
        return call.err(f"service '{node.name}' already exists")
    if node.name in graph.pools:
        return call.err(f"pool '{node.name}' already exists")
    graph.services[node.name] = Service(node.name)
    call.ctx.last_created = node.name
    return call.ok()


def _h_use(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Use)
    if node.name not in it.graph.pools and node.name not in it.graph.services:
        return call.err(f"Non-existent pool or service '{node.name}'")
    call.ctx.last_created = node.name
    return call.ok()


def _h_pool(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.PoolEdit)
    verb, name = node.word1, node.word2
    if name in ("add", "remove"):
        verb, name = name, verb
    if verb not in ("add", "remove"):
        return call.err("Invalid command:  must be 'add' or 'remove'")
    pool = it.graph.pools.get(name)
    if pool is None:
        return call.err(f"Pool '{name}' not found")
    port = node.port or 80
    if verb == "add":
        pool.add(node.ip, port)
    else:
        pool.remove(node.ip, port)
    return call.ok()


def _h_set(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Set)
    name = node.target or call.ctx.last_created
    if not name:
        return call.err("omitted service/pool name not implied from context")
    svc = it.graph.services.get(name)
    if svc is not None:
        return it.service_set(svc, node.key, node.value, call)
    pool = it.graph.pools.get(name)
    if pool is not None:
        return it.pool_set(pool, node.key, node.value, call)
    return call.err(f"service/pool '{name}' does not exist")


def _h_default(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Default)
    it.graph.defaults[node.key] = node.value
    return call.ok()


def _h_header(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Header)
    svc = it.graph.services.get(node.service)
    if svc is None:
        return call.err(f"service '{node.service}' does not exist")
    if not node.header:
        return call.err("no header provided")
    if node.action == "insert":
        if not node.value:
            return call.err("no value provided")
        svc.headers.insert.append((node.header, node.value))
    else:
        svc.headers.remove.append(node.header)
    return call.ok()


def _h_enable(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Enable)
    svc = it.graph.services.get(node.service)
    if svc is None:
        return call.err(f"service '{node.service}' does not exist")
    if node.verb == "enable":
        if svc.enabled:
            return call.err(f"service {svc.name} is already enabled")
        if svc.listen is not None or svc.role == "upload_tracker":
            reason = it.effects.start_listener(svc)
            if reason is not None:
                return call.err(f"Can't start service '{svc.name}' on {svc.listen}: {reason}")
        svc.enabled = True
        return call.ok()
    if not svc.enabled:
        return call.err(f"service {svc.name} is already disabled")
    if svc.role == "management":
        return call.err("can't disable management service")
    it.effects.stop_listener(svc)
    svc.enabled = False
    return call.ok()


def _h_load(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Load)
    typed = node.name
    for candidate in (typed, typed.lower(), typed[:1].upper() + typed[1:].lower()):
        plugin = it.plugins.find(candidate)
        if plugin is not None:
            plugin.load(it)
            it.graph.plugins_loaded[typed.lower()] = candidate
            return call.ok()
    return call.err(
        f"Can't locate Perlbal/Plugin/{typed}.pm in @INC (you may need to install the "
        f"Perlbal::Plugin::{typed} module) (no stock plugin or 'perlbal.plugins' entry "
        "point has that name)")


def _h_unload(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Unload)
    proper = it.graph.plugins_loaded.pop(node.name.lower(), None)
    if proper is not None:
        plugin = it.plugins.find(proper)
        if plugin is not None:
            plugin.unload(it)
    return call.ok()


def _h_reload(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Reload)
    proper = it.graph.plugins_loaded.get(node.name.lower())
    if proper is None:
        return call.err(f"Unknown/unloaded plugin '{node.name}'")
    return call.err(f"Plugin Perlbal::Plugin::{proper} doesn't support reloading")


def _h_verbose(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Verbose)
    call.ctx.verbose = node.on
    return call.ok()


def _h_shutdown(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Shutdown)
    it.effects.shutdown(node.graceful, node.timeout)
    if node.graceful:
        return call.ok()
    return True


def _h_mime(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Mime)
    mime = it.graph.mime
    if not node.sub or node.sub == "list":
        for key in sorted(mime):
            call.out(f"{key} {mime[key]}")
        return call.end()
    if node.sub == "set":
        if not node.arg1 or not node.arg2:
            return call.err("Usage: set <ext> <mime>")
        mime[node.arg1] = node.arg2
        return call.out(f"{node.arg1} set to {node.arg2}.")
    if node.sub == "remove":
        if node.arg1 is not None and mime.pop(node.arg1, None) is not None:
            return call.out(f"{node.arg1} removed.")
        return call.err(f"{node.arg1 or ''} not a defined extension.")
    return call.err("Usage: list, remove <ext>, set <ext> <mime>")


def _h_xs(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Xs)
    if node.sub:
        if node.module not in it.xs_enabled:
            return call.err("Known XS modules: " + ", ".join(sorted(it.xs_enabled)) + ".")
        if node.sub == "enable":
            it.xs_enabled[node.module] = True
            return call.ok()
        if node.sub == "disable":
            it.xs_enabled[node.module] = False
            return call.out("Module disabled.")
        return call.err("Usage: xs [ <enable|disable> <module> ]")
    call.out("XS module status:", "")
    for name in sorted(it.xs_enabled):
        state = "installed, enabled" if it.xs_enabled[name] else "installed, disabled"
        call.out(f"   {name}: {state}")
    call.out("", "To enable a module: xs enable <module>",
             "To disable a module: xs disable <module>")
    return call.end()


def _h_server(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Server)
    return queries.server_setting(it, node.key, node.value, call)


def _h_show(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Show)
    return queries.show(it, node, call)


def _h_query(it: Interpreter, node: ast.Node, call: Call) -> bool:
    if node.keyword == "help":
        for name in PERL_HELP:
            call.out(name)
        return call.end()
    if node.keyword in ("gladiator", "varsize", "track"):
        return queries.perl_only(node.keyword, call)
    return queries.query(it, node.keyword, call)


def _h_nodes(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Nodes)
    return queries.nodes(it, node, call)


def _h_socks(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Socks)
    return queries.socks(it, node.mode or "all", call)


def _h_states(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.States)
    return queries.states(it, node.service, call)


def _h_any_args(it: Interpreter, node: ast.Node, call: Call) -> bool:
    if node.keyword == "dumpconfig":
        return queries.dumpconfig(it, call)
    return queries.reproxy_state(it, call)


def _h_explain(it: Interpreter, node: ast.Node, call: Call) -> bool:
    """How the graph routes a request (perlbal.explain), on the live graph."""
    from perlbal.explain import console_explain

    if not node.text.strip().lower().startswith("explain "):
        return call.err("usage: EXPLAIN [<METHOD>] <url> [options]")
    # the URL and headers keep their case: Perl's normalisation lower-cases the line
    try:
        lines = console_explain(it.graph, node.orig)
    except ValueError as exc:
        return call.err(f"{exc} (usage: EXPLAIN [<METHOD>] <url> [options])")
    call.out(*lines)
    return call.end()


def _h_perl_only(it: Interpreter, node: ast.Node, call: Call) -> bool:
    return queries.perl_only(node.keyword, call)


def _h_plugin_command(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.PluginCommand)
    if node.plugin not in it.graph.plugins_loaded.values():
        return call.err(f"unknown command: {node.keyword}")
    return it.plugins.get(node.plugin).command(it, node, call)


_HANDLERS: dict[type, Handler] = {
    ast.Blank: _h_blank,
    ast.InvalidCommand: _h_invalid,
    ast.UnknownCommand: _h_unknown,
    ast.SyntaxFailure: _h_syntax,
    ast.Create: _h_create,
    ast.Use: _h_use,
    ast.PoolEdit: _h_pool,
    ast.Set: _h_set,
    ast.Default: _h_default,
    ast.Header: _h_header,
    ast.Enable: _h_enable,
    ast.Load: _h_load,
    ast.Unload: _h_unload,
    ast.Reload: _h_reload,
    ast.Verbose: _h_verbose,
    ast.Shutdown: _h_shutdown,
    ast.Mime: _h_mime,
    ast.Xs: _h_xs,
    ast.Server: _h_server,
    ast.Show: _h_show,
    ast.Query: _h_query,
    ast.Nodes: _h_nodes,
    ast.Socks: _h_socks,
    ast.States: _h_states,
    ast.AnyArgs: _h_any_args,
    ast.PerlOnly: _h_perl_only,
    ast.Explain: _h_explain,
    ast.PluginCommand: _h_plugin_command,
}


def iter_config_lines(text: str) -> Iterable[tuple[int, str]]:
    return enumerate(text.splitlines(), start=1)
