"""Every ``perlbal check`` / ``explain`` / ``fmt --check`` command shown in docs/ and README.md runs.

Commands in fenced or indented code blocks are collected.  Synopsis lines
(``[--opt]``, ``...``, ``a|b``) are skipped; a command naming a file that is not
in the repository must use one of the documented placeholder names, so a doc
cannot point at an example that does not exist.  The rest run from the
repository root and must not fail unexpectedly: exit 0 (or 1 when the doc's
own output shows a failure), no traceback, and the output the doc prints under
the command must be what the command prints, line for line, where a line
holding only ``...`` stands for any number of lines.  File patterns
(``examples/*.conf``) are expanded as a shell would.

Every fenced config block (no language, with a ``CREATE SERVICE`` or ``CREATE
POOL`` line) must pass ``perlbal check`` without errors (warnings, such as a
docroot missing on this machine, are allowed), unless the line before its fence
is ``<!-- fragment: why -->``: a piece of a config that leans on lines shown
elsewhere.

A console session a doc shows (a block whose first line is ``$ nc HOST PORT``
or ``$ telnet HOST PORT``) must say which config
it runs on, with ``<!-- console: examples/FILE.conf -->`` on the line before
the block; the server is then started on that config (its listeners moved to
free loopback ports) and each command typed is sent to its console, whose
reply must be the one shown (``...`` again standing for any lines).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted((REPO / "docs").glob("**/*.md")) + [REPO / "README.md"]
#: file names the docs use for "your own file", never meant to exist here
PLACEHOLDERS = {"perlbal.conf", "routes.txt"}
_COMMAND = re.compile(r"^\s*(?:\$ )?(?:\.venv/bin/)?perlbal (check|explain|fmt)\b(.*)$")
#: any perlbal command line, run here or not: it ends the output shown above it
_ANY_COMMAND = re.compile(r"^\s*(?:\$ )?(?:\.venv/bin/)?perlbal\b")


@dataclass
class Shown:
    page: str
    line: int
    args: list[str]
    output: list[str]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced or 4-space indented code block."""
    blocks: list[tuple[int, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            start, i = i + 2, i + 1
            body: list[str] = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append((start, body))
        elif lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            start = i + 1
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            blocks.append((start, body))
            continue
        i += 1
    return blocks


def _shown() -> list[Shown]:
    found: list[Shown] = []
    for page in PAGES:
        for start, body in _blocks(page.read_text()):
            for offset, line in enumerate(body):
                match = _COMMAND.match(line)
                if match is None:
                    continue
                output: list[str] = []
                for after in body[offset + 1:]:
                    if _ANY_COMMAND.match(after) or not after.strip():
                        break
                    output.append(after)
                args = [match.group(1), *shlex.split(match.group(2), comments=True)]
                found.append(Shown(str(page.relative_to(REPO)), start + offset, args, output))
    return found


SHOWN = _shown()


def test_the_docs_show_commands() -> None:
    assert len([s for s in SHOWN if s.args[0] == "check"]) >= 2
    assert len([s for s in SHOWN if s.args[0] == "explain"]) >= 4
    assert len([s for s in SHOWN if s.args[0] == "fmt" and "--check" in s.args]) >= 2
    assert len([s for s in SHOWN if len(s.output) >= 5]) >= 3


def _matches(shown: list[str], printed: list[str]) -> bool:
    """Whether the printed lines are the shown ones, a ``...`` line matching any run."""
    if not shown:
        return not printed
    if shown[0].strip() == "...":
        return any(_matches(shown[1:], printed[i:]) for i in range(len(printed) + 1))
    return bool(printed) and printed[0].rstrip() == shown[0].rstrip() and _matches(
        shown[1:], printed[1:])


def test_matches() -> None:
    assert _matches(["a", "  ...", "d"], ["a", "b", "c", "d"])
    assert _matches(["a", "...", "b"], ["a", "b"])
    assert not _matches(["a", "...", "d"], ["a", "b"])
    assert not _matches(["a", "b"], ["a", "b", "c"])
    assert not _matches(["a", "c"], ["a", "b"])


@pytest.mark.parametrize("shown", SHOWN, ids=[s.id for s in SHOWN])
def test_shown_command_runs(shown: Shown) -> None:
    if any(re.search(r"[\[\]|]|\.\.\.", arg) for arg in shown.args):
        pytest.skip("a synopsis, not a command")
    if shown.args[0] == "fmt" and "--check" not in shown.args:
        pytest.skip("fmt without --check rewrites files")
    args = [shown.args[0]]
    for arg in shown.args[1:]:
        expanded = sorted(str(p.relative_to(REPO)) for p in REPO.glob(arg)) if "*" in arg else []
        args += expanded or [arg]
    files = [arg for arg in args if re.search(r"\.(conf|routes|txt)$", arg)]
    missing = [name for name in files if not (REPO / name).exists()]
    assert all(name in PLACEHOLDERS for name in missing), (
        f"{shown.id} names {missing}, which is neither in the repository nor a placeholder")
    if missing:
        pytest.skip(f"placeholder file {missing}")
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    everything = proc.stdout + proc.stderr
    assert "Traceback" not in everything, everything
    shows_failure = any(re.search(r"FAILED|error:|MISMATCH", line) for line in shown.output)
    assert proc.returncode == (1 if shows_failure else 0), (shown.id, everything)
    if shown.output:
        assert _matches(shown.output, everything.splitlines()), (
            f"{shown.id}: the doc shows\n" + "\n".join(shown.output)
            + "\nbut the command prints\n" + everything)


@dataclass
class ConfigBlock:
    page: str
    line: int
    text: str
    fragment: bool

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _config_blocks() -> list[ConfigBlock]:
    found: list[ConfigBlock] = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("```"):
                i += 1
                continue
            language, start = lines[i][3:].strip(), i + 1
            fragment = i > 0 and lines[i - 1].startswith("<!-- fragment:")
            i += 1
            body: list[str] = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            if (language == "" and any(re.match(r"\s*CREATE (SERVICE|POOL) ", ln, re.I)
                                       for ln in body)
                    and not any(ln.lstrip().startswith("$ ") for ln in body)):
                found.append(ConfigBlock(str(page.relative_to(REPO)), start + 1,
                                         "\n".join(body) + "\n", fragment))
    return found


CONFIGS = _config_blocks()


def test_the_docs_show_configs() -> None:
    assert len([c for c in CONFIGS if not c.fragment]) >= 8


@pytest.mark.parametrize("block", CONFIGS, ids=[c.id for c in CONFIGS])
def test_config_block_passes_check(block: ConfigBlock, tmp_path: Path) -> None:
    if block.fragment:
        pytest.skip("marked as a fragment")
    conf = tmp_path / "shown.conf"
    conf.write_text(block.text)
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", str(conf)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, f"{block.id}:\n{block.text}\n{proc.stdout}{proc.stderr}"


@dataclass
class Transcript:
    page: str
    line: int
    config: str | None
    exchanges: list[tuple[str, list[str]]]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


_SESSION = re.compile(r"^\$ (?:nc|telnet) ")


def _is_terminator(line: str) -> bool:
    return line == "." or line == "OK" or line.startswith("ERROR:")


def _transcripts() -> list[Transcript]:
    found: list[Transcript] = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for start, body in _blocks(page.read_text()):
            if not body or not _SESSION.match(body[0]):
                continue
            before = lines[start - 3] if start >= 3 else ""
            marker = re.match(r"<!-- console: (\S+) -->", before)
            exchanges: list[tuple[str, list[str]]] = []
            command: str | None = None
            reply: list[str] = []
            for line in body[1:]:
                if not line.strip():
                    continue
                if command is None:
                    command = line
                    continue
                reply.append(line)
                if _is_terminator(line):
                    exchanges.append((command, reply))
                    command, reply = None, []
            if command is not None:
                exchanges.append((command, reply))
            found.append(Transcript(str(page.relative_to(REPO)), start,
                                    marker.group(1) if marker else None, exchanges))
    return found


TRANSCRIPTS = _transcripts()


def test_the_docs_show_console_sessions() -> None:
    assert TRANSCRIPTS


def _on_free_ports(config: str) -> tuple[str, int]:
    """The config with every listener on a free port and paths made absolute;
    and the management listener's new port."""
    ports = sorted(set(re.findall(r"(?im)^\s*SET\s+listen\s*=\s*127\.0\.0\.1:(\d+)", config)))
    fresh = free_ports(len(ports))
    mgmt = None
    for old, new in zip(ports, fresh):
        config = config.replace(f"127.0.0.1:{old}\n", f"127.0.0.1:{new}\n")
    for block in re.split(r"(?im)^CREATE SERVICE ", config):
        if re.search(r"(?im)SET\s+role\s*=\s*management", block):
            mgmt = int(re.search(r"(?im)SET\s+listen\s*=\s*127\.0\.0\.1:(\d+)", block).group(1))
    assert mgmt is not None, "the config has no management listener"
    config = re.sub(r"(?m)=\s*(examples/\S*)", lambda m: f"= {REPO / m.group(1)}", config)
    return config, mgmt


def _console(port: int, command: str) -> list[str]:
    """One command on a fresh console connection; its reply, up to its end."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(command.encode() + b"\r\nperlbal_console_sync\r\n")
        data = b""
        sync = b"ERROR: unknown command: perlbal_console_sync\r\n"
        while not data.endswith(sync):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode().removesuffix(sync.decode()).splitlines()


@pytest.mark.parametrize("session", TRANSCRIPTS, ids=[t.id for t in TRANSCRIPTS])
def test_console_session_replies_as_shown(session: Transcript) -> None:
    assert session.config, (
        f"{session.id}: say which config the session runs on: <!-- console: FILE -->")
    config, mgmt = _on_free_ports((REPO / session.config).read_text())
    with PyPerlbal(config):
        for command, shown in session.exchanges:
            printed = _console(mgmt, command)
            assert _matches(shown, printed), (
                f"{session.id}: {command}\nthe doc shows\n" + "\n".join(shown)
                + "\nbut the console answers\n" + "\n".join(printed))
