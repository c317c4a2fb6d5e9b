"""Every example config in examples/ passes `perlbal check` (run from the repo
root, where their relative paths point)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from perlbal.check import check_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.conf"))


@pytest.mark.parametrize("conf", EXAMPLES, ids=[c.name for c in EXAMPLES])
def test_example_passes_check(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = check_paths([os.path.relpath(conf, REPO)])
    assert result.errors == [], "\n".join(d.render() for d in result.errors)
    assert result.warnings == [], "\n".join(d.render() for d in result.warnings)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5
