"""Greeting: a small third-party Perlbal plugin (see docs/plugins.md).

- a parameter, ``greeting_text`` (any role), declared like the core's;
- a console command, ``GREETINGS``, added to the grammar through a
  ``SyntaxExtension``;
- two hooks: ``modify_response_headers`` adds ``X-Greeting`` to files the web
  server sends, ``start_web_request`` answers ``GET /__greeting`` itself
  (returning True: the request is handled, the chain and the core stop).
"""

from __future__ import annotations

from typing import Any

from perlbal.grammar.parser import SyntaxExtension
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin
from perlbal.plugins.hooks import ModifyResponseHeaders, StartWebRequest


class Greeting(Plugin):
    name = "Greeting"
    params = (
        Param("greeting_text", Kind.STRING, "Value of the X-Greeting response header.",
              default="hello", plugin="Greeting"),
    )
    commands = (
        SyntaxExtension(keyword="greetings", plugin="Greeting", rule='"greetings"'),
    )

    def __init__(self) -> None:
        self.greeted = 0

    def command(self, it: Any, node: Any, call: Any) -> bool:
        call.out(f"greeted {self.greeted}")
        return bool(call.end())

    def modify_response_headers(self, hook: ModifyResponseHeaders) -> bool:
        text = hook.ctx.service.get("greeting_text") or "hello"
        hook.headers.append(("X-Greeting", str(text)))
        self.greeted += 1
        return False  # not handled: the web server sends the (modified) head

    async def start_web_request(self, hook: StartWebRequest) -> bool:
        if hook.ctx.head.target != "/__greeting":
            return False
        await hook.ctx.send_full_response(200, [("Content-Type", "text/plain")], b"greetings\n")
        return True
