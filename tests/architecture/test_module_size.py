"""No module of perlbal/ grows past ~550 lines (issue #16: a newcomer reads a
file whole; a module that needs more holds two jobs and has a seam to split at)."""

from __future__ import annotations

from pathlib import Path

LIMIT = 560
PACKAGE = Path(__file__).resolve().parents[2] / "perlbal"


def test_no_module_is_over_the_limit() -> None:
    sizes = {str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8")
                                                        .splitlines())
             for path in PACKAGE.rglob("*.py")}
    over = {name: lines for name, lines in sizes.items() if lines > LIMIT}
    assert not over, f"split these along a seam: {over}"
