"""The Lark side of the parser: LALR tables (cached per grammar text) and the
tree -> AST transformer (each rule's node is built by ``nodes.build``, as the
fast reader builds it).

Imported only when a line needs Lark: ``Parser`` reads the plain-sequence
commands with the reader ``fastparse`` derives from the same grammar text and
comes here for everything else, so a ``perlbal check`` of a config made of such
lines never imports Lark.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

from lark import Lark, Token, Transformer, Tree, UnexpectedInput

from perlbal.grammar import ast
from perlbal.grammar.nodes import build as build_node
from perlbal.grammar.syntax import SyntaxExtension, Tok, grammar_text, parser_cache_path
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


def _tokens(children: Iterable[Any]) -> Iterable[Token | None]:
    for child in children:
        if isinstance(child, Tree):
            yield from _tokens(child.children)
        else:
            yield child


class _ToAst(Transformer[Token, ast.Node]):
    """Each ``*_cmd`` rule becomes its node through ``nodes.build``, the builders the
    fast reader uses too; a plugin's sub-rule stays a tree, flattened by its command."""

    def __init__(self, base: dict[str, Any], norm: Normalized,
                 extensions: Mapping[str, SyntaxExtension]) -> None:
        super().__init__()
        self.base = base
        self.norm = norm
        self.extensions = extensions

    def start(self, items: list[ast.Node]) -> ast.Node:
        return items[0]

    def __default__(self, data: str, children: list[Any], meta: Any) -> Any:
        tokens = [None if tok is None else Tok(tok.type, str(tok), tok.start_pos or 0)
                  for tok in _tokens(children)]
        node = build_node(data, tokens, self.base, self.norm, self.extensions)
        return Tree(data, children, meta) if node is None else node
