"""The reader derived from the grammar text (issue #16 part 6) must give exactly
what Lark gives: the same node for every line it answers, and no answer (so Lark
decides) for every other line, for every core and stock plugin rule it derives;
and it must follow the grammar text, not a copy of it."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from perlbal.grammar import ast
from perlbal.grammar.fastparse import FastReader, fast_reader
from perlbal.grammar.parser import CORE_COMMANDS, Parser, SyntaxExtension, grammar_text
from perlbal.grammar.preprocess import Normalized
from perlbal.plugins import default_plugin_registry

PIECES = ["service", "pool", "web", "x_1", "a.b", "a.", ".b", "10.0.0.1", "1.2.3.4.5",
          "1x2y3z4", ":", ":80", "80", "8080", "=", "==", "= ", "v=w", "On", "A-B", "é",
          "١٢٣", "", " ", "#", "\t", "$", "add", "remove", "/var/www", "127.0.0.1:8080"]
SKELETONS = {
    "create": ["create service web", "create pool p_1"],
    "use": ["use web"], "load": ["load vhosts"],
    "pool": ["pool add p 10.0.0.1:8080", "pool p remove 1.2.3.4", "pool a b 1x2y3z4:9"],
    "set": ["set role = web_server", "set web.listen = 127.0.0.1:80", "set web pool=p",
            "set a.b.c = d = e", "set x = y"],
    "default": ["default buffer_size = 1M", "default a=b"],
    "server": ["server max_connections = 10", "server a.b=c d"],
    "enable": ["enable web"], "disable": ["disable web"],
    "header": ["header web insert X-A: b", "header web remove Cookie", "header w insert a:b"],
    "verbose": ["verbose on", "verbose off"], "show": ["show service web", "show pool"],
    "socks": ["socks all", "socks"], "mime": ["mime set a b/c", "mime list", "mime remove x"],
    "xs": ["xs enable headers", "xs"], "explain": ["explain GET http://a/ --from 1.2.3.4"],
    "unload": ["unload vhosts"], "reload": ["reload x"], "prof": ["prof on"],
    "leaks": ["leaks"], "crash": ["crash now"], "dumpconfig": ["dumpconfig"],
    "reproxy_state": ["reproxy_state x"],
}
FAST_CORE = ["create", "use", "load", "pool", "set", "default", "server", "enable", "disable"]
NOISE = [" ", "  ", ".", ":", "=", "a", "1", "é", "١", "-", "\t", "\n", "$", "#", "_"]


def _lines(keyword: str, count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        if rng.random() < 0.3:
            parts = [keyword] + [rng.choice(PIECES) for _ in range(rng.randint(0, 5))]
            seps = [rng.choice([" ", " ", " ", "", "  "]) for _ in parts]
            out.append("".join(p + s for p, s in zip(parts, seps)))
            continue
        line = list(rng.choice(SKELETONS[keyword]))
        for _ in range(rng.randint(0, 3)):  # a few edits after the keyword
            at = rng.randint(len(keyword), len(line))
            what = rng.random()
            if what < 0.4:
                line.insert(at, rng.choice(NOISE))
            elif what < 0.7 and at < len(line):
                del line[at]
            elif at < len(line):
                line[at] = rng.choice(NOISE)
        out.append("".join(line))
    return out


def _same(a: ast.Node, b: ast.Node) -> bool:
    return (type(a) is type(b) and list(a.__dict__.items()) == list(b.__dict__.items())
            and a.model_fields_set == b.model_fields_set)


@pytest.fixture(scope="module")
def parser() -> Parser:
    return Parser(default_plugin_registry().syntax_extensions())


def _derived(parser: Parser) -> dict[str, Any]:
    reader = parser._fast
    assert reader is not None
    keywords = [*CORE_COMMANDS, *parser.ext_by_keyword]
    return {k: r for k in keywords for r in [reader.rule(k)] if r is not None}


def test_what_is_derived_and_its_terminals_are_lark_s(parser: Parser) -> None:
    derived = _derived(parser)
    assert set(FAST_CORE) | set(PLUGIN_SKELETONS) <= set(derived)
    # not plain sequences, or a keyword another begins with (node/nodes, state/states)
    assert not {"include", "shutdown", "node", "nodes", "state", "states"} & set(derived)
    for rule in derived.values():
        for element in rule.elements:
            if not element.literal:
                term = parser.lark.get_terminal(element.name)
                assert (term.pattern.value, term.priority) == (element.regex, element.priority)
                assert not term.pattern.flags


def test_changing_the_grammar_text_changes_the_reader() -> None:
    text = grammar_text(())
    stock = FastReader(text)
    assert stock.read("pool", "pool add p 10.0.0.1:80") is not None
    assert stock.read("pool", "pool add p 10:80") is None
    assert stock.read("create", "create service web1") is not None
    ipish = "IPISH: /\\d+.\\d+.\\d+.\\d+/"
    word = "WORD: /\\w+/"
    assert ipish in text and word in text and "SET_TARGET.2:" in text
    edited = FastReader(text.replace(ipish, "IPISH: /\\d+/").replace(word, "WORD: /[a-z]+/"))
    read = edited.read("pool", "pool add p 10:80")
    assert read is not None and [t.text for t in read[1] if t] == ["add", "p", "10", "80"]
    assert edited.read("create", "create service web1") is None
    assert edited.read("create", "create service web") is not None
    # equal priorities: Lark's tie-break, which the reader does not copy
    assert FastReader(text.replace("SET_TARGET.2:", "SET_TARGET:")).rule("set") is None
    assert FastReader(text.replace('pool_cmd: "pool" WORD WORD IPISH [":" PORTNUM]',
                                   'pool_cmd: "pool" WORD WORD IPISH')).read(
        "pool", "pool add p 10.0.0.1:80") is None
    assert FastReader(text + '\n%ignore "\\t"\n').read("use", "use web") is None


def _lark_agrees(parser: Parser, keyword: str, lines: list[str], upper: bool) -> int:
    """How many of ``lines`` the derived reader answered (each as Lark does)."""
    ext = parser.ext_by_keyword.get(keyword)
    usage = (CORE_COMMANDS[keyword].usage if ext is None else ext.usage) or ""
    answered = 0
    for text in lines:
        if text != text.lstrip() or "\n" in text:
            continue
        norm = Normalized(text, text.upper() if upper and "=" not in text else text, text)
        base: dict[str, Any] = {"file": "f", "line": 7, "column": 1, "text": text,
                                "orig": norm.orig, "keyword": keyword}
        fast = parser._read_fast(norm, dict(base), ext)
        if fast is None:
            continue
        answered += 1
        slow = parser._parse_with_lark(norm, dict(base), usage, ext)
        assert _same(fast, slow), (text, fast, slow)
    return answered


CORE_DERIVED = sorted(set(SKELETONS) | {"aio", "help", "uptime"})


@pytest.mark.parametrize("keyword", CORE_DERIVED)
def test_fast_answers_only_what_lark_answers_alike(parser: Parser, keyword: str) -> None:
    rng = random.Random(keyword)
    assert keyword in CORE_COMMANDS  # (a core command, not a plugin's)
    SKELETONS.setdefault(keyword, [keyword])
    lines = _lines(keyword, 1500, rng) + [
        f"{keyword} " + " ".join(p) for p in itertools.product(PIECES[:12], repeat=2)]
    answered = _lark_agrees(parser, keyword, lines, upper=True)
    assert answered > (100 if keyword in FAST_CORE else 5)  # the vocabulary does reach it


def test_every_derived_rule_is_fuzzed(parser: Parser) -> None:
    assert set(_derived(parser)) <= set(CORE_DERIVED) | set(PLUGIN_SKELETONS) | {
        k for k, c in CORE_COMMANDS.items() if c.no_opts}


def test_whole_parser_same_with_and_without_fast_path(parser: Parser) -> None:
    slow = Parser(parser.extensions)
    slow._fast = None
    rng = random.Random(16)
    lines = ["CREATE SERVICE Web", "  SET role = reverse_proxy  # comment", "set web.listen=80",
             "SET web listen = 127.0.0.1:80", "POOL pool1 ADD 10.0.0.1:8080",
             "pool add p 10.0.0.2", "ENABLE web", "disable  web", "LOAD Vhosts",
             "load vhosts", "DEFAULT buffer_size = 1M", "SERVER max_connections = 10",
             "use web", "create pool", "set = x", "pool a b c", "enable", "enable a b",
             "SET $HOME = ${ip:lo}", "SET x = $NOPE", "set role = ${bogus}",
             "VHOST web Host.Example.com = svc", "vhost  a = b", "VPATH ^/A=b = svc",
             "vhost a b c = d", "vhost = x", "perlrequire=x", "PERLREQUIRE = My::X", "stats",
             "  throttle reload nope", "redirect host a", "patterns", "recent 5 6",
             "vhost\ta\t=\tb  # c", "VHOST $HOME = svc", "VERBOSE ON", "show service web",
             "HEADER web INSERT X-Foo: Bar", "header web insert X\x01: y", "header w remove a:",
             "MIME SET a b/c", "xs enable headers", "ACCESS allow ip 1.2.3.4", "socks all",
             "EXPLAIN GET /A --host B", "crash", "dumpconfig now", "unload X", "shutdown"]
    for keyword in FAST_CORE:
        lines += _lines(keyword, 300, rng)
    for number, raw in enumerate(lines, start=1):
        env = {"HOME": "/home/u", "NOPE": ""}
        a = parser.parse_line(raw, file="c.conf", line=number, env=env)
        b = slow.parse_line(raw, file="c.conf", line=number, env=env)
        assert _same(a, b), (raw, a, b)


def test_construct_is_model_construct() -> None:
    base = {"file": "f", "line": 2, "column": 3, "text": "t", "orig": "T", "keyword": "k"}
    samples: dict[type[ast.Node], dict[str, Any]] = {
        ast.Blank: {}, ast.Set: {"target": None, "key": "k", "value": "v"},
        ast.PoolEdit: {"word1": "a", "word2": "b", "ip": "1.2.3.4", "port": None},
        ast.SyntaxFailure: {"usage": "u", "error_column": 4},
        ast.PluginCommand: {"plugin": "P", "args": ("a", None)},
        ast.Shutdown: {"graceful": True}, ast.Explain: {}}
    for cls, fields in samples.items():
        for values in ({**base, **fields}, fields):
            made = ast.construct(cls, **values)
            assert _same(made, cls.model_construct(**values))
            assert made == cls(**values) and hash(made) == hash(cls(**values))
            assert made.model_copy(update={"line": 9}) == cls(**{**values, "line": 9})
            moved = ast.relocated(made, "g", 9, 4)
            assert _same(moved, made.model_copy(update={"file": "g", "line": 9, "column": 4}))


def test_a_plugin_rule_that_may_change_core_lexing_turns_the_fast_path_off() -> None:
    plain = SyntaxExtension(keyword="zz", plugin="Z", rule='"zz" ZZ_ARG', terminals="ZZ_ARG: /x/")
    reader = fast_reader((plain,))
    assert reader.rule("zz") is not None and reader.rule("create") is not None
    for odd in (SyntaxExtension(keyword="zz", plugin="Z", rule="ZZ_ARG+"),
                SyntaxExtension(keyword="zz", plugin="Z", rule='"zz" ZZ_ARG',
                                terminals="ZZ_ARG: /x/\n%ignore /\\t/\n")):
        assert Parser([odd])._fast is not None
        assert fast_reader((odd,)).rule("create") is None
    # a keyword another command's literal begins with goes to Lark; the rest stays
    longer = fast_reader((SyntaxExtension(keyword="zz", plugin="Z", rule='"zzz" ZZ_ARG',
                                          terminals="ZZ_ARG: /x/"),))
    assert longer.rule("zz") is None
    assert longer.rule("create") is not None
    setx = fast_reader((SyntaxExtension(keyword="setx", plugin="Z", rule='"setx" ZZ_ARG',
                                        terminals="ZZ_ARG: /x/"),))
    assert setx.rule("set") is None and setx.rule("setx") is None


def _fold_by_chars(line: str) -> tuple[str, tuple[int, ...]]:
    """The column map as it was first written, one character at a time."""
    chars: list[str] = []
    cols: list[int] = []
    pending_space = -1
    for i, ch in enumerate(line):
        if ch.isspace():
            if chars and pending_space < 0:
                pending_space = i
            continue
        if pending_space >= 0:
            chars.append(" ")
            cols.append(pending_space)
            pending_space = -1
        chars.append(ch)
        cols.append(i)
    return "".join(chars), tuple(cols)


def test_column_map_folds_what_isspace_calls_space() -> None:
    import re
    import sys

    from perlbal.grammar.preprocess import _fold

    space = re.compile(r"\s")
    assert [c for c in range(sys.maxunicode + 1)
            if chr(c).isspace() != bool(space.match(chr(c)))] == []
    rng = random.Random(6)
    alphabet = ["a", "B", "=", "é", " ", "  ", "\t", "\x1c", "\u2028", "\xa0", "\u3000", "#"]
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert _fold(line) == _fold_by_chars(line), repr(line)
        assert _fold(line)[0] == " ".join(line.split())


PLUGIN_SKELETONS = {
    "vhost": ["vhost web host.example.com = svc", "vhost *.a.com=svc_2", "vhost * = x"],
    "vpath": ["vpath ^/a=b = svc", "vpath sel ^/static/ = files", "vpath .* =x"],
    "redirect": ["redirect host www.a.com a.com", "redirect host x y"],
    "patterns": ["patterns a b c", "patterns"], "stats": ["stats", "stats web"],
    "recent": ["recent", "recent 10"], "throttle": ["throttle reload whitelist",
                                                    "throttle reload config"],
    "perlrequire": ["perlrequire = My::Module", "perlrequire=a.b"],
    "perlhandler": ["perlhandler = My::Handler", "perlhandler=x"],
    "access": ["access allow ip 10.0.0.0/8", "access policy deny", "access reset",
               "access queue_low netmask 1.2.3.0/24"],
}
PLUGIN_PIECES = ["web", "host.example.com", "*.a.com", "*", "^/a=b", "=", "svc_1", "reload",
                 "whitelist", "host", "x:y", "é", "-", "/", "a b", "My::M", "", " ", "allow",
                 "policy", "ip", "1.2.3.0/24"]


@pytest.mark.parametrize("keyword", sorted(PLUGIN_SKELETONS))
def test_plugin_lines_read_without_lark_as_lark_reads_them(parser: Parser,
                                                           keyword: str) -> None:
    ext = parser.ext_by_keyword.get(keyword)
    rng = random.Random(keyword)
    SKELETONS[keyword] = PLUGIN_SKELETONS[keyword]  # (for _lines)
    saved = PIECES[:]
    PIECES[:] = PLUGIN_PIECES
    try:
        lines = _lines(keyword, 1500, rng)
    finally:
        PIECES[:] = saved
        del SKELETONS[keyword]
    assert ext is not None
    assert _lark_agrees(parser, keyword, lines, upper=False) > 50


def test_generic_plugin_nodes_keep_lark_s_placeholders_and_drop_literals() -> None:
    ext = SyntaxExtension(keyword="zzopt", plugin="Z",
                          rule='"zzopt" [ZZOPT_A] ZZOPT_B "=" ZZOPT_C [ZZOPT_D]',
                          terminals="ZZOPT_A.2: /\\d+(?= )/\nZZOPT_B: /[a-z]+/\n"
                                    "ZZOPT_C: /\\w+/\nZZOPT_D: /:\\S+/\n")
    parser = Parser([ext])
    assert parser._fast is not None and parser._fast.rule("zzopt") is not None
    rng = random.Random(5)
    pieces = ["1", "22", "abc", "x", "=", "9x", ":q", ":", "A", " ", ""]
    answered = 0
    shapes = [["", "1 ", "22 ", "1", "x "], ["abc", "x", "A"], ["=", " = ", " =", "= ", ""],
              ["x", "A", "9x", ""], ["", " :q", ":q", " :", "  "]]
    for n in range(3000):
        if n % 3:
            text = "zzopt " + "".join(rng.choice(options) for options in shapes)
        else:
            text = "zzopt" + "".join(rng.choice([" ", "", "  "]) + rng.choice(pieces)
                                     for _ in range(rng.randint(0, 6)))
        norm = Normalized(text, text, text)
        base: dict[str, Any] = {"file": "f", "line": 1, "column": 1, "text": text,
                                "orig": text, "keyword": "zzopt"}
        fast = parser._read_fast(norm, dict(base), ext)
        if fast is None:
            continue
        answered += 1
        assert _same(fast, parser._parse_with_lark(norm, dict(base), "u", ext)), text
    assert answered > 100


def test_blank_lines_are_what_normalising_them_makes(parser: Parser) -> None:
    from perlbal.grammar.preprocess import normalize

    for raw in ("", " ", "   ", "\t\r\n", "\r\n", "\x1c", "\u3000 \xa0", "\x0b\x0c"):
        assert raw == "" or raw.isspace()
        direct = parser.parse_line(raw, file="f", line=4)
        assert _same(direct, parser.parse_normalized(normalize(raw), file="f", line=4))
        assert isinstance(direct, ast.Blank)
