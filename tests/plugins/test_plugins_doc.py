"""docs/plugins.md's hook table is the one hooks.py generates (one source of truth)."""

from __future__ import annotations

from pathlib import Path

from perlbal.plugins.hooks import ALL_HOOKS, hooks_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def test_hook_table_matches_hooks_py() -> None:
    text = DOC.read_text()
    start = text.index("-->\n", text.index("<!-- hooks:")) + 4
    end = text.index("<!-- /hooks -->")
    assert text[start:end] == hooks_markdown()


def test_every_hook_documents_when_it_fires() -> None:
    for hook in ALL_HOOKS:
        assert hook.name and hook.__doc__ and len(hook.__doc__) > 40, hook
