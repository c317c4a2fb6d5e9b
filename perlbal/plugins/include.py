"""Include: ``INCLUDE = <glob> [<glob> ...]`` runs other config files in place.

As Perl's Include.pm (which calls ``Perlbal::load_config`` for each file):
- the value is split on whitespace and each word globbed; the files run in
  sorted order; a glob matching nothing is fine (the command still says OK);
  a plain name (no wildcard) is used as is, so a missing one is an error;
- each file runs through the same interpreter as a config file: a fresh
  non-verbose context, stopping at the file's first failing line; that failure
  does not fail the INCLUDE (Perl prints it to stdout), so we report it as a
  warning of the command (``perlbal check`` shows it);
- a file that cannot be opened fails the INCLUDE with Perl's message.
Beyond Perl, an included file must be a regular file of at most 16 MiB
(``perlbal.safefile``): ``INCLUDE = /dev/stdin`` would have the language server
read its own input, ``/dev/zero`` would never end (#24 item 8).  Anything else
fails the INCLUDE the same way, saying what the path is.
Relative names resolve against the interpreter's base directory (the main
config file's) when it has one, else the working directory.

No runtime behaviour: this plugin is configuration only.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING

from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.safefile import read_text

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

USAGE = "usage: INCLUDE = <config files>"
_MAX_DEPTH = 32  # an INCLUDE loop would otherwise recurse forever


def _expand(pattern: str, base_dir: str | None) -> list[str]:
    full = pattern if os.path.isabs(pattern) or not base_dir else os.path.join(base_dir, pattern)
    full = os.path.expanduser(full)
    if not glob.has_magic(full):
        return [full]
    return sorted(glob.glob(full))


class IncludeFiles(ast.PluginCommand):
    """``INCLUDE = <glob> [<glob> ...]``: run these config files in place."""

    patterns: tuple[str, ...]


def _build(args: PluginArgs) -> IncludeFiles:
    return args.build(IncludeFiles, patterns=args.every("INCLUDE_GLOB"))


class Include(Plugin):
    name = "Include"
    commands = (
        SyntaxExtension(
            keyword="include",
            plugin="Include",
            # Perl: ^include\s+=\s+(.+)\s*$, then glob() splits (.+) on whitespace
            rule='"include" INCLUDE_EQUALS INCLUDE_GLOB+',
            terminals="INCLUDE_EQUALS: /(?<= )=/\nINCLUDE_GLOB: /(?<= )\\S+/\n",
            usage=USAGE,
            build=_build,
            mistakes=(("INCLUDE wants spaces on both sides of '='",
                       ("include=/x", "include =/x", "include /x")),),
        ),
    )

    def __init__(self) -> None:
        self._depth = 0

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        assert isinstance(node, IncludeFiles)
        if self._depth >= _MAX_DEPTH:
            return call.err("INCLUDE nested too deeply (an include loop?)")
        base_dir = getattr(it.env, "base_dir", None)
        for index, word in enumerate(node.patterns):
            for path in _expand(word, base_dir if isinstance(base_dir, str) else None):
                try:
                    text = read_text(path)
                except OSError as exc:
                    return call.err(f"Error opening config file ({path}): {exc.strerror}",
                                    node.column_of(f"patterns.{index}"))
                failures: list[str] = []
                self._depth += 1
                try:
                    it.load_config_text(text, file=path, out=failures.append)
                finally:
                    self._depth -= 1
                call.warnings.extend(f"{path}: {line}" for line in failures)
        return call.ok()


PLUGIN = Include()
