"""Vpaths: a ``selector`` service that picks its target service by URL path.

Config: ``VPATH [<selector>] <path_regex> = <service>``.  The rules are kept in
``svc.extra["vpaths"]`` as ``[regex, target]`` pairs in the order given.  As in
Perl, everything before ``=`` is lower-cased by the console, so the regex is
lower-case.

Runtime (in the router, perlbal.routing): for a request on the selector, the first
rule whose regex matches the request URI (``re.search`` on the whole
request-URI, query string included: Perl's ``$uri =~ /$regex/``) hands the
client to the named service (404 "Not Found (<name> not a defined service)"
when it does not exist); no match leaves the request unhandled.  Vhosts and Vpaths both replace the selector's
selection function, so only the last registered one acts, as in Perl.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin, PluginError
from perlbal.plugins._common import selector_rule

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

USAGE = "usage: VPATH [<service>] <path regex> = <dest_service>"


class Vpath(ast.PluginCommand):
    """``VPATH [<service>] <pattern> = <target>``: requests on selector ``service``
    (the context's when absent) whose URI matches ``pattern`` go to ``target``."""

    service: str | None = None
    pattern: str
    target: str


def _build(args: PluginArgs) -> Vpath:
    return args.build(Vpath, service=args.get("VPATH_SERVICE"),
                      pattern=args.get("VPATH_PATTERN"), target=args.get("VPATH_TARGET"))


_RULE, _TERMINALS = selector_rule("vpath")


class Vpaths(Plugin):
    name = "Vpaths"
    commands = (
        SyntaxExtension(keyword="vpath", plugin="Vpaths", rule=_RULE, terminals=_TERMINALS,
                        usage=USAGE, build=_build),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        assert isinstance(node, Vpath)
        selname = node.service or call.ctx.last_created
        if not selname:
            return call.err("omitted service name not implied from context")
        svc = it.graph.services.get(selname)
        if svc is None or svc.role != "selector":
            return call.err(f"Service '{selname}' is not a selector service",
                            node.column_of("service"))
        try:
            re.compile(node.pattern)
        except re.error:
            return call.err(f"invalid regular expression: '{node.pattern}'",
                            node.column_of("pattern"))
        svc.extra.setdefault("vpaths", []).append([node.pattern, node.target])
        return call.ok()

    def register(self, it: "Interpreter", svc: Service) -> None:
        if svc.role != "selector":
            raise PluginError("You can't load the vpath plugin on a service not of role selector.")
        svc.extra["vpaths"] = []

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        # Perl only drops its selector function; the rules stay in extra_config.
        return None


PLUGIN = Vpaths()
