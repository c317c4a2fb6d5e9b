"""A pool's node file (``SET nodefile``): Perl's Pool::_load_nodefile.

One address a line (``ip[:port]``, port 80 when none; ``#`` starts a
comment; other text on the line is ignored, as Perl's regex does).  The
interpreter reads it when the parameter is set; the runtime reads it again
before it opens backend connections, when the file changed and was last
looked at more than ``RELOAD_FREQ`` seconds ago.  A vanished or unreadable
file keeps the nodes already known.  Beyond Perl, the file must be a regular
file of at most 16 MiB (``perlbal.safefile``): Perl reads ``/dev/zero`` or a
FIFO until memory runs out or for ever (#24 item 8).
"""

from __future__ import annotations

import os
import re
import time

from perlbal.graph import Node, Pool
from perlbal.safefile import FileRefused, read_text

__all__ = ["RELOAD_FREQ", "parse", "load", "set_file", "refresh"]

#: Perl's NODEFILE_RELOAD_FREQ: seconds between two looks at a node file
RELOAD_FREQ = 3.0

_NODE_RE = re.compile(r"(\d+\.\d+\.\d+\.\d+)(?::(\d+))?")


def parse(text: str) -> list[Node]:
    found: list[Node] = []
    for line in re.split(r"\r?\n", text):
        line = line.split("#", 1)[0]
        m = _NODE_RE.search(line)
        if m:
            found.append(Node(m.group(1), int(m.group(2) or 80)))
    return found


def load(pool: Pool, *, raise_errors: bool = False) -> bool:
    """(Re)read a pool's node file if it changed; True when the nodes were replaced.

    A file that cannot be read keeps the nodes already known; ``raise_errors``
    raises its ``OSError`` instead (``SET nodefile`` reports it)."""
    path = pool.nodefile
    if not path:
        return False
    try:
        mtime = os.stat(path).st_mtime
        if mtime == pool.nodefile_mtime:
            return False
        text = read_text(path, encoding="latin-1")
    except OSError:
        if raise_errors:
            raise
        return False
    pool.nodefile_mtime = mtime
    pool.replace_nodes(parse(text))
    return True


def set_file(pool: Pool, path: str) -> tuple[str | None, list[str]]:
    """``SET nodefile = path``: read it now; (the error that refuses the line, warnings).

    Beyond Perl, a device, a FIFO or a file over the cap is refused (Perl would
    read it until memory runs out, or for ever).  A file that cannot be read is
    kept, with no nodes from it until it can be, as Perl keeps it (silently:
    ours is a warning, which check shows)."""
    pool.nodefile = path
    pool.nodefile_mtime = 0.0
    try:
        load(pool, raise_errors=True)
    except FileRefused as exc:
        pool.nodefile = None
        return f"Node file {path} not read: {exc.strerror}", []
    except FileNotFoundError:
        pass  # (check: found beside the config instead, which it warns about)
    except OSError as exc:
        return None, [f"node file {path} cannot be read here: {exc.strerror}; pool "
                      f"{pool.name} has no nodes from it until it can"]
    return None, []


def refresh(pool: Pool) -> None:
    """The runtime's look before connecting: at most once per ``RELOAD_FREQ``."""
    if not pool.nodefile:
        return
    now = time.time()
    if now - pool.nodefile_checked < RELOAD_FREQ:
        return
    pool.nodefile_checked = now
    try:
        load(pool)
    except Exception:  # a vanished or unreadable nodefile keeps the old nodes
        pass
