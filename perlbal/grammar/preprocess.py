"""Perl Perlbal's per-line normalisation, with a map back to source columns.

Perl's run_manage_command rewrites every line before dispatching it: it drops
everything from the first '#', trims, folds runs of whitespace to one space,
expands ``${ip:IFACE}`` and ``$ENV`` variables, and lower-cases everything up to
the first '='.  We do the same, and remember for each character of the result
the column it came from, so a diagnostic can point into the original line.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Mapping

_WORD_RE = re.compile(r"\w+")


@dataclass(frozen=True)
class Normalized:
    text: str  # what the grammar parses
    orig: str  # comment stripped, trimmed, folded, before expansion and lower-casing
    line: str = ""  # the raw line with its comment stripped, for the column map
    expanded_columns: tuple[int, ...] | None = None  # the map, when variables were expanded

    @functools.cached_property
    def columns(self) -> tuple[int, ...]:
        """0-based source column of each character of ``text``; built only when a
        diagnostic or a plugin's token asks (most lines never need it)."""
        if self.expanded_columns is not None:
            return self.expanded_columns
        return _fold(self.line)[1]

    def source_column(self, index: int) -> int:
        """1-based column in the raw line for a 0-based index into ``text``."""
        if index == 0 and self.expanded_columns is None and self.text:
            return len(self.line) - len(self.line.lstrip()) + 1  # no map needed
        if not self.text or not self.columns:  # (the map of an empty text is empty)
            return 1
        index = max(0, min(index, len(self.columns) - 1))
        return self.columns[index] + 1

    @property
    def basecmd(self) -> str | None:
        m = _WORD_RE.match(self.text)
        return m.group(0) if m else None


class ExpansionError(Exception):
    """A ``${...}`` variable could not be expanded (Perl dies with this text)."""


def _expand_var(spec: str) -> str:
    m = re.match(r"(\w+):(.+)", spec)
    if not m:
        raise ExpansionError(f"Unknown config variable: {spec}")
    kind, val = m.group(1), m.group(2)
    if kind == "ip":
        if not re.fullmatch(r"\w+", val):
            raise ExpansionError("Bogus-looking iface name")
        addr = _interface_ip(val)
        if addr is None:
            raise ExpansionError(f"Can't find IP of interface '{val}'")
        return addr
    raise ExpansionError(f"Unknown config variable type: {kind}")


def _interface_ip(iface: str) -> str | None:
    import fcntl
    import socket
    import struct

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", iface[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None
    finally:
        sock.close()


# \s is exactly what str.isspace() calls space, so what str.split() splits on (a
# test checks every code point)
_NON_SPACE = re.compile(r"\S+")


def _fold(line: str) -> tuple[str, tuple[int, ...]]:
    """Fold runs of whitespace to one space and trim, remembering source columns
    (a folded space comes from the first whitespace character of its run)."""
    words: list[str] = []
    cols: list[int] = []
    prev_end = -1
    for m in _NON_SPACE.finditer(line):
        start, end = m.span()
        if prev_end >= 0:
            cols.append(prev_end)
        cols.extend(range(start, end))
        words.append(m.group())
        prev_end = end
    return " ".join(words), tuple(cols)


def _lower_before_equals(text: str) -> str:
    eq = text.find("=")
    return text.lower() if eq < 0 else text[:eq].lower() + text[eq:]


def normalize(raw: str, env: Mapping[str, str] | None = None) -> Normalized:
    """Normalise one line as Perl does.  Raises ExpansionError for a bad ${...}."""
    line = raw.rstrip("\r\n")
    hash_at = line.find("#")
    if hash_at >= 0:
        line = line[:hash_at]
    if "$" not in line:
        # the common case: nothing to expand, so the column map can wait
        orig = " ".join(line.split())  # str.split folds exactly what isspace() calls space
        return Normalized(_lower_before_equals(orig), orig, line)
    orig, cols = _fold(line)
    environ = os.environ if env is None else env

    # ${type:value} first, then $NAME, as Perl does
    out: list[str] = []
    out_cols: list[int] = []
    i = 0
    text = orig
    while i < len(text):
        if text.startswith("${", i):
            end = text.find("}", i + 2)
            if end > i + 2:
                value = _expand_var(text[i + 2 : end])
                out.extend(value)
                out_cols.extend([cols[i]] * len(value))
                i = end + 1
                continue
        if text[i] == "$":
            m = _WORD_RE.match(text, i + 1)
            if m:
                value = environ.get(m.group(0), "")
                out.extend(value)
                out_cols.extend([cols[i]] * len(value))
                i = m.end()
                continue
        out.append(text[i])
        out_cols.append(cols[i])
        i += 1
    return Normalized(_lower_before_equals("".join(out)), orig, line, tuple(out_cols))
