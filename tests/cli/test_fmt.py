"""perlbal fmt: idempotent, meaning-preserving, comment-preserving; --check and
stdin; a config with errors is never rewritten.

The guarantees are checked over the 25 wild configs, Debian's samples,
examples/ and configs hypothesis generates from them (lines shuffled in case,
whitespace and blank lines).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perlbal.fmt import format_text
from perlbal.interp import Interpreter

ROOT = Path(__file__).resolve().parents[2]
WILD = ROOT.parent / "shared" / "wild-configs"
DEBIAN = Path("/usr/share/doc/perlbal/examples")
CORPUS = sorted([*WILD.glob("*.conf"), *DEBIAN.glob("*.conf"), *(ROOT / "examples").glob("*.conf")])


def _graph(text: str) -> tuple[bool, object]:
    interp = Interpreter()
    out: list[str] = []
    ok = interp.load_config_text(text, out=out.append)
    return ok, (interp.graph.dump() if ok else out)


def _comments(text: str) -> list[str]:
    return [line[line.index("#"):].rstrip() for line in text.splitlines() if "#" in line]


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus(path: Path) -> None:
    text = path.read_text(errors="surrogateescape")
    once = format_text(text)
    assert format_text(once) == once  # idempotent
    assert _comments(once) == _comments(text)  # every comment, in order
    ok, graph = _graph(text)
    if ok:
        assert _graph(once) == (True, graph)  # the same graph


def _mangle(text: str, data: st.DataObject) -> str:
    """The same config as someone might type it: case, spaces, blank lines."""
    out = []
    for line in text.splitlines():
        body, hash_, comment = line.partition("#")
        equals = body.find("=")
        head, tail = (body, "") if equals < 0 else (body[:equals], body[equals:])
        if data.draw(st.booleans()):
            head = head.upper() if data.draw(st.booleans()) else head.lower()
        spaces = " " * data.draw(st.integers(0, 3))
        head = spaces + spaces.join(head.split(" "))
        out.append(head + tail + hash_ + comment)
        if data.draw(st.integers(0, 5)) == 0:
            out.append(" " * data.draw(st.integers(0, 2)))
    return "\n".join(out) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(CORPUS), st.data())
def test_generated_variants(path: Path, data: st.DataObject) -> None:
    text = _mangle(path.read_text(errors="surrogateescape"), data)
    once = format_text(text)
    assert format_text(once) == once
    assert _comments(once) == _comments(text)
    ok, graph = _graph(text)
    if ok:
        assert _graph(once) == (True, graph)


def _fmt(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "perlbal.cli", "fmt", *args], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


def test_command(tmp_path: Path) -> None:
    messy = ("create service Web   # the site\nset role=web_server\n\n\n"
             f"set docroot = {tmp_path}\nset listen=127.0.0.1:8080\nenable web\n")
    conf = tmp_path / "a.conf"
    conf.write_text(messy)
    conf.chmod(0o640)
    check = _fmt("--check", str(conf))
    assert check.returncode == 1 and "+CREATE SERVICE web  # the site" in check.stdout
    assert conf.read_text() == messy  # --check changes nothing
    done = _fmt(str(conf))
    assert done.returncode == 0, done.stderr
    assert conf.read_text() == ("CREATE SERVICE web  # the site\n  SET role = web_server\n\n"
                                f"  SET docroot = {tmp_path}\n  SET listen = 127.0.0.1:8080\n"
                                "ENABLE web\n")
    assert conf.stat().st_mode & 0o777 == 0o640  # the file's mode is kept
    assert _fmt("--check", str(conf)).returncode == 0
    piped = _fmt("-", stdin=messy)
    assert piped.returncode == 0 and piped.stdout == conf.read_text()


def test_errors_are_never_rewritten(tmp_path: Path) -> None:
    bad = "CREATE SERVICE web\n  SET rol = web_server\n"
    conf = tmp_path / "bad.conf"
    conf.write_text(bad)
    result = _fmt(str(conf))
    assert result.returncode == 2
    assert f"{conf}:2:" in result.stderr and "not formatted" in result.stderr
    assert conf.read_text() == bad
    assert _fmt(str(tmp_path / "missing.conf")).returncode == 2


def test_errors_on_stdin_are_named_as_stdin() -> None:
    result = _fmt("-", stdin="CREATE SERVICE web\n  SET rol = web_server\n")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("-:2:3: error: "), result.stderr
    assert "/tmp" not in result.stderr
