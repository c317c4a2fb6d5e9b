"""Highpri: mark some proxied requests high priority by URI or Host pattern.

Config, on a service the plugin is registered on:
  ``SET <svc>.highpri.uri_pattern = <regex>``   (default
  ``^(?:/interface/(?:xmlrpc|flat)|/login\\.bml)$``)
  ``SET <svc>.highpri.host_pattern = <regex>``  (default none)
``undef``, ``none`` or ``null`` switch a pattern off.  As in Perl a successful
setter prints nothing (no OK), a bad regex answers "Invalid regular expression",
and the console command ``PATTERNS`` (any arguments) lists every service the
plugin was ever registered on since LOAD, as SET lines.
State: ``svc.extra["highpri_uri_check_str"]`` / ``["highpri_host_check_str"]``
hold the texts (Perl's names), ``"undef"`` meaning none.

Runtime, the make_high_priority hook of reverse proxies: a request whose
request-URI matches uri_pattern (``re.search``, Perl's ``=~``) or whose Host
matches host_pattern goes to the high-priority queue (and Stats counts it in
proxy_requests_highpri).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.plugins.hooks import MakeHighPriority

DEFAULT_URI_PATTERN = r"^(?:/interface/(?:xmlrpc|flat)|/login\.bml)$"


class Highpri(Plugin):
    name = "Highpri"
    commands = (
        SyntaxExtension(
            keyword="patterns",
            plugin="Highpri",
            # Perl's hook never parses its line: anything after PATTERNS is ignored
            rule='"patterns" [PATTERNS_REST]',
            terminals="PATTERNS_REST: /[^ ].*/",
        ),
    )

    def __init__(self) -> None:
        # Perl's %Services: every service registered since LOAD (never pruned
        # by unregister, emptied by unload)
        self._services: dict[int, list[str]] = {}

    def load(self, it: "Interpreter") -> None:
        self._services.setdefault(id(it), [])

    def unload(self, it: "Interpreter") -> None:
        self._services.pop(id(it), None)

    def register(self, it: "Interpreter", svc: Service) -> None:
        svc.extra["highpri_uri_check_str"] = DEFAULT_URI_PATTERN
        svc.extra["highpri_host_check_str"] = "undef"
        names = self._services.setdefault(id(it), [])
        if svc.name not in names:
            names.append(svc.name)

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        call.out("High priority pattern buffer:")
        for name in self._services.get(id(it), []):
            svc = it.graph.services.get(name)
            if svc is None:
                continue
            call.out(f"SET {name}.highpri.uri_pattern = {svc.extra.get('highpri_uri_check_str')}",
                     f"SET {name}.highpri.host_pattern = "
                     f"{svc.extra.get('highpri_host_check_str')}")
        return call.end()

    def setter(self, it: "Interpreter", svc: Service, key: str, value: str,
               call: "Call") -> bool | None:
        if key not in ("uri_pattern", "host_pattern"):
            return None
        if not value or value == "0":  # Perl: return 0 unless $what && $val
            return False
        if value not in ("undef", "none", "null"):
            try:
                re.compile(value)
            except re.error:
                return call.err("Invalid regular expression")
        field = "highpri_uri_check_str" if key == "uri_pattern" else "highpri_host_check_str"
        svc.extra[field] = value
        return True  # Perl's setter prints nothing on success

    def make_high_priority(self, hook: "MakeHighPriority") -> bool:
        extra, head = hook.ctx.service.extra, hook.ctx.head
        uri_check = _pattern(extra.get("highpri_uri_check_str"))
        if uri_check and re.search(uri_check, head.target):
            return True
        host_check = _pattern(extra.get("highpri_host_check_str"))
        host = head.get("Host")
        return bool(host_check and host and re.search(host_check, host))


def _pattern(value: object) -> str | None:
    return value if isinstance(value, str) and value not in ("undef", "none", "null") else None


PLUGIN = Highpri()
