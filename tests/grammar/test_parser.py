"""The grammar and parser: Perl's normalisation, positions, and robustness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from perlbal.check import Checker
from perlbal.grammar import ast
from perlbal.grammar.parser import Parser, SyntaxExtension
from perlbal.grammar.preprocess import normalize
from perlbal.interp import CommandContext, Interpreter

PARSER = Parser()


def test_normalisation_matches_perl() -> None:
    norm = normalize("  SET   Web.Listen\t= Foo#Bar  \r\n")
    assert norm.text == "set web.listen = Foo"
    assert norm.orig == "SET Web.Listen = Foo"
    # column map points back into the raw line
    assert norm.source_column(0) == 3
    assert norm.source_column(len("set web.listen = ")) == 22


def test_env_expansion() -> None:
    norm = normalize("SET listen = $PORT", {"PORT": "8080"})
    assert norm.text == "set listen = 8080"


def test_nodes_carry_positions() -> None:
    node = PARSER.parse_line("   CREATE SERVICE web", file="x.conf", line=7)
    assert isinstance(node, ast.Create)
    assert (node.file, node.line, node.column, node.name) == ("x.conf", 7, 4, "web")


def test_set_forms() -> None:
    cases = {
        "SET web.listen = 80": ("web", "listen", "80"),
        "SET web listen = 80": ("web", "listen", "80"),
        "SET listen=80": (None, "listen", "80"),
        "SET web.Stats.foo = Bar": ("web", "stats.foo", "Bar"),
        "set x = a=b": (None, "x", "a=b"),
    }
    for line, (target, key, value) in cases.items():
        node = PARSER.parse_line(line)
        assert isinstance(node, ast.Set), line
        assert (node.target, node.key, node.value) == (target, key, value), line


def test_syntax_failures_point_at_the_problem() -> None:
    node = PARSER.parse_line("SET listen 127.0.0.1:80")
    assert isinstance(node, ast.SyntaxFailure)
    assert node.usage == "usage: SET [<service>] <param> = <value>"
    assert node.hint == "missing '=' between the parameter and its value"
    node = PARSER.parse_line("CREATE SERVIC web")
    assert isinstance(node, ast.SyntaxFailure)
    assert node.error_column == 8
    assert node.hint == "expected SERVICE or POOL after CREATE"
    node = PARSER.parse_line("POOL ADD p 10.0.0.1:x")
    assert isinstance(node, ast.SyntaxFailure)
    assert node.usage == "Invalid syntax to 'pool' command"
    assert node.hint == "expected an address as <ip>[:<port>], e.g. 10.0.0.1:8080"
    node = PARSER.parse_line("HEADER web ADD X-Foo: 1")
    assert isinstance(node, ast.SyntaxFailure)
    assert node.hint == "expected INSERT or REMOVE after the service name"


def test_keywords_need_word_boundaries() -> None:
    assert isinstance(PARSER.parse_line("show services"), ast.SyntaxFailure)
    assert isinstance(PARSER.parse_line("set.web = 1"), ast.SyntaxFailure)
    assert isinstance(PARSER.parse_line("createservice x"), ast.UnknownCommand)


def test_pool_either_word_order() -> None:
    a = PARSER.parse_line("POOL ADD backends 10.0.0.1:81")
    b = PARSER.parse_line("POOL backends ADD 10.0.0.1:81")
    assert isinstance(a, ast.PoolEdit) and isinstance(b, ast.PoolEdit)
    assert {a.word1, a.word2} == {b.word1, b.word2} == {"add", "backends"}


def test_plugin_extends_grammar_without_editing_it() -> None:
    ext = SyntaxExtension(keyword="greet", plugin="Greeter", rule='"greet" WORD [WORD]',
                          usage="usage: GREET <who> [<how>]")
    parser = Parser([ext])
    node = parser.parse_line("GREET world loudly")
    assert isinstance(node, ast.PluginCommand)
    assert (node.plugin, node.args) == ("Greeter", ("world", "loudly"))
    bad = parser.parse_line("GREET")
    assert isinstance(bad, ast.SyntaxFailure) and bad.usage == "usage: GREET <who> [<how>]"
    # the core parser does not know it
    assert isinstance(PARSER.parse_line("GREET world"), ast.UnknownCommand)


def test_plugin_command_clash_is_loud() -> None:
    import pytest

    with pytest.raises(ValueError):
        Parser([SyntaxExtension(keyword="set", plugin="X", rule='"set" WORD')])


line_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80)
config_words = st.sampled_from([
    "CREATE", "SERVICE", "POOL", "SET", "ADD", "REMOVE", "ENABLE", "DISABLE", "VHOST", "=",
    "web", "p", "role", "listen", "reverse_proxy", "127.0.0.1:80", "*.x.com", "LOAD",
    "vhosts", "HEADER", "INSERT", "X-A:", "b", "SERVER", "mime", "show", "#", "$HOME",
    "${ip:lo}", "${nope}", "shutdown", ".", ":", "docroot", "/tmp", "plugins", "DEFAULT",
])
config_line = st.lists(config_words, max_size=8).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(line_text, config_line), max_size=12))
def test_arbitrary_text_never_raises(lines: list[str]) -> None:
    """Parser, interpreter and check only ever answer with replies/diagnostics."""
    interp = Interpreter()
    ctx = CommandContext(verbose=True)
    for raw in lines:
        if "shutdown" in raw.lower():
            continue  # would ask the (dry) runtime to stop; harmless but pointless
        reply = interp.run(raw, ctx)
        assert all(isinstance(x, str) for x in reply.lines)
    checker = Checker()
    checker.interp.load_config_text("\n".join(lines), file="fuzz.conf")
    result = checker.finish()
    for diag in result.diagnostics:
        assert diag.render()
