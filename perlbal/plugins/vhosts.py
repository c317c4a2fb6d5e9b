"""Vhosts: name-based virtual hosts for a ``selector`` service.

Config: ``VHOST [<selector>] <host_or_pattern> = <service>``; patterns are an
exact host, ``*.example.com`` (any subdomain), or ``*`` (the default).  The
routing itself is in ``perlbal.routing`` so that ``explain`` and the server
share it.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin, PluginError
from perlbal.plugins._common import selector_rule

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

# Perl checks the host apart, after parsing: /^[\w\-\_\.\*\;\:]+$/
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + "_-.*;:")


class VhostRule(ast.PluginCommand):
    """``VHOST [<service>] <host> = <target>``: requests on selector ``service``
    (the context's when absent) for ``host`` (or a ``*.`` pattern) go to ``target``."""

    service: str | None = None
    host: str
    target: str


def _build(args: PluginArgs) -> VhostRule:
    return args.build(VhostRule, service=args.get("VHOST_SERVICE"),
                      host=args.get("VHOST_PATTERN"), target=args.get("VHOST_TARGET"))


_RULE, _TERMINALS = selector_rule("vhost")


class Vhosts(Plugin):
    name = "Vhosts"
    commands = (
        SyntaxExtension(keyword="vhost", plugin="Vhosts", rule=_RULE, terminals=_TERMINALS,
                        usage="usage: VHOST [<service>] <host_or_pattern> = <dest_service>",
                        build=_build),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        assert isinstance(node, VhostRule)
        selname = node.service or call.ctx.last_created
        if not selname:
            return call.err("omitted service name not implied from context")
        svc = it.graph.services.get(selname)
        if svc is None or svc.role != "selector":
            return call.err(f"Service '{selname}' is not a selector service",
                            node.column_of("service"))
        host = node.host.lower()
        if not set(host) <= _HOST_CHARS:
            return call.err(f"invalid host pattern: '{host}'", node.column_of("host"))
        svc.extra.setdefault("vhosts", {})[host] = node.target
        return call.ok()

    def register(self, it: "Interpreter", svc: Service) -> None:
        if svc.role != "selector":
            raise PluginError("You can't load the vhost plugin on a service not of role selector.")
        svc.extra["vhosts"] = {}

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        svc.extra.pop("vhosts", None)

    def dumpconfig(self, it: "Interpreter", svc: Service) -> list[str] | None:
        vhosts: dict[str, str] = svc.extra.get("vhosts", {})
        return [f"VHOST {host} = {target}" for host, target in vhosts.items()]


PLUGIN = Vhosts()
