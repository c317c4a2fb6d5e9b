"""perlbal check points at the exact token inside a plugin command.

Plugin commands are parsed by the grammar into typed nodes whose fields know
their columns, so both a line the grammar refuses and a value the plugin's
handler refuses are reported at the offending word, not at the line's start.
"""

from __future__ import annotations

from pathlib import Path

from perlbal.check import check_paths

CONF = """\
LOAD vhosts
LOAD vpaths
LOAD AccessControl
LOAD Redirect
LOAD Include
CREATE SERVICE web
  SET role = web_server
  SET docroot = /tmp
CREATE SERVICE sel
  SET role = selector
  VHOST sel a/b = web
  VPATH  sel  ([ = web
  VPATH nosuch ^/x = web
CREATE SERVICE locked
  SET role = web_server
  ACCESS DENY NETMASK 10.0.0.0/99
  ACCESS DENY HOST 1.2.3.4
  ACCESS POLICY maybe
  ACCESS ALLOWX IP 1.2.3.4
  REDIRECT HOST a
  INCLUDE = /nonexist/*.conf /nonexist/b.conf
"""


def test_errors_point_at_the_token(tmp_path: Path) -> None:
    path = tmp_path / "p.conf"
    path.write_text(CONF)
    result = check_paths([str(path)])
    found = {d.line: (d.column, d.message) for d in result.errors}
    lines = CONF.splitlines()

    def at(line: int, token: str) -> int:
        return lines[line - 1].index(token) + 1

    expected = {
        11: (at(11, "a/b"), "invalid host pattern: 'a/b'"),
        12: (at(12, "(["), "invalid regular expression: '(['"),
        13: (at(13, "nosuch"), "Service 'nosuch' is not a selector service"),
        16: (at(16, "10.0.0.0/99"), "Error parsing netmask"),
        17: (at(17, "HOST"), "Unknown item to deny: 'host'"),
        18: (at(18, "maybe"), "policy must be 'allow' or 'deny'"),
        19: (at(19, "ALLOWX"), "usage: ACCESS <cmd> <arg1> [<arg2>]"),
        # the parser stopped after the one name it got
        20: (at(20, " a") + 1, "usage: REDIRECT HOST <match_host> <target_host>"),
        21: (at(21, "/nonexist/b.conf"),
             "Error opening config file (/nonexist/b.conf): No such file or directory"),
    }
    assert sorted(found) == sorted(expected)
    for line, (column, message) in expected.items():
        assert found[line][0] == column, (line, found[line])
        assert found[line][1].startswith(message), (line, found[line])


def test_plugin_syntax_errors_carry_a_named_hint(tmp_path: Path) -> None:
    path = tmp_path / "p.conf"
    path.write_text("LOAD Redirect\nCREATE SERVICE w\nREDIRECT HOSTS a b\n")
    [diag] = check_paths([str(path)]).errors
    assert diag.message == ("usage: REDIRECT HOST <match_host> <target_host> "
                            "(expected HOST after REDIRECT)")
    assert diag.column == len("REDIRECT ") + 1
