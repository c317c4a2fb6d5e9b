"""Small pieces shared by the stock plugins' configuration code.

- ``context_service``: the service a context-bound command (ACCESS, REDIRECT,
  PERLHANDLER, throttle reload) acts on, with Perl's error texts;
- ``selector_rule``: the grammar of VHOST and VPATH, which share Perl's regex;
- ``EnumParam`` / ``PatternParam``: plugin tunables with Perl's ``check_type``
  of ``[enum => [...]]`` and ``[regexp => qr/.../, message]``, which the core
  parameter kinds do not express.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from perlbal.graph import Service
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


# Perl's \w on the bytes of a config line: ASCII only
PERL_WORD = "[0-9A-Za-z_]"


def selector_rule(keyword: str) -> tuple[str, str]:
    """Lark rule and terminals for ``<keyword> [<service>] <pattern> = <service>``.

    Perl (Vhosts.pm, Vpaths.pm): ``^<kw>\\s+(?:(\\w+)\\s+)?(\\S+)\\s*=\\s*(\\w+)$``.
    The pattern may itself hold '=' (``vpath ^/a=b = svc``), so which word is what
    is Perl's backtracking: the optional service is taken when the rest still
    matches, and the pattern is the longest that leaves `` = <word>`` at the end.
    Each terminal's lookahead checks exactly that; the line is normalised, so
    ``\\s+`` is one space.
    """
    up = keyword.upper()
    tail = f" ?= ?{PERL_WORD}+\\Z"
    rule = f'"{keyword}" [{up}_SERVICE] {up}_PATTERN "=" {up}_TARGET'
    terminals = (f"{up}_SERVICE.2: /(?<= ){PERL_WORD}+(?= \\S+{tail})/\n"
                 f"{up}_PATTERN: /(?<= )\\S+(?={tail})/\n"
                 f"{up}_TARGET: /{PERL_WORD}+/\n")
    return rule, terminals


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
