"""Queues: tell backends how long the service's wait queues are.

No commands or parameters; ``SET plugins = Queues`` works on any service.

Runtime (to come, when a backend is assigned a client on a reverse proxy):
the request sent to the backend gets ``X-Queue-Count`` / ``X-Queue-Age``
(normal queue length and seconds the oldest waiting client has waited) and
``X-HP-Queue-Count`` / ``X-HP-Queue-Age`` for the high-priority queue.
"""

from __future__ import annotations

from perlbal.plugins import Plugin


class Queues(Plugin):
    name = "Queues"


PLUGIN = Queues()
