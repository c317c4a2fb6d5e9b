"""Generate ``perlbal/tunables.py``: typed reads of every declared parameter.

The registry (``params.REGISTRY``) and the stock plugins' ``params`` stay the
one source of truth.  From them this writes one small class per scope -- a
service's parameters, a pool's, the SERVER settings, and each stock plugin's --
with an attribute per parameter whose type follows its kind.  Code that
reads a parameter goes through those attributes (``svc.tunables.buffer_size``),
so mypy refuses a misspelt name or a value used as the wrong type, where a
string lookup returned None in silence.

What an attribute reads when the service has no value (the parameter does not
apply to its role, or the service has no role yet): the registry default,
coerced as a SET would coerce it, baked into the generated code as the class
attribute; ``None`` (and an ``X | None`` type) when the parameter has no
default; lists read as read-only sequences (``()`` when absent).

A test regenerates the file and compares it with the committed one.
How a view reads (and why it is fast): ``perlbal/tunableparts.py``.
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


def _line(param: Param, server_text: bool = False) -> str:
    vt = KIND_TYPES[param.kind]
    default = default_value(param)
    name = param.name
    if server_text:
        reader = f"TextInt({name!r})" if vt.annotation == "int" else f"OptText({name!r})"
        return f"    {name} = {reader}"
    if vt.decode:
        from perlbal import paramkinds

        seconds = getattr(paramkinds, vt.decode)(default) if default is not None else 0.0
        return f"    {name} = Seconds({name!r}, {seconds!r})"
    if vt.annotation == "list[str]":
        # read-only to its readers; an absent list reads as its default or empty
        assert isinstance(default, list) or default is None, name
        return f"    {name}: Sequence[str] = {tuple(default or ())!r}"
    if default is None:
        return f"    {name}: {vt.annotation} | None = None"
    return f"    {name}: {vt.annotation} = {default!r}"


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
    if server_text:
        out = [f"class {name}(TextView):", f'    """{doc}"""', "", "    __slots__ = ()", ""]
    else:
        out = [f"class {name}:", f'    """{doc}"""', "",
               "    def __init__(self, values: dict[str, ParamValue]) -> None:",
               "        self.__dict__ = values  # the live mapping itself: reads are its lookups",
               ""]
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
           "A service's, pool's or plugin's view is its live ``params`` mapping (a SET is",
           "seen by the next read); an attribute is the stored value, or the registry",
           "default when none is stored.  The SERVER settings' view parses their text.",
           'See ``perlbal/tunables_gen.py`` and ``perlbal/tunableparts.py``."""',
           "",
           "from __future__ import annotations",
           "",
           "from typing import Sequence",
           "",
           "from perlbal.paramkinds import ParamValue",
           "from perlbal.tunableparts import OptText, Seconds, TextInt, TextView",
           "",
           "__all__ = [\"ServiceTunables\", \"PoolTunables\", \"ServerTunables\"]",
           "",
           ""]
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
