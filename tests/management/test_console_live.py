"""The console corpus (tests/diff) against our *live* server, over TCP.

tests/diff compares Perl Perlbal 1.80's recorded replies with our Interpreter
in-process.  Here every sequence runs against ``python -m perlbal.runtime.main``
on a fresh management port, through the same ``tests.support.perl_perlbal.Console``
that recorded Perl's side, so the socket framing (``\\r\\n`` line ends, replies
with no terminator, the sentinel trick, ``quit``/``exit`` closing) is compared
too, not only the reply text.  Ports are real here: ``ENABLE`` binds for real
as Perl did when the corpus was recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.diff.console_cases import PLACEHOLDERS, PREAMBLE, SEQUENCES, normalize, substitute
from tests.diff.record_perl_console import CLOSED_MARKER, GOLDEN
from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import Console, ConsoleClosed, console
from tests.support.ports import LOOPBACK, free_ports

GOLDEN_DATA: dict[str, Any] = json.loads(Path(GOLDEN).read_text())


def run_sequence_live(name: str) -> list[str]:
    """Run one recorded sequence against our server; return the mismatches."""
    ports = dict(zip(PLACEHOLDERS, free_ports(len(PLACEHOLDERS))))
    mismatches: list[str] = []
    with PyPerlbal(substitute(PREAMBLE, ports)):
        consoles: dict[int, Console] = {}
        try:
            for step in GOLDEN_DATA["sequences"][name]:
                if step["conn"] not in consoles:
                    consoles[step["conn"]] = console(LOOPBACK, ports["MGMT"])
                try:
                    reply = consoles[step["conn"]].command(substitute(step["line"], ports))
                except ConsoleClosed as closed:
                    reply = [*closed.lines, CLOSED_MARKER]
                    consoles.pop(step["conn"]).close()
                if step["compare"] == "skip":
                    continue
                got = normalize(reply, ports, step["compare"])
                want = normalize(step["reply"], {}, step["compare"])
                if got != want:
                    mismatches.append(f"[conn {step['conn']}] {step['line']!r}\n"
                                      f"  perl: {want!r}\n  ours: {got!r}")
        finally:
            for con in consoles.values():
                con.close()
    return mismatches


@pytest.mark.parametrize("name", [s.name for s in SEQUENCES])
def test_live_console_matches_perl(name: str) -> None:
    mismatches = run_sequence_live(name)
    assert not mismatches, f"{len(mismatches)} replies differ:\n" + "\n".join(mismatches)
