"""``perlbal explain``: which listener, service, rule, plugin and target a request would get.

A dry run of the real thing: the config is loaded by the real ``Interpreter``
with ``DryEffects`` (no sockets), the request head is built by the real
parser (``perlbal.http.parse_request_head``), and the way through selectors
and plugin hooks is ``perlbal.routing.dispatch`` -- the function the server
calls -- with a trace.  Web server targets are resolved by
``perlbal.docroot.resolve``.  This module only picks the listener, describes
the end (pool, file, management page, status) and renders the result.

The explanation is data first (``Explanation``: steps + ``Outcome``), rendered
as text or JSON.  ``perlbal.routetest`` checks files of expected routes
against it; the console's EXPLAIN runs it on a live graph.
"""

from __future__ import annotations

import argparse
import os
import shlex
import urllib.parse
from dataclasses import asdict
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel

from perlbal import balance
from perlbal.docroot import request_as_served, resolve
from perlbal.graph import Graph, Pool, Service
from perlbal.http import HttpError, parse_request_head
from perlbal.http.upgrade import relayed_protocols, wants_upgrade
from perlbal.routing import management_refusal
from perlbal.routing import (
    HOOKS_ENFORCED, Dispatched, Request, Respond, Step, Trace, dispatch, selector_plugin,
)

__all__ = ["Explanation", "ExplainArgs", "Outcome", "explain", "parse_args",
           "render_text", "rules_of"]

OutcomeKind = Literal["proxy", "file", "listing", "management", "console", "status",
                      "unreachable"]
#: roles the server has a handler for (runtime.clientconn.handler_for)
HANDLED_ROLES = ("reverse_proxy", "web_server", "management")


class ExplainArgs(BaseModel):
    """One request to explain: the CLI's and a route-test line's options."""

    url: str
    method: str = "GET"
    headers: list[str] = []
    peer_ip: str = "127.0.0.1"
    listen: str | None = None
    host: str | None = None


class Outcome(BaseModel):
    """Where the request ends: the thing a route test compares."""

    kind: OutcomeKind
    status: int | None = None  # None: the backend decides
    message: str | None = None
    service: str | None = None
    pool: str | None = None
    nodes: list[str] = []
    balance: str | None = None
    #: the node the balance method picks (None: drawn when the request comes)
    node: str | None = None
    file: str | None = None  # path under docroot, '/'-rooted
    path: str | None = None  # file system path
    size: int | None = None
    mime: str | None = None
    range: tuple[int, int] | None = None
    index_file: str | None = None
    headers: list[tuple[str, str]] = []
    #: who answered early: the selector or the plugin
    by: str | None = None

    def summary(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        if self.kind == "proxy":
            if self.node is not None:
                return (f"{status}proxy via service {self.service} to pool {self.pool}, "
                        f"node {self.node} ({self.balance})")
            nodes = ", ".join(self.nodes) or "no nodes"
            return f"{status}proxy via service {self.service} to pool {self.pool} ({nodes})"
        if self.kind == "file":
            extra = f", {self.size} bytes, {self.mime}" if self.size is not None else ""
            return f"{status}file {self.file} ({self.path}{extra}) from service {self.service}"
        if self.kind == "listing":
            return f"{status}directory listing of {self.file} from service {self.service}"
        if self.kind in ("management", "console"):
            return f"{status}{self.kind} of service {self.service}".strip()
        if self.kind == "unreachable":
            return f"unreachable: {self.message}"
        where = f" from service {self.service}" if self.service else ""
        if self.by and self.by != self.service:
            where += f" (by {self.by})"
        return f"{status}{self.message or ''}".strip() + where


class Explanation(BaseModel):
    request: dict[str, Any]
    listener: str | None = None
    steps: list[Step] = []
    outcome: Outcome

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)


# --- inputs ---------------------------------------------------------------------------


def _parser(prog: str, console: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, add_help=not console, exit_on_error=False)
    if console:
        parser.add_argument("url", nargs="?", help="http://host[:port]/path?query, or a path "
                            "with --host")
    else:
        # the command line: an optional method word, then the URL (``POST http://x/``)
        parser.add_argument("url", nargs="*", metavar="[METHOD] URL",
                            help="http://host[:port]/path?query, or a path with --host; "
                            "a method word may come first")
    parser.add_argument("--listen", help="the listener (ip:port) the request arrives on")
    parser.add_argument("--method", "-X", default=None)
    parser.add_argument("--header", "-H", action="append", default=[], metavar="'K: V'")
    parser.add_argument("--from", dest="peer_ip", default="127.0.0.1", metavar="IP",
                        help="the client's address (default 127.0.0.1)")
    parser.add_argument("--host", help="Host header when URL is a bare path")
    return parser


def parse_args(words: Sequence[str], prog: str = "explain") -> ExplainArgs:
    """Request options as words (the console line or a route-test line).  A leading
    upper-case word is the method: ``GET http://x/``.  Raises ValueError."""
    words = list(words)
    method = None
    if words and words[0].isalpha() and words[0].isupper():
        method = words.pop(0)
    parser = _parser(prog, console=True)
    try:
        ns, rest = parser.parse_known_args(words)
    except (argparse.ArgumentError, SystemExit) as exc:
        raise ValueError(str(exc) or "bad arguments") from None
    if rest:
        raise ValueError(f"unexpected arguments: {' '.join(rest)}")
    if not ns.url:
        raise ValueError("no URL given")
    return ExplainArgs(url=ns.url, method=(ns.method or method or "GET").upper(),
                       headers=ns.header, peer_ip=ns.peer_ip, listen=ns.listen, host=ns.host)


def _split_url(args: ExplainArgs) -> tuple[str | None, int | None, str]:
    """(Host header value, port, request-target)."""
    url = args.url
    if url.startswith("/"):
        host = args.host
        port = None
        if host and ":" in host and not host.startswith("["):
            port = int(host.rsplit(":", 1)[1])
        return host, port, url
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return parts.netloc or args.host, parts.port, target


def _head_bytes(args: ExplainArgs, host: str | None, target: str) -> bytes:
    lines = [f"{args.method} {target} HTTP/1.1"]
    names = {h.split(":", 1)[0].strip().lower() for h in args.headers}
    if host and "host" not in names:
        lines.append(f"Host: {host}")
    lines += [h.strip() for h in args.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _listen_key(listen: str) -> tuple[str, int]:
    if ":" not in listen:
        return "0.0.0.0", int(listen)
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def pick_listener(graph: Graph, listen: str | None, url_host: str | None,
                  url_port: int | None) -> tuple[Service | None, str]:
    """The enabled service whose listener gets the connection, and why."""
    listening = [s for s in graph.services.values() if s.enabled and s.listen]
    if listen is not None:
        want = _listen_key(listen)
        for svc in listening:
            have = _listen_key(svc.listen or "")
            if have[1] == want[1] and have[0] in (want[0], "0.0.0.0", "::"):
                return svc, f"{svc.listen} accepts connections to {listen}"
        return None, f"no enabled service listens on {listen}"
    port = url_port or 80
    by_port = [s for s in listening if _listen_key(s.listen or "")[1] == port]
    if len(by_port) == 1:
        return by_port[0], f"the only listener on port {port}"
    hostname = (url_host or "").rsplit(":", 1)[0]
    for svc in by_port:
        if _listen_key(svc.listen or "")[0] == hostname:
            return svc, f"listens on {svc.listen}"
    http = [s for s in listening if s.role != "management"]
    if not by_port and len(http) == 1:
        return http[0], (f"nothing listens on port {port}; assumed the only non-management "
                         f"listener {http[0].listen} (pass --listen)")
    names = ", ".join(f"{s.name} ({s.listen})" for s in (by_port or listening))
    return None, f"cannot tell which listener gets it among {names or 'none'}: pass --listen"


# --- the explanation --------------------------------------------------------------------


def explain(graph: Graph, args: ExplainArgs,
            pool_view: Callable[[Pool], balance.PoolView] | None = None) -> Explanation:
    """Explain one request on ``graph`` (built dry, or a live server's).

    ``pool_view`` tells a live server's node state (in flight, down nodes); a
    dry run sees every node up and idle."""
    url_host, url_port, target = _split_url(args)
    request_info = {"method": args.method, "target": target, "host": url_host,
                    "headers": args.headers, "from": args.peer_ip, "listen": args.listen}
    steps: Trace = []
    listener, why = pick_listener(graph, args.listen, url_host, url_port)
    if listener is None:
        steps.append(Step("listener", args.listen or f"port {url_port or 80}", "none", why))
        return Explanation(request=request_info, steps=steps,
                           outcome=Outcome(kind="unreachable", message=why))
    steps.append(Step("listener", listener.listen or "", "accept",
                      f"{why}: service '{listener.name}' (role {listener.role})",
                      f"service {listener.name}"))
    if listener.tunables.proxy_protocol:
        steps.append(Step("listener", listener.name, "proxy_protocol",
                          "the connection must start with a PROXY protocol header from a "
                          "trusted upstream proxy; the client address it names stands for "
                          "the client (--from)"))
    try:
        head = parse_request_head(_head_bytes(args, url_host, target))
    except HttpError as exc:
        steps.append(Step("request", "head", "refuse", exc.reason))
        return Explanation(request=request_info, listener=listener.name, steps=steps,
                           outcome=Outcome(kind="status", status=exc.status,
                                           message=exc.reason))
    result = dispatch(graph, listener, Request(head, args.peer_ip), trace=steps, run_hooks=True)
    if not HOOKS_ENFORCED and any(s.kind == "hook" for s in steps):
        steps.append(Step("note", "plugin hooks", "not enforced",
                          "this build's server does not run start_http_request hooks yet; "
                          "the hook decisions above are Perl Perlbal's"))
    if isinstance(result, Respond):
        outcome = Outcome(kind="status", status=result.status, message=result.message,
                          headers=list(result.headers), service=result.service or None,
                          by=result.by or None)
    else:
        outcome = _end(graph, result, steps, args.peer_ip, pool_view)
    return Explanation(request=request_info, listener=listener.name, steps=steps,
                       outcome=outcome)


def _end(graph: Graph, where: Dispatched, steps: Trace, peer_ip: str = "",
         pool_view: Callable[[Pool], balance.PoolView] | None = None) -> Outcome:
    svc = where.service
    role = svc.role
    if role not in HANDLED_ROLES:
        message = f"Can't map to service type {role}"
        steps.append(Step("service", svc.name, "error", message))
        return Outcome(kind="status", status=500, message=message, service=svc.name)
    if role == "reverse_proxy":
        pool = graph.pools.get(svc.pool_name or "")
        if pool is None:
            steps.append(Step("pool", "(none)", "error", "the service has no pool"))
            return Outcome(kind="status", status=503, service=svc.name)
        nodes = [n.ipport for n in pool.nodes]
        queue = " (low-priority queue)" if where.queue_low else ""
        relayed = (relayed_protocols(where.head, svc.tunables.upgrade_protocols)
                   if svc.tunables.allow_upgrade else ())
        if relayed:
            steps.append(Step("upgrade", svc.name, "relay",
                              f"Upgrade: {', '.join(relayed)} goes to the backend as "
                              "HTTP/1.1; a 101 reply turns the connection into a two-way "
                              "tunnel (allow_upgrade, upgrade_protocols)"))
        elif wants_upgrade(where.head):
            steps.append(Step("upgrade", svc.name, "drop",
                              f"Upgrade: {where.head.get('Upgrade')} is not relayed "
                              "(allow_upgrade, upgrade_protocols; h2c never is): the request "
                              "goes on as an ordinary one without it"))
        dns_name = pool.tunables.dns_name
        if not nodes and dns_name:
            steps.append(Step("pool", pool.name, "choose",
                              f"nodes come from DNS ({dns_name}), resolved at run time; "
                              f"{pool.balance_method} then picks one{queue}"))
            return Outcome(kind="proxy", service=svc.name, pool=pool.name, nodes=[],
                           balance=pool.balance_method)
        if not nodes:
            steps.append(Step("pool", pool.name, "error", "no nodes" +
                              (f" (nodefile {pool.nodefile})" if pool.nodefile else "")))
            return Outcome(kind="status", status=503, service=svc.name, pool=pool.name)
        node, why = _choose(pool, where, peer_ip, pool_view)
        steps.append(Step("pool", pool.name, "choose",
                          f"{why}; a node that failed to connect is skipped for a while{queue}"))
        return Outcome(kind="proxy", service=svc.name, pool=pool.name, nodes=nodes,
                       balance=pool.balance_method, node=node)
    if role == "management":
        refusal = management_refusal(svc, where.head)  # (the server's own rule)
        if refusal is not None:
            steps.append(Step("management", svc.name, "refuse", refusal[1]))
            return Outcome(kind="status", status=refusal[0], message=refusal[1],
                           service=svc.name)
        page = where.head.target.split("?", 1)[0]
        ok = page in ("/", "/json")
        steps.append(Step("management", svc.name, "page" if ok else "404",
                          f"status page {page}" if ok else "only / and /json exist"))
        return Outcome(kind="management" if ok else "status", status=200 if ok else 404,
                       message=None if ok else "Not Found", service=svc.name,
                       file=page if ok else None)
    verdict = resolve(svc, request_as_served(svc, where.head), graph.mime)
    for note in verdict.notes:
        steps.append(Step("file", svc.name, verdict.kind, note))
    docroot = svc.tunables.docroot or ""
    rel = verdict.path[len(docroot):] if verdict.path and verdict.path.startswith(docroot) \
        else verdict.uri
    if rel is not None:
        rel = "/" + rel.lstrip("/")
    kind: OutcomeKind = ("file" if verdict.kind in ("file", "concat", "put", "delete")
                         else "listing" if verdict.kind in ("listing",) else "status")
    if verdict.kind == "listing_disabled":
        kind = "status"
    path = os.path.normpath(verdict.path) if verdict.path else None
    return Outcome(kind=kind, status=verdict.status, message=verdict.message, service=svc.name,
                   file=os.path.normpath(rel) if rel else None, path=path, size=verdict.size, mime=verdict.mime,
                   range=verdict.range, index_file=verdict.index_file)


def _choose(pool: Pool, where: Dispatched, peer_ip: str,
            pool_view: Callable[[Pool], balance.PoolView] | None) -> tuple[str | None, str]:
    """The balance method's pick (perlbal.balance, as the server calls it) and why."""
    nodes = [n.ipport for n in pool.nodes]
    view = pool_view(pool) if pool_view is not None else balance.PoolView()
    method = pool.balance_method
    key_spec = pool.tunables.hash_key
    key = balance.request_key(key_spec, where.head, peer_ip) if method == "hash" else None
    ring = balance.HashRing.build(nodes) if method == "hash" else None
    available = view.available if view.available is not None else nodes
    return balance.describe(method, nodes, available, view.load, view.notes, key=key,
                            key_spec=key_spec, ring=ring, turn=view.turn)


# --- rules, for route-test coverage -----------------------------------------------------


def rules_of(graph: Graph) -> list[str]:
    """Every routing rule of the config, named as ``Step.rule`` names them."""
    rules: list[str] = []
    for name, svc in graph.services.items():
        plugin = selector_plugin(svc) if svc.role == "selector" else None
        if plugin == "Vhosts":
            rules += [f"vhost {name} {key}" for key in (svc.extra.get("vhosts") or {})]
        if plugin == "Vpaths":
            rules += [f"vpath {name} {rule[0]}" for rule in svc.extra.get("vpaths") or []]
            if svc.tunables.default_service:
                rules.append(f"default {name}")
        if "AccessControl" in svc.plugin_order:
            cfg = svc.extra.get("access") or {"rules": []}
            rules += [f"access {name} {a} {w} {v}" for a, w, v in cfg["rules"]]
            rules.append(f"access {name} policy")
        if "Redirect" in svc.plugin_order:
            rules += [f"redirect {name} {key}" for key in svc.extra.get("redirect_host") or {}]
    return rules


# --- rendering ---------------------------------------------------------------------------


def render_text(exp: Explanation) -> list[str]:
    req = exp.request
    host = f" (Host: {req['host']})" if req.get("host") else ""
    out = [f"request  {req['method']} {req['target']}{host} from {req['from']}"]
    for step in exp.steps:
        out.append(f"  {step.kind:<10} {step.subject:<28} {step.decision:<9} {step.reason}")
    out.append("=> " + exp.outcome.summary())
    for key, value in exp.outcome.headers:
        out.append(f"   {key}: {value}")
    return out


def to_jsonable(exp: Explanation) -> dict[str, Any]:
    data = exp.model_dump()
    data["steps"] = [asdict(s) if not isinstance(s, dict) else s for s in exp.steps]
    return data


def console_explain(graph: Graph, line: str,
                    pool_view: Callable[[Pool], balance.PoolView] | None = None) -> list[str]:
    """The EXPLAIN console command: ``explain [METHOD] URL [options]`` on a live graph
    (``pool_view``: the live server's node state)."""
    words = shlex.split(line)
    args = parse_args(words[1:] if words and words[0].lower() == "explain" else words)
    return render_text(explain(graph, args, pool_view))
