"""Differential: stock plugins at run time, the same config and requests through Perl Perlbal 1.80 and ours.

Two configs, each run on Perl then on ours with the same ports; what a client
(and the backend) sees is compared:

* web: Vhosts, Vpaths, AutoRemoveLeadingDir, Palimg (GIF palette, gradient, tint, bad spec,
  corrupt image; PNG only on ours, see PERL_PNG_BUG), Redirect, AccessControl, NotModified, MaxContentLength,
  LazyCDN (missing file and ``v=`` newer than the file), Include, EchoService,
  and the Stats console after that traffic;
* proxy: Queues, XFFExtras, Highpri, FlvStreaming, Stats, Throttle (the second
  request within the threshold waits initial_delay).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tests.plugins.imagecodec import decode_gif, decode_png, make_gif, make_png
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, pool, proxy_service
from tests.support.perl_perlbal import PerlPerlbal, console, requires_perl_perlbal
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

pytestmark = requires_perl_perlbal

Starter = Callable[[str], AbstractContextManager[object]]
SERVERS: dict[str, Starter] = {"perl": PerlPerlbal, "ours": PyPerlbal}
SHOWN = ("content-type", "content-length", "location", "content-range")
PALETTE = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255)]
PIXELS = [[0, 1, 2, 3], [3, 2, 1, 0]]

WEB_CONF = """
LOAD AutoRemoveLeadingDir
LOAD Palimg
LOAD Redirect
LOAD AccessControl
LOAD NotModified
LOAD MaxContentLength
LOAD LazyCDN
LOAD Include
LOAD Stats
LOAD EchoService
LOAD Vhosts
LOAD Vpaths

CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:{p[0]}
  SET docroot = {root}/stc
  SET plugins = AutoRemoveLeadingDir, Palimg, Stats
ENABLE web

CREATE SERVICE gate
  SET role = web_server
  SET listen = 127.0.0.1:{p[1]}
  SET docroot = {root}/stc
  SET plugins = Redirect, NotModified, MaxContentLength
  REDIRECT HOST old.example.com new.example.com
  SET gate.notmodified.host_pattern = ^nm
  SET max_content_length = 10
ENABLE gate

CREATE SERVICE locked
  SET role = web_server
  SET listen = 127.0.0.1:{p[2]}
  SET docroot = {root}/stc
  SET plugins = AccessControl
  ACCESS POLICY DENY
  ACCESS ALLOW IP 10.1.1.1
ENABLE locked

CREATE SERVICE cdn
  SET role = web_server
  SET listen = 127.0.0.1:{p[3]}
  SET docroot = {root}/other
  SET plugins = LazyCDN
  SET fallback_service = web
ENABLE cdn

INCLUDE = {root}/inc.conf

CREATE SERVICE echo
  SET role = echo
  SET listen = 127.0.0.1:{p[5]}
ENABLE echo

CREATE SERVICE mgmt
  SET role = management
  SET listen = 127.0.0.1:{p[6]}
ENABLE mgmt

CREATE SERVICE byhost
  SET role = selector
  SET listen = 127.0.0.1:{p[7]}
  SET plugins = Vhosts
  VHOST a.example.com = web
  VHOST *.b.example.com = cdn
  VHOST * = gate
ENABLE byhost

CREATE SERVICE bypath
  SET role = selector
  SET listen = 127.0.0.1:{p[8]}
  SET plugins = Vpaths
  VPATH ^/stc/ = web
  VPATH ^/b = cdn
ENABLE bypath
"""

INC_CONF = """
CREATE SERVICE inc
  SET role = web_server
  SET listen = 127.0.0.1:{p[4]}
  SET docroot = {root}/stc
ENABLE inc
"""


def _site(root: Path) -> None:
    (root / "stc" / "palimg").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "stc" / "a.txt").write_text("stc a\n")
    (root / "stc" / "b.txt").write_text("stc b\n")
    (root / "other" / "b.txt").write_text("other b\n")
    (root / "stc" / "palimg" / "img.gif").write_bytes(make_gif(PALETTE, [PIXELS, PIXELS]))
    (root / "stc" / "palimg" / "img.png").write_bytes(make_png(PALETTE, PIXELS))
    (root / "stc" / "palimg" / "bad.gif").write_bytes(b"GIF89a\x04\x00" + b"\xff" * 3)


WEB_REQUESTS: list[tuple[int, str, str, list[tuple[str, str]], bytes]] = [
    (0, "GET", "/stc/a.txt", [], b""),             # AutoRemoveLeadingDir
    (0, "GET", "/a.txt", [], b""),
    (0, "GET", "/palimg/img.gif", [], b""),        # plain file
    (0, "GET", "/palimg/img.gif/p0ff0000", [], b""),
    (0, "GET", "/palimg/img.gif/pg00ff0000030000ff", [], b""),
    (0, "GET", "/palimg/img.gif/pt00ff00", [], b""),
    (0, "GET", "/palimg/img.png/p2123456", [], b""),
    (0, "GET", "/palimg/img.gif/pzz", [], b""),    # bad spec
    (0, "GET", "/palimg/bad.gif/p0ff0000", [], b""),  # corrupt image
    (1, "GET", "/a.txt", [("Host", "old.example.com")], b""),      # Redirect
    (1, "GET", "/a.txt", [("Host", "nm.example.com"),              # NotModified
                          ("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")], b""),
    (1, "POST", "/a.txt", [("Host", "x")], b"x" * 20),             # MaxContentLength
    (1, "GET", "/a.txt", [("Host", "x")], b""),
    (2, "GET", "/a.txt", [], b""),                                 # AccessControl
    (3, "GET", "/a.txt", [], b""),                                 # LazyCDN: missing
    (3, "GET", "/b.txt?v=1", [], b""),                             # older v: served here
    (3, "GET", "/b.txt?v=99999999999", [], b""),                   # newer v: fallback
    (4, "GET", "/a.txt", [], b""),                                 # Include
    (7, "GET", "/stc/a.txt", [("Host", "a.example.com")], b""),     # Vhosts
    (7, "GET", "/b.txt", [("Host", "x.b.example.com:80")], b""),
    (7, "GET", "/a.txt", [("Host", "old.example.com")], b""),      # * -> gate: Redirect
    (8, "GET", "/stc/b.txt", [], b""),                             # Vpaths
    (8, "GET", "/b.txt", [], b""),
]


#: Perl's Palimg refuses after the file's 200 head went out (start_send_file
#: runs after the head is written): the client gets a 200 whose body is a 404
#: page.  Ours answers a clean 404.  (Its PNG path also needs String::CRC32,
#: not installed here, so the PNG is refused too; ours is decoded below.)
PERL_REFUSES_INSIDE_200 = ("/palimg/img.png/p2123456", "/palimg/img.gif/pzz",
                           "/palimg/bad.gif/p0ff0000")


def _observe(resp: object) -> tuple[object, ...]:
    status = getattr(resp, "status")
    headers = [(k.lower(), v) for k, v in getattr(resp, "headers") if k.lower() in SHOWN]
    return status, sorted(headers), getattr(resp, "body")


def _stats(port: int, service: str) -> list[str]:
    with console(LOOPBACK, port) as con:
        return [line for line in con.command("stats") if line.startswith(service + " ")]


def _echo(port: int) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.sendall(b"hello\r\nworld\n")
        got = b""
        while got.count(b"\r\n") < 2:
            chunk = sock.recv(100)
            if not chunk:
                break
            got += chunk
        return got


def _run_web(start: Starter, tmp: Path, ports: list[int]) -> list[object]:
    root = tmp / "site"
    if not root.exists():
        _site(root)
    (root / "inc.conf").write_text(INC_CONF.format(p=ports, root=root))
    seen: list[object] = []
    with start(WEB_CONF.format(p=ports, root=root)):
        for index, method, path, headers, body in WEB_REQUESTS:
            resp = request(ports[index], method, path, headers or [("Host", "t")], body)
            seen.append((index, path, _observe(resp)))
        seen.append(("echo", _echo(ports[5])))
        seen.append(("stats", _stats(ports[6], "web")))
    return seen


def test_web_plugins_same_as_perl(tmp_path: Path) -> None:
    ports = free_ports(9)
    perl = _run_web(PerlPerlbal, tmp_path, ports)
    ours = _run_web(PyPerlbal, tmp_path, ports)
    for theirs, mine in zip(perl, ours):
        if mine[1] in PERL_REFUSES_INSIDE_200:
            assert theirs[2][0] == 200 and theirs[2][2].startswith(b"HTTP/1.0 ")  # type: ignore[index]
            if mine[1] != PERL_REFUSES_INSIDE_200[0]:
                assert mine[2][0] == 404  # type: ignore[index]
            continue
        assert mine == theirs
    # and the palette really changed: the served GIF decodes with the new colour
    gif = next(obs for obs in ours if obs[1] == "/palimg/img.gif/p0ff0000")
    body = gif[2][2]  # type: ignore[index]
    assert decode_gif(body)[0][0] == [(255, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255)]
    png = next(obs for obs in ours if obs[1] == "/palimg/img.png/p2123456")
    assert decode_png(png[2][2])[0][2] == (0x12, 0x34, 0x56)  # type: ignore[index]


def _proxy_conf(ports: list[int], backend: Backend) -> str:
    px, th, mgmt = ports[:3]
    return ("".join(f"LOAD {name}\n" for name in (
                "Queues", "XFFExtras", "Highpri", "Stats", "FlvStreaming", "Throttle"))
            + pool("p", [backend])
            + proxy_service("px", px, "p", extra=[
                "SET plugins = Queues, XFFExtras, Highpri, Stats, FlvStreaming",
                "SET send_backend_port = 1", "SET send_backend_proto = 1"])
            + proxy_service("th", th, "p", extra=[
                "SET plugins = Throttle", "SET initial_delay = 1",
                "SET throttle_threshold_seconds = 60", "SET log_events = none"])
            + management(mgmt))


BACKEND_SHOWN = ("x-queue-count", "x-queue-age", "x-hp-queue-count", "x-hp-queue-age",
                 "x-forwarded-port", "x-forwarded-proto", "range")


def _run_proxy(start: Starter, ports: list[int]) -> list[object]:
    seen: list[object] = []
    with Backend("b") as backend:
        with start(_proxy_conf(ports, backend)):
            for path in ("/x", "/login.bml", "/v.flv?start=100", "/v.flv?start=0"):
                resp = request(ports[0], "GET", path, [("Host", "h")])
                got = backend.log[-1]
                seen.append((path, resp.status, resp.header("Content-Type"),
                             resp.body[:13] if path.endswith("100") else b"",
                             sorted((k.lower(), v) for k, v in got.headers
                                    if k.lower() in BACKEND_SHOWN)))
            seen.append(("stats", _stats(ports[2], "px")))
            timings = []
            for _ in range(2):
                began = time.monotonic()
                resp = request(ports[1], "GET", "/t", [("Host", "h")])
                timings.append((resp.status, time.monotonic() - began >= 0.9))
            seen.append(("throttle", timings))
    return seen


def test_proxy_plugins_same_as_perl() -> None:
    ports = free_ports(3)
    perl = _run_proxy(PerlPerlbal, ports)
    ours = _run_proxy(PyPerlbal, ports)
    for theirs, mine in zip(perl, ours):
        assert mine == theirs
    assert ("throttle", [(200, False), (200, True)]) in ours
