"""Console language, differentially: Perl Perlbal 1.80 (recorded) vs ours.

* ``test_golden_matches_corpus``: the JSON holds exactly the corpus's lines.
* ``test_perl_still_answers_as_recorded``: a sample of sequences re-run live
  against /usr/bin/perlbal must give the recorded replies (set
  PERLBAL_DIFF_ALL=1 to re-run every sequence); so the golden file cannot drift.
* ``test_perl_console_framing``: Perl-only facts about the connection itself
  (quit/exit, bare-LF blank lines) that the corpus cannot express.
* ``test_interpreter_*``: our ``perlbal.interp.Interpreter`` answers every line
  as Perl did (imported plainly: an interpreter that fails to import fails
  these tests, it never skips them).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from perlbal.interp import CommandContext, Interpreter
from tests.diff.console_cases import (
    CONFIG_CASES,
    PLACEHOLDERS,
    PREAMBLE,
    SEQUENCES,
    Sequence,
    normalize,
    substitute,
)
from tests.diff.record_perl_console import CLOSED_MARKER, GOLDEN, run_config_case, run_sequence
from tests.support.perl_perlbal import (
    SENTINEL,
    ConsoleClosed,
    PerlPerlbal,
    console,
    requires_perl_perlbal,
)
from tests.support.ports import LOOPBACK, free_port

GOLDEN_DATA: dict[str, Any] = json.loads(Path(GOLDEN).read_text())

# Re-run live on every test run; chosen to touch every reply shape.
LIVE_SAMPLE = [
    "set_forms_and_context",
    "context_per_connection",
    "load_and_plugins",
    "enable_disable",
    "show_and_info",
]
# Ports our interpreter is told about; never bound (it runs with no sockets).
FAKE_PORTS = {name: 61000 + i for i, name in enumerate(PLACEHOLDERS)}


def _by_name(name: str) -> Sequence:
    return next(s for s in SEQUENCES if s.name == name)


def _compare_step(ours: list[str], recorded: list[str], compare: str, ports: dict[str, int]) -> tuple[list[str], list[str]]:
    return normalize(ours, ports, compare), normalize(recorded, {}, compare)


def test_golden_matches_corpus() -> None:
    recorded = GOLDEN_DATA["sequences"]
    assert list(recorded) == [s.name for s in SEQUENCES], "re-run tests/diff/record_perl_console.py"
    for sequence in SEQUENCES:
        steps = recorded[sequence.name]
        assert [(s["conn"], s["line"], s["compare"]) for s in steps] == [
            (st.conn, st.line, st.compare) for st in sequence.steps
        ], f"{sequence.name}: golden is stale; re-run the recorder"
    assert {c.name: c.text for c in CONFIG_CASES} == {
        name: case["text"] for name, case in GOLDEN_DATA["config_cases"].items()
    }


def _live_names() -> list[str]:
    return [s.name for s in SEQUENCES] if os.environ.get("PERLBAL_DIFF_ALL") else LIVE_SAMPLE


@requires_perl_perlbal
@pytest.mark.parametrize("name", _live_names())
def test_perl_still_answers_as_recorded(name: str) -> None:
    live = run_sequence(_by_name(name))
    for now, then in zip(live, GOLDEN_DATA["sequences"][name], strict=True):
        if then["compare"] == "skip":
            continue
        assert normalize(now["reply"], {}, then["compare"]) == normalize(then["reply"], {}, then["compare"]), then["line"]


@requires_perl_perlbal
def test_perl_config_case_still_as_recorded() -> None:
    case = CONFIG_CASES[0]
    assert run_config_case(case) == GOLDEN_DATA["config_cases"][case.name]


@requires_perl_perlbal
def test_perl_console_framing() -> None:
    mgmt = free_port()
    with PerlPerlbal(substitute(PREAMBLE, {"MGMT": mgmt}), extra_wait_ports=(mgmt,)):
        # "quit" anywhere at the start, or "exit" at the end, closes the
        # connection without running the line (ClientManage: /^quit|exit$/).
        # The test is case-sensitive and runs before lowercasing.
        for line in ("quit", "quitting time", "SET mgmt.extra.x = exit", "show exit", "exit"):
            with console(LOOPBACK, mgmt) as con:
                assert con.command("verbose on") == ["OK"]
                with pytest.raises(ConsoleClosed) as closed:
                    con.command(line)
                assert closed.value.lines == [], line
        with console(LOOPBACK, mgmt) as con:
            assert con.command("dumpconfig") == [
                "CREATE SERVICE mgmt", "  SET role = management",
                f"  SET listen = 127.0.0.1:{mgmt}", "ENABLE mgmt", "", "OK",
            ], "'exit' as a value was never stored"
            assert con.command("QUIT") == ["ERROR: unknown command: quit"]
            assert con.command("EXIT") == ["ERROR: unknown command: exit"]
            # An empty CRLF line is fine ...
            assert con.command("") == []
        with console(LOOPBACK, mgmt, timeout=1.0) as con:
            # ... but an empty bare-LF line wedges the connection for good:
            # the line regexp ^(.+?)\r?\n can never consume a leading "\n".
            con.send_raw(b"\n")
            with pytest.raises(socket.timeout):
                con.command("verbose on")
        with console(LOOPBACK, mgmt) as con:
            # Bare LF is accepted as a line end otherwise; several lines may
            # arrive in one packet and are answered in order.
            con.send_raw(b"verbose off\nverbose on\r\nshow pool\n")
            assert con.read_until_sentinel() == ["OK", "."]
            assert SENTINEL not in "".join(con.command("help"))


# --- our interpreter ------------------------------------------------------


@pytest.mark.parametrize("name", [s.name for s in SEQUENCES])
def test_interpreter_matches_perl(name: str) -> None:
    interp = Interpreter()
    quiet = CommandContext(verbose=False)
    for line in substitute(PREAMBLE, FAKE_PORTS).splitlines():
        assert interp.run_line(line, quiet) == [], line
    # A console only exists once the server runs (Perl's $run_started).
    interp.run_started = True
    contexts: dict[int, Any] = {}
    mismatches = []
    for step in GOLDEN_DATA["sequences"][name]:
        ctx = contexts.setdefault(step["conn"], CommandContext(verbose=True))
        ours = interp.run_line(substitute(step["line"], FAKE_PORTS), ctx)
        if step["compare"] == "skip" or CLOSED_MARKER in step["reply"]:
            continue
        got, want = _compare_step(ours, step["reply"], step["compare"], FAKE_PORTS)
        if got != want:
            mismatches.append(f"[conn {step['conn']}] {step['line']!r}\n  perl: {want!r}\n  ours: {got!r}")
    assert not mismatches, f"{len(mismatches)} replies differ:\n" + "\n".join(mismatches)


@pytest.mark.parametrize("name", [c.name for c in CONFIG_CASES])
def test_interpreter_config_file_matches_perl(name: str) -> None:
    case = GOLDEN_DATA["config_cases"][name]
    interp = Interpreter()
    ctx = CommandContext(verbose=False)
    output: list[str] = []
    failed = False
    for line in case["text"].splitlines():
        reply = interp.run(line, ctx)
        output.extend(reply.lines)
        if not reply.ok:
            failed = True
            break
    assert output == case["stdout"]
    assert failed == case["startup_failed"]
