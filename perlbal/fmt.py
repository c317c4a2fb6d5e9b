"""``perlbal fmt``: one canonical layout for perlbal.conf files.

The configuration language is line-oriented, and Perl Perlbal normalises each
line before it reads it (the comment dropped, whitespace folded, everything up
to the first ``=`` lower-cased: ``perlbal/grammar/preprocess.py``).  So a
layout can be imposed line by line without changing what a file means:

* commands: the command words upper case (``CREATE SERVICE``, ``SET``,
  ``POOL <name> ADD``, ``HEADER <svc> INSERT`` ...), the names of the core
  commands lower case (Perl lower-cases them anyway; ``LOAD``'s and plugin
  commands' arguments are kept as written), one space between words, ``name = value`` with one
  space each side of the first ``=`` of ``SET``/``SERVER``/``VHOST`` lines;
  the value after ``=`` is kept as written (values are case-sensitive);
* indentation: two spaces for the lines that configure what the last
  ``CREATE SERVICE`` / ``CREATE POOL`` made, until the next top-level command
  (``CREATE``, ``ENABLE``, ``DISABLE``, ``LOAD``, ``SERVER`` ...);
* comments: kept, their text untouched; a comment after a command is kept after
  it, two spaces away; comment lines take the indentation of where they stand;
* blank lines: a run of them becomes one (groups kept), none at either end;
* the order of lines never changes.

``format_text`` is pure; ``main`` is the command.  A file that ``perlbal check``
finds errors in is never rewritten (exit 2, with check's diagnostics).  The
guarantees -- ``fmt(fmt(x)) == fmt(x)``, the graph built from ``fmt(x)``
equals the one built from ``x``, every comment survives -- are property tests
over the wild configs, Debian's samples, ``examples/`` and generated ones
(tests/cli/test_fmt.py).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from typing import Sequence

__all__ = ["format_text", "main"]

#: commands that end a CREATE block (they stand at the left margin)
_TOP_LEVEL = frozenset({"create", "enable", "disable", "load", "unload", "server", "use",
                        "xs", "shutdown", "reload", "include", "mime", "default"})
#: command words written upper case after the first word, by command
_SECOND_WORDS = {"create": {"service", "pool"}, "pool": {"add", "remove"},
                 "header": {"insert", "remove"}, "mime": {"set", "remove"},
                 "xs": {"enable", "disable"}}
#: commands whose arguments Perl Perlbal (and we) read lower-cased: written so
_LOWERED = frozenset({"create", "set", "server", "enable", "disable", "pool", "vhost", "vpath",
                      "default", "header", "use", "mime", "xs", "show", "nodes"})
#: commands whose first "=" separates a name from a value
_ASSIGNMENTS = frozenset({"set", "server", "vhost", "default"})


def _split_comment(line: str) -> tuple[str, str]:
    """(command part, comment) -- Perl: '#' starts a comment anywhere."""
    index = line.find("#")
    if index < 0:
        return line, ""
    return line[:index], line[index:]


def _format_command(text: str) -> tuple[str, str]:
    """A command line (no comment) in canonical form, and its command word.

    Only what Perl's own normalisation makes meaningless changes: the case of
    everything before the first '=' and runs of whitespace; and, on lines that
    assign (SET, SERVER, DEFAULT, VHOST), the spacing around that '='."""
    folded = " ".join(text.split())
    equals = folded.find("=")
    head, tail = (folded, None) if equals < 0 else (folded[:equals], folded[equals + 1:])
    words = head.split(" ")
    command = words[0].lower()
    second = _SECOND_WORDS.get(command, set())
    keyword_at = 2 if command in ("pool", "header") else 1
    out = [command.upper()]
    for position, word in enumerate(words[1:], start=1):
        lower = word.lower()
        if position == keyword_at and lower in second:
            out.append(lower.upper())
        else:  # LOAD reads its argument as written (Perl's MANAGE_load uses the original)
            out.append(lower if command in _LOWERED else word)
    if tail is None:
        return " ".join(out), command
    if command in _ASSIGNMENTS:
        name = " ".join(out).rstrip()
        value = tail.strip()
        return (f"{name} = {value}" if value else f"{name} ="), command
    return " ".join(out) + "=" + tail, command


def format_text(text: str) -> str:
    """The canonical layout of a whole config file's text."""
    out: list[str] = []
    in_block = False
    pending_blank = False
    for raw in text.splitlines():
        body, comment = _split_comment(raw)
        stripped = body.strip()
        if not stripped and not comment:
            pending_blank = bool(out)
            continue
        if stripped:
            command_line, command = _format_command(stripped)
            if command == "create":
                in_block = True
                indent = ""
            elif command in _TOP_LEVEL:
                in_block = False
                indent = ""
            else:
                indent = "  " if in_block else ""
            line = indent + command_line + ("  " + comment.rstrip() if comment else "")
        else:
            indent = "  " if in_block and raw[:1] in (" ", "\t") else ""
            line = indent + comment.rstrip()
        if pending_blank:
            out.append("")
            pending_blank = False
        out.append(line)
    return "\n".join(out) + "\n" if out else ""


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


def _write_atomically(path: str, text: str) -> None:
    """Never a half-written config: a temporary file beside it, then rename."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    fd, temporary = tempfile.mkstemp(prefix=".perlbal-fmt-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="perlbal fmt", description="Rewrite perlbal.conf files in one canonical layout "
        "(command words upper case, names lower case, two-space indentation in CREATE "
        "blocks, 'name = value', comments and blank-line groups kept, order kept).")
    parser.add_argument("files", nargs="+", metavar="FILE", help="config files; - for stdin")
    parser.add_argument("--check", action="store_true",
                        help="change nothing: print a diff and exit 1 if a file is not formatted")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    from perlbal.check import check_paths

    status = 0
    for path in args.files:
        try:
            text = _read(path)
        except OSError as exc:
            print(f"perlbal fmt: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if path == "-":
            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as tmp:
                tmp.write(text)
            try:
                result = check_paths([tmp.name])
            finally:
                os.unlink(tmp.name)
            for diag in result.diagnostics:  # name stdin as given, not the scratch file
                if diag.file == tmp.name:
                    diag.file = "-"
        else:
            result = check_paths([path])
        if result.errors:
            for diag in result.errors:
                print(diag.render(), file=sys.stderr)
            print(f"perlbal fmt: {path}: not formatted, it has {len(result.errors)} error(s)",
                  file=sys.stderr)
            return 2
        formatted = format_text(text)
        if path == "-" and not args.check:
            sys.stdout.write(formatted)
            continue
        if formatted == text:
            continue
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                fromfile=path, tofile=f"{path} (formatted)"))
            status = 1
        else:
            _write_atomically(path, formatted)
            print(f"formatted {path}", file=sys.stderr)
    return status
