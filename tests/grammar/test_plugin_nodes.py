"""Plugin command nodes are made without pydantic's validator when pydantic
would take their values as they are (grammar/syntax.py ``_plainly_valid``).
That must never change a node or hide an error: for every stock plugin node
type and any values, the node equals the one pydantic's own constructor makes,
and what pydantic refuses is still refused with its error."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError, field_validator

from perlbal.grammar import ast
from perlbal.grammar.syntax import PluginArgs
from perlbal.plugins import default_plugin_registry

BASE = {"file": "f.conf", "line": 2, "column": 3, "text": "t", "orig": "T", "keyword": "k"}


def _node_types() -> list[type[ast.PluginCommand]]:
    default_plugin_registry()  # imports every stock plugin module
    found: list[type[ast.PluginCommand]] = []
    todo = list(ast.PluginCommand.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


NODE_TYPES = _node_types()


def _value(annotation: Any) -> st.SearchStrategy[Any]:
    """Values a build function might hand over: right, wrong and in between."""
    anything = st.one_of(st.text(max_size=8), st.none(), st.integers(), st.booleans(),
                         st.tuples(st.text(max_size=4)), st.lists(st.text(max_size=4)),
                         st.tuples(st.integers()), st.binary(max_size=4))
    literals = [a for arg in (annotation, *get_args(annotation)) if get_origin(arg) is Literal
                for a in get_args(arg)]
    if get_origin(annotation) is Literal:
        literals += list(get_args(annotation))
    if literals:
        return st.one_of(st.sampled_from(literals), st.sampled_from(literals).map(str.upper),
                         anything)
    return anything


def _build(cls: type[ast.PluginCommand], values: dict[str, Any]) -> Any:
    try:
        return PluginArgs((), BASE, "P").build(cls, **values)
    except ValidationError as exc:
        return ("refused", [e["loc"] for e in exc.errors()])


def _reference(cls: type[ast.PluginCommand], values: dict[str, Any]) -> Any:
    try:
        return cls(plugin="P", at=(), **values, **BASE)
    except ValidationError as exc:
        return ("refused", [e["loc"] for e in exc.errors()])


def test_every_stock_plugin_node_type_is_covered() -> None:
    names = {cls.__name__ for cls in NODE_TYPES}
    assert {"VhostRule", "Vpath", "AccessRule", "RedirectHost", "IncludeFiles",
            "ThrottleReload", "PerlRequire", "PerlHandler"} <= names


@pytest.mark.parametrize("cls", NODE_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_node_is_pydantics_node(cls: type[ast.PluginCommand], data: st.DataObject) -> None:
    own = {name: info for name, info in cls.model_fields.items()
           if name not in ast.PluginCommand.model_fields}
    values: dict[str, Any] = {}
    for name, info in own.items():
        if data.draw(st.integers(0, 5), label=f"omit {name}") == 0:
            continue
        values[name] = data.draw(_value(info.annotation), label=name)
    if data.draw(st.integers(0, 9), label="stray field") == 0:
        values["no_such_field"] = "x"
    ours, theirs = _build(cls, values), _reference(cls, values)
    assert type(ours) is type(theirs)
    if isinstance(ours, BaseModel):
        assert ours.model_dump() == theirs.model_dump()
        assert ours.model_fields_set >= {"plugin", "at", *values}
    else:
        assert ours == theirs


class Checked(ast.PluginCommand):
    """A third-party node with a validator: always built by pydantic."""

    name: str

    @field_validator("name")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


def test_a_node_type_with_validators_is_validated() -> None:
    node = PluginArgs((), BASE, "P").build(Checked, name="LOUD")
    assert isinstance(node, Checked) and node.name == "loud"
