"""What `perlbal check` pays for at start-up (issue #16 part 6).

Editors and pre-commit hooks run check on every save, so it must not import
the server (runtime, HTTP layer, asyncio) and must not rebuild the LALR
tables each time: Lark's cache keeps them in a file per grammar text under the
user's cache directory.  A config made of the common core commands (CREATE,
SET, POOL, ENABLE...) is parsed without Lark at all, and no pydantic validator
is built for the AST nodes (the parse has checked their fields).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perlbal.grammar.parser import SyntaxExtension, grammar_text, parser_cache_path

REPO = Path(__file__).resolve().parents[2]
SMALL = (
    "CREATE SERVICE web\n  SET role = web_server\n  SET listen = 127.0.0.1:8080\n"
    "  SET docroot = /tmp\nENABLE web\n")


def _run(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **env}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_check_does_not_import_the_server(tmp_path: Path) -> None:
    conf = tmp_path / "small.conf"
    conf.write_text(SMALL)
    out = _run(
        "import contextlib, io, json, sys\n"
        "from perlbal.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['check', {str(conf)!r}]) == 0\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('asyncio', 'h11', 'ssl', 'lark') or m.startswith(('perlbal.runtime', 'perlbal.http', "
        "'pydantic.plugin._loader')))))\n",
        {"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert json.loads(out) == []


def test_lalr_tables_are_cached_per_grammar(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    # (NODES is not one of the commands the parser reads without Lark: NODE begins it)
    code = ("from perlbal.interp import CommandContext, Interpreter\n"
            "assert Interpreter().run_line('nodes', CommandContext())[-1] == '.'\n")
    _run(code, env)
    files = list((tmp_path / "perlbal").glob("grammar-*.lark"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    _run(code, env)  # the second start loads the tables, it does not rewrite them
    assert [f.stat().st_mtime_ns for f in (tmp_path / "perlbal").glob("grammar-*.lark")] == [
        stamp]
    # another set of plugin commands is another grammar, in a file of its own
    extra = SyntaxExtension(keyword="zzhello", plugin="Z", rule='"zzhello"')
    assert grammar_text((extra,)) != grammar_text(())
    os.environ["XDG_CACHE_HOME"] = str(tmp_path)
    try:
        assert parser_cache_path(grammar_text((extra,))) != parser_cache_path(grammar_text(()))
    finally:
        del os.environ["XDG_CACHE_HOME"]


def test_unwritable_cache_dir_means_no_cache(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    env = {"XDG_CACHE_HOME": str(blocked)}
    out = _run("from perlbal.grammar.parser import grammar_text, parser_cache_path\n"
               "print(parser_cache_path(grammar_text(())))\n"
               "from perlbal.interp import Interpreter, CommandContext\n"
               "it, ctx = Interpreter(), CommandContext()\n"
               "print(it.run_line('create service x', ctx), it.run_line('nodes', ctx))\n"
               "assert it.parser._lark is not None\n", env)  # (NODES goes through Lark)
    assert out.splitlines() == ["None", "[] ['.']"]


def test_the_command_leaves_without_teardown_but_with_all_its_output(tmp_path: Path) -> None:
    """Run as the command, check ends with os._exit once stdout and stderr are
    flushed: every diagnostic still arrives (far more than a pipe holds) and the
    exit status is the verdict's."""
    conf = tmp_path / "many.conf"
    conf.write_text("".join(f"CREATE SERVICE s{i}\nSET role = nope{i}\n" for i in range(600)))
    for fmt, stream in (("json", "stdout"), ("text", "stderr")):
        done = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", "--format", fmt,
                               str(conf)], capture_output=True, text=True, cwd=REPO,
                              timeout=60)
        assert done.returncode == 1
        out = getattr(done, stream)
        assert len(out) > 65536
        if fmt == "json":
            assert len(json.loads(out)["diagnostics"]) == 600
        else:
            assert out.count("error: Role not valid") == 600
            assert out.rstrip().endswith("in 1 file(s)")
