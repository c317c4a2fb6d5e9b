"""The common core commands, read without Lark (issue #16 part 6).

Most lines of a config are CREATE, SET, POOL ... ADD and ENABLE.  For these the
functions below do what Lark's contextual lexer and LALR parser do with
perlbal.lark, step by step: in each parser state the same terminal regexes
(``FAST_TERMINALS``, which a test compares with the grammar's) are tried at the
same position in the same order (higher priority first), spaces are skipped
(``%ignore " "``), and the line must end after the last token.  Whatever does
not take exactly that path returns None and goes to Lark, which then parses it
(or explains why not) as before; so only lines that Lark would accept are
answered here, with the very node Lark's transformer would build.  Plugin
commands all go to Lark; a plugin rule that does not start with its own keyword
turns this off (``plain_extension``).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from perlbal.grammar import ast
from perlbal.grammar.preprocess import Normalized
from perlbal.grammar.syntax import SyntaxExtension

FAST_TERMINALS = {
    "CREATE_KIND": r"(service|pool)(?!\w)",
    "WORD": r"\w+",
    "IPISH": r"\d+.\d+.\d+.\d+",
    "PORTNUM": r"\d+",
    "SET_TARGET": r"\w+[. ](?=[\w.]+ ?=.)",
    "SETKEY": r"[\w.]+",
    "SERVERKEY": r"[^\s=]+",
    "VALUE": r"[^ ].*",
}
_T = {name: re.compile(pattern).match for name, pattern in FAST_TERMINALS.items()}
_CREATE_KIND, _WORD, _IPISH, _PORTNUM = _T["CREATE_KIND"], _T["WORD"], _T["IPISH"], _T["PORTNUM"]
_SET_TARGET, _SETKEY, _SERVERKEY, _VALUE = (_T["SET_TARGET"], _T["SETKEY"], _T["SERVERKEY"],
                                            _T["VALUE"])


def _skip(text: str, pos: int) -> int:
    """Past the spaces at ``pos`` (the grammar's %ignore " ")."""
    while text.startswith(" ", pos):
        pos += 1
    return pos


def _at_end(text: str, pos: int) -> bool:
    return _skip(text, pos) == len(text)


def _value_after_equals(text: str, pos: int) -> str | None:
    """``"=" VALUE`` then the end of the line, from ``pos``; the VALUE or None."""
    pos = _skip(text, pos)
    if not text.startswith("=", pos):
        return None
    m = _VALUE(text, _skip(text, pos + 1))
    return m.group() if m is not None and _at_end(text, m.end()) else None


def _fast_create(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text = norm.text  # create_cmd: "create" CREATE_KIND WORD
    kind = _CREATE_KIND(text, _skip(text, 6))
    name = _WORD(text, _skip(text, kind.end())) if kind is not None else None
    if kind is None or name is None or not _at_end(text, name.end()):
        return None
    return ast.construct(ast.Create, kind=kind.group(), name=name.group(), **base)


def _fast_word(cls: type[ast.Use] | type[ast.Load]) -> Callable[
        [Normalized, dict[str, Any]], ast.Node | None]:
    def parse(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
        text = norm.text  # use_cmd: "use" WORD; load_cmd: "load" WORD
        word = _WORD(text, _skip(text, len(base["keyword"])))
        if word is None or not _at_end(text, word.end()):
            return None
        name = word.group()
        if cls is ast.Load and norm.orig.lower() == text:
            # as the transformer's load_cmd: the plugin name in its original case
            name = norm.orig[word.start():word.start() + len(name)]
        return ast.construct(cls, name=name, **base)
    return parse


def _fast_pool(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text = norm.text  # pool_cmd: "pool" WORD WORD IPISH [":" PORTNUM]
    word1 = _WORD(text, _skip(text, 4))
    word2 = _WORD(text, _skip(text, word1.end())) if word1 is not None else None
    ip = _IPISH(text, _skip(text, word2.end())) if word2 is not None else None
    if word1 is None or word2 is None or ip is None:
        return None
    pos, port = _skip(text, ip.end()), None
    if text.startswith(":", pos):
        num = _PORTNUM(text, _skip(text, pos + 1))
        if num is None:
            return None
        pos, port = num.end(), int(num.group())
    if not _at_end(text, pos):
        return None
    return ast.construct(ast.PoolEdit, word1=word1.group(), word2=word2.group(),
                         ip=ip.group(), port=port, **base)


def _fast_set(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text = norm.text  # set_cmd: "set" [SET_TARGET] SETKEY "=" VALUE
    pos = _skip(text, 3)
    target = _SET_TARGET(text, pos)  # priority 2: tried before SETKEY
    if target is not None:
        pos = _skip(text, target.end())
    key = _SETKEY(text, pos)
    value = _value_after_equals(text, key.end()) if key is not None else None
    if key is None or value is None:
        return None
    return ast.construct(ast.Set, target=target.group()[:-1] if target else None,
                         key=key.group(), value=value, **base)


def _fast_default(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text = norm.text  # default_cmd: "default" WORD "=" VALUE
    key = _WORD(text, _skip(text, 7))
    value = _value_after_equals(text, key.end()) if key is not None else None
    if key is None or value is None:
        return None
    return ast.construct(ast.Default, key=key.group(), value=value, **base)


def _fast_server(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text = norm.text  # server_cmd: "server" SERVERKEY "=" VALUE
    key = _SERVERKEY(text, _skip(text, 6))
    value = _value_after_equals(text, key.end()) if key is not None else None
    if key is None or value is None:
        return None
    return ast.construct(ast.Server, key=key.group(), value=value, **base)


def _fast_enable(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    text, verb = norm.text, base["keyword"]  # enable_cmd: ENABLE_VERB WORD
    service = _WORD(text, _skip(text, len(verb)))
    if service is None or not _at_end(text, service.end()):
        return None
    return ast.construct(ast.Enable, verb=verb, service=service.group(), **base)


FAST: dict[str, Callable[[Normalized, dict[str, Any]], ast.Node | None]] = {
    "create": _fast_create, "use": _fast_word(ast.Use), "load": _fast_word(ast.Load),
    "pool": _fast_pool, "set": _fast_set, "default": _fast_default, "server": _fast_server,
    "enable": _fast_enable, "disable": _fast_enable,
}


def plain_extension(ext: SyntaxExtension) -> bool:
    """Does ``ext`` leave the core commands' lexing alone?  Its rule starts with its
    own keyword (so the first token of a core line means what it did) and it adds no
    directive (%ignore would change how every line is split)."""
    rule = ext.rule.strip()
    quoted = f'"{ext.keyword}"'
    return (rule.startswith(quoted) and rule[len(quoted):len(quoted) + 1] in ("", " ")
            and not any(line.lstrip().startswith("%")
                        for line in (ext.terminals + "\n" + ext.rule).splitlines()))
