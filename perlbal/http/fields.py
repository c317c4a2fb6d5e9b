"""Header field lines: validation shared by request heads, response heads and trailers.

Public API::

    Header                                   # (name, value) pair of str
    header_get(headers, name) -> str | None  # duplicates joined with ", " (Perl's merge)
    header_get_all(headers, name) -> list[str]
    parse_field_lines(lines, error, max_header_count, too_many=None) -> list[Header]

Invariants of parsed fields: names are RFC 9110 tokens (ASCII), values are
latin-1 decoded (so every byte round-trips), trimmed of surrounding SP/HTAB
and free of control characters other than HTAB.  ``error`` builds the
exception to raise, so callers decide between HttpError and
BackendProtocolError.
"""

from __future__ import annotations

import re
from typing import Callable, NoReturn, Sequence

__all__ = ["Header", "ErrorFactory", "TOKEN_CHARS", "header_get", "header_get_all", "parse_field_lines"]

Header = tuple[str, str]

ErrorFactory = Callable[[str], Exception]

TOKEN_CHARS = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + TOKEN_CHARS + rb"]+")
# A whole valid field line in one match: token, colon, value of allowed bytes
# (the per-line checks below only run to name what is wrong with a bad one).
_FIELD_LINE = re.compile(rb"[" + TOKEN_CHARS + rb"]+:[\t\x20-\x7e\x80-\xff]*")


def header_get_all(headers: Sequence[Header], name: str) -> list[str]:
    """All values of ``name`` (case-insensitive), in arrival order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def header_get(headers: Sequence[Header], name: str) -> str | None:
    """The value of ``name``, duplicates joined with ", " as Perl's HTTPHeaders merges them."""
    values = header_get_all(headers, name)
    return ", ".join(values) if values else None


def _refuse_field_line(line: bytes, error: ErrorFactory) -> NoReturn:
    """Say precisely what is wrong with a field line ``_FIELD_LINE`` refused."""
    if line[:1] in (b" ", b"\t"):
        # RFC 9112 section 5.2: obs-fold must be rejected (or rewritten); we reject.
        raise error("obsolete line folding in header")
    name, colon, value = line.partition(b":")
    if not colon:
        raise error("header line without a colon")
    if not _TOKEN.fullmatch(name):
        if name.rstrip(b" \t") != name and _TOKEN.fullmatch(name.rstrip(b" \t")):
            # RFC 9112 section 5.1: no whitespace between field name and colon.
            raise error("whitespace between header name and colon")
        raise error("invalid header name")
    raise error("control character in header value")


def parse_field_lines(
    lines: list[bytes],
    error: ErrorFactory,
    max_header_count: int,
    too_many: ErrorFactory | None = None,
) -> list[Header]:
    """Validate and decode CRLF-stripped field lines (shared with chunked trailers)."""
    if len(lines) > max_header_count:
        raise (too_many or error)("too many header fields")
    headers: list[Header] = []
    for line in lines:
        if _FIELD_LINE.fullmatch(line) is None:
            _refuse_field_line(line, error)
        name, _colon, value = line.partition(b":")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return headers
