"""AST nodes: one frozen pydantic model per console/config command.

Every node carries where it came from (file, line, column) and the line's
original text, so the interpreter's errors and ``perlbal check`` diagnostics
can point at the source.  Nodes hold text as written (after Perl's
normalisation); giving it meaning is the interpreter's job.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict


class Node(BaseModel):
    # defer_build: a schema is built the first time a node type is made, not for
    # every type at import (about 0.2 s of each `perlbal check` start-up)
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    file: str = "<console>"
    line: int = 1
    column: int = 1
    text: str = ""  # the normalised command (Perl's $cmd)
    orig: str = ""  # before variable expansion and lower-casing (Perl's $orig)
    keyword: str = ""


class Blank(Node):
    """An empty or comment-only line: always succeeds silently."""


class SyntaxFailure(Node):
    """A line whose command is known but whose arguments do not parse.

    ``usage`` is Perl's error text for it; ``error_column`` points at the first
    character the grammar could not accept.
    """

    usage: str
    error_column: int = 1
    hint: str | None = None  # a named explanation of a typical mistake, for check


class UnknownCommand(Node):
    """The first word names no command (core or plugin)."""


class InvalidCommand(Node):
    """The line does not start with a word character."""


class Create(Node):
    kind: Literal["service", "pool"]
    name: str


class Use(Node):
    name: str


class PoolEdit(Node):
    # Perl accepts "POOL ADD name ip" and "POOL name ADD ip"; sorted out later
    word1: str
    word2: str
    ip: str
    port: int | None = None


class Set(Node):
    target: str | None
    key: str
    value: str


class Default(Node):
    key: str
    value: str


class Header(Node):
    service: str
    action: Literal["insert", "remove"]
    header: str
    value: str | None = None


class Enable(Node):
    verb: Literal["enable", "disable"]
    service: str


class Load(Node):
    name: str


class Unload(Node):
    name: str


class Reload(Node):
    name: str


class Verbose(Node):
    on: bool


class Shutdown(Node):
    graceful: bool
    timeout: int | None = None


class Mime(Node):
    sub: str | None = None
    arg1: str | None = None
    arg2: str | None = None


class Xs(Node):
    sub: str | None = None
    module: str | None = None


class Nodes(Node):
    ip: str | None = None
    port: int | None = None


class Show(Node):
    what: Literal["service", "pool"]
    name: str | None = None


class Server(Node):
    key: str
    value: str


class Socks(Node):
    mode: str | None = None


class States(Node):
    service: str | None = None


class Query(Node):
    """A command without arguments: obj, fd, proc, uptime, version, help, ..."""


class AnyArgs(Node):
    """dumpconfig and reproxy_state, which Perl runs whatever follows them."""


class Explain(Node):
    """EXPLAIN (ours, not Perl's): ``args`` as normalised; the original case is in ``orig``."""

    args: str = ""


class PerlOnly(Node):
    """Perl debugging commands (prof, leaks, state, crash)."""


class PluginCommand(Node):
    """A command contributed by a plugin (VHOST, VPATH, ACCESS, INCLUDE, ...).

    A plugin whose ``SyntaxExtension`` has a ``build`` function subclasses this
    with typed fields (``Vpath``, ``AccessRule``, ...); otherwise ``args`` are the
    tokens its rule matched, in order.  ``at`` maps a field name (``args.0``,
    ``patterns.1``) to the 1-based source column of its token.
    """

    plugin: str
    args: tuple[str | None, ...] = ()
    at: tuple[tuple[str, int], ...] = ()

    def column_of(self, name: str) -> int:
        """Where the token behind field ``name`` starts; the line's start if unknown."""
        return next((col for field, col in self.at if field == name), self.column)


Command = Node


N = TypeVar("N", bound=Node)
_MISSING: Any = object()
_LAYOUTS: dict[type[Node], tuple[dict[str, Any], frozenset[str]]] = {}


def construct(cls: type[N], **values: Any) -> N:
    """``cls.model_construct(**values)``, the same node, in a quarter of the time.

    For fields already checked (by the grammar, or by the code making the node):
    the parser makes one node per config line, and pydantic's model_construct
    (a loop over every field, in Python) was a tenth of checking a large config.
    ``values`` must name fields only; a node type this does not cover (aliases,
    a post-init hook) or a required field left out goes to model_construct.
    """
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = _layout(cls)
    template, required = layout
    if not template or not required.issubset(values):
        return cls.model_construct(**values)
    fields = template.copy()  # every field, in declaration order, at its default
    fields.update(values)
    node = cls.__new__(cls)
    object.__setattr__(node, "__dict__", fields)
    object.__setattr__(node, "__pydantic_fields_set__", set(values))
    object.__setattr__(node, "__pydantic_extra__", None)
    object.__setattr__(node, "__pydantic_private__", None)
    return node


def relocated(node: N, file: str, line: int, column: int) -> N:
    """``node.model_copy(update={"file": ..., "line": ..., "column": ...})``, the same
    copy made directly (a config repeats lines, each copied from the first)."""
    fields = node.__dict__.copy()
    fields["file"], fields["line"], fields["column"] = file, line, column
    copy = type(node).__new__(type(node))
    object.__setattr__(copy, "__dict__", fields)
    object.__setattr__(copy, "__pydantic_extra__", None)
    object.__setattr__(copy, "__pydantic_fields_set__",
                       node.__pydantic_fields_set__ | {"file", "line", "column"})
    object.__setattr__(copy, "__pydantic_private__", None)
    return copy


def _layout(cls: type[Node]) -> tuple[dict[str, Any], frozenset[str]]:
    fields = cls.__pydantic_fields__
    if cls.__pydantic_post_init__ or cls.__private_attributes__ or any(
            f.alias is not None or f.validation_alias is not None or f.default_factory
            for f in fields.values()):
        return {}, frozenset()  # not covered: model_construct for this type
    template = {name: _MISSING if f.is_required() else f.get_default()
                for name, f in fields.items()}
    return template, frozenset(n for n, v in template.items() if v is _MISSING)
