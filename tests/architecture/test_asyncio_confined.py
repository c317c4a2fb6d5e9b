"""#16 part 5: the runtime speaks anyio.  Raw asyncio, where it is measurably
faster (the BufferedProtocol stream, plain per-connection tasks, futures and
timers on the hot path), lives in one module, perlbal/runtime/aio.py, behind
anyio-shaped interfaces; no other module of the package imports asyncio (at
module level, in a function, or under TYPE_CHECKING)."""

from __future__ import annotations

import ast

from tests.architecture.imports import PACKAGE, module_name

ALLOWED = {"perlbal.runtime.aio"}


def _imports_asyncio(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "asyncio" or a.name.startswith("asyncio.") for a in node.names):
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module and (
                node.module == "asyncio" or node.module.startswith("asyncio.")):
            lines.append(node.lineno)
    return lines


def test_only_aio_imports_asyncio() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name in ALLOWED:
            continue
        lines = _imports_asyncio(ast.parse(path.read_text()))
        if lines:
            offenders[name] = lines
    assert offenders == {}


def test_aio_is_the_module_that_does() -> None:
    # (so that a rename cannot make the test above pass vacuously)
    path = PACKAGE / "runtime" / "aio.py"
    assert _imports_asyncio(ast.parse(path.read_text()))
