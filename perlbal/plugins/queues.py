"""Queues: tell backends how long the service's wait queues are.

No commands or parameters; ``SET plugins = Queues`` works on any service.

Runtime, the backend_client_assigned hook of reverse proxies: the request
sent to the backend gets ``X-Queue-Count`` / ``X-Queue-Age`` (normal queue
length and whole seconds the oldest waiting client has waited) and
``X-HP-Queue-Count`` / ``X-HP-Queue-Age`` for the high-priority queue, as
Perl's Queues.pm sets them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.plugins.hooks import BackendClientAssigned



class Queues(Plugin):
    name = "Queues"

    def backend_client_assigned(self, hook: "BackendClientAssigned") -> bool:
        from perlbal.http import set_header  # here: check loads plugins, never serves

        count, age, hp_count, hp_age = hook.ctx.queue_stats()
        headers = hook.headers
        for name, value in (("X-Queue-Count", count), ("X-Queue-Age", age),
                            ("X-HP-Queue-Count", hp_count), ("X-HP-Queue-Age", hp_age)):
            headers = set_header(headers, name, str(value))
        hook.headers[:] = headers
        return False


PLUGIN = Queues()
