"""The heads of HTTP/1.x messages, as the rest of Perlbal sees them.

h11 parses every message that crosses a socket (``perlbal.http.connection``)
and ``perlbal.http.policy`` turns its events into these two frozen views:

    RequestHead.method / .target / .http_version / .headers / .content_length / .chunked
    RequestHead.get(name) / .get_all(name) / .wants_keep_alive
    ResponseHead.status / .reason / .http_version / .headers / .content_length / .chunked
    ResponseHead.get(name) / .get_all(name) / .has_body(method)

Headers are an ordered tuple of ``(name, value)`` pairs of ``str``: names keep
the case the peer sent, values are latin-1 decoded so every byte round-trips
(``value.encode("latin-1")`` gives the wire bytes).  Invariants of a head built
by the policy layer: names are RFC 9110 tokens, values hold no CR, LF, NUL or
other control but HTAB, at most one Content-Length (h11 merges identical
duplicates) and never together with Transfer-Encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from perlbal.http.fields import Header, header_get, header_get_all

__all__ = [
    "Header",
    "RequestHead",
    "ResponseHead",
    "index_headers",
    "header_get",
    "header_get_all",
    "KEEP_ALIVE_TOKEN",
    "CLOSE_TOKEN",
]

# Perl's req_keep_alive / res_keep_alive match these words anywhere in Connection
KEEP_ALIVE_TOKEN = re.compile(r"\bkeep-alive\b")
CLOSE_TOKEN = re.compile(r"\bclose\b")


def index_headers(headers: Sequence[Header]) -> dict[str, list[str]]:
    """Lower-cased field name -> its values in arrival order."""
    index: dict[str, list[str]] = {}
    for key, value in headers:
        lower = key.lower()
        found = index.get(lower)
        if found is None:
            index[lower] = [value]
        else:
            found.append(value)
    return index


class _FieldLookups:
    """``get``/``get_all`` for both heads, answered from their ``by_name``
    index (built while parsing, or at the first lookup after a
    ``dataclasses.replace``)."""

    __slots__ = ()
    headers: tuple[Header, ...]
    by_name: dict[str, list[str]] | None

    def _names(self) -> dict[str, list[str]]:
        index = self.by_name
        if index is None:
            index = index_headers(self.headers)
            object.__setattr__(self, "by_name", index)
        return index

    def get(self, name: str) -> str | None:
        """The value of ``name``, duplicates joined with ", " as Perl's HTTPHeaders merges them."""
        values = self._names().get(name.lower())
        return ", ".join(values) if values else None

    def get_all(self, name: str) -> list[str]:
        return list(self._names().get(name.lower(), ()))


@dataclass(frozen=True, slots=True)
class RequestHead(_FieldLookups):
    """A validated client request head.

    ``target`` is the request target as Perl sees it: an absolute
    ``http(s)://host[:port]/path`` is reduced to its path, and its host (lower
    cased) replaces the Host header, as Perl's HTTPHeaders does for ``http``.
    """

    method: str
    target: str
    http_version: tuple[int, int]
    headers: tuple[Header, ...]
    content_length: int | None
    chunked: bool

    #: lower-cased name -> values, built at parse time or on the first lookup
    #: (not an __init__ argument, so dataclasses.replace never copies a stale one)
    by_name: dict[str, list[str]] | None = field(default=None, init=False, compare=False,
                                                 repr=False)

    @property
    def version_string(self) -> str:
        return f"{self.http_version[0]}.{self.http_version[1]}"

    @property
    def wants_keep_alive(self) -> bool:
        """The client's half of Perl's ``req_keep_alive``.

        HTTP/1.0 must ask with a ``keep-alive`` token; any ``close`` token
        refuses.  Perl matches these with ``\\b...\\b`` regexes over the
        whole Connection value, and so do we.
        """
        connection = (self.get("Connection") or "").lower()
        if self.http_version < (1, 1) and not KEEP_ALIVE_TOKEN.search(connection):
            return False
        return not CLOSE_TOKEN.search(connection)


@dataclass(frozen=True, slots=True)
class ResponseHead(_FieldLookups):
    """A validated backend response head.  ``reason`` may be empty."""

    status: int
    reason: str
    http_version: tuple[int, int]
    headers: tuple[Header, ...]
    content_length: int | None
    chunked: bool

    #: lower-cased name -> values, built at parse time or on the first lookup
    #: (not an __init__ argument, so dataclasses.replace never copies a stale one)
    by_name: dict[str, list[str]] | None = field(default=None, init=False, compare=False,
                                                 repr=False)

    def has_body(self, request_method: str) -> bool:
        """Whether a body follows (RFC 9112 section 6.3; Perl's ``content_length``)."""
        if request_method == "HEAD":
            return False
        return not (100 <= self.status <= 199 or self.status in (204, 304))
