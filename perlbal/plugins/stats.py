"""Stats: per-service request counters and recent proxied-request timings.

Console: ``STATS`` prints, for every service the plugin is registered on, one
``%-15s %-25s %12d`` line per counter, then the totals; ``RECENT`` prints the
last (up to 100 per service) proxied requests as ``<service> <seconds> <url>``.
Both ignore their arguments, as in Perl.

The counters live in ``svc.extra["stats"]``, a ``StatsCounters`` created by
``SET plugins`` and dropped when the plugin leaves the service.  The hooks
feed it, as Perl's Stats.pm: ``files_sent`` on start_send_file,
``files_reproxied`` on start_file_reproxy, ``web_requests`` on
start_web_request, ``proxy_requests`` / ``proxy_requests_highpri`` on
backend_client_assigned (which starts the request's timer), and
backend_response_received records the timing in ``recent``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.plugins.hooks import (BackendClientAssigned, BackendResponseReceived, Hook,
                                       StartFileReproxy, StartSendFile, StartWebRequest)

STAT_KEYS = ("files_reproxied", "files_sent", "proxy_requests", "proxy_requests_highpri",
             "web_requests")  # Perl prints them sorted
RECENT_MAX = 100


@dataclass
class StatsCounters:
    """What the runtime increments; the console only reads it."""

    files_sent: int = 0
    files_reproxied: int = 0
    web_requests: int = 0
    proxy_requests: int = 0
    proxy_requests_highpri: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT_MAX))
    # request id -> monotonic time its backend was assigned
    pending: dict[int, float] = field(default_factory=dict)

    def get(self, key: str) -> int:
        value = getattr(self, key)
        assert isinstance(value, int)
        return value

    def backend_assigned(self, request_id: int, high_priority: bool) -> None:
        self.pending[request_id] = time.monotonic()
        if high_priority:
            self.proxy_requests_highpri += 1
        else:
            self.proxy_requests += 1

    def backend_response(self, request_id: int, host: str | None, uri: str) -> None:
        started = self.pending.pop(request_id, None)
        if started is None:
            return
        elapsed = time.monotonic() - started
        self.recent.append(f"{elapsed:<6.4f} http://{host or 'unknown'}{uri}")

    def __repr__(self) -> str:  # what a graph dump shows
        return "StatsCounters(" + ", ".join(f"{k}={self.get(k)}" for k in STAT_KEYS) + ")"


def _counted_services(it: "Interpreter") -> list[tuple[str, StatsCounters]]:
    return [(svc.name, svc.extra["stats"]) for svc in it.graph.services.values()
            if isinstance(svc.extra.get("stats"), StatsCounters)]


class Stats(Plugin):
    name = "Stats"
    commands = (
        SyntaxExtension(keyword="stats", plugin="Stats", rule='"stats" [STATS_REST]',
                        terminals="STATS_REST: /[^ ].*/"),
        SyntaxExtension(keyword="recent", plugin="Stats", rule='"recent" [RECENT_REST]',
                        terminals="RECENT_REST: /[^ ].*/"),
    )

    def register(self, it: "Interpreter", svc: Service) -> None:
        svc.extra["stats"] = StatsCounters()

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        svc.extra.pop("stats", None)

    def unload(self, it: "Interpreter") -> None:
        for svc in it.graph.services.values():
            svc.extra.pop("stats", None)

    # --- hooks (all return False: counting never takes a request over) ---

    @staticmethod
    def _counters(hook: "Hook") -> StatsCounters | None:
        counters = hook.ctx.service.extra.get("stats")
        return counters if isinstance(counters, StatsCounters) else None

    def start_web_request(self, hook: "StartWebRequest") -> bool:
        if (counters := self._counters(hook)) is not None:
            counters.web_requests += 1
        return False

    def start_send_file(self, hook: "StartSendFile") -> bool:
        if (counters := self._counters(hook)) is not None:
            counters.files_sent += 1
        return False

    def start_file_reproxy(self, hook: "StartFileReproxy") -> bool:
        if (counters := self._counters(hook)) is not None:
            counters.files_reproxied += 1
        return False

    def backend_client_assigned(self, hook: "BackendClientAssigned") -> bool:
        if (counters := self._counters(hook)) is not None:
            counters.backend_assigned(id(hook.ctx), hook.high_priority)
        return False

    def backend_response_received(self, hook: "BackendResponseReceived") -> bool:
        if (counters := self._counters(hook)) is not None:
            counters.backend_response(id(hook.ctx), hook.ctx.head.get("Host"),
                                      hook.ctx.head.target)
        return False

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        counted = _counted_services(it)
        if node.keyword == "recent":
            for name, counters in counted:
                call.out(*(f"{name} {line}" for line in counters.recent))
            return call.end()
        totals = dict.fromkeys(STAT_KEYS, 0)
        for name, counters in counted:
            for key in STAT_KEYS:
                call.out(f"{name:<15} {key:<25} {counters.get(key):>12}")
                totals[key] += counters.get(key)
        for key in STAT_KEYS:
            call.out(f"{'total':<15} {key:<25} {totals[key]:>12}")
        return call.end()


PLUGIN = Stats()
