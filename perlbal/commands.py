"""The command handlers: one function per AST node type, Perl's MANAGE_* subs.

Each handler gets the interpreter, the node and a ``Call`` to answer through
(``out``/``ok``/``err``/``end``, exactly as Perl's ManageCommand), and returns
whether the command succeeded.  ``HANDLERS`` maps node types to handlers; the
interpreter (interp.py) dispatches through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from perlbal import queries
from perlbal.graph import Pool, Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PERL_HELP
from perlbal.params import parse_sni_certs

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

Handler = Callable[["Interpreter", ast.Node, "Call"], bool]




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


def create_pool(it: Interpreter, name: str, call: Call) -> bool:
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
        return create_pool(it, node.name, call)
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


def ssl_enable_error(svc: Service, is_file: Callable[[str], bool]) -> str | None:
    """Service.pm enable with enable_ssl: the files must exist (key first, Perl's words)."""
    key, cert = svc.tunables.ssl_key_file, svc.tunables.ssl_cert_file
    if not is_file(key):
        return f"SSL key file ({key}) doesn't exist"
    if not is_file(cert):
        return f"SSL cert file ({cert}) doesn't exist"
    for _host, sni_cert, sni_key in parse_sni_certs(svc.tunables.ssl_sni_certs):
        if sni_key is not None and not is_file(sni_key):
            return f"SSL key file ({sni_key}) doesn't exist"
        if not is_file(sni_cert):
            return f"SSL cert file ({sni_cert}) doesn't exist"
    return None


def _h_enable(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.Enable)
    svc = it.graph.services.get(node.service)
    if svc is None:
        return call.err(f"service '{node.service}' does not exist")
    if node.verb == "enable":
        if svc.enabled:
            return call.err(f"service {svc.name} is already enabled")
        if svc.listen is not None and svc.tunables.enable_ssl:
            missing = ssl_enable_error(svc, it.env.is_file)
            if missing is not None and it.owns_process:
                return call.err(missing)
            if missing is not None:
                # a dry run: the certificate may be installed on the target host only
                call.warnings.append(f"{missing} here: the server would refuse ENABLE "
                                     f"{svc.name} without it")
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
    found = it.plugins.find_first((typed, typed.lower(), typed[:1].upper() + typed[1:].lower()))
    if found is not None:
        candidate, plugin = found
        plugin.load(it)
        it.graph.plugins_loaded[typed.lower()] = candidate
        it.graph.plugin_case[typed.lower()] = candidate
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
    # Perl looks the name up in %PluginCase, which UNLOAD leaves alone
    proper = it.graph.plugin_case.get(node.name.lower())
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
            if not it.xs_enabled[node.module]:  # as Perl's disable(): only an enabled one
                return call.err("Unable to disable module.")
            it.xs_enabled[node.module] = False
            return call.out("Module disabled.")
        return call.err("Usage: xs [ <enable|disable> <module> ]")
    call.out("XS module status:")  # Perl: no blank line before the modules, one after
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
        lines = console_explain(it.graph, node.orig, it.effects.stats().pool_view)
    except ValueError as exc:
        return call.err(f"{exc} (usage: EXPLAIN [<METHOD>] <url> [options])")
    call.out(*lines)
    return call.end()


def _h_perl_only(it: Interpreter, node: ast.Node, call: Call) -> bool:
    if node.keyword == "state" and node.text.lower().split() != ["state", "changes"]:
        return call.err("Invalid syntax to 'state' command")  # Perl's only form: state changes
    return queries.perl_only(node.keyword, call)


def _h_plugin_command(it: Interpreter, node: ast.Node, call: Call) -> bool:
    assert isinstance(node, ast.PluginCommand)
    if node.plugin not in it.graph.plugins_loaded.values():
        return call.err(f"unknown command: {node.keyword}")
    return it.plugins.get(node.plugin).command(it, node, call)


HANDLERS: dict[type, Handler] = {
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
