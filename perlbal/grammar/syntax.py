"""What the grammar is made of, apart from the parsing itself: the plugin
extension records (``SyntaxExtension``, ``PluginArgs``), the grammar text with
its extensions and where its LALR tables are cached, and the header checks of
HEADER INSERT.  Shared by ``parser`` (the dispatch and the common commands) and
``larkparse`` (Lark), which import it and never each other's private parts.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, NamedTuple, TypeVar, Union, get_args, get_origin

from perlbal.grammar import ast


class Tok(NamedTuple):
    """One token a rule matched, whichever parser read it: its terminal, its text
    and where it starts in the normalised line (what ``nodes`` builds from)."""

    type: str
    text: str
    offset: int


@dataclass(frozen=True)
class Arg:
    """One token a plugin rule matched: its terminal, its text and where it starts
    (1-based column in the raw line, so a diagnostic can point at it)."""

    kind: str
    text: str
    column: int


PluginNode = TypeVar("PluginNode", bound=ast.PluginCommand)


class PluginArgs:
    """The tokens of one plugin command, handed to its ``SyntaxExtension.build``."""

    def __init__(self, args: tuple[Arg | None, ...], base: Mapping[str, Any], plugin: str) -> None:
        self.args = args
        self.base = base
        self.plugin = plugin

    def get(self, *kinds: str) -> Arg | None:
        """The first token of one of these terminals (None when the rule had none)."""
        return next((a for a in self.args if a is not None and a.kind in kinds), None)

    def every(self, kind: str) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a is not None and a.kind == kind)

    def build(self, cls: type[PluginNode], **fields: Any) -> PluginNode:
        """``cls`` with ``fields``; an ``Arg`` becomes its text and records its
        column under the field's name (``name.i`` for a tuple of them)."""
        values: dict[str, Any] = {}
        at: list[tuple[str, int]] = []
        for name, value in fields.items():
            if isinstance(value, Arg):
                values[name] = value.text
                at.append((name, value.column))
            elif isinstance(value, tuple) and all(isinstance(v, Arg) for v in value):
                values[name] = tuple(v.text for v in value)
                at.extend((f"{name}.{i}", v.column) for i, v in enumerate(value))
            else:
                values[name] = value
        if _plainly_valid(cls, values):
            return ast.construct(cls, plugin=self.plugin, at=tuple(at), **values, **self.base)
        return cls(plugin=self.plugin, at=tuple(at), **values, **self.base)


#: a value check equivalent to pydantic's for one field annotation
_Check = Callable[[Any], bool]
#: per plugin node type: its own fields' checks (None: validate with pydantic)
_PLAIN_CHECKS: dict[type[ast.PluginCommand], dict[str, _Check] | None] = {}
_BASE_FIELDS = frozenset(ast.PluginCommand.model_fields)


def _check_for(annotation: Any) -> _Check | None:
    """A check accepting exactly what pydantic accepts unchanged for this
    annotation, for the shapes plugin nodes use (str, a Literal of strings,
    an optional, a tuple of them); None for any other shape."""
    if annotation is str:
        return lambda v: type(v) is str
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal and all(type(a) is str for a in args):
        allowed = frozenset(args)
        return lambda v: type(v) is str and v in allowed
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = _check_for(args[0])
        if inner is None:
            return None
        return lambda v: type(v) is tuple and all(inner(x) for x in v)
    if origin in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        part = _check_for(rest[0]) if len(rest) == 1 else None
        if part is None:
            return None
        return lambda v: v is None or part(v)
    return None


def _plain_checks(cls: type[ast.PluginCommand]) -> dict[str, _Check] | None:
    decorators = cls.__pydantic_decorators__
    if (decorators.validators or decorators.field_validators or decorators.root_validators
            or decorators.model_validators):
        return None
    checks: dict[str, _Check] = {}
    for name, info in cls.model_fields.items():
        if name in _BASE_FIELDS:
            continue
        check = _check_for(info.annotation)
        if check is None or info.alias is not None:
            return None
        checks[name] = check
    return checks


def _plainly_valid(cls: type[ast.PluginCommand], values: Mapping[str, Any]) -> bool:
    """Whether pydantic would take ``values`` for ``cls``'s own fields as they
    are: then the node is made without building its validator (about 10 ms at
    the first node of each type, importing pydantic's plugin loader with it) and
    without running it.  Anything else (a value pydantic would coerce or refuse,
    a field left out or unknown, a node type with validators) goes to pydantic,
    which gives the same node or the same error as before."""
    checks = _PLAIN_CHECKS.get(cls, ...)
    if checks is ...:
        checks = _PLAIN_CHECKS[cls] = _plain_checks(cls)
    if checks is None or not checks.keys() >= values.keys():
        return False
    for name, check in checks.items():
        if name in values:
            if not check(values[name]):
                return False
        elif cls.model_fields[name].is_required():
            return False
    return True


def plugin_node(ext: SyntaxExtension, args: tuple[Arg | None, ...],
                base: Mapping[str, Any]) -> ast.PluginCommand:
    """The node of plugin command ``ext`` whose rule matched the tokens ``args``
    (None for an absent optional), whichever parser read them."""
    if ext.build is not None:
        return ext.build(PluginArgs(args, base, ext.plugin))
    # (every field is made here from the tokens: nothing for pydantic to check)
    return ast.construct(ast.PluginCommand, plugin=ext.plugin,
                         args=tuple(None if a is None else a.text for a in args),
                         at=tuple((f"args.{i}", a.column)
                                  for i, a in enumerate(args) if a is not None),
                         **base)


@dataclass(frozen=True)
class SyntaxExtension:
    """A plugin's command: ``rule`` is the Lark body of rule ``<keyword>_cmd``.

    ``terminals`` defines the terminals (and sub-rules) the rule uses; their
    names must start with the upper-cased keyword (the lower-cased one for
    rules) to stay apart.  ``build`` turns the matched tokens into the plugin's
    typed node; without it the node is a ``PluginCommand`` whose ``args`` are
    the tokens' texts (None for an absent optional).  ``mistakes`` names typical
    wrong lines for ``UnexpectedInput.match_examples``: (hint, example lines).
    """

    keyword: str
    plugin: str
    rule: str
    usage: str | None = None
    terminals: str = ""
    build: Callable[[PluginArgs], ast.PluginCommand] | None = None
    mistakes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


def _grammar_text() -> str:
    from importlib import resources

    return resources.files("perlbal.grammar").joinpath("perlbal.lark").read_text()


_CORE_RULES = [
    "create_cmd", "use_cmd", "pool_cmd", "set_cmd", "default_cmd", "header_cmd",
    "enable_cmd", "load_cmd", "unload_cmd", "reload_cmd", "verbose_cmd", "shutdown_cmd",
    "mime_cmd", "xs_cmd", "nodes_cmd", "show_cmd", "server_cmd", "socks_cmd", "states_cmd",
    "simple_cmd", "any_args_cmd", "perl_only_cmd", "explain_cmd",
]


def grammar_text(extensions: tuple[SyntaxExtension, ...]) -> str:
    """perlbal.lark plus one ``command`` alternative per extension, with its rule."""
    rules = _CORE_RULES + [f"{e.keyword}_cmd" for e in extensions]
    text = _grammar_text()
    text += "\n?command: " + "\n        | ".join(rules) + "\n"
    for ext in extensions:
        text += f"\n{ext.keyword}_cmd: {ext.rule}\n{ext.terminals}\n"
    return text


def parser_cache_path(text: str) -> str | None:
    """Where Lark keeps the LALR tables built for grammar ``text``: one file per
    grammar (so plugin sets never evict each other) under the user's cache
    directory; None when it cannot be created (then every start builds them)."""
    import hashlib
    import os

    import lark

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "perlbal")
    digest = hashlib.sha256(f"{lark.__version__}\0{text}".encode()).hexdigest()[:32]
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return os.path.join(folder, f"grammar-{digest}.lark") if os.access(folder, os.W_OK) else None


class BadArgument(Exception):
    """Raised inside the transformer for an argument we refuse although Perl takes it;
    ``offset`` is where in the normalised line the offending text starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# RFC 9110 section 5.1 (field-name = token) and 5.5 (field values hold no CTL
# but HTAB).  Beyond Perl, which inserts whatever the line holds: a CR, LF or
# NUL in an inserted header would corrupt or split every backend request.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _field_value_bad(c: str) -> bool:
    return (c < " " and c != "\t") or c == "\x7f"


def _visible(text: str) -> str:
    """``text`` with control bytes spelled out, fit for an ERROR line."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def check_inserted_header(name: Tok, value: Tok) -> None:
    bad = next((i for i, c in enumerate(name.text) if c not in _TCHAR), None)
    if bad is not None:
        raise BadArgument(f"invalid header name '{_visible(name.text)}': a header name is an "
                           "RFC 9110 token (letters, digits and !#$%&'*+-.^_`|~)",
                           name.offset + bad)
    bad = next((i for i, c in enumerate(value.text) if _field_value_bad(c)), None)
    if bad is not None:
        raise BadArgument(f"invalid header value '{_visible(value.text)}': control character "
                           f"\\x{ord(value.text[bad]):02x} (only HTAB is allowed)",
                           value.offset + bad)
