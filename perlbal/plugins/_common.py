"""Small pieces shared by the stock plugins' configuration code.

- ``context_service``: the service a context-bound command (ACCESS, REDIRECT,
  PERLHANDLER, throttle reload) acts on, with Perl's error texts;
- ``perl_match``: re-check a parsed line against the Perl plugin's own regex,
  so that a line our grammar tokenises differently is refused exactly as Perl
  refuses it (with the plugin's usage text);
- ``EnumParam`` / ``PatternParam``: plugin tunables with Perl's ``check_type``
  of ``[enum => [...]]`` and ``[regexp => qr/.../, message]``, which the core
  parameter kinds do not express.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.params import CheckEnv, Param, ParamError, ParamValue

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

NO_CONTEXT = "No service name in context from CREATE SERVICE <name> or USE <service_name>"


def context_service(it: "Interpreter", call: "Call",
                    missing: str = NO_CONTEXT) -> Service | str:
    """The service named by the context, or the error text to reply with."""
    name = call.ctx.last_created
    if not name:
        return missing
    svc = it.graph.services.get(name)
    if svc is None:
        return f"Non-existent service '{name}'"
    return svc


def perl_match(pattern: str, node: ast.PluginCommand,
               flags: int = 0) -> re.Match[str] | None:
    """Perl's ``$mc->parse(qr/.../)`` on the normalised line."""
    return re.fullmatch(pattern, node.text, flags)


@dataclass(frozen=True)
class EnumParam(Param):
    """A tunable whose value must be one of ``choices`` (Perl: check_type enum)."""

    def coerce(self, raw: str, env: CheckEnv, owner: str = "") -> ParamValue:
        if raw not in self.choices:
            raise ParamError(f"Value of '{self.name}' must be one of: " + ", ".join(self.choices))
        return raw


@dataclass(frozen=True)
class PatternParam(Param):
    """A tunable checked against a regex with a fixed message (Perl: check_type regexp).

    Perl's check is an unanchored ``$val =~ /$re/``: ``pattern`` is used with
    ``re.search``, so anchor it as the Perl regex does."""

    pattern: str = ""
    message: str = ""

    def coerce(self, raw: str, env: CheckEnv, owner: str = "") -> ParamValue:
        if not re.search(self.pattern, raw):
            raise ParamError(self.message)
        return raw
