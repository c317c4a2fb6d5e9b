"""Every wild config that Perl Perlbal 1.80 accepts (EXPECTED.tsv) loads here too.

Perl's verdicts were made with the docroots present, so each ``docroot =``
value is pointed at a fresh temporary directory before loading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perlbal.interp import Interpreter

WILD = Path("/work/shared/wild-configs")


def _accepted() -> list[str]:
    table = WILD / "EXPECTED.tsv"
    if not table.exists():
        return []
    rows = [line.split("\t") for line in table.read_text().splitlines()[1:] if line.strip()]
    return [row[0] for row in rows if len(row) > 1 and row[1] == "accepts"]


@pytest.mark.parametrize("name", _accepted())
def test_wild_config_accepted(name: str, tmp_path: Path) -> None:
    text = (WILD / name).read_text()
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    text = re.sub(r"(?im)^(\s*set\s+\S*docroot\s*=\s*).*$", lambda m: f"{m.group(1)}{docroot}",
                  text)
    it = Interpreter(base_dir=str(tmp_path))
    replies: list[str] = []
    assert it.load_config_text(text, file=name, out=replies.append), replies
    # Perl too only prints (and carries on) when SERVER max_connections cannot
    # raise the descriptor limit of an unprivileged process
    errors = [r for r in replies if r.startswith("ERROR") and r != "ERROR: Unable to set limit."]
    assert not errors, replies
