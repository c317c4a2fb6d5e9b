"""AutoRemoveLeadingDir: strip the docroot's own name from request paths.

No commands or parameters.

Runtime, the web server's start_serve_request hook: when docroot ends in
``/<name>`` (``[\\w-]+``, optional trailing slash), a request for
``/<name>/rest`` is served as ``/rest``; e.g. docroot ``/home/lj/htdocs/stc``
serves ``/stc/img/a.jpg`` from ``img/a.jpg``.  As in Perl the prefix is
removed wherever it is a plain string prefix (``/stcx`` becomes ``x``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.plugins.hooks import StartServeRequest


class AutoRemoveLeadingDir(Plugin):
    name = "AutoRemoveLeadingDir"

    def start_serve_request(self, hook: "StartServeRequest") -> bool:
        docroot = hook.ctx.service.tunables.docroot
        m = re.search(r"/([\w-]+)/?$", docroot) if isinstance(docroot, str) else None
        if m is not None and hook.uri.startswith("/" + m.group(1)):
            hook.uri = hook.uri[len(m.group(1)) + 1:]
        return False


PLUGIN = AutoRemoveLeadingDir()
