"""Request head + graph -> which service answers: the router, shared by the server and ``explain``.

Pure: no I/O, no clock.  The live server (``perlbal.runtime.clientconn``) and
``perlbal explain`` call the same functions; explain passes a ``trace`` list
and gets every decision appended to it as a ``Step``, the server passes none.
So what explain says is what the server does.

``dispatch(graph, service, request)`` follows a request from the service of
the listener that accepted it through selectors (at most ``MAX_SELECTOR_HOPS``)
to the service whose role handler answers, or to an immediate answer.

A ``selector``'s selection function is the one of the *last* registered of
Vhosts and Vpaths (both replace it, as in Perl's ``$svc->selector``):

* Vhosts (``svc.extra["vhosts"]``: lower-case host pattern -> service name),
  as Perl's ``Vhosts.pm vhost_selector``:

  1. ``GET /__using/<alt>/...`` with a Host: the ``"<host>;using:<alt>"`` map
     entry, whose target gets the request with Host rewritten to ``<alt>``;
     a missing pair is a 404 "Vhost twiddling not configured for requested pair.";
  2. no Host: the ``*`` entry, else 404 "Not Found (no configured vhost)";
  3. the Host without a trailing dot and without ``:port``, then ``*.<host>``,
     then each parent wildcard (``*.site.com``, ``*.com``), then ``*``; the first
     entry naming an existing service wins; nothing -> the same 404.

  Vhosts always decides, so ``default_service`` is never used (as in Perl).

* Vpaths (``svc.extra["vpaths"]``: ``[regex, service]`` in config order), as
  ``Vpaths.pm vpath_selector``: the first regex found (``re.search``) in the
  request-URI, query included, picks the service (404 "Not Found (<name> not a
  defined service)" when it does not exist); no match falls to
  ``default_service``.

* ``default_service`` only backs up a selection function that declined, as in
  Perl's ``Service::selector`` wrapper; a selector with no selection function
  answers 500 "No service selector configured." (Perl's text).

Where we differ from Perl: the Host is lower-cased before Vhosts matching
(Perl compared case-sensitively); Vpaths with no match and no default answers
404 "Not Found (no vpath matched)" where Perl left the client hanging.

Plugin ``start_http_request`` hooks (AccessControl, Redirect, MaxContentLength,
NotModified) run, when ``run_hooks`` is set, on every service the request
visits, in ``plugin_order``, before selection (Perl: ClientHTTPBase /
ClientHTTP / ClientProxy ``handle_request``); the first plugin that answers
stops the request.  Each plugin's decision lives in its module's ``decide``
function (``perlbal.plugins.<name>.decide``), the one place it is made.

Invariants: a ``Route`` names a service that exists in the graph at the time
of the call; an answer always carries a status and Perl's message.
"""

from __future__ import annotations

import ipaddress

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from perlbal.graph import Graph, Service
from perlbal.http import RequestHead, munge_headers, set_header

__all__ = [
    "Dispatched", "HOOKS_ENFORCED", "HookDecision", "MAX_SELECTOR_HOPS", "Request", "Respond", "Route",
    "RouteError", "Step", "Trace", "dispatch", "host_candidates", "release_head", "route",
    "run_request_hooks", "select_vhost", "select_vpath", "selector_plugin",
]

_USING = re.compile(r"/__using/([\w.]+)(?:/\w+)(?:\?.*)?")
_PEEL = re.compile(r"\*\.[\w\-_]+")
_PORT = re.compile(r":\d+\Z")

NO_VHOST = "Not Found (no configured vhost)"
NO_SELECTOR = "No service selector configured."
NO_VPATH = "Not Found (no vpath matched)"
MAX_SELECTOR_HOPS = 8
SELECTOR_PLUGINS = ("Vhosts", "Vpaths")
#: whether the live server runs plugin start_http_request hooks (explain says
#: so when a hook decides); the runtime wires them (perlbal.plugins.hooks)
HOOKS_ENFORCED = True


@dataclass(frozen=True)
class Step:
    """One decision on the way: ``kind`` of thing looked at, which one
    (``subject``), what was decided, and why.  ``rule`` names the config rule
    that decided, for route-test coverage (None when no rule did)."""

    kind: str
    subject: str
    decision: str
    reason: str
    rule: str | None = None


Trace = list[Step]


def _note(trace: Trace | None, kind: str, subject: str, decision: str, reason: str,
          rule: str | None = None) -> None:
    if trace is not None:
        trace.append(Step(kind, subject, decision, reason, rule))


@dataclass(frozen=True)
class Route:
    service: str
    #: a replacement Host header value (the /__using/ twiddle), else None
    host: str | None = None


@dataclass(frozen=True)
class RouteError:
    status: int
    message: str


@dataclass(frozen=True)
class Request:
    """What routing and hooks look at: the head and who sent it."""

    head: RequestHead
    peer_ip: str = ""
    #: the client address a trusted upstream proxy reported, when known
    observed_ip: str | None = None


@dataclass(frozen=True)
class HookDecision:
    """A plugin's verdict on a request: ``respond`` stops it with that answer."""

    plugin: str
    respond: bool
    reason: str
    status: int | None = None
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    rule: str | None = None
    queue_low: bool = False


@dataclass(frozen=True)
class Respond:
    """Answer the client now, without a role handler."""

    status: int
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    #: who answered: a selector service name or a plugin name
    by: str = ""
    #: the service the request was on when it was answered
    service: str = ""


@dataclass(frozen=True)
class Dispatched:
    """The service whose role handler gets the request, and the head as released to it."""

    service: Service
    head: RequestHead
    queue_low: bool = False
    visited: tuple[str, ...] = field(default=())


# --- host patterns (Vhosts, and Redirect's copy of it) ------------------------------


def host_candidates(host: str | None) -> Iterator[str]:
    """Map keys to try for a Host value (already lower-cased, port stripped), in
    Perl's order: exact, ``*.host``, each parent wildcard, ``*``."""
    if not host:
        yield "*"
        return
    yield host
    wild = f"*.{host}"
    yield wild
    while _PEEL.match(wild):
        wild = _PEEL.sub("*", wild, count=1)
        if wild != "*":
            yield wild
    yield "*"


def select_vhost(vhosts: dict[str, str], graph: Graph, host: str | None, target: str,
                 trace: Trace | None = None, selector: str = "") -> Route | RouteError:
    """Perl's vhost_selector over one selector's map (see module docstring)."""

    def rule(key: str) -> str:
        return f"vhost {selector} {key}"

    def lookup(key: str) -> str | None:
        name = vhosts.get(key)
        if name is None:
            _note(trace, "vhost", key, "skip", "no VHOST entry")
            return None
        if name not in graph.services:
            _note(trace, "vhost", key, "skip",
                  f"VHOST entry names '{name}', which is not a service", rule(key))
            return None
        _note(trace, "vhost", key, "match", f"VHOST {key} = {name}", rule(key))
        return name

    if host:
        host = host.lower()
        if host.endswith("."):
            host = host[:-1]
    if host:
        using = _USING.fullmatch(target)
        if using is not None:
            alt = using.group(1)
            key = f"{host};using:{alt}"
            name = lookup(key)
            if name is None:
                return RouteError(404, "Vhost twiddling not configured for requested pair.")
            _note(trace, "vhost", key, "rewrite", f"Host becomes '{alt}' (/__using/ twiddle)")
            return Route(name, host=alt)
    if not host:
        _note(trace, "vhost", "(no Host)", "try", "no Host header: only '*' applies")
    else:
        stripped = _PORT.sub("", host)
        if stripped != host:
            _note(trace, "vhost", host, "strip", f"port dropped: matching on '{stripped}'")
        host = stripped
    for key in host_candidates(host):
        name = lookup(key)
        if name is not None:
            return Route(name)
    return RouteError(404, NO_VHOST)


def select_vpath(rules: list[list[str]], graph: Graph, target: str,
                 trace: Trace | None = None, selector: str = "") -> Route | RouteError | None:
    """Perl's vpath_selector: None when no rule matched (the default may take it)."""
    for regex, name in rules:
        rule = f"vpath {selector} {regex}"
        if re.search(regex, target) is None:
            _note(trace, "vpath", regex, "skip", f"does not match '{target}'")
            continue
        if name not in graph.services:
            _note(trace, "vpath", regex, "match", f"matches, but '{name}' is not a service", rule)
            return RouteError(404, f"Not Found ({name} not a defined service)")
        _note(trace, "vpath", regex, "match", f"VPATH {regex} = {name}", rule)
        return Route(name)
    return None


def selector_plugin(selector: Service) -> str | None:
    """The plugin whose selection function the selector uses: the last one registered."""
    for name in reversed(selector.plugin_order):
        if name in SELECTOR_PLUGINS:
            return name
    return None


def route(graph: Graph, selector: Service, head: RequestHead,
          trace: Trace | None = None) -> Route | RouteError:
    """Where a request arriving on ``selector`` goes."""
    plugin = selector_plugin(selector)
    result: Route | RouteError | None = None
    if plugin is None:
        _note(trace, "selector", selector.name, "error", "no Vhosts or Vpaths plugin registered")
        return RouteError(500, NO_SELECTOR)
    _note(trace, "selector", selector.name, plugin, f"selection by the {plugin} plugin")
    if plugin == "Vhosts":
        vhosts = selector.extra.get("vhosts")
        return select_vhost(vhosts if isinstance(vhosts, dict) else {}, graph,
                            head.get("Host"), head.target, trace, selector.name)
    rules = selector.extra.get("vpaths")
    result = select_vpath(rules if isinstance(rules, list) else [], graph, head.target,
                          trace, selector.name)
    if result is not None:
        return result
    default = selector.tunables.default_service
    if isinstance(default, str) and default in graph.services:
        _note(trace, "default", selector.name, "match", f"default_service = {default}",
              f"default {selector.name}")
        return Route(default)
    _note(trace, "default", selector.name, "error", "no rule matched and no default_service")
    return RouteError(404, NO_VPATH)


# --- the management port's HTTP side -------------------------------------------------

_MANAGEMENT_METHODS = ("GET", "HEAD", "POST")


def management_refusal(svc: Service, head: RequestHead) -> tuple[int, str] | None:
    """Why the management HTTP side will not answer this request, if it won't.

    A browser can be made to send anything to 127.0.0.1 by a page whose name
    rebinds there; what it cannot forge is the Host it names.  So only a Host
    that is the listener's own address (or localhost), or one listed in
    ``allowed_hosts``, is answered, and only GET/HEAD/POST (the web UI's).
    """
    if head.method not in _MANAGEMENT_METHODS:
        return 405, "the management web UI answers GET, HEAD and POST only"
    host = (head.get("Host") or "").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if not name:
        return None  # HTTP/1.0 without Host: no browser sends that
    allowed = svc.tunables.allowed_hosts
    if name in (entry.lower() for entry in allowed):
        return None
    if name == "localhost":
        return None
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return 403, "Host not allowed: add it to this service's allowed_hosts"
    return None  # an address literal: the page's origin is that address, not a name


# --- plugin start_http_request hooks --------------------------------------------------

Decide = Callable[[Service, Request], "HookDecision | None"]
#: finds a loaded plugin by name (the running interpreter's registry); its
#: ``decide(svc, request)`` method is the typed start_http_request decision
PluginLookup = Callable[[str], Any]

_default_plugins: dict[str, Any] = {}


def _default_lookup(name: str) -> Any:
    # the stock plugins and every installed perlbal.plugins entry point, loaded
    # once (plugin modules import this one for HookDecision: imported on use)
    if not _default_plugins:
        from perlbal.plugins import default_plugin_registry

        registry = default_plugin_registry()
        _default_plugins.update({n.lower(): registry.get(n) for n in registry.names()})
    return _default_plugins.get(name.lower())


def _decider(plugin: str, lookup: PluginLookup | None) -> Decide | None:
    found = (lookup or _default_lookup)(plugin)
    if found is None and lookup is not None:
        found = _default_lookup(plugin)
    decide = getattr(found, "decide", None)
    return decide if callable(decide) else None


def run_request_hooks(service: Service, request: Request, trace: Trace | None = None,
                      plugins: PluginLookup | None = None) -> HookDecision | None:
    """The service's start_http_request chain; the first plugin that answers wins.
    A plugin takes part by defining ``decide(svc, request)`` (``Plugin.decide``):
    the server and ``perlbal explain`` both run it, third-party plugins too."""
    queue_low = None
    for plugin in service.plugin_order:
        decide = _decider(plugin, plugins)
        if decide is None:
            continue
        verdict = decide(service, request)
        if verdict is None:
            continue
        _note(trace, "hook", f"{plugin} on {service.name}",
              "respond" if verdict.respond else ("queue_low" if verdict.queue_low else "pass"),
              verdict.reason, verdict.rule)
        if verdict.respond:
            return verdict
        if verdict.queue_low:
            queue_low = verdict
    return queue_low


# --- the whole way -----------------------------------------------------------------------


def release_head(selector: Service, head: RequestHead, host: str | None) -> RequestHead:
    """Perl's release_client: the Host twiddle, then the selector's HEADER rules,
    applied as the request leaves it."""
    rules = selector.headers
    if host is None and not (rules.remove or rules.insert):
        return head
    headers = list(head.headers)
    if host is not None:
        headers = set_header(headers, "Host", host)
    if rules.remove or rules.insert:
        headers = munge_headers(headers, rules.remove, rules.insert)
    return replace(head, headers=tuple(headers))


def dispatch(graph: Graph, service: Service, request: Request, *, trace: Trace | None = None,
             run_hooks: bool = False, plugins: PluginLookup | None = None) -> Dispatched | Respond:
    """Follow ``request`` from ``service`` through selectors to its handler's service."""
    svc, head, visited, queue_low = service, request.head, [service.name], False
    for _hop in range(MAX_SELECTOR_HOPS):
        if run_hooks and svc.role != "management":
            verdict = run_request_hooks(
                svc, request if head is request.head else replace(request, head=head), trace,
                plugins)
            if verdict is not None and verdict.respond:
                return Respond(verdict.status or 500, verdict.message, verdict.headers,
                               verdict.plugin, svc.name)
            queue_low = queue_low or (verdict is not None and verdict.queue_low)
        if svc.role != "selector":
            return Dispatched(svc, head, queue_low, tuple(visited))
        result = route(graph, svc, head, trace)
        if isinstance(result, RouteError):
            return Respond(result.status, result.message, by=svc.name, service=svc.name)
        head = release_head(svc, head, result.host)
        svc = graph.services[result.service]
        visited.append(svc.name)
        _note(trace, "service", svc.name, "enter", f"role {svc.role or '(none)'}",
              f"service {svc.name}")
    _note(trace, "selector", svc.name, "error", f"more than {MAX_SELECTOR_HOPS} selector hops")
    return Dispatched(svc, head, queue_low, tuple(visited))
