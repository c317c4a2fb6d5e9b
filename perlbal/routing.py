"""Request head + graph -> which service answers: the router, shared by the server and ``explain``.

Pure: no I/O, no clock; the same function runs in the live server
(``perlbal.runtime.clientconn``) and in a dry run, so what ``explain`` says is
what the server does.

Today one kind of routing exists: a ``selector`` service with the Vhosts
plugin (``svc.extra["vhosts"]``: lower-case host pattern -> service name),
matched as Perl's ``Vhosts.pm vhost_selector`` does:

1. ``GET /__using/<alt>/...`` with a Host: the ``"<host>;using:<alt>"`` map
   entry, whose target gets the request with Host rewritten to ``<alt>``;
   a missing pair is a 404 "Vhost twiddling not configured for requested pair.";
2. no Host: the ``*`` entry, else 404 "Not Found (no configured vhost)";
3. the Host without a trailing dot and without ``:port``, then ``*.<host>``,
   then each parent wildcard (``*.site.com``, ``*.com``), then ``*``; the first
   entry naming an existing service wins; nothing -> the same 404.

Where we differ from Perl: the Host value is lower-cased before matching
(map keys are lower-cased when configured, DNS names are case-insensitive;
Perl compared case-sensitively so ``Host: Example.COM`` fell through to ``*``).

Invariants: a ``Route`` names a service that exists in the graph at the time of
the call; an error always carries a status and Perl's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perlbal.graph import Graph, Service
from perlbal.http import RequestHead

__all__ = ["Route", "RouteError", "route", "select_vhost"]

_USING = re.compile(r"/__using/([\w.]+)(?:/\w+)(?:\?.*)?")
_PEEL = re.compile(r"\*\.[\w\-_]+")
_PORT = re.compile(r":\d+\Z")

NO_VHOST = "Not Found (no configured vhost)"


@dataclass(frozen=True)
class Route:
    service: str
    #: a replacement Host header value (the /__using/ twiddle), else None
    host: str | None = None


@dataclass(frozen=True)
class RouteError:
    status: int
    message: str


def select_vhost(vhosts: dict[str, str], graph: Graph, host: str | None, target: str) -> Route | RouteError:
    """Perl's vhost_selector over one selector's map (see module docstring)."""

    def lookup(key: str) -> str | None:
        name = vhosts.get(key)
        return name if name is not None and name in graph.services else None

    if host:
        host = host.lower()
        if host.endswith("."):
            host = host[:-1]
    if host:
        using = _USING.fullmatch(target)
        if using is not None:
            alt = using.group(1)
            name = lookup(f"{host};using:{alt}")
            if name is None:
                return RouteError(404, "Vhost twiddling not configured for requested pair.")
            return Route(name, host=alt)
    if not host:
        name = lookup("*")
        return Route(name) if name is not None else RouteError(404, NO_VHOST)
    host = _PORT.sub("", host)
    name = lookup(host)
    if name is not None:
        return Route(name)
    wild = f"*.{host}"
    name = lookup(wild)
    if name is not None:
        return Route(name)
    while True:
        peeled = _PEEL.sub("*", wild, count=1) if _PEEL.match(wild) else None
        if peeled is None:
            break
        wild = peeled
        name = lookup(wild)
        if name is not None:
            return Route(name)
    name = lookup("*")
    return Route(name) if name is not None else RouteError(404, NO_VHOST)


def route(graph: Graph, selector: Service, head: RequestHead) -> Route | RouteError:
    """Where a request arriving on ``selector`` goes."""
    vhosts = selector.extra.get("vhosts")
    if not isinstance(vhosts, dict):
        default = selector.get("default_service")
        if isinstance(default, str) and default in graph.services:
            return Route(default)
        return RouteError(500, "No selector hook configured for this service")
    return select_vhost(vhosts, graph, head.get("Host"), head.target)
