"""examples/reproxy.conf with examples/reproxy_backend.py, as the README of the
example says to run them (ports substituted)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.pyserver import PyPerlbal
from tests.support.ports import free_ports, port_accepts
from tests.support.rawhttp import HTTPConnection

REPO = Path(__file__).resolve().parents[2]


def test_reproxy_example_serves_file_and_url() -> None:
    front, app, static = free_ports(3)
    htdocs = REPO / "examples" / "htdocs"
    conf = (REPO / "examples" / "reproxy.conf").read_text()
    conf = (conf.replace("127.0.0.1:8000", f"127.0.0.1:{front}")
                .replace("127.0.0.1:8081", f"127.0.0.1:{app}")
                .replace("127.0.0.1:8082", f"127.0.0.1:{static}")
                .replace("examples/htdocs", str(htdocs)))
    backend = subprocess.Popen([sys.executable, str(REPO / "examples" / "reproxy_backend.py"),
                                str(app), str(htdocs), str(static)])
    try:
        deadline = time.monotonic() + 10
        while not port_accepts(app):
            assert time.monotonic() < deadline and backend.poll() is None
            time.sleep(0.05)
        index = (htdocs / "index.html").read_bytes()
        with PyPerlbal(conf):
            with HTTPConnection(front) as conn:  # keep-alive survives both kinds
                by_file = conn.request("GET", "/file/index.html", [("Host", "x")])
                by_url = conn.request("GET", "/url/index.html", [("Host", "x")])
                direct = conn.request("GET", "/hello", [("Host", "x")])
            for got in (by_file, by_url):
                assert got.status == 200 and got.body == index
                assert not any(k.lower().startswith("x-reproxy") for k, _ in got.headers)
            assert direct.body == b"answered by the application itself\n"
    finally:
        backend.terminate()
        backend.wait(timeout=10)
