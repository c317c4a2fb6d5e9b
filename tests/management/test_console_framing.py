"""Facts about the console connection itself, checked on Perl Perlbal 1.80 and on ours.

Each check runs against both servers (``perl`` is skipped when /usr/bin/perlbal
is missing), so a framing difference shows up as one side failing:

- a line matching ``/^quit|exit$/`` (before lowercasing) closes the connection
  silently; ``QUIT`` is just an unknown command;
- CRLF and bare LF both end a line; several lines in one packet are answered
  in order;
- commands that only make sense in Perl answer one ``ERROR:`` line (ours)
  and never close the connection;
- ``shutdown`` with bad arguments is refused with Perl's wording.

One deliberate difference is not tested here: Perl wedges a connection for
good on an empty bare-LF line (its ``^(.+?)\\r?\\n`` can never consume it);
ours skips the empty line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import ConsoleClosed, PerlPerlbal, console, perl_perlbal_available
from tests.support.ports import LOOPBACK, free_port

CONF = "CREATE SERVICE mgmt\nSET role = management\nSET listen = 127.0.0.1:{mgmt}\nENABLE mgmt\n"

Starter = Callable[[str], AbstractContextManager[object]]


@pytest.fixture(params=["perl", "ours"])
def mgmt(request: pytest.FixtureRequest) -> Iterator[int]:
    if request.param == "perl" and not perl_perlbal_available():
        pytest.skip("/usr/bin/perlbal (Perl Perlbal) not installed")
    start: Starter = PerlPerlbal if request.param == "perl" else PyPerlbal
    port = free_port()
    with start(CONF.format(mgmt=port)):
        yield port


def test_quit_and_exit_close_silently(mgmt: int) -> None:
    for line in ("quit", "quitting time", "SET mgmt.extra.x = exit", "show exit", "exit"):
        with console(LOOPBACK, mgmt) as con:
            assert con.command("verbose on") == ["OK"]
            with pytest.raises(ConsoleClosed) as closed:
                con.command(line)
            assert closed.value.lines == [], line
    with console(LOOPBACK, mgmt) as con:
        assert con.command("QUIT") == ["ERROR: unknown command: quit"]
        assert con.command("EXIT") == ["ERROR: unknown command: exit"]
        assert con.command("") == []


def test_line_ends_and_packets(mgmt: int) -> None:
    with console(LOOPBACK, mgmt) as con:
        con.send_raw(b"verbose off\nverbose on\r\nshow pool\n")
        assert con.read_until_sentinel() == ["OK", "."]
        assert con.command("create pool p", eol="\n") == ["OK"]
        assert con.command("show pool") == ["p nodes 0", "p services 0", "."]


def test_shutdown_syntax_errors_keep_running(mgmt: int) -> None:
    with console(LOOPBACK, mgmt) as con:
        for line in ("shutdown graceful x", "shutdown now", "shutdown graceful 5 6"):
            assert con.command(line) == ["ERROR: Invalid syntax to 'shutdown' command"], line
        assert con.command("show pool") == ["."]


def test_perl_only_commands_answer_one_error_line(mgmt: int, request: pytest.FixtureRequest) -> None:
    if "perl" in request.node.callspec.id:
        pytest.skip("ours only: Perl runs these")
    with console(LOOPBACK, mgmt) as con:
        for line in ("leaks", "gladiator", "prof on", "prof data", "varsize", "track",
                     "state changes"):
            reply = con.command(line)
            assert len(reply) == 1 and reply[0].startswith("ERROR: '"), (line, reply)
            assert "no meaning in this implementation" in reply[0]
        assert con.command("version")[-1] == "."
