"""Record Perl Perlbal 1.80's console replies for the corpus in console_cases.py.

Run from the repository root:

    .venv/bin/python -m tests.diff.record_perl_console

Each sequence runs in a fresh ``/usr/bin/perlbal`` whose config is the
PREAMBLE (a management service); each step is sent through
``tests.support.perl_perlbal.Console`` on the step's connection.  Replies are
stored after ``normalize(..., "exact")`` in perl_console_replies.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.diff.console_cases import (
    CONFIG_CASES,
    PLACEHOLDERS,
    PREAMBLE,
    SEQUENCES,
    ConfigCase,
    Sequence,
    normalize,
    substitute,
)
from tests.support.perl_perlbal import Console, ConsoleClosed, PerlPerlbal, console, run_config_file
from tests.support.ports import LOOPBACK, free_ports

GOLDEN = Path(__file__).with_name("perl_console_replies.json")
CLOSED_MARKER = "<connection closed>"


def run_sequence(sequence: Sequence) -> list[dict[str, Any]]:
    """Run one sequence against a fresh Perl Perlbal; return its recorded steps."""
    ports = dict(zip(PLACEHOLDERS, free_ports(len(PLACEHOLDERS))))
    recorded: list[dict[str, Any]] = []
    with PerlPerlbal(substitute(PREAMBLE, ports)) as perl:
        consoles: dict[int, Console] = {}
        try:
            for step in sequence.steps:
                if step.conn not in consoles:
                    consoles[step.conn] = console(LOOPBACK, ports["MGMT"])
                try:
                    reply = consoles[step.conn].command(substitute(step.line, ports))
                except ConsoleClosed as closed:
                    reply = [*closed.lines, CLOSED_MARKER]
                    consoles.pop(step.conn).close()
                recorded.append(
                    {
                        "conn": step.conn,
                        "line": step.line,
                        "compare": step.compare,
                        "reply": normalize(reply, ports, "exact"),
                    }
                )
        finally:
            for con in consoles.values():
                con.close()
    return recorded


def run_config_case(case: ConfigCase) -> dict[str, Any]:
    run = run_config_file(case.text)
    return {"text": case.text, "stdout": run.stdout, "startup_failed": run.startup_failed}


def main() -> int:
    golden: dict[str, Any] = {
        "perlbal_version": "1.80",
        "generated_by": "tests/diff/record_perl_console.py",
        "sequences": {},
        "config_cases": {},
    }
    for sequence in SEQUENCES:
        golden["sequences"][sequence.name] = run_sequence(sequence)
        print(f"recorded {sequence.name}: {len(sequence.steps)} steps", file=sys.stderr)
    for case in CONFIG_CASES:
        golden["config_cases"][case.name] = run_config_case(case)
    GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
