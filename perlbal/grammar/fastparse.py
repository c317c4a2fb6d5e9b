"""Commands read without Lark, by a reader derived from perlbal.lark (issue #16 part 6).

Most lines of a config are CREATE, SET, POOL ... ADD, ENABLE, VHOST and VPATH.
Their rules are plain sequences, and for such a rule one regex does what Lark's
contextual lexer and LALR parser do.  ``FastReader`` derives that regex from the
very grammar text Lark is given (``grammar_text(extensions)``: perlbal.lark and
the plugins' rules): it reads the ``command`` alternatives, each ``*_cmd`` rule
line and the terminal definitions, and for a rule made only of terminals defined
by one regex, plain ``"..."`` literals and ``[...]`` optional groups (nested or
holding a literal, as ``[":" PORTNUM]``) it writes the rule as its terminals'
regexes in rule order, each in an atomic group (the lexer keeps the first match
at its position), optional groups possessive, the spaces between skipped
possessively (``%ignore " "``), matched to the end of the line.  The node is
then built by ``nodes.build``, the builder Lark's transformer calls.

A rule is derived only when that regex provably reads what Lark reads, else its
lines go to Lark (which also explains every line that fails here):

* the grammar's only directive is ``%ignore " "`` and every command starts with
  a literal or a terminal made of literals (``ENABLE_VERB: "enable" | "disable"``),
  so the first word alone picks the rule; a keyword that another command's
  literal begins with, or that begins another's, is left to Lark;
* in each parser state (what may come next: the next element and the optional
  groups before it) a literal stands alone, and the terminals have distinct
  priorities decreasing in rule order (``SET_TARGET.2`` before ``SETKEY``), so
  the lexer's choice is the regex's first one;
* no terminal may match empty, begin with a space (checked on the parsed regex)
  or hold what changes meaning inside a larger regex (groups by name or
  number, inline flags); no literal is also a named terminal (Lark keeps those).

A line that does not match returns None and goes to Lark.  Tests fuzz every
derived core and plugin rule against Lark, and check that editing a terminal in
the grammar text changes what is read here (there is no second copy of it).

Cost (2026-12-02, 2 shared cores at load 1.5-2.6, against the hand-written
per-command regexes and ``_fast_*`` builders this replaces): deriving the
rules a config uses is about 8 ms at start (the grammar text read and split,
one regex compiled per rule met); a line costs a few microseconds more (its
tokens become ``Tok`` records for the shared builder), so parsing the
11,352-line bench config in-process goes from 71-108 to 87-129 ms (best of 30,
noisy); ``check_bench.py --runs 5`` on that config, alternating with the old
code: median 0.80 s (runs 0.77-0.86) against 0.74-0.84 s, i.e. within about
7% of the 0.76 s recorded before; the 5-line config is unchanged (0.35-0.39 s).
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any, Callable, NamedTuple

from perlbal.grammar.syntax import SyntaxExtension, Tok, grammar_text

_sre: Any = importlib.import_module("re._parser")  # (sre_parse, without its warning)

_DEF = re.compile(r"([?!]?)([A-Za-z_][A-Za-z0-9_]*)(?:\.(\d+))?\s*:\s*(.*)")
_ITEM = re.compile(r'\s*("[^"\\]*"[a-z]*|/(?:[^/\\\n]|\\[^\n])*/[a-z]*|\[|\]|\||'
                   r'[A-Za-z_][A-Za-z0-9_]*|\S)')
_LITERAL = re.compile(r'"([^"\\]+)"')
_REGEX = re.compile(r"/((?:[^/\\\n]|\\[^\n])+)/")
# what a terminal's regex may not hold: groups by name or number, inline flags,
# escapes Lark's grammar loader rewrites
_UNSAFE_IN_REGEX = re.compile(r"\(\?P|\(\?[aiLmsux-]|\\[0-9Uuxnftr\\]|['\"]")


class _Grammar(NamedTuple):
    rules: dict[str, tuple[str, str]]  # name -> (modifier ?/!, body)
    terminals: dict[str, tuple[int, str]]  # name -> (priority, body)
    directives: list[str]


def _read_grammar(text: str) -> _Grammar | None:
    """The definitions of a Lark grammar text: one per line, ``|`` lines continuing
    the one above; None for anything else (then nothing is derived)."""
    rules: dict[str, tuple[str, str]] = {}
    terminals: dict[str, tuple[int, str]] = {}
    directives: list[str] = []
    last: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith("|") and last is not None:
            if last in rules:
                rules[last] = (rules[last][0], f"{rules[last][1]} {line}")
            else:
                terminals[last] = (terminals[last][0], f"{terminals[last][1]} {line}")
            continue
        last = None
        if line.startswith("%"):
            directives.append(line)
            continue
        m = _DEF.fullmatch(line)
        if m is None:
            return None
        modifier, name, priority, body = m.groups()
        if name in rules or name in terminals:
            return None
        if name.lstrip("_")[:1].islower():
            if priority is not None:
                return None
            rules[name] = (modifier, body)
        elif modifier:
            return None
        else:
            terminals[name] = (int(priority or 0), body)
        last = name
    return _Grammar(rules, terminals, directives)


def _items(body: str) -> list[str] | None:
    out, pos = [], 0
    while pos < len(body.rstrip()):
        m = _ITEM.match(body, pos)
        if m is None:
            return None
        out.append(m.group(1))
        pos = m.end()
    return out


def _literals(body: str) -> list[str] | None:
    """The strings of a terminal made only of literals (``"a" | "b"``), or None."""
    items = _items(body)
    if not items or len(items) % 2 == 0 or any(i != "|" for i in items[1::2]):
        return None
    words = [_LITERAL.fullmatch(i) for i in items[::2]]
    return [w.group(1) for w in words if w is not None] if all(words) else None


# --- what a terminal's regex may begin with --------------------------------------

def _first(sub: Any) -> tuple[bool, bool]:
    """(may begin with a space, may match empty) for a parsed regex sequence;
    whatever is not understood may begin with a space."""
    for op, av in sub:
        may_space, nullable = _first_item(str(op), av)
        if may_space:
            return True, True
        if not nullable:
            return False, False
    return False, True


_SPACE_CATEGORIES = {"CATEGORY_SPACE": True, "CATEGORY_NOT_SPACE": False,
                     "CATEGORY_WORD": False, "CATEGORY_NOT_WORD": True,
                     "CATEGORY_DIGIT": False, "CATEGORY_NOT_DIGIT": True}


def _in_set_has_space(items: Any) -> bool:
    negate, has = False, False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            has = has or av == 32
        elif name == "RANGE":
            has = has or av[0] <= 32 <= av[1]
        elif name == "CATEGORY":
            has = has or _SPACE_CATEGORIES.get(str(av), True)
        else:
            return True
    return has != negate


def _first_item(op: str, av: Any) -> tuple[bool, bool]:
    if op == "LITERAL":
        return av == 32, False
    if op == "NOT_LITERAL":
        return av != 32, False
    if op == "IN":
        return _in_set_has_space(av), False
    if op in ("AT", "ASSERT", "ASSERT_NOT"):
        return False, True  # (matches no character)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        may_space, nullable = _first(av[2])
        return may_space, nullable or av[0] == 0
    if op == "SUBPATTERN":
        return _first(av[3])
    if op == "ATOMIC_GROUP":
        return _first(av)
    if op == "BRANCH":
        results = [_first(branch) for branch in av[1]]
        return any(r[0] for r in results), any(r[1] for r in results)
    return True, True  # ANY, references, ...: may be a space


def _safe_regex(pattern: str) -> bool:
    """Does ``pattern`` match no empty text and nothing that begins with a space, and
    mean the same inside a larger regex?"""
    if _UNSAFE_IN_REGEX.search(pattern):
        return False
    try:
        parsed = _sre.parse(pattern)
    except re.error:
        return False
    return bool(parsed.getwidth()[0] > 0 and not _first(parsed)[0])


# --- a rule as a regex -------------------------------------------------------------

class _Element(NamedTuple):
    name: str  # terminal name, or the literal's text
    regex: str
    priority: int
    literal: bool


class LinearRule:
    """A derived rule: its elements after the first (the keyword), the regex reading
    them and, for each kept terminal, its name and regex group."""

    def __init__(self, rule: str, first_terminal: str | None, elements: list[_Element],
                 regex: str) -> None:
        self.rule = rule
        self.first_terminal = first_terminal  # ENABLE_VERB: the keyword is a token
        self.elements = elements
        self.regex = regex
        compiled = re.compile(regex)
        self.fullmatch = compiled.fullmatch
        # (terminal, number of its regex group) of each kept element
        self.kept = [(e.name, compiled.groupindex[f"g{i}"])
                     for i, e in enumerate(elements) if not e.literal]

    def read(self, keyword: str, text: str) -> list[Tok | None] | None:
        """The rule's tokens in ``text`` (a line starting with ``keyword``), None
        for an absent optional one; None when the regex does not match."""
        m = self.fullmatch(text, len(keyword))
        if m is None:
            return None
        regs = m.regs
        out: list[Tok | None] = [
            None if (span := regs[group])[0] < 0 else _tok((name, text[span[0]:span[1]], span[0]))
            for name, group in self.kept]
        if self.first_terminal is not None:
            out.insert(0, _tok((self.first_terminal, keyword, 0)))
        return out


_tok: Callable[[tuple[str, str, int]], Tok] = functools.partial(tuple.__new__, Tok)


def _derive(name: str, body: str, grammar: _Grammar,
            string_terminals: frozenset[str]) -> LinearRule | None:
    items = _items(body)
    if not items:
        return None
    first_terminal = items[0] if items[0][0] != '"' else None
    if first_terminal is None and items[0][1:-1] in string_terminals:
        return None  # (Lark would lex the keyword as that terminal and keep it)
    elements: list[_Element] = []
    groups: list[tuple[int, int]] = []  # [start, end) of each optional group
    open_at: list[int] = []
    for item in items[1:]:
        if item == "[":
            open_at.append(len(elements))
            continue
        if item == "]":
            if not open_at or open_at[-1] == len(elements):
                return None
            groups.append((open_at.pop(), len(elements)))
            continue
        literal = _LITERAL.fullmatch(item)
        if literal is not None:
            text = literal.group(1)
            if text[0] == " " or text in string_terminals:
                return None  # (Lark would make the named terminal of it, kept)
            elements.append(_Element(text, re.escape(text), 0, True))
            continue
        term = grammar.terminals.get(item)
        regex = _REGEX.fullmatch(term[1]) if term is not None else None
        if term is None or regex is None or not _safe_regex(regex.group(1)):
            return None
        elements.append(_Element(item, regex.group(1), term[0], False))
    if open_at:
        return None
    count = len(elements)
    groups_at: dict[int, list[int]] = {}
    for start, end in groups:
        groups_at.setdefault(start, []).append(end)

    def reach(k: int) -> list[int]:  # positions reached from k by skipping groups
        out = [k]
        for end in groups_at.get(k, []):
            out += [p for p in reach(end) if p not in out]
        return sorted(out)

    for k in range(count):  # each parser state: the candidates in rule order
        candidates = [elements[p] for p in reach(k) if p < count]
        if len(candidates) > 1 and any(e.literal for e in candidates):
            return None
        priorities = [e.priority for e in candidates]
        if any(a <= b for a, b in zip(priorities, priorities[1:])):
            return None  # (equal: Lark's tie-break; increasing: not the regex's order)
    return LinearRule(name, first_terminal, elements,
                      _regex(elements, sorted(groups, key=lambda g: (g[0], -g[1]))))


def _regex(elements: list[_Element], groups: list[tuple[int, int]]) -> str:
    """Each element after spaces skipped possessively, a terminal in an atomic group
    named by its position, each optional group possessive."""
    opening: dict[int, int] = {}
    closing: dict[int, int] = {}
    for start, end in groups:
        opening[start] = opening.get(start, 0) + 1
        closing[end] = closing.get(end, 0) + 1
    parts = []
    for i, e in enumerate(elements):
        parts.append(")?+" * closing.get(i, 0) + "(?:" * opening.get(i, 0))
        parts.append(" *+" + (e.regex if e.literal else f"(?P<g{i}>(?>{e.regex}))"))
    parts.append(")?+" * closing.get(len(elements), 0))
    return "".join(parts) + " *+"


_UNREAD = object()


class FastReader:
    """The rules derived from one grammar text; ``read`` takes a line of any command
    (a rule is derived the first time its keyword is met)."""

    def __init__(self, text: str) -> None:
        self._rules: dict[str, LinearRule | None] = {}
        self._by_keyword: dict[str, tuple[str, str, str]] = {}  # keyword -> rule, ?/!, body
        self._strings: frozenset[str] = frozenset()
        grammar = _read_grammar(text)
        command = grammar.rules.get("command") if grammar is not None else None
        if grammar is None or command is None or grammar.directives != ['%ignore " "']:
            return
        self._grammar = grammar
        # named terminals made of one string: Lark lexes that literal as them
        self._strings = frozenset(
            words[0] for _, body in grammar.terminals.values()
            for words in [_literals(body)] if words is not None and len(words) == 1)
        alternatives = _items(command[1]) or []
        if any(sep != "|" for sep in alternatives[1::2]):
            return
        starts: list[tuple[str, str]] = []  # (keyword, rule)
        for rule in alternatives[::2]:
            if rule not in grammar.rules:
                return
            first = (_items(grammar.rules[rule][1]) or ["|"])[0]
            literal = _LITERAL.fullmatch(first)
            term = grammar.terminals.get(first)
            words = [literal.group(1)] if literal is not None else \
                _literals(term[1]) if term is not None and term[0] == 0 else None
            if words is None:
                return  # (a command Lark's first state could lex otherwise)
            starts += [(w, rule) for w in words]
        keywords = [w for w, _ in starts]
        for word, rule in starts:
            if " " not in word and keywords.count(word) == 1 and not any(
                    w != word and (w.startswith(word) or word.startswith(w)) for w in keywords):
                self._by_keyword[word] = (rule, *grammar.rules[rule])

    def rule(self, keyword: str) -> LinearRule | None:
        """The derived rule read for lines of ``keyword`` (None: they go to Lark)."""
        rule = self._rules.get(keyword, _UNREAD)
        if rule is not _UNREAD:
            return rule  # type: ignore[return-value]
        found = self._by_keyword.get(keyword)
        rule = None
        if found is not None and not found[1]:  # (no ?rule or !rule)
            rule = _derive(found[0], found[2], self._grammar, self._strings)
        self._rules[keyword] = rule
        return rule

    def read(self, keyword: str, text: str) -> tuple[str, list[Tok | None]] | None:
        """(rule name, tokens) of a line starting with ``keyword``; None: ask Lark."""
        rule = self.rule(keyword)
        if rule is None:
            return None
        tokens = rule.read(keyword, text)
        return None if tokens is None else (rule.rule, tokens)


@functools.lru_cache(maxsize=16)
def fast_reader(extensions: tuple[SyntaxExtension, ...]) -> FastReader:
    return FastReader(grammar_text(extensions))

