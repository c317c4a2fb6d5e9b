"""HTTP or console: what the first bytes on a management connection speak.

One port serves both the line console and a read-only web UI, so the server
must tell them apart before it runs anything.  The decision is made from the
first bytes, as Perl's ClientManage.pm makes it (``^(?:HEAD|GET|POST) ``), not
from the first whole line: a request line longer than one read, or one that
trickles in slower than ``idle_timeout``, must never become console input.
A cross-site "simple" POST with a ``text/plain`` body is all a web page needs
to put console commands on the wire (issue 24, item 1).

Rules, in order:

1. the bytes begin with a registered HTTP method token (RFC 9110 section 9;
   the IANA registry, upper case: methods are case-sensitive) and a space:
   HTTP, whatever follows and however slowly.  No console command is named
   like a method (``tests/management/test_first_bytes.py`` checks the grammar);
2. while the bytes so far could still become rule 1 (``PO``): wait for more;
3. otherwise wait for the first line (LF, at most ``FIRST_LINE_CAP`` bytes):
   a whole HTTP/1.x request line with another method is HTTP too (answered
   405 by the web UI), anything else is the console.

Empty lines before the first bytes are passed over, as RFC 9112 section 2.2
has a server ignore them before a request line (the console skips them too).

When no more bytes will come in time (``final``), the bytes so far decide:
the beginning of a method is HTTP (the request did not arrive in time, and
the HTTP side closes it), anything else is the console, as before.

Sans-IO: bytes in, a verdict out; the caller owns the socket and the clock.
"""

from __future__ import annotations

import enum
import re

__all__ = ["FIRST_LINE_CAP", "HTTP_METHODS", "Speaks", "first_bytes_speak"]

#: the longest first line waited for before the console takes what came
FIRST_LINE_CAP = 8192

#: the IANA HTTP Method Registry (RFC 9110 section 16.1.1), PRI included so
#: that an HTTP/2 preface is answered as HTTP (505), not as console lines
HTTP_METHODS = frozenset({
    "ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "CONNECT", "COPY", "DELETE",
    "GET", "HEAD", "LABEL", "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL",
    "MKREDIRECTREF", "MKWORKSPACE", "MOVE", "OPTIONS", "ORDERPATCH", "PATCH", "POST", "PRI",
    "PROPFIND", "PROPPATCH", "PUT", "QUERY", "REBIND", "REPORT", "SEARCH", "TRACE", "UNBIND",
    "UNCHECKOUT", "UNLINK", "UNLOCK", "UPDATE", "UPDATEREDIRECTREF", "VERSION-CONTROL",
})
_METHOD_PREFIXES = tuple(f"{method} ".encode("ascii") for method in sorted(HTTP_METHODS))

# an HTTP/1.x request line (RFC 9112 section 3), bare LF allowed
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r?\n")


class Speaks(enum.Enum):
    HTTP = "http"
    CONSOLE = "console"
    MORE = "more"  # undecided: read more bytes


def first_bytes_speak(data: bytes, *, final: bool = False) -> Speaks:
    """What a management connection whose first bytes are ``data`` speaks.

    ``final``: no more bytes will come in time (the deadline passed, or the
    peer closed); the answer is then never ``MORE``."""
    data = data.lstrip(b"\r\n")
    if data.startswith(_METHOD_PREFIXES):
        return Speaks.HTTP
    if data and any(prefix.startswith(data) for prefix in _METHOD_PREFIXES):
        return Speaks.HTTP if final else Speaks.MORE
    if not final and b"\n" not in data and len(data) < FIRST_LINE_CAP:
        return Speaks.MORE
    return Speaks.HTTP if _REQUEST_LINE.match(data) else Speaks.CONSOLE
