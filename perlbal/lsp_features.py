"""What ``perlbal lsp`` knows about a perlbal.conf buffer, without any LSP library.

Pure functions over the text of a document (lines and 0-based positions, as
the Language Server Protocol counts them); ``perlbal.lsp`` wires them to
pygls.  Everything comes from the code's own sources of truth:

* ``diagnostics``: ``perlbal check`` on the buffer (the real interpreter);
* ``completions``: command words from the grammar, parameter names valid for
  the block's role (or a pool) from the registry, enumerated values, and the
  names of the services and pools the buffer creates;
* ``hover``: a parameter's documentation, default and whether ``SET`` can
  change it live, from the registry;
* ``definition``: where a service or pool that a line names is created;
* ``symbols``: the services and pools the buffer creates;
* ``did_you_mean_fixes``: check's "did you mean" hints as replacements.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

from perlbal.params import REGISTRY, Kind, Param

__all__ = ["Finding", "Completion", "Definition", "Symbol", "diagnostics", "completions",
           "hover", "definition", "symbols", "did_you_mean_fixes", "COMMAND_WORDS"]

#: the command words a line may start with (core; plugins' come with LOAD)
COMMAND_WORDS = ("CREATE SERVICE", "CREATE POOL", "SET", "ENABLE", "DISABLE", "POOL",
                 "LOAD", "UNLOAD", "HEADER", "SERVER", "VHOST", "VPATH", "MIME", "DEFAULT",
                 "USE", "XS", "SHUTDOWN", "INCLUDE")
_CREATE = re.compile(r"^\s*create\s+(service|pool)\s+([\w.-]+)", re.IGNORECASE)
_ROLE = re.compile(r"^\s*set\s+(?:([\w.-]+)\.)?role\s*=\s*(\w+)", re.IGNORECASE)
_HINT = re.compile(r"did you mean '([^']+)'")
_WORD = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class Finding:
    line: int  # 0-based
    column: int  # 0-based
    end_column: int
    severity: str  # "error" | "warning" | "note"
    message: str


@dataclass(frozen=True)
class Completion:
    label: str
    detail: str = ""
    documentation: str = ""


@dataclass(frozen=True)
class Definition:
    line: int
    column: int
    end_column: int


@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # "service" | "pool"
    line: int
    role: str | None = None


def _code(line: str) -> str:
    return line.split("#", 1)[0]


def symbols(text: str) -> list[Symbol]:
    found: list[Symbol] = []
    roles: dict[str, str] = {}
    current: str | None = None
    for number, line in enumerate(text.splitlines()):
        code = _code(line)
        match = _CREATE.match(code)
        if match:
            current = match.group(2).lower()
            found.append(Symbol(current, match.group(1).lower(), number))
            continue
        role = _ROLE.match(code)
        if role:
            roles[(role.group(1) or current or "").lower()] = role.group(2).lower()
    return [Symbol(s.name, s.kind, s.line, roles.get(s.name)) for s in found]


def diagnostics(text: str, path_hint: str = "perlbal.conf") -> list[Finding]:
    """``perlbal check`` on the buffer (written to a private temporary file
    beside nothing: INCLUDE paths are read as absolute or from the cwd)."""
    from perlbal.check import check_paths

    fd, path = tempfile.mkstemp(suffix=".conf", prefix="perlbal-lsp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        result = check_paths([path])
    finally:
        os.unlink(path)
    lines = text.splitlines()
    out = []
    for diag in result.diagnostics:
        if diag.file != path:
            continue
        number = max(diag.line - 1, 0)
        source = lines[number] if number < len(lines) else ""
        column = max(diag.column - 1, 0)
        word = _WORD.match(source, column)
        end = word.end() if word else len(source.rstrip())
        hints = did_you_mean_fixes(diag.message)
        for quoted in re.findall(r"'([^']+)'", diag.message):
            at = source.lower().find(quoted.lower()) if hints and quoted not in hints else -1
            if at >= 0:  # point at the word the hint would replace
                column, end = at, at + len(quoted)
                break
        out.append(Finding(number, column, max(end, column + 1), diag.severity,
                           diag.message.replace(path, path_hint)))
    return out


def did_you_mean_fixes(message: str) -> list[str]:
    """Replacements for the word a diagnostic points at (check's hints)."""
    return _HINT.findall(message)


def _block_at(text: str, line: int) -> Symbol | None:
    block = None
    for symbol in symbols(text):
        if symbol.line <= line:
            block = symbol
    return block


def _params_for(block: Symbol | None) -> list[Param]:
    if block is not None and block.kind == "pool":
        return list(REGISTRY.pool.values())
    role = block.role if block is not None else None
    return [p for p in REGISTRY.service.values() if p.applies_to(role) or role is None]


def _param_doc(param: Param) -> str:
    default = f"default {param.default!r}" if param.default not in (None, "") else "no default"
    live = "settable live with SET" if param.live else "read at start-up only"
    ours = " Beyond Perl Perlbal 1.80." if param.beyond_perl else ""
    return f"{param.doc}\n\n{param.kind.value}; {default}; {live}.{ours}"


def _values_for(param: Param, text: str) -> list[str]:
    if param.choices:
        return list(param.choices)
    if param.kind is Kind.BOOL:
        return ["on", "off"]
    if param.kind is Kind.ROLE:
        return ["reverse_proxy", "web_server", "management", "selector", "upload_tracker"]
    if param.kind is Kind.POOL_REF:
        return [s.name for s in symbols(text) if s.kind == "pool"]
    if param.kind is Kind.SERVICE_REF:
        return [s.name for s in symbols(text) if s.kind == "service"]
    return []


def completions(text: str, line: int, character: int) -> list[Completion]:
    lines = text.splitlines()
    current = lines[line][:character] if line < len(lines) else ""
    code = _code(current)
    if "#" in current:
        return []
    words = code.split()
    typing_word = not code or code[-1:].isspace() is False
    if not words or (len(words) == 1 and typing_word):
        prefix = words[0].lower() if words else ""
        return [Completion(w, "command") for w in COMMAND_WORDS if w.lower().startswith(prefix)]
    command = words[0].lower()
    block = _block_at(text, line)
    names = symbols(text)
    if command == "set":
        before, equals, after = code.partition("=")
        name_part = before.split()[1:] if len(before.split()) > 1 else []
        if not equals:
            prefix = name_part[-1].lower() if name_part and typing_word else ""
            target = None
            if "." in prefix:  # SET svc.param
                owner, _, prefix = prefix.rpartition(".")
                target = next((s for s in names if s.name == owner), None)
            params = _params_for(target or block)
            return [Completion(p.name, p.kind.value, _param_doc(p))
                    for p in params if p.name.startswith(prefix)]
        name = (name_part[-1].lower().rpartition(".")[2]) if name_part else ""
        table = REGISTRY.pool if block is not None and block.kind == "pool" else REGISTRY.service
        param = table.get(name) or REGISTRY.service.get(name) or REGISTRY.pool.get(name)
        if param is None:
            return []
        prefix = after.strip().lower()
        return [Completion(v, param.name) for v in _values_for(param, text)
                if v.lower().startswith(prefix)]
    if command in ("enable", "disable"):
        prefix = words[1].lower() if len(words) > 1 and typing_word else ""
        return [Completion(s.name, "service") for s in names
                if s.kind == "service" and s.name.startswith(prefix)]
    if command == "pool" and len(words) <= 2:
        prefix = words[1].lower() if len(words) > 1 and typing_word else ""
        return [Completion(s.name, "pool") for s in names
                if s.kind == "pool" and s.name.startswith(prefix)]
    return []


def hover(text: str, line: int, character: int) -> str | None:
    lines = text.splitlines()
    if line >= len(lines):
        return None
    source = lines[line]
    for match in _WORD.finditer(source):
        if match.start() <= character <= match.end():
            word = match.group(0).lower().rpartition(".")[2]
            param = REGISTRY.service.get(word) or REGISTRY.pool.get(word)
            if param is None:
                return None
            return f"**{param.name}**\n\n{_param_doc(param)}"
    return None


def definition(text: str, line: int, character: int) -> Definition | None:
    """Where the service or pool named under the cursor is created."""
    lines = text.splitlines()
    if line >= len(lines):
        return None
    target = None
    for match in _WORD.finditer(lines[line]):
        if match.start() <= character <= match.end():
            target = match.group(0).lower()
    if target is None:
        return None
    for symbol in symbols(text):
        if symbol.name == target:
            source = lines[symbol.line]
            start = source.lower().rfind(target)
            return Definition(symbol.line, start, start + len(target))
    return None
