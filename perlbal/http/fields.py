"""Header fields: lookups, and the check every field passes before it is written.

Public API::

    Header                                   # (name, value) pair of str
    header_get(headers, name) -> str | None  # duplicates joined with ", " (Perl's merge)
    header_get_all(headers, name) -> list[str]
    is_token(name) -> bool                   # RFC 9110 section 5.6.2
    is_field_value(value) -> bool            # RFC 9110 section 5.5, no CTL but HTAB
    check_fields(headers)                    # raises UnsafeField naming the first bad one
    render_fields(headers) -> bytes          # "Name: value\r\n" each, checked

Parsing is h11's (``perlbal.http.connection``).  The checks here guard the other
direction: whatever produced a field -- a client, a backend, a plugin, a
``HEADER`` command, a reproxy rewrite -- it is checked when a head is rendered,
so no CR, LF, NUL or other control byte can split a head we send
(header injection / response splitting, RFC 9110 section 5.5).
"""

from __future__ import annotations

import re
from typing import Sequence

__all__ = ["Header", "UnsafeField", "header_get", "header_get_all", "is_token",
           "is_field_value", "check_fields", "render_fields", "TOKEN_CHARS"]

Header = tuple[str, str]

TOKEN_CHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile("[" + TOKEN_CHARS + "]+")
# latin-1 text: HTAB, SP, VCHAR and obs-text (0x80-0xFF) only
_FIELD_VALUE = re.compile("[\t\x20-\x7e\x80-\xff]*")
# rendered field lines, checked in one match on the way out
_FIELD_BLOCK = re.compile("(?:[" + TOKEN_CHARS + "]+: [\t\x20-\x7e\x80-\xff]*\r\n)*")


class UnsafeField(ValueError):
    """A field that must not be written: its name is no token or its value holds a control."""


def header_get_all(headers: Sequence[Header], name: str) -> list[str]:
    """All values of ``name`` (case-insensitive), in arrival order."""
    wanted = name.lower()
    return [value for key, value in headers if key.lower() == wanted]


def header_get(headers: Sequence[Header], name: str) -> str | None:
    """The value of ``name``, duplicates joined with ", " as Perl's HTTPHeaders merges them."""
    values = header_get_all(headers, name)
    return ", ".join(values) if values else None


def is_token(name: str) -> bool:
    return _TOKEN.fullmatch(name) is not None


def is_field_value(value: str) -> bool:
    return _FIELD_VALUE.fullmatch(value) is not None


def check_fields(headers: Sequence[Header]) -> None:
    """Raise :class:`UnsafeField` for the first field that may not be written."""
    for name, value in headers:
        if _TOKEN.fullmatch(name) is None:
            raise UnsafeField(f"header name {name[:40]!r} is not a token")
        if _FIELD_VALUE.fullmatch(value) is None:
            raise UnsafeField(f"header {name!r} has a control character in its value")


def render_fields(headers: Sequence[Header]) -> bytes:
    """The field lines of a head, each ending in CRLF; raises :class:`UnsafeField`
    rather than write a field that could split the head."""
    if not headers:
        return b""
    text = "\r\n".join([f"{name}: {value}" for name, value in headers]) + "\r\n"
    # one match over the block; CR and LF counted so that a value holding
    # "\r\nX: y" cannot pass as two well-formed lines
    count = len(headers)
    if (text.count("\n") != count or text.count("\r") != count
            or _FIELD_BLOCK.fullmatch(text) is None):
        check_fields(headers)  # names the culprit
        raise UnsafeField("header field cannot be written")
    return text.encode("latin-1")
