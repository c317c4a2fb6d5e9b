"""The reference pages in docs/ are exactly what the registries generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from perlbal import docs
from perlbal.params import REGISTRY

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(docs.PAGES))
def test_reference_page_is_up_to_date(name: str) -> None:
    committed = (REFERENCE / name).read_text()
    assert committed == docs.PAGES[name](), (
        f"docs/reference/{name} is stale: run python -m perlbal.docs docs/reference")


def test_every_parameter_is_documented() -> None:
    text = (REFERENCE / "parameters.md").read_text()
    for name in REGISTRY.all_names():
        assert f"| `{name}` |" in text, name
