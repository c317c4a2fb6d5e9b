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
from typing import Any, Callable, Iterable

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


# --- plugin commands whose rule is a plain sequence ------------------------------
#
# VHOST and VPATH lines fill a large config too.  A plugin rule made only of its
# keyword, its own regex terminals (some optional, [NAME]) and "=" or ":" is read
# the same way: in each state the terminals Lark's contextual lexer would accept
# (the optional ones up to the next required one) are tried in priority order.
# A rule is taken only if nothing else could decide between them: distinct
# priorities within a state, a literal always alone in its state, no terminal
# that may begin at a space, no other command name that is a prefix of the
# keyword (a longer alternative of the first state would be tried before it).

_TERMINAL_DEF = re.compile(r"([A-Z][A-Z0-9_]*)(?:\.(\d+))?: /([^/]+)/")
_SAFE_LITERALS = frozenset({'"="', '":"'})


class LinearStep:
    """One element of a linear rule: a terminal (maybe optional) or a literal."""

    def __init__(self, name: str, pattern: str, priority: int, optional: bool,
                 literal: bool) -> None:
        self.name = name
        self.pattern = pattern
        self.match = re.compile(re.escape(pattern) if literal else pattern).match
        self.priority = priority
        self.optional = optional
        self.literal = literal


def linear_rule(ext: SyntaxExtension, other_keywords: Iterable[str]) -> LinearRule | None:
    """The steps of ``ext``'s rule after its keyword, or None if it is not linear."""
    if not plain_extension(ext) or ext.keyword == "graceful" or any(
            k != ext.keyword and ext.keyword.startswith(k) for k in other_keywords):
        return None  # ("graceful" is a named terminal of the core grammar: kept in the tree)
    terminals: dict[str, tuple[str, int]] = {}
    for line in ext.terminals.splitlines():
        if not line.strip():
            continue
        m = _TERMINAL_DEF.fullmatch(line.strip())
        if m is None or m.group(1).startswith("_") or "\\" in m.group(3)[-1:]:
            return None
        terminals[m.group(1)] = (m.group(3), int(m.group(2) or 0))
    words = ext.rule.split()
    if not words or words[0] != f'"{ext.keyword}"':
        return None
    steps: list[LinearStep] = []
    for word in words[1:]:
        optional = word.startswith("[") and word.endswith("]")
        name = word[1:-1] if optional else word
        if name in terminals:
            pattern, priority = terminals[name]
            if re.match(pattern, " ") is not None or re.match(pattern, "") is not None:
                return None
            steps.append(LinearStep(name, pattern, priority, optional, False))
        elif word in _SAFE_LITERALS:
            steps.append(LinearStep(word, word[1:-1], 0, False, True))
        else:
            return None
    for k in range(len(steps)):
        state = _state(steps, k)
        if len({s.priority for s in state}) != len(state) or (
                len(state) > 1 and any(s.literal for s in state)):
            return None
    return LinearRule(steps)


def _state(steps: list[LinearStep], k: int) -> list[LinearStep]:
    """What may come at step ``k``: the optional steps up to the next required one."""
    state = []
    for step in steps[k:]:
        state.append(step)
        if not step.optional:
            break
    return state


class LinearRule:
    """A linear rule's steps, and for each step the state the lexer is in there:
    (index, step) of what it may match, highest priority first."""

    def __init__(self, steps: list[LinearStep]) -> None:
        self.steps = steps
        self.states = [sorted(((steps.index(s), s) for s in _state(steps, k)),
                              key=lambda pair: -pair[1].priority)
                       for k in range(len(steps) + 1)]


def read_linear(rule: LinearRule, keyword: str,
                text: str) -> list[tuple[str, str, int] | None] | None:
    """The (terminal, text, offset) of each non-literal step (None when an optional
    one is absent), or None when the line does not read plainly."""
    pos, k, end = len(keyword), 0, len(text)
    out: list[tuple[str, str, int] | None] = []
    while True:
        state = rule.states[k]
        while text.startswith(" ", pos):  # %ignore " ", unless a terminal begins there
            if any(s.match(text, pos) for _, s in state):
                return None
            pos += 1
        if not state:  # every step read
            return out if pos == end else None
        for index, step in state:
            m = step.match(text, pos)
            if m is not None:
                break
        else:
            if pos == end and all(s.optional for _, s in state):
                return out + [None for _ in state]  # the optional steps end the rule
            return None
        if m.end() == pos:
            return None
        out.extend(None for _ in range(k, index))  # skipped optional terminals
        if not step.literal:
            out.append((step.name, m.group(), pos))
        k, pos = index + 1, m.end()
