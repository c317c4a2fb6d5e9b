"""Greeting: a small third-party Perlbal plugin showing the whole plugin API
(see docs/plugins.md and this package's README.md).

- parameters, declared like the core's: ``greeting_text`` (the greeting) and
  ``greeting_path`` (a path the plugin answers itself, before any role
  handler or backend);
- a console command, ``GREETINGS``, added to the grammar through a
  ``SyntaxExtension`` and run by ``command``;
- a routing decision, ``decide(svc, request)``: the start_http_request
  decision the server runs on every service the request visits *and* that
  ``perlbal explain`` shows, so ``GET <greeting_path>`` is answered 200 with
  the greeting on a web server, a reverse proxy or a selector alike;
- typed hooks, each reading the request only through ``hook.ctx``, a
  ``perlbal.plugins.view.RequestView``: ``start_proxy_request`` tells the
  backend who was greeted (``X-Greeted-Peer``) and notes it in the request's
  ``scratch``; ``modify_response_headers`` adds ``X-Greeting`` to what the web
  server sends and to what a backend answered; ``start_web_request`` answers
  ``GET /__greeting`` on a web server itself (returning True: handled, the
  chain and the core stop).

It imports nothing of ``perlbal.runtime``: plugins get the running server
only through ``RequestView``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar.parser import SyntaxExtension
from perlbal.grammar import ast
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.plugins.hooks import ModifyResponseHeaders, StartProxyRequest, StartWebRequest
from perlbal.plugins.view import RequestView
from perlbal.routing import HookDecision, Request

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter

__all__ = ["Greeting"]


def _text(svc: Service) -> str:
    # a plugin's own parameters are read from the service's coerced values
    # (perlbal's own are read as svc.tunables.<name>, typed)
    return str(svc.params.get("greeting_text") or "hello")


class Greeting(Plugin):
    name = "Greeting"  # what LOAD and SET plugins use
    params = (
        Param("greeting_text", Kind.STRING, "Value of the X-Greeting response header.",
              default="hello", plugin="Greeting"),
        Param("greeting_path", Kind.STRING, "A path answered 200 with greeting_text by the "
              "plugin itself, on any role (empty: none).", default="", plugin="Greeting"),
    )
    commands = (
        SyntaxExtension(keyword="greetings", plugin="Greeting", rule='"greetings"',
                        usage="usage: GREETINGS"),
    )

    def __init__(self) -> None:
        # one instance serves every service: per-request state goes in ctx.scratch
        self.greeted = 0

    # --- the console ----------------------------------------------------------------

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        call.out(f"greeted {self.greeted}")
        return bool(call.end())

    # --- routing: the server and `perlbal explain` both run this ----------------------

    def decide(self, svc: Service, request: Request) -> HookDecision | None:
        """Answer ``GET``/``HEAD <greeting_path>`` with the greeting; pass anything else.

        Pure: it sees the service's configuration and the request (head, peer),
        never the running server, so ``perlbal explain`` can run it as is."""
        path = str(svc.params.get("greeting_path") or "")
        if not path:
            return None  # nothing configured: no step in explain's trace
        target = request.head.target.split("?", 1)[0]
        if target != path or request.head.method not in ("GET", "HEAD"):
            return HookDecision("Greeting", False, f"{request.head.method} {target} is not "
                                f"GET {path}: passes")
        return HookDecision("Greeting", True, f"greeting_path = {path}", 200, _text(svc) + "\n",
                            (("Content-Type", "text/plain"),), rule=f"greeting_path {svc.name}")

    # --- hooks: typed events; the request only through hook.ctx (a RequestView) --------

    def start_proxy_request(self, hook: StartProxyRequest) -> bool:
        view: RequestView = hook.ctx
        view.head = replace(view.head, headers=(*view.head.headers,
                                                ("X-Greeted-Peer", view.peer_ip)))
        view.scratch["greeting.proxied"] = True
        return False  # not handled: the proxy goes on to a backend

    def modify_response_headers(self, hook: ModifyResponseHeaders) -> bool:
        view: RequestView = hook.ctx
        hook.headers.append(("X-Greeting", _text(view.service)))
        if view.scratch.get("greeting.proxied"):
            hook.headers.append(("X-Greeting-Via", "proxy"))
        self.greeted += 1
        return False  # not handled: the core sends the (modified) head

    async def start_web_request(self, hook: StartWebRequest) -> bool:
        view: RequestView = hook.ctx
        if view.head.target != "/__greeting":
            return False
        await view.send_full_response(200, [("Content-Type", "text/plain")], b"greetings\n")
        return True
