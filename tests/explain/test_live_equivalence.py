"""explain's verdict equals what the live server does, request by request.

One config (a Vhosts selector with a ``*`` default, a Vpaths selector with
default_service reached through it, two reverse proxies to test backends, a
web_server on a temporary docroot, a management service) is loaded dry by
``perlbal explain`` and started for real (``tests/support/pyserver.py``).
Each request of the table is explained and sent; what the client saw -- the
backend that answered (X-Backend-Name), the file whose bytes came back, the
management page, or the bare status -- must be what explain predicted.
"""

from __future__ import annotations

import email.utils
import os
from pathlib import Path

import pytest

from perlbal.dryrun import load_graph
from perlbal.explain import ExplainArgs, Outcome, explain
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import management, pool, proxy_service, service, vhost_selector
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import IncompleteResponse, RawResponse, request

FILES = {
    "/index.html": b"<html>front page</html>\n",
    "/a.txt": b"alpha file contents 0123456789\n",
    "/sub/b.txt": b"bravo in a subdirectory\n",
}


def _config(front: int, paths: int, mgmt: int, app: str, api: str, docroot: Path) -> str:
    return ("LOAD vhosts\nLOAD vpaths\n"
            + pool("app_nodes", [app]) + pool("api_nodes", [api])
            + proxy_service("app", None, "app_nodes") + proxy_service("api", None, "api_nodes")
            + service("web", "web_server", extra=[
                f"SET docroot = {docroot}", "SET index_files = index.html", "SET dirindexing = off"])
            + service("paths", "selector", listen=paths, extra=[
                "SET plugins = vpaths", "SET default_service = web", "VPATH ^/api/ = api"])
            + vhost_selector("front", front, {
                "www.example.com": "app", "static.example.com": "web", "*.example.com": "app",
                "paths.example.com": "paths", "localhost;using:static.example.com": "web",
                "*": "web"})
            + management(mgmt))


def _cases(front: int, paths: int, mgmt: int, mtime: str) -> list[tuple[int, str, str, list[tuple[str, str]]]]:
    s = "static.example.com"
    return [
        (front, "GET", "/", [("Host", "www.example.com")]),
        (front, "GET", "/", [("Host", s)]),
        (front, "GET", "/a.txt", [("Host", s)]),
        (front, "GET", "/a.txt", [("Host", f"{s}:8080"), ("Range", "bytes=2-5")]),
        (front, "GET", "/a.txt", [("Host", s), ("Range", "bytes=900-")]),
        (front, "GET", "/a.txt", [("Host", s), ("If-Modified-Since", mtime)]),
        (front, "GET", "/x", [("Host", "foo.bar.example.com")]),
        (front, "GET", "/", [("Host", "WWW.Example.COM.")]),
        (front, "GET", "/a.txt", [("Host", "elsewhere.org")]),
        (front, "GET", "/missing.txt", [("Host", s)]),
        (front, "GET", "/sub/", [("Host", s)]),
        (front, "GET", "/sub/b.txt?x=1", [("Host", s)]),
        (front, "GET", "/%2e%2e/etc/passwd", [("Host", s)]),
        (front, "GET", "/sub/../a.txt", [("Host", s)]),
        (front, "POST", "/a.txt", [("Host", s), ("Content-Length", "0")]),
        (front, "GET", "/__using/static.example.com/x", [("Host", "localhost")]),
        (front, "GET", "/__using/other.example.com/x", [("Host", "localhost")]),
        (front, "GET", "/api/v1", [("Host", "paths.example.com")]),
        (front, "GET", "/a.txt", [("Host", "paths.example.com")]),
        (paths, "GET", "/api/users?id=3", [("Host", "anything")]),
        (paths, "GET", "/sub/b.txt", [("Host", "anything")]),
        (mgmt, "GET", "/", [("Host", "localhost")]),
        (mgmt, "GET", "/json", [("Host", "localhost")]),
        (mgmt, "GET", "/other", [("Host", "localhost")]),
    ]


def _predicted(out: Outcome, backends: dict[str, str]) -> tuple[int | None, str | None]:
    if out.kind == "proxy":
        assert len(out.nodes) == 1
        return 200, backends[out.nodes[0]]
    if out.kind == "management":
        return out.status, "management"
    if out.kind == "file" and out.status in (200, 206):
        return out.status, out.file
    return out.status, None


def _seen(resp: RawResponse) -> tuple[int | None, str | None]:
    name = resp.header("X-Backend-Name")
    if name is not None:
        return resp.status, name
    if b"perlbal management interface" in resp.body or \
            (resp.header("Content-Type") or "").startswith("application/json"):
        return resp.status, "management"
    if resp.status in (200, 206) and resp.body:
        for rel, content in FILES.items():
            if resp.body == content or (resp.status == 206 and resp.body in content):
                return resp.status, rel
    return resp.status, None


def test_explain_matches_live_server(tmp_path: Path) -> None:
    docroot = tmp_path / "htdocs"
    for rel, content in FILES.items():
        path = docroot / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    mtime = email.utils.formatdate(os.stat(docroot / "a.txt").st_mtime, usegmt=True)
    front, paths, mgmt = free_ports(3)
    with Backend("app") as app, Backend("api") as api:
        conf_text = _config(front, paths, mgmt, app.address, api.address, docroot)
        conf = tmp_path / "perlbal.conf"
        conf.write_text(conf_text)
        graph, errors = load_graph(str(conf))
        assert errors == []
        backends = {app.address: "app", api.address: "api"}
        mismatches: list[str] = []
        outcomes: set[tuple[int | None, str | None]] = set()
        with PyPerlbal(conf_text) as server:
            for port, method, target, headers in _cases(front, paths, mgmt, mtime):
                host = dict(headers).get("Host", "")
                exp = explain(graph, ExplainArgs(
                    url=f"http://{host}{target}", method=method, listen=f"{LOOPBACK}:{port}",
                    headers=[f"{k}: {v}" for k, v in headers if k != "Host"]))
                predicted = _predicted(exp.outcome, backends)
                try:
                    seen = _seen(request(port, method, target, headers, timeout=3))
                except IncompleteResponse as exc:
                    seen = (None, f"no response: {exc}")
                if predicted != seen:
                    mismatches.append(f"{method} {target} {headers} on :{port}: explain says "
                                      f"{predicted} ({exp.outcome.summary()}), server did {seen}")
                outcomes.add(predicted)
            assert mismatches == [], server.output()
        # the table covers every kind of end: both backends, files, ranges, 304, errors
        assert {("app" in str(o[1]), o[0]) for o in outcomes} >= {(True, 200), (False, 206),
                                                                  (False, 304), (False, 403)}
        assert (200, "api") in outcomes and (200, "management") in outcomes


@pytest.mark.parametrize("host, expected", [
    ("www.example.com", ["www.example.com", "*.www.example.com", "*.example.com", "*.com", "*"]),
    (None, ["*"]),
])
def test_host_candidates_order(host: str | None, expected: list[str]) -> None:
    from perlbal.routing import host_candidates

    assert list(host_candidates(host)) == expected
