"""The common core commands, read without Lark (issue #16 part 6).

Most lines of a config are CREATE, SET, POOL ... ADD and ENABLE.  For these one
regex per command does what Lark's contextual lexer and LALR parser do with
perlbal.lark: each state of these rules accepts one terminal (SET's first one
two, SET_TARGET first by its priority), so the line is the grammar's terminal
regexes (``FAST_TERMINALS``, which a test compares with the grammar's) in rule
order, each in an atomic group (the lexer keeps the first match at its position),
with the spaces between skipped (``%ignore " "``), to the end of the line.  A
line that does not match returns None and goes to Lark, which then parses it (or
explains why not) as before; so only lines that Lark would accept are answered
here, with the very node Lark's transformer would build (tests fuzz both).  Plugin
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


def _line(*parts: str) -> Callable[[str], re.Match[str] | None]:
    """One regex for a whole line: each terminal in an atomic group (the lexer takes
    the first match at its position and never gives it back), spaces skipped
    possessively between and after them, the line matched to its end."""
    return re.compile(" *+".join(parts) + " *+").fullmatch


def _t(name: str, group: str) -> str:
    return f"(?P<{group}>(?>{FAST_TERMINALS[name]}))"


_CREATE = _line("create", _t("CREATE_KIND", "kind"), _t("WORD", "name"))
_POOL = _line("pool", _t("WORD", "w1"), _t("WORD", "w2"), _t("IPISH", "ip"),
              f"(?::{' *+'}{_t('PORTNUM', 'port')})?+")
# SET_TARGET has priority 2: tried first, and kept once it matched
_SET = _line("set", f"{_t('SET_TARGET', 'target')}?+", _t("SETKEY", "key"), "=",
             _t("VALUE", "value"))
_DEFAULT = _line("default", _t("WORD", "key"), "=", _t("VALUE", "value"))
_SERVER = _line("server", _t("SERVERKEY", "key"), "=", _t("VALUE", "value"))
_WORD_AFTER = {kw: _line(kw, _t("WORD", "word")) for kw in ("use", "load", "enable", "disable")}


def _fast_create(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _CREATE(norm.text)  # create_cmd: "create" CREATE_KIND WORD
    if m is None:
        return None
    return ast.construct(ast.Create, kind=m["kind"], name=m["name"], **base)


def _fast_use(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _WORD_AFTER["use"](norm.text)  # use_cmd: "use" WORD
    return None if m is None else ast.construct(ast.Use, name=m["word"], **base)


def _fast_load(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _WORD_AFTER["load"](norm.text)  # load_cmd: "load" WORD
    if m is None:
        return None
    name = m["word"]
    if norm.orig.lower() == norm.text:
        # as the transformer's load_cmd: the plugin name in its original case
        name = norm.orig[m.start("word"):m.end("word")]
    return ast.construct(ast.Load, name=name, **base)


def _fast_pool(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _POOL(norm.text)  # pool_cmd: "pool" WORD WORD IPISH [":" PORTNUM]
    if m is None:
        return None
    port = m["port"]
    return ast.construct(ast.PoolEdit, word1=m["w1"], word2=m["w2"], ip=m["ip"],
                         port=None if port is None else int(port), **base)


def _fast_set(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _SET(norm.text)  # set_cmd: "set" [SET_TARGET] SETKEY "=" VALUE
    if m is None:
        return None
    target = m["target"]
    return ast.construct(ast.Set, target=None if target is None else target[:-1],
                         key=m["key"], value=m["value"], **base)


def _fast_default(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _DEFAULT(norm.text)  # default_cmd: "default" WORD "=" VALUE
    return None if m is None else ast.construct(ast.Default, key=m["key"], value=m["value"],
                                                **base)


def _fast_server(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    m = _SERVER(norm.text)  # server_cmd: "server" SERVERKEY "=" VALUE
    return None if m is None else ast.construct(ast.Server, key=m["key"], value=m["value"],
                                                **base)


def _fast_enable(norm: Normalized, base: dict[str, Any]) -> ast.Node | None:
    verb = base["keyword"]  # enable_cmd: ENABLE_VERB WORD
    m = _WORD_AFTER[verb](norm.text)
    return None if m is None else ast.construct(ast.Enable, verb=verb, service=m["word"],
                                                **base)


FAST: dict[str, Callable[[Normalized, dict[str, Any]], ast.Node | None]] = {
    "create": _fast_create, "use": _fast_use, "load": _fast_load,
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
