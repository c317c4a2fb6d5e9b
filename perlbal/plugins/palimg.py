"""Palimg: serve GIF/PNG files from a web_server with their palette rewritten.

No commands or parameters; ``SET plugins = Palimg`` works on any service.

Runtime (to come, web_server hooks): a request for
``/palimg/<name>.<ext>/p<palspec>`` is served from ``/palimg/<name>.<ext>``
with the palette in its first 2048 bytes rewritten per ``palspec``: a
gradient ``g<i><rrggbb><j><rrggbb>``, a tint ``t<rrggbb>[<rrggbb>]``, or up to
six ``<i><rrggbb>`` replacements (hex digits only).  A bad spec or an image
the palette code cannot change answers 404; a file that cannot be read, 500.
"""

from __future__ import annotations

from perlbal.plugins import Plugin


class Palimg(Plugin):
    name = "Palimg"


PLUGIN = Palimg()
