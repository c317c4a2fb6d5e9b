"""The client's address in the one form every consumer compares (issue 24 item 3).

An IPv6 listening socket without IPV6_V6ONLY (``listen = [::]:P`` on a
dual-stack host) accepts IPv4 clients too, and names them in the
IPv4-mapped form ``::ffff:a.b.c.d`` (RFC 4291 section 2.5.5.2).  ACCESS rules,
Throttle's lists, trusted_upstream_proxies, the PROXY protocol's trust, the
access log, metrics labels and X-Forwarded-For all speak of IPv4 clients as
``a.b.c.d``: a mapped address would match none of their IPv4 entries
(``ACCESS DENY IP 127.0.0.1`` would let ``::ffff:127.0.0.1`` in).  So the
address is unmapped once, where it enters -- at accept (``runtime/clients.py``)
and where a PROXY header names it (``http/proxyproto.py``) -- and nothing
downstream sees the mapped form.
"""

from __future__ import annotations

import ipaddress

__all__ = ["unmapped_ip", "client_address"]


def unmapped_ip(ip: str) -> str:
    """``a.b.c.d`` for ``::ffff:a.b.c.d``; any other address unchanged."""
    if ":" not in ip:
        return ip  # IPv4 already
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    mapped = address.ipv4_mapped
    return str(mapped) if mapped is not None else ip


def client_address(accepted: object) -> tuple[str, int]:
    """``(ip, port)`` of what ``socket.accept`` returned, the IP unmapped."""
    if isinstance(accepted, tuple) and len(accepted) >= 2:
        return unmapped_ip(str(accepted[0])), int(accepted[1])
    return "", 0
