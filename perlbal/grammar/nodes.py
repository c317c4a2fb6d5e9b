"""The AST node of each rule of perlbal.lark, built from the rule's tokens.

One builder per core rule (``CORE_BUILDERS``, keyed by the rule's name); plugin
rules are built by ``syntax.plugin_node``.  Both parsers call ``build``: Lark's
transformer (larkparse) with the tokens of its tree, the reader derived from
the grammar (fastparse) with the tokens it matched; either way a token is a
``Tok`` (terminal, text, offset in the normalised line) and an absent optional
is None, as Lark's ``maybe_placeholders`` gives it.  No Lark import here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from perlbal.grammar import ast
from perlbal.grammar.preprocess import Normalized
from perlbal.grammar.syntax import (
    Arg, SyntaxExtension, Tok, check_inserted_header, plugin_node)

Toks = Sequence["Tok | None"]
Builder = Callable[[Toks, dict[str, Any], Normalized], ast.Node]


def _s(tok: Tok | None) -> str | None:
    return None if tok is None else tok.text


def _r(tok: Tok | None) -> str:
    assert tok is not None  # (a required terminal of the rule)
    return tok.text


def create_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Create, kind=_r(t[0]), name=_r(t[1]), **base)


def use_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Use, name=_r(t[0]), **base)


def pool_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    port = t[3]
    return ast.construct(ast.PoolEdit, word1=_r(t[0]), word2=_r(t[1]), ip=_r(t[2]),
                         port=None if port is None else int(port.text), **base)


def set_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    # SET_TARGET is "<service>." or "<service> ": drop the separator
    target = t[0]
    return ast.construct(ast.Set, target=None if target is None else target.text[:-1],
                         key=_r(t[1]), value=_r(t[2]), **base)


def default_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Default, key=_r(t[0]), value=_r(t[1]), **base)


def header_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    action, name, value = _r(t[1]), t[2], t[3]
    assert name is not None
    if action == "insert" and value is not None:
        # (without a value the handler answers Perl's "no value provided")
        check_inserted_header(name, value)
    return ast.construct(ast.Header, service=_r(t[0]), action=action, header=name.text,
                         value=_s(value), **base)


def enable_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Enable, verb=_r(t[0]), service=_r(t[1]), **base)


def load_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    # Perl takes the plugin name from the original case of the line
    # ($mc->orig =~ /^load (\w+)$/i), which a variable expansion spoils
    tok = t[0]
    assert tok is not None
    name, orig = tok.text, norm.orig
    if orig.lower() == norm.text:
        name = orig[tok.offset:tok.offset + len(name)]
    return ast.construct(ast.Load, name=name, **base)


def unload_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Unload, name=_r(t[0]), **base)


def reload_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Reload, name=_r(t[0]), **base)


def verbose_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Verbose, on=_r(t[0]) == "on", **base)


def shutdown_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    timeout = t[1]
    return ast.construct(ast.Shutdown, graceful=t[0] is not None,
                         timeout=None if timeout is None else int(timeout.text), **base)


def mime_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Mime, sub=_s(t[0]), arg1=_s(t[1]), arg2=_s(t[2]), **base)


def xs_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Xs, sub=_s(t[0]), module=_s(t[1]), **base)


def nodes_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    port = t[2]
    return ast.construct(ast.Nodes, ip=_s(t[1]), port=None if port is None else int(port.text),
                         **base)


def show_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Show, what=_r(t[0]), name=_s(t[1]), **base)


def server_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Server, key=_r(t[0]), value=_r(t[1]), **base)


def socks_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Socks, mode=_s(t[0]), **base)


def states_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.States, service=_s(t[0]), **base)


def simple_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Query, **base)


def any_args_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.AnyArgs, **base)


def explain_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.Explain, args=_s(t[0]) or "", **base)


def perl_only_cmd(t: Toks, base: dict[str, Any], norm: Normalized) -> ast.Node:
    return ast.construct(ast.PerlOnly, **base)


CORE_BUILDERS: dict[str, Builder] = {
    f.__name__: f for f in (
        create_cmd, use_cmd, pool_cmd, set_cmd, default_cmd, header_cmd, enable_cmd,
        load_cmd, unload_cmd, reload_cmd, verbose_cmd, shutdown_cmd, mime_cmd, xs_cmd,
        nodes_cmd, show_cmd, server_cmd, socks_cmd, states_cmd, simple_cmd, any_args_cmd,
        explain_cmd, perl_only_cmd)}


def build(rule: str, tokens: Toks, base: dict[str, Any], norm: Normalized,
          extensions: Mapping[str, SyntaxExtension]) -> ast.Node | None:
    """The node of ``rule`` (a ``*_cmd`` rule of the grammar) from its tokens; None
    when ``rule`` is no command (a plugin's sub-rule).  Raises ``BadArgument``."""
    builder = CORE_BUILDERS.get(rule)
    if builder is not None:
        return builder(tokens, base, norm)
    ext = extensions.get(rule[:-len("_cmd")]) if rule.endswith("_cmd") else None
    if ext is None:
        return None
    args = tuple(None if tok is None else Arg(tok.type, tok.text, norm.source_column(tok.offset))
                 for tok in tokens)
    return plugin_node(ext, args, base)
