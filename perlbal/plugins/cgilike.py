"""Cgilike: answer requests with an in-process function.

Config:
  ``PERLREQUIRE = <module>``            import a Python module (dotted name); a
                                        dry run (check, lsp) only says where it is
  ``PERLHANDLER = <module>:<function>`` the handler of the context's service
Both keep Perl's names and the ``=`` (which is what preserves the case of
the value), and both print nothing on success, as in Perl.  Where Perl takes a
Perl package (``MyPackage``) and a sub (``MyPackage::handler``), ours takes a
Python module path and ``module:function`` (``module.function`` is accepted
too, the last dot separating the function).  PERLHANDLER is not resolved
until a request arrives, as in Perl.  The handler name is kept in
``svc.extra["cgilike_handler"]``.

Runtime, a start_http_request hook: the handler (a plain or ``async``
function) is called with a ``CgiRequest`` (``perlbal.plugins.cgirequest``);
returning HANDLED (0) ends the response it printed (head, then body, then the
connection closes, as in Perl), DECLINED (-2) lets the service handle the
request normally, POSTPONE_RESPONSE (-1) keeps the connection until something
calls ``end_response()`` (at most idle_timeout seconds), any other number is
sent as that HTTP status (Perl's ``send_response($n, $n)``).  No handler
configured: 500 "No perlhandler is configured for this service"; a handler
that cannot be found or raises: 500 "Error in handler: ...".
"""

from __future__ import annotations

import importlib
import sys
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.plugins._common import context_service

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.plugins.hooks import StartHttpRequest

DECLINED = -2
HANDLED = 0
POSTPONE_RESPONSE = -1

REQUIRE_USAGE = "usage: PERLREQUIRE=<module>"
HANDLER_USAGE = "usage: PERLHANDLER=<package::subroutine>"


class PerlRequire(ast.PluginCommand):
    """``PERLREQUIRE = <module>``: import a Python module (dotted name)."""

    module: str


class PerlHandler(ast.PluginCommand):
    """``PERLHANDLER = <module>:<function>``: the handler of the context's service."""

    handler: str


def _find_spec(fullname: str, path: list[str] | None) -> ModuleSpec | None:
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is not None:
            spec = find(fullname, path, None)
            if spec is not None:
                return spec  # type: ignore[no-any-return]
    return None


def module_origin(name: str) -> str:
    """Where ``import name`` would load ``name`` from, found without running any of it.

    ``importlib.util.find_spec("a.b")`` imports package ``a`` (runs its
    ``__init__``) to learn its ``__path__``.  Here each level is looked up with
    the import system's own finders (``sys.meta_path``) in the parent's
    ``submodule_search_locations``, so no module code runs.  Raises what the
    import would raise when it would not find the module, in Python's words.
    """
    if name.startswith("."):
        raise TypeError(f"the 'package' argument is required to perform a relative import "
                        f"for {name!r}")
    parts = name.split(".")
    path: list[str] | None = None
    spec: ModuleSpec | None = None
    for depth in range(1, len(parts) + 1):
        fullname = ".".join(parts[:depth])
        if not parts[depth - 1]:
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        loaded = sys.modules.get(fullname)
        spec = getattr(loaded, "__spec__", None) if loaded is not None else \
            _find_spec(fullname, path)
        if spec is None:
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        if depth < len(parts):
            locations = spec.submodule_search_locations
            if locations is None:
                raise ModuleNotFoundError(f"No module named '{name}'; '{fullname}' is not "
                                          "a package", name=name)
            path = list(locations)
    assert spec is not None
    if spec.origin in (None, "namespace"):
        where = ", ".join(spec.submodule_search_locations or [])
        return f"namespace package {name} ({where})"
    if spec.has_location:
        return f"{name} from {spec.origin}"
    return f"{name} ({spec.origin})"  # built-in, frozen


def _build_require(args: PluginArgs) -> PerlRequire:
    return args.build(PerlRequire, module=args.get("PERLREQUIRE_NAME"))


def _build_handler(args: PluginArgs) -> PerlHandler:
    return args.build(PerlHandler, handler=args.get("PERLHANDLER_NAME"))


# Perl: ^perlrequire\s*=\s*([\w:]+)$ and ^perlhandler\s*=\s*([\w:]+)$.  Ours also takes
# '.', the separator of Python module paths; any line Perl takes, we take.
_NAME = "/[0-9A-Za-z_:.]+/"
_MISSING = ("expected '=' and a module name", ("perlrequire foo", "perlhandler foo"))


class Cgilike(Plugin):
    name = "Cgilike"
    commands = (
        SyntaxExtension(keyword="perlrequire", plugin="Cgilike",
                        rule='"perlrequire" "=" PERLREQUIRE_NAME',
                        terminals=f"PERLREQUIRE_NAME: {_NAME}\n", usage=REQUIRE_USAGE,
                        build=_build_require, mistakes=(_MISSING,)),
        SyntaxExtension(keyword="perlhandler", plugin="Cgilike",
                        rule='"perlhandler" "=" PERLHANDLER_NAME',
                        terminals=f"PERLHANDLER_NAME: {_NAME}\n", usage=HANDLER_USAGE,
                        build=_build_handler, mistakes=(_MISSING,)),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        if isinstance(node, PerlRequire):
            try:
                if not it.owns_process:
                    # check, lsp, a reload's dry run: never run code a config names
                    # (#24 item 9); say where the server would import it from
                    call.notes.append(f"PERLREQUIRE = {node.module}: the server imports "
                                      f"{module_origin(node.module)} when it runs this line; "
                                      "a dry run does not run it")
                    return True
                importlib.import_module(node.module)
            except Exception as exc:  # any failure of the import is the user's to see
                return call.err(f"Failed to load {node.module}: {type(exc).__name__}: {exc}",
                                node.column_of("module"))
            return True
        assert isinstance(node, PerlHandler)
        svc = context_service(it, call)
        if isinstance(svc, str):
            return call.err(svc)
        svc.extra["cgilike_handler"] = node.handler
        return True

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        return None  # the handler name stays configured, as in Perl

    async def start_http_request(self, hook: "StartHttpRequest") -> bool:
        import inspect

        import anyio

        from perlbal.plugins.cgirequest import CgiRequest, find_handler

        ctx = hook.ctx
        name = ctx.service.extra.get("cgilike_handler")
        if not isinstance(name, str):
            await ctx.send_simple(500, "No perlhandler is configured for this service")
            return True
        request = CgiRequest(ctx)
        try:
            result = find_handler(name)(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # the handler's failure is the client's 500, as in Perl
            await ctx.send_simple(500, f"Error in handler: {type(exc).__name__}: {exc}",
                                  keep_alive=False)
            return True
        code = int(result) if isinstance(result, int) else HANDLED
        if code == DECLINED:
            return False
        if code == POSTPONE_RESPONSE:
            timeout = ctx.service.tunables.idle_timeout
            with anyio.move_on_after(timeout if timeout > 0 else 30):
                await request.ended.wait()
            await request.flush()
            ctx.last_keep_alive = False
            return True
        if code != HANDLED:
            await ctx.send_simple(code, str(code))
            return True
        request.end_response()
        await request.flush()
        ctx.last_keep_alive = False  # no Content-Length: the end of the body is the close
        return True


PLUGIN = Cgilike()
