"""Vhosts: name-based virtual hosts for a ``selector`` service.

Config: ``VHOST [<selector>] <host_or_pattern> = <service>``; patterns are an
exact host, ``*.example.com`` (any subdomain), or ``*`` (the default).  The
routing itself is in ``perlbal.routing`` so that ``explain`` and the server
share it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.plugins import Plugin, PluginError

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

_HOST_RE = re.compile(r"[\w\-_.*;:]+")


class Vhosts(Plugin):
    name = "Vhosts"
    commands = (
        SyntaxExtension(
            keyword="vhost",
            plugin="Vhosts",
            # Perl: vhost\s+(?:(\w+)\s+)?(\S+)\s*=\s*(\w+)
            rule='"vhost" VHOST_ARG [VHOST_ARG] "=" WORD',
            terminals="VHOST_ARG: /[^\\s=]+/",
            usage="usage: VHOST [<service>] <host_or_pattern> = <dest_service>",
        ),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        first, second, target = node.args
        assert first is not None and target is not None
        if second is None:
            selname, host = None, first
        else:
            if not re.fullmatch(r"\w+", first):
                return call.err(self.commands[0].usage or "")
            selname, host = first, second
        selname = selname or call.ctx.last_created
        if not selname:
            return call.err("omitted service name not implied from context")
        svc = it.graph.services.get(selname)
        if svc is None or svc.role != "selector":
            return call.err(f"Service '{selname}' is not a selector service")
        host = host.lower()
        if not _HOST_RE.fullmatch(host):
            return call.err(f"invalid host pattern: '{host}'")
        svc.extra.setdefault("vhosts", {})[host] = target
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
