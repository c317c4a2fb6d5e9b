"""Selector routing against Perl Perlbal for a table of Host headers: the same
Vhosts config, each target a web_server whose who.txt names it; the status and
body a client gets must be the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import free_ports
from tests.support.rawhttp import send_raw

TARGETS = ["exact", "wild", "deep", "fallback", "other"]

HOSTS: list[bytes | None] = [
    b"www.example.com", b"WWW.Example.COM", b"www.example.com:8080", b"a.example.com",
    b"b.a.example.com", b"example.com", b"x.deep.example.org", b"deep.example.org",
    b"other.test", b"other.test.", b"unknown.invalid", b"127.0.0.1", b"", None,
    b"www.example.com.", b"*.example.com", b"foo..example.com", b"other.test:1",
]


def _config(port: int, roots: dict[str, Path]) -> str:
    services = "".join(f"""
CREATE SERVICE {name}
  SET role = web_server
  SET docroot = {root}
""" for name, root in roots.items())
    return f"""LOAD vhosts
{services}
CREATE SERVICE front
  SET role = selector
  SET listen = 127.0.0.1:{port}
  SET plugins = vhosts
  VHOST www.example.com = exact
  VHOST *.example.com = wild
  VHOST *.deep.example.org = deep
  VHOST other.test = other
  VHOST * = fallback
ENABLE front
"""


def _table(start: type, roots: dict[str, Path]) -> list[tuple[int | None, bytes]]:
    (port,) = free_ports(1)
    out: list[tuple[int | None, bytes]] = []
    with start(_config(port, roots)):
        for host in HOSTS:
            head = b"GET /who.txt HTTP/1.0\r\n"
            if host is not None:
                head += b"Host: " + host + b"\r\n"
            reply = send_raw(port, head + b"\r\n")
            status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else None
            body = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""
            out.append((status, body))
    return out


def test_host_table_routes_like_perl(need_perl_perlbal: None, tmp_path: Path) -> None:
    roots = {}
    for name in TARGETS:
        root = tmp_path / name
        root.mkdir()
        (root / "who.txt").write_text(f"{name}\n")
        roots[name] = root
    perl = _table(PerlPerlbal, roots)
    ours = _table(PyPerlbal, roots)
    # Deliberate difference: Perl matches the request's Host case-sensitively
    # (WWW.Example.COM falls to '*'); host names are case-insensitive (RFC 9110
    # section 4.2.3) and the issue asks for that, so ours routes it like its
    # lower-case form.
    expected = list(perl)
    for i, host in enumerate(HOSTS):
        if host is not None and host != host.lower():
            expected[i] = perl[HOSTS.index(host.lower())]
    mismatches = [(host, e, o) for host, e, o in zip(HOSTS, expected, ours) if e != o]
    assert not mismatches, mismatches
    assert perl[HOSTS.index(b"WWW.Example.COM")][1] == b"fallback\n"  # Perl's own answer
    # and the table is not trivial: several targets were reached
    assert len({body for _status, body in perl}) >= 4
