"""MaxContentLength: refuse request bodies announced larger than a limit.

Config: the ``max_content_length`` parameter (integer bytes, 0 = no limit,
any role), settable once the plugin is LOADed.

Runtime (to come, a start_http_request hook on services the plugin is
registered on): a request whose Content-Length exceeds the limit is answered
413 "Content too long." before any of its body is read; requests without
Content-Length pass.
"""

from __future__ import annotations

from perlbal.params import Kind, Param
from perlbal.plugins import Plugin


class MaxContentLength(Plugin):
    name = "MaxContentLength"
    params = (
        Param("max_content_length", Kind.INT, "Largest Content-Length accepted, in bytes "
              "(0: no limit).", default="0", plugin="MaxContentLength"),
    )


PLUGIN = MaxContentLength()
