"""Every example config in examples/ passes `perlbal check` (run from the repo
root, where their relative paths point)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from perlbal.check import check_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.conf"))

#: scratch directories the examples ask their user to create (storage-node.conf
#: PUTs into one, never into the repository's examples/htdocs)
SCRATCH_DIRS = (Path("/tmp/perlbal-storage"),)


@pytest.mark.parametrize("conf", EXAMPLES, ids=[c.name for c in EXAMPLES])
def test_example_passes_check(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for scratch in SCRATCH_DIRS:
        scratch.mkdir(exist_ok=True)
    result = check_paths([os.path.relpath(conf, REPO)])
    assert result.errors == [], "\n".join(d.render() for d in result.errors)
    assert result.warnings == [], "\n".join(d.render() for d in result.warnings)


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


def test_storage_node_writes_outside_the_repository() -> None:
    text = (REPO / "examples" / "storage-node.conf").read_text()
    assert re.search(r"^\s*SET docroot\s*=\s*/tmp/perlbal-storage$", text, re.M)
    assert "examples/htdocs" not in text
