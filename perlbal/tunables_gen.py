"""Generate ``perlbal/tunables.py``: typed reads of every declared parameter.

The registry (``params.REGISTRY``) and the stock plugins' ``params`` stay the
one source of truth.  From them this writes one small class per scope -- a
service's parameters, a pool's, the SERVER settings, and each stock plugin's --
with a property per parameter whose return type follows its kind.  Code that
reads a parameter goes through those properties (``svc.tunables.buffer_size``),
so mypy refuses a misspelt name or a value used as the wrong type, where a
string lookup returned None in silence.

What a property returns when the service has no value (the parameter does not
apply to its role, or the service has no role yet): the registry default,
coerced as a SET would coerce it, baked into the generated code; ``None`` (and
an ``X | None`` type) when the parameter has no default.

A test regenerates the file and compares it with the committed one.
Regenerate with:  python -m perlbal.tunables_gen perlbal/tunables.py
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from perlbal.paramkinds import Kind, Param, ParamError, ParamValue


@dataclass(frozen=True)
class ValueType:
    """How a kind's stored value is read: its Python type and the isinstance check."""

    annotation: str
    check: str  # a type (or tuple of types) for isinstance
    #: a function of perlbal.paramkinds turning the stored value into the read one
    decode: str = ""


_INT = ValueType("int", "int")
_STR = ValueType("str", "str")
_LIST = ValueType("list[str]", "list")

#: every kind, by the type its coercer stores (``paramkinds._COERCERS``)
KIND_TYPES: dict[Kind, ValueType] = {
    Kind.BOOL: ValueType("bool", "bool"),
    Kind.INT: _INT,
    Kind.SIZE: _INT,
    Kind.PERCENT: _INT,
    Kind.LOOSE_INT: _INT,
    Kind.STRING: _STR,
    Kind.LISTEN: _STR,
    Kind.ROLE: _STR,
    Kind.POOL_REF: _STR,
    Kind.SERVICE_REF: _STR,
    Kind.DIRECTORY: _STR,
    Kind.FILE_OR_DEFAULT: _STR,
    Kind.DIRECTORY_OR_NONE: _STR,
    Kind.EXECUTABLE: _STR,
    Kind.UDP_ENDPOINTS: _STR,
    Kind.RETRY_SCHEDULE: _STR,
    Kind.BALANCE_METHOD: _STR,
    Kind.NODEFILE: _STR,
    Kind.REGEX: _STR,
    Kind.SNI_CERTS: _STR,
    Kind.ACCESS_LOG_FORMAT: _STR,
    Kind.CHOICE: _STR,
    Kind.HASH_KEY: _STR,
    Kind.DNS_NAME: _STR,
    Kind.DNS_SERVER: _STR,
    Kind.STATUS_LIST: _STR,
    Kind.URI_PATH: _STR,
    Kind.LIST: _LIST,
    Kind.NETMASK_LIST: _LIST,
    Kind.DIRECTORY_LIST: _LIST,
    Kind.REPROXY_HOSTS: _LIST,
    # stored as the decimal text written (so show service echoes it); read as seconds
    Kind.SECONDS: ValueType("float", "str", decode="parse_seconds"),
}


class _AnyEnv:
    """A check environment in which every file, directory and name exists."""

    def __getattr__(self, name: str) -> object:
        return lambda *args: True


def default_value(param: Param) -> ParamValue:
    """The registry default as a SET would store it; None when there is none."""
    if param.default is None:
        return None
    try:
        return param.coerce(param.default, _AnyEnv())  # type: ignore[arg-type]
    except ParamError:
        return None


# Descriptors the generated classes are made of: one isinstance check per read,
# a fallback (the default) for a value of another type or none at all.
_READERS = '''
class _Values:
    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, ParamValue]) -> None:
        self._values = values


class _Bool:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: bool) -> None:
        self.name, self.default = name, default

    def __get__(self, view: _Values, owner: object = None) -> bool:
        value = view._values.get(self.name)
        return value if isinstance(value, bool) else self.default


class _Int:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: int) -> None:
        self.name, self.default = name, default

    def __get__(self, view: _Values, owner: object = None) -> int:
        value = view._values.get(self.name)
        # bool is an int to isinstance; an int parameter never holds one
        return value if type(value) is int else self.default


class _Str:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: str) -> None:
        self.name, self.default = name, default

    def __get__(self, view: _Values, owner: object = None) -> str:
        value = view._values.get(self.name)
        return value if isinstance(value, str) else self.default


class _OptStr:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: _Values, owner: object = None) -> str | None:
        value = view._values.get(self.name)
        return value if isinstance(value, str) else None


class _OptInt:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: _Values, owner: object = None) -> int | None:
        value = view._values.get(self.name)
        return value if type(value) is int else None


class _List:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: tuple[str, ...] = ()) -> None:
        self.name, self.default = name, default

    def __get__(self, view: _Values, owner: object = None) -> list[str]:
        value = view._values.get(self.name)
        return value if isinstance(value, list) else list(self.default)


class _Seconds:
    __slots__ = ("name", "default")

    def __init__(self, name: str, default: float) -> None:
        self.name, self.default = name, default

    def __get__(self, view: _Values, owner: object = None) -> float:
        value = view._values.get(self.name)
        return parse_seconds(value) if isinstance(value, str) else self.default


class _TextInt:
    """A SERVER setting (kept as the text written) read as a number."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: _Values, owner: object = None) -> int | None:
        value = view._values.get(self.name)
        return int(value) if isinstance(value, str) and value.isdigit() else None
'''


def _line(param: Param, server_text: bool = False) -> str:
    vt = KIND_TYPES[param.kind]
    default = default_value(param)
    name = param.name
    if server_text:
        reader = f"_TextInt({name!r})" if vt.annotation == "int" else f"_OptStr({name!r})"
    elif vt.annotation == "list[str]":
        # an absent list without a default reads as empty
        assert isinstance(default, list) or default is None, name
        reader = f"_List({name!r}, {tuple(default)!r})" if default else f"_List({name!r})"
    elif vt.decode:
        from perlbal import paramkinds

        seconds = getattr(paramkinds, vt.decode)(default) if default is not None else 0.0
        reader = f"_Seconds({name!r}, {seconds!r})"
    elif default is None:
        reader = f"_Opt{vt.annotation.capitalize()}({name!r})"
    else:
        cls = {"bool": "_Bool", "int": "_Int", "str": "_Str"}[vt.annotation]
        reader = f"{cls}({name!r}, {default!r})"
    return f"    {name} = {reader}"


def _stored(params: Iterable[Param], fields: Iterable[str] = ()) -> list[Param]:
    """The parameters whose value is kept in the mapping a class wraps: not those the
    interpreter stores elsewhere (Effect.NOT_STORED, SET_BOTH_TIMEOUTS) or keeps as
    a typed attribute of its own (``Pool.balance_method``, ``Pool.nodefile``)."""
    from perlbal.paramkinds import Effect

    elsewhere = (Effect.NOT_STORED, Effect.SET_BOTH_TIMEOUTS)
    skip = set(fields)
    return sorted((p for p in params if p.effect not in elsewhere and p.name not in skip),
                  key=lambda p: p.name)


def _class(name: str, doc: str, params: Iterable[Param], server_text: bool = False) -> list[str]:
    out = [f"class {name}(_Values):", f'    """{doc}"""', "", "    __slots__ = ()", ""]
    out += [_line(param, server_text) for param in params]
    return out


def _plugin_classes() -> list[str]:
    from perlbal.plugins import default_plugin_registry

    registry = default_plugin_registry()
    out: list[str] = []
    for name in sorted(registry.names()):
        plugin = registry.get(name)
        if not plugin.params or type(plugin).__module__.split(".")[:2] != ["perlbal", "plugins"]:
            continue
        out += ["", "", *_class(f"{plugin.name}Tunables",
                                f"The parameters the {plugin.name} plugin declares.",
                                _stored(plugin.params))]
    return out


def generate() -> str:
    from dataclasses import fields

    from perlbal.graph import Pool
    from perlbal.params import REGISTRY

    out = ['"""Typed reads of every parameter: generated by '
           '``python -m perlbal.tunables_gen perlbal/tunables.py``; do not edit.',
           "",
           "Each class wraps the live mapping of stored values (a service's or pool's",
           "``params``, the SERVER settings), so a SET is seen by the next read.  A",
           "property returns the registry default when no value is stored; see",
           '``perlbal/tunables_gen.py``."""',
           "",
           "from __future__ import annotations",
           "",
           "from typing import Mapping",
           "",
           "from perlbal.paramkinds import ParamValue, parse_seconds",
           "",
           "__all__ = [\"ServiceTunables\", \"PoolTunables\", \"ServerTunables\"]",
           "",
           ""]
    out += _READERS.strip("\n").splitlines() + ["", ""]
    out += _class("ServiceTunables", "A service's parameters (CREATE SERVICE ... SET).",
                  _stored(REGISTRY.service.values()))
    out += ["", ""]
    out += _class("PoolTunables", "A pool's parameters (SET pool.param = value).",
                  _stored(REGISTRY.pool.values(), (f.name for f in fields(Pool))))
    out += ["", ""]
    out += _class("ServerTunables", "The SERVER settings (SERVER name = value), "
                  "kept as the text written.", _stored(REGISTRY.server.values()),
                  server_text=True)
    out += _plugin_classes()
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m perlbal.tunables_gen perlbal/tunables.py", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(generate(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
