"""``show service``, ``show pool``, ``nodes`` and ``queues`` after identical traffic, Perl vs ours.

The same config (three reverse proxies, each on its own one-node pool: persistent
backends, plain, and verify_backend) runs in Perl Perlbal 1.80 and in our
server; the same requests go through each; then the console's replies are
compared over TCP with the same console helper.

Normalised on both sides, identically: backend/listen ports back to names,
Unix timestamps (``lastattempt``, ``lastconnect``, ``lastresponse``) to
``<T>``; in ``proc`` and ``fd`` every number becomes ``N`` (CPU time,
pid, descriptors), so only the shape of those lines is compared.  ``nodes`` and ``queues`` (and ``states``, ``backends``) print Perl hashes (``keys %NodeStats``,
``values %service``, ``each %queues``), whose order Perl randomises per
process, so those two are compared as sorted lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, management, pool, proxy_service
from tests.support.perl_perlbal import PerlPerlbal, console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import HTTPConnection, request


def _conf(a: Backend, b: Backend, c: Backend, keep: int, plain: int, checked: int,
          mgmt: int) -> str:
    return (pool("pa", [a]) + pool("pb", [b])
            + proxy_service("keep", keep, "pa", extra=PERSIST)
            + proxy_service("plain", plain, "pb")
            + pool("pc", [c])
            + proxy_service("checked", checked, "pc", extra=["SET verify_backend = on"])
            + management(mgmt))


COMMANDS = ["show service keep", "show service plain", "show service", "show pool",
            "show pool pa", "show pool pb", "show service checked", "nodes", "queues",
            "states", "states keep", "states nosuch", "backends", "pending", "noverify", "aio",
            "obj", "reproxy_state", "SERVER max_reproxy_connections(10.0.0.1) = 3",
            "reproxy_state", "proc", "fd"]
SORTED = {"nodes", "queues", "states", "backends"}
# machine-dependent numbers: kept as the shape of the line
_NUMBERS = {"proc", "fd"}
_TIMESTAMP = re.compile(r"^(\S+ (?:lastattempt|lastconnect|lastresponse)) \d+$")

Starter = Callable[[str], AbstractContextManager[object]]


def _run(start: Starter) -> dict[str, list[str]]:
    keep, plain, checked, mgmt = free_ports(4)
    with Backend("a") as a, Backend("b") as b, Backend("c") as c:
        names = {str(a.port): "A", str(b.port): "B", str(c.port): "C", str(keep): "KEEP",
                 str(plain): "PLAIN", str(checked): "CHECKED", str(mgmt): "MGMT"}
        with start(_conf(a, b, c, keep, plain, checked, mgmt)):
            with HTTPConnection(keep) as conn:
                for i in range(3):
                    assert conn.request("GET", f"/k{i}", [("Host", "x")]).status == 200
            for i in range(2):
                assert request(keep, "GET", f"/k-new{i}").status == 200
            for i in range(4):
                assert request(plain, "GET", f"/p{i}").status == 200
            assert request(plain, "POST", "/p-post", body=b"x=1").status == 200
            for i in range(2):
                assert request(checked, "GET", f"/c{i}").status == 200
            replies: dict[str, list[str]] = {}
            with console(LOOPBACK, mgmt) as con:
                for command in COMMANDS:
                    lines = []
                    for line in con.command(command):
                        line = re.sub(r"(?<=:)(\d+)\b", lambda m: names.get(m.group(1), m.group(1)), line)
                        line = _TIMESTAMP.sub(r"\1 <T>", line)
                        if command in _NUMBERS:
                            line = re.sub(r"\d+(?:\.\d+)?(?:e-?\d+)?", "N", line)
                        lines.append(line)
                    replies[command] = sorted(lines) if command in SORTED else lines
            return replies


def test_console_after_traffic_matches_perl(need_perl_perlbal: None) -> None:
    perl = _run(lambda conf: PerlPerlbal(conf))
    ours = _run(lambda conf: PyPerlbal(conf))
    for command in COMMANDS:
        assert ours[command] == perl[command], command
