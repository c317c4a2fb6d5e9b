"""Cgilike: answer requests with an in-process function.

Config:
  ``PERLREQUIRE = <module>``            import a Python module (dotted name)
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
