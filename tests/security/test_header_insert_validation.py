"""Security #19 item 11: HEADER ... INSERT refuses control bytes and non-token names.

Checked where the command is parsed: the parser's positioned diagnostic, the
``perlbal check`` line:column, and the live console's ``ERROR:`` line.  Perl
Perlbal 1.80 inserts whatever the line holds (a documented difference).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from perlbal.grammar import ast
from perlbal.grammar.parser import Parser
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

REPO = Path(__file__).resolve().parents[2]
NAME_ERROR = ("invalid header name 'x bad name': a header name is an RFC 9110 token "
              "(letters, digits and !#$%&'*+-.^_`|~)")


@pytest.mark.parametrize(("line", "usage", "column"), [
    ("HEADER web INSERT X Bad Name: v", NAME_ERROR, 20),
    ("HEADER web INSERT X-Ok: v\x01\x7f",
     "invalid header value 'v\\x01\\x7f': control character \\x01 (only HTAB is allowed)", 26),
    ("HEADER web INSERT X-Ok: v\x00",
     "invalid header value 'v\\x00': control character \\x00 (only HTAB is allowed)", 26),
    ("HEADER web INSERT X-Ok: a\x7fb",
     "invalid header value 'a\\x7fb': control character \\x7f (only HTAB is allowed)", 26),
    ("HEADER web INSERT X(y): v", "invalid header name 'x(y)': a header name is an RFC 9110 "
     "token (letters, digits and !#$%&'*+-.^_`|~)", 20),
])
def test_parser_refuses_with_position(line: str, usage: str, column: int) -> None:
    node = Parser().parse_line(line)
    assert isinstance(node, ast.SyntaxFailure)
    assert (node.usage, node.error_column) == (usage, column)


@pytest.mark.parametrize("line", ["HEADER web INSERT X-Ok: a\tb c", "HEADER web INSERT X-Ok: ~!é",
                                  "HEADER web REMOVE X-Foo"])
def test_parser_accepts_good_headers(line: str) -> None:
    assert isinstance(Parser().parse_line(line), ast.Header)


def test_check_reports_file_line_column(tmp_path: Path) -> None:
    conf = tmp_path / "perlbal.conf"
    conf.write_bytes(b"CREATE SERVICE web\n  SET role = web_server\n  SET docroot = /tmp\n"
                     b"HEADER web INSERT X Bad Name: v\nHEADER web INSERT X-A: v\x01\n")
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", str(conf)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert f"{conf}:4:20: error: {NAME_ERROR}" in proc.stderr
    assert f"{conf}:5:25: error: invalid header value 'v\\x01'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_console_answers_error_and_keeps_good_rules() -> None:
    port, mgmt = free_ports(2)
    with Backend("b") as backend:
        conf = proxy_config(port, [backend], service="rp", mgmt_port=mgmt)
        with PyPerlbal(conf):
            with console(LOOPBACK, mgmt, timeout=10) as con:
                assert con.command("HEADER rp INSERT X Bad Name: v") == [f"ERROR: {NAME_ERROR}"]
                assert con.command("HEADER rp INSERT X-Evil: a\x01b") == [
                    "ERROR: invalid header value 'a\\x01b': control character \\x01 "
                    "(only HTAB is allowed)"]
                assert con.command("HEADER rp INSERT X-Good: yes") == ["OK"]
            assert request(port, "GET", "/", [("Host", "h")], timeout=20).status == 200
        (seen,) = backend.requests()
    assert seen.header("x-good") == "yes"
    assert seen.header("x-evil") is None and seen.header("x bad name") is None
