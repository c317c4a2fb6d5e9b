"""Hooks through the real server: proxy_read_request and a backend_client_assigned
take-over; handle_put and put_writeout (web_server PUT); backend_write_verify and
backend_readable_verify (verify_backend); return_to_base (a selector's).

A plugin (tests/plugins/hook_plugin.py, found by its entry point) answers a
POST in proxy_read_request, with the body it read, and takes a GET over in
backend_client_assigned; neither reaches the backend, while other requests
through the same service do.
"""

from __future__ import annotations

from pathlib import Path

from tests.plugins.test_runtime_plugins import _dist_info
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import pool, proxy_config, proxy_service, web_config
from tests.support.ports import free_ports
from tests.support.rawhttp import HTTPConnection, request



def test_hooks_answer_and_take_over(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _dist_info(site, "perlbal_hookprobe", {"HookProbe": "tests.plugins.hook_plugin:HookProbe"})
    (port,) = free_ports(1)
    with Backend("b") as backend:
        with PyPerlbal(proxy_config(port, [backend], service="px", load=["HookProbe"],
                                    extra=["SET plugins = HookProbe"]),
                       extra_pythonpath=(str(site),)) as server:
            read = request(port, "POST", "/read-answer", [("Host", "h")], b"hello")
            taken = request(port, "GET", "/takeover", [("Host", "h")])
            plain = request(port, "POST", "/plain", [("Host", "h")], b"x")
            _, err = server.output()
    assert (read.status, read.header("X-Read"), read.body) == (200, "5", b"read:hello")
    assert (taken.status, taken.header("X-Backend-Was"), taken.body) == \
        (200, backend.address, b"taken")
    assert plain.status == 200
    assert [r.target for r in backend.requests()] == ["/plain"]
    assert "Traceback" not in err


def _probe_site(tmp_path: Path) -> str:
    site = tmp_path / "site-packages"
    _dist_info(site, "perlbal_morehooks",
               {"MoreHooksProbe": "tests.plugins.hook_plugin:MoreHooksProbe"})
    return str(site)




def test_handle_put_and_put_writeout(tmp_path: Path) -> None:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    (port,) = free_ports(1)
    with PyPerlbal(web_config(port, docroot, load=["MoreHooksProbe"],
                              extra=["SET enable_put = on", "SET plugins = MoreHooksProbe"]),
                   extra_pythonpath=(_probe_site(tmp_path),)) as server:
        by_plugin = request(port, "PUT", "/plugin-put.txt", [("Host", "h")], b"hello")
        # Perl fires handle_put for a PUT with a length only, not a chunked one
        chunked = request(port, "PUT", "/plugin-put.txt", [("Host", "h"),
                          ("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n")
        upper = request(port, "PUT", "/upper/a.txt", [("Host", "h")], b"hello")
        plain = request(port, "PUT", "/plain.txt", [("Host", "h")], b"hello")
        _, err = server.output()
    assert (by_plugin.status, by_plugin.header("X-Handled-Put"), by_plugin.body) == \
        (200, "1", b"put by plugin")
    assert chunked.status == 200 and chunked.header("X-Handled-Put") is None
    assert (docroot / "plugin-put.txt").read_bytes() == b"hello"   # the chunked one
    assert upper.status == 200 and (docroot / "upper" / "a.txt").read_bytes() == b"HELLO"
    assert plain.status == 200 and (docroot / "plain.txt").read_bytes() == b"hello"
    assert sorted(p.name for p in docroot.rglob("*")) == ["a.txt", "plain.txt",
                                                          "plugin-put.txt", "upper"]
    assert "Traceback" not in err




def test_backend_verify_hooks(tmp_path: Path) -> None:
    ports = free_ports(3)
    names = ("own", "rv", "deny")
    with Backend("own") as own, Backend("rv") as rv, Backend("deny") as deny:
        backends = {"own": own, "rv": rv, "deny": deny}
        conf = "LOAD MoreHooksProbe\n" + "".join(
            pool(f"p_{name}", [backends[name]])
            + proxy_service(name, port, f"p_{name}",
                            extra=["SET verify_backend = on", "SET plugins = MoreHooksProbe"])
            for name, port in zip(names, ports))
        with PyPerlbal(conf, extra_pythonpath=(_probe_site(tmp_path),)) as server:
            replies = {name: request(port, "GET", f"/{name}", [("Host", "h")], timeout=20)
                       for name, port in zip(names, ports)}
            _, err = server.output()
    assert {name: r.status for name, r in replies.items()} == \
        {"own": 200, "rv": 200, "deny": 200}
    # backend_write_verify true: the plugin verified, no OPTIONS was sent
    assert replies["own"].header("X-Verify-Saw") == "verified by plugin"
    assert [r.method for r in own.requests()] == ["GET"]
    # backend_readable_verify saw the OPTIONS reply's first bytes; false: the core judged
    assert (replies["rv"].header("X-Verify-Saw") or "").startswith("HTTP/1.")
    assert [r.method for r in rv.requests()] == ["OPTIONS", "GET"]
    # true with verified False: a failed verification (logged; the node then goes
    # unverified for a while, as Perl's NoVerify, so the request still gets through)
    assert [r.method for r in deny.requests()] == ["OPTIONS", "GET"]
    assert f"backend {deny.address} failed verify_backend" in err
    assert err.count("failed verify_backend") == 1
    assert "Traceback" not in err


SELECTOR_CONF = """
LOAD Vpaths
LOAD MoreHooksProbe
CREATE SERVICE web_a
SET role = web_server
SET docroot = {root_a}
SET persist_client = on
ENABLE web_a
CREATE SERVICE web_b
SET role = web_server
SET docroot = {root_b}
SET persist_client = on
ENABLE web_b
"""
SELECTOR = """
CREATE SERVICE {name}
SET role = selector
SET listen = 127.0.0.1:{port}
SET persist_client = on
SET plugins = Vpaths, MoreHooksProbe
VPATH {name} ^/a = web_a
VPATH {name} ^/b = web_b
ENABLE {name}
"""


def test_return_to_base(tmp_path: Path) -> None:
    for root in ("a", "b"):
        for sub in ("a", "b"):
            (tmp_path / root / sub).mkdir(parents=True)
            (tmp_path / root / sub / "x").write_text(f"{root} serves /{sub}/x")
    sticky_port, plain_port = free_ports(2)
    conf = SELECTOR_CONF.format(root_a=tmp_path / "a", root_b=tmp_path / "b") + \
        SELECTOR.format(name="sticky", port=sticky_port) + \
        SELECTOR.format(name="plain", port=plain_port)
    bodies: dict[str, list[bytes]] = {}
    with PyPerlbal(conf, extra_pythonpath=(_probe_site(tmp_path),)) as server:
        for name, port in (("sticky", sticky_port), ("plain", plain_port)):
            with HTTPConnection(port) as conn:
                bodies[name] = [conn.request("GET", path, [("Host", "h")]).body
                                for path in ("/a/x", "/b/x", "/b/x")]
        _, err = server.output()
    # true: the connection stays with web_a, which the selector chose first
    assert bodies["sticky"] == [b"a serves /a/x", b"a serves /b/x", b"a serves /b/x"]
    # false: each request goes through the selector again
    assert bodies["plain"] == [b"a serves /a/x", b"b serves /b/x", b"b serves /b/x"]
    assert "Traceback" not in err
