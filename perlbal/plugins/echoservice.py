"""EchoService: the ``echo`` role, a line echo server (Perl's plugin example).

Config: ``LOAD EchoService`` makes ``SET role = echo`` valid and adds the
``echo_delay`` parameter (integer seconds, default 0, echo services only);
UNLOAD takes both away again.

Runtime (to come, the dispatcher for role ``echo``): every complete line a
client sends is written back to it, after echo_delay seconds when set.
"""

from __future__ import annotations

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin


class EchoService(Plugin):
    name = "EchoService"
    roles = ("echo",)
    params = (
        Param("echo_delay", Kind.INT, "Seconds to wait before echoing a line back.",
              roles=("echo",), default="0", plugin="EchoService"),
    )


PLUGIN = EchoService()
