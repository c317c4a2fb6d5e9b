"""What the generated ``perlbal/tunables.py`` is made of (written by hand, once).

A service's, a pool's or a plugin's view *is* its params mapping: the generated
class sets ``__dict__`` to that very dict, so reading a parameter is the
interpreter's own dict lookup, done in C (a per-read Python descriptor cost
~5% of a proxied request's instructions), and a parameter with no stored value
falls through to the class attribute: its default.  The values need no check
on the way out: the interpreter stores only what the parameter's coercer
returned, whose type tests/architecture/test_tunables.py holds to the
annotation.  Only SECONDS (kept as the text written, read as a float) is a
descriptor here, a data descriptor, so it is asked before the dict.  The
SERVER settings are text and rarely read: their view's descriptors parse them.
"""

from __future__ import annotations

from typing import Mapping

from perlbal.paramkinds import parse_seconds

__all__ = ["OptText", "Seconds", "TextInt", "TextView"]


class Seconds:
    """A SECONDS parameter, stored as the decimal text written, read as seconds."""

    __slots__ = ("name", "default")

    def __init__(self, name: str, default: float) -> None:
        self.name, self.default = name, default

    def __get__(self, view: object, owner: object = None) -> float:
        value = view.__dict__.get(self.name)
        return parse_seconds(value) if isinstance(value, str) else self.default

    def __set__(self, view: object, value: object) -> None:
        raise AttributeError(f"{self.name} is set with SET, not on its view")


class TextView:
    """A view of the SERVER settings (the text written, by name)."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values


class OptText:
    """A SERVER setting as its text (None: unset)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: TextView, owner: object = None) -> str | None:
        return view._values.get(self.name)


class TextInt:
    """A SERVER setting read as a number (None: unset or not digits)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, view: TextView, owner: object = None) -> int | None:
        value = view._values.get(self.name)
        return int(value) if value is not None and value.isdigit() else None
