"""AutoRemoveLeadingDir: strip the docroot's own name from request paths.

No commands or parameters.

Runtime (to come, the web server's start_serve_request hook): when docroot
ends in ``/<name>`` (``[\\w-]+``, optional trailing slash), a request for
``/<name>/rest`` is served as ``/rest``; e.g. docroot ``/home/lj/htdocs/stc``
serves ``/stc/img/a.jpg`` from ``img/a.jpg``.
"""

from __future__ import annotations

from perlbal.plugins import Plugin


class AutoRemoveLeadingDir(Plugin):
    name = "AutoRemoveLeadingDir"


PLUGIN = AutoRemoveLeadingDir()
