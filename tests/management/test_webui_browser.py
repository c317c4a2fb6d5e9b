"""The web UI in a real headless browser (Debian's chromium), over the DevTools protocol.

What "updates without a full reload" means here, checked from inside the page:

1. the page is loaded once; it stamps ``window.perlbalPageLoadId`` at load
   and counts successful polls of ``/json`` in ``<body data-refreshes>``;
2. configuration changes through the console (a new pool, a node, a pool
   switch) and traffic flows;
3. the new pool, its node and its request count appear in the DOM, while the
   load id is unchanged and ``performance.getEntriesByType('navigation')``
   still holds the single original navigation.  A reload would have reset
   both, so the change arrived by polling.

Screenshots before and after go to tests/artifacts/ (gitignored).  Skipped
when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.management.cdp import Browser, chromium_available
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.skipif(not chromium_available(), reason="/usr/bin/chromium not installed")


@pytest.fixture
def setup() -> Iterator[tuple[int, int, Backend, Backend]]:
    web, mgmt = free_ports(2)
    with Backend("b1") as b1, Backend("b2") as b2:
        with PyPerlbal(proxy_config(web, [b1], pool="first", service="web", mgmt_port=mgmt)):
            yield web, mgmt, b1, b2


def _texts(browser: Browser, selector: str) -> list[str]:
    return list(browser.evaluate(
        f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)"))


def test_web_ui_shows_the_proxy_and_updates_in_place(setup: tuple[int, int, Backend, Backend]) -> None:
    web, mgmt, b1, b2 = setup
    assert request(web, "GET", "/warm").status == 200
    url = f"http://{LOOPBACK}:{mgmt}/?interval=0.25"
    with Browser() as browser:
        browser.navigate(url)
        browser.wait_for("parseInt(document.body.dataset.refreshes) >= 1")
        load_id = browser.evaluate("window.perlbalPageLoadId")
        assert browser.evaluate("document.title") == "perlbal management interface"
        services = _texts(browser, "#services tbody tr[data-service] td:first-child")
        assert services == ["mgmt", "web"]
        assert _texts(browser, "[data-pool='first'] tr[data-node] td:first-child") == [b1.address]
        assert _texts(browser, "[data-pool='first'] tr[data-node] td:nth-child(2)") == ["1"]
        assert browser.evaluate("document.querySelector('[data-pool=\"fresh\"]')") is None
        assert "ENABLED" in _texts(browser, "tr[data-service='web'] td:nth-child(4)")[0]
        browser.screenshot(ARTIFACTS / "webui-before.png")
        refreshes_before = int(browser.evaluate("document.body.dataset.refreshes"))

        with console(LOOPBACK, mgmt) as con:
            assert con.command("CREATE POOL fresh") == ["OK"]
            assert con.command(f"POOL fresh ADD {b2.address}") == ["OK"]
            assert con.command("SET web.pool = fresh") == ["OK"]
        for i in range(3):
            resp = request(web, "GET", f"/after{i}")
            assert resp.status == 200 and resp.header("X-Backend-Name") == "b2"

        browser.wait_for("(document.querySelector(\"[data-pool='fresh'] tr[data-node] td:nth-child(2)\")"
                         " || {}).textContent === '3'")
        assert _texts(browser, "[data-pool='fresh'] tr[data-node] td:first-child") == [b2.address]
        assert _texts(browser, "tr[data-service='web'] td:nth-child(5)") == ["fresh"]
        # the same document: no reload happened
        assert browser.evaluate("window.perlbalPageLoadId") == load_id
        assert browser.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert int(browser.evaluate("document.body.dataset.refreshes")) > refreshes_before
        browser.screenshot(ARTIFACTS / "webui-after.png")

        # the JSON form says the same as the page
        data = json.loads(request(mgmt, "GET", "/json").body)
        assert [n["ipport"] for n in data["pools"]["fresh"]["nodes"]] == [b2.address]
        assert data["pools"]["fresh"]["nodes"][0]["requests"] == 3
        assert data["services"]["web"]["pool"] == "fresh"
    assert (ARTIFACTS / "webui-after.png").stat().st_size > 1000
