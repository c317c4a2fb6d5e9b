"""Which peers are trusted upstream proxies (``trusted_upstream_proxies``,
``always_trusted``): their X-Forwarded-For is kept, their PROXY protocol
header believed, and their forwarded client address stands for the client
(Perl's ``observed_ip_string``).  One place, read by the proxy, the PROXY
protocol listener and the view plugins get of a request."""

from __future__ import annotations

import ipaddress

from perlbal.graph import Service

__all__ = ["trusted", "observed_ip"]

_parsed: dict[tuple[str, ...], list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}


def trusted(svc: Service, peer_ip: str) -> bool:
    if svc.tunables.always_trusted:
        return True
    nets = svc.tunables.trusted_upstream_proxies
    if not nets:
        return False
    key = tuple(nets)
    networks = _parsed.get(key)
    if networks is None:
        networks = _parsed[key] = [ipaddress.ip_network(n, strict=False) for n in nets]
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


def observed_ip(svc: Service, peer_ip: str, forwarded_for: str | None) -> str | None:
    """The first X-Forwarded-For address, when the peer is trusted; else None."""
    if not forwarded_for or not trusted(svc, peer_ip):
        return None
    return forwarded_for.split(",")[0].strip() or None
