"""An IPv4 client of a dual-stack listener (``listen = [::]:P``) is ``127.0.0.1``
to every consumer, never ``::ffff:127.0.0.1`` (issue 24 item 3).

The kernel names an IPv4 client of an IPv6 socket without IPV6_V6ONLY in the
IPv4-mapped form; before the fix ``ACCESS DENY IP 127.0.0.1`` and ``ACCESS
DENY NETMASK 127.0.0.0/8`` let it in (200) and the backend saw
``X-Forwarded-For: ::ffff:127.0.0.1``.  Also a PROXY header naming a mapped
address stands for the plain one.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.backend import Backend
from tests.support.configs import management, pool, service
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal
from tests.support.rawhttp import HTTPConnection, request
from perlbal.http.proxyproto import encode_v2


def _dual_stack() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0))
            sock.listen()
            with socket.create_connection((LOOPBACK, sock.getsockname()[1]), timeout=2):
                return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _dual_stack(), reason="no dual-stack IPv6 on this host")


def test_ipv4_client_of_a_dual_stack_listener_is_unmapped_everywhere() -> None:
    deny_ip, deny_net, plain, proxied, mgmt = free_ports(5)
    with Backend("b") as backend:
        text = pool("p", [backend])
        text += service("deny_ip", "reverse_proxy", listen=f"[::]:{deny_ip}", pool="p", extra=[
            "SET plugins = AccessControl", "ACCESS DENY IP 127.0.0.1"])
        text += service("deny_net", "reverse_proxy", listen=f"[::]:{deny_net}", pool="p", extra=[
            "SET plugins = AccessControl", "ACCESS DENY NETMASK 127.0.0.0/8"])
        text += service("plain", "reverse_proxy", listen=f"[::]:{plain}", pool="p")
        # a balancer on 127.0.0.1, trusted by its plain address, sends PROXY v2
        # headers naming a client in the mapped form
        text += service("proxied", "reverse_proxy", listen=f"[::]:{proxied}", pool="p", extra=[
            "SET proxy_protocol = on", "SET trusted_upstream_proxies = 127.0.0.1"])
        text += management(mgmt)  # (enabled last: once it listens, every listener does)
        with PyPerlbal("LOAD AccessControl\n" + text) as server:
            by_ip = request(deny_ip, "GET", "/ip", [("Host", "h")])
            by_net = request(deny_net, "GET", "/net", [("Host", "h")])
            seen = request(plain, "GET", "/plain", [("Host", "h")])
            with HTTPConnection(proxied) as conn:
                conn.send(encode_v2(("::ffff:192.0.2.7", 4000), ("::1", proxied)))
                via_proxy = conn.request("GET", "/proxied", [("Host", "h")])
            _, err = server.output()
    assert (by_ip.status, by_net.status) == (403, 403), (by_ip.raw, by_net.raw)
    assert seen.status == 200 and via_proxy.status == 200, (seen.raw, via_proxy.raw)
    forwarded = {r.target: r.header("X-Forwarded-For") for r in backend.requests()}
    assert forwarded == {"/plain": "127.0.0.1", "/proxied": "192.0.2.7"}
    assert json.loads(seen.body)["target"] == "/plain"
    assert "::ffff:" not in err and "Traceback" not in err
