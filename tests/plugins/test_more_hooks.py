"""proxy_read_request and a backend_client_assigned take-over, through the real server.

A plugin (tests/plugins/hook_plugin.py, found by its entry point) answers a
POST in proxy_read_request, with the body it read, and takes a GET over in
backend_client_assigned; neither reaches the backend, while other requests
through the same service do.
"""

from __future__ import annotations

from pathlib import Path

from tests.plugins.test_runtime_plugins import _dist_info
from tests.runtime.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.ports import free_ports
from tests.support.rawhttp import request

CONF = """
LOAD HookProbe
CREATE POOL p
POOL p ADD {backend}
CREATE SERVICE px
SET role = reverse_proxy
SET listen = 127.0.0.1:{port}
SET pool = p
SET plugins = HookProbe
ENABLE px
"""


def test_hooks_answer_and_take_over(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    _dist_info(site, "perlbal_hookprobe", {"HookProbe": "tests.plugins.hook_plugin:HookProbe"})
    (port,) = free_ports(1)
    with Backend("b") as backend:
        with PyPerlbal(CONF.format(backend=backend.address, port=port),
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
