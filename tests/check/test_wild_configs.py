"""perlbal check against 25 configs published in the wild, with Perl's verdicts.

EXPECTED.tsv says whether Perl Perlbal 1.80 accepts each config and, when it
rejects, on which line.  We must agree: accept what Perl accepts (warnings are
fine) and report an error on the line Perl names, as our first error.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from perlbal.check import check_paths

WILD = Path(__file__).resolve().parents[2].parent / "shared" / "wild-configs"
if not WILD.is_dir():  # CI lays shared/ beside the clone
    WILD = Path("/work/shared/wild-configs")


def _expected() -> list[tuple[str, str, str]]:
    if not (WILD / "EXPECTED.tsv").exists():
        return []
    with open(WILD / "EXPECTED.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [(r["file"], r["perl_result"], r["reason"]) for r in rows]


CASES = _expected()


def _perl_line(reason: str) -> int:
    m = re.match(r"line (\d+)", reason) or re.search(r"\(line (\d+)\)", reason)
    assert m, reason
    return int(m.group(1))


def test_corpus_present() -> None:
    assert len(CASES) == 25


@pytest.mark.parametrize("name,verdict,reason", CASES, ids=[c[0] for c in CASES])
def test_check_agrees_with_perl(name: str, verdict: str, reason: str) -> None:
    result = check_paths([str(WILD / name)])
    if verdict == "accepts":
        assert result.errors == [], "\n".join(d.render() for d in result.errors)
        assert result.exit_code(strict=False) == 0
    else:
        assert result.errors, f"{name}: Perl rejects ({reason}) but check found no error"
        first = result.errors[0]
        assert first.line == _perl_line(reason), first.render()
        assert result.exit_code(strict=False) == 1
