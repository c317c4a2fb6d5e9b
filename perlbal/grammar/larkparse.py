"""The Lark side of the parser: LALR tables (cached per grammar text) and the
tree -> AST transformer.

Imported only when a line needs Lark: ``Parser`` recognises the common core
commands itself (see ``parser._fast``) and comes here for everything else, so
a ``perlbal check`` of a config made of such lines never imports Lark.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

from lark import Lark, Token, Transformer, Tree, UnexpectedInput

from perlbal.grammar import ast
from perlbal.grammar.syntax import (
    Arg, SyntaxExtension, check_inserted_header, grammar_text, parser_cache_path, plugin_node)
from perlbal.grammar.preprocess import Normalized

__all__ = ["Lark", "UnexpectedInput", "build", "to_ast"]


@functools.lru_cache(maxsize=16)
def build(extensions: tuple[SyntaxExtension, ...]) -> Lark:
    # Building the LALR tables takes about as long as checking a small config;
    # Lark's cache stores them and checks they belong to this very grammar text.
    text = grammar_text(extensions)
    cache = parser_cache_path(text)
    return Lark(text, parser="lalr", lexer="contextual", maybe_placeholders=True,
                cache=cache if cache is not None else False)


def to_ast(tree: Tree[Token], base: dict[str, Any], norm: Normalized,
           extensions: Mapping[str, SyntaxExtension]) -> ast.Node:
    result = _ToAst(base, norm, extensions).transform(tree)
    assert isinstance(result, ast.Node)
    return result


def _s(tok: Any) -> str | None:
    return None if tok is None else str(tok)


def _tokens(children: Iterable[Any]) -> Iterable[Token | None]:
    for child in children:
        if isinstance(child, Tree):
            yield from _tokens(child.children)
        else:
            yield child


class _ToAst(Transformer[Token, ast.Node]):
    def __init__(self, base: dict[str, Any], norm: Normalized,
                 extensions: Mapping[str, SyntaxExtension]) -> None:
        super().__init__()
        self.base = base
        self.norm = norm
        self.extensions = extensions

    def start(self, items: list[ast.Node]) -> ast.Node:
        return items[0]

    def create_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Create, kind=str(t[0]), name=str(t[1]), **self.base)

    def use_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Use, name=str(t[0]), **self.base)

    def pool_cmd(self, t: list[Token]) -> ast.Node:
        port = int(t[3]) if t[3] is not None else None
        return ast.construct(ast.PoolEdit, word1=str(t[0]), word2=str(t[1]), ip=str(t[2]),
                             port=port, **self.base)

    def set_cmd(self, t: list[Token]) -> ast.Node:
        # SET_TARGET is "<service>." or "<service> ": drop the separator
        target = None if t[0] is None else str(t[0])[:-1]
        return ast.construct(ast.Set, target=target, key=str(t[1]), value=str(t[2]), **self.base)

    def default_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Default, key=str(t[0]), value=str(t[1]), **self.base)

    def header_cmd(self, t: list[Token]) -> ast.Node:
        action, name, value = str(t[1]), t[2], t[3]
        if action == "insert" and value is not None:
            # (without a value the handler answers Perl's "no value provided")
            check_inserted_header(name, value)
        return ast.construct(ast.Header, service=str(t[0]), action=action,
                             header=str(name), value=_s(value), **self.base)

    def enable_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Enable, verb=str(t[0]), service=str(t[1]), **self.base)

    def load_cmd(self, t: list[Token]) -> ast.Node:
        # Perl takes the plugin name from the original case of the line
        # ($mc->orig =~ /^load (\w+)$/i), which a variable expansion spoils
        name, orig = str(t[0]), self.norm.orig
        if orig.lower() == self.norm.text and t[0].start_pos is not None:
            name = orig[t[0].start_pos:t[0].start_pos + len(name)]
        return ast.construct(ast.Load, name=name, **self.base)

    def unload_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Unload, name=str(t[0]), **self.base)

    def reload_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Reload, name=str(t[0]), **self.base)

    def verbose_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Verbose, on=str(t[0]) == "on", **self.base)

    def shutdown_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Shutdown, graceful=t[0] is not None,
                             timeout=int(t[1]) if t[1] is not None else None,
                             **self.base)

    def mime_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Mime, sub=_s(t[0]), arg1=_s(t[1]), arg2=_s(t[2]),
                             **self.base)

    def xs_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Xs, sub=_s(t[0]), module=_s(t[1]), **self.base)

    def nodes_cmd(self, t: list[Token]) -> ast.Node:
        port = int(t[2]) if t[2] is not None else None
        return ast.construct(ast.Nodes, ip=_s(t[1]), port=port, **self.base)

    def show_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Show, what=str(t[0]), name=_s(t[1]), **self.base)

    def server_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Server, key=str(t[0]), value=str(t[1]), **self.base)

    def socks_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Socks, mode=_s(t[0]), **self.base)

    def states_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.States, service=_s(t[0]), **self.base)

    def simple_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Query, **self.base)

    def any_args_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.AnyArgs, **self.base)

    def explain_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.Explain, args=_s(t[0]) or "", **self.base)

    def perl_only_cmd(self, t: list[Token]) -> ast.Node:
        return ast.construct(ast.PerlOnly, **self.base)

    def __default__(self, data: str, children: list[Any], meta: Any) -> Any:
        ext = self.extensions.get(data[: -len("_cmd")]) if data.endswith("_cmd") else None
        if ext is None:
            return Tree(data, children, meta)  # a plugin's sub-rule: flattened below
        args = tuple(None if tok is None else Arg(tok.type, str(tok),
                                                  self.norm.source_column(tok.start_pos or 0))
                     for tok in _tokens(children))
        return plugin_node(ext, args, self.base)
