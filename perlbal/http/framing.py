"""What both sides of a connection share: the states of a message, how its body
is framed, and the memo of heads h11 parsed moments ago.

h11's parse of a head is a pure function of its bytes (and our limits), so the
result for a head seen moments ago is reused when the same bytes arrive again
(``HeadMemo``: the exact bytes and limits are the key; only CRLF heads of at
most 4 KiB whose body h11 need not decode are stored; a few hundred entries,
the oldest dropped first).  Keep-alive clients repeat their heads and a backend
repeats its reply head within the second of its Date: measured with
bench/proxy_bench.py (CPU per request), this brings a proxied request back
under what our own parser cost before h11.  tests/http/test_properties.py
holds the memo to what h11 answers.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from perlbal.http.head import RequestHead, ResponseHead
from perlbal.http.policy import Limits

__all__ = ["HEAD", "BODY", "DONE", "LENGTH", "CHUNKED", "CLOSE", "NONE", "HeadMemo",
           "memo_key", "REQUEST_MEMO", "RESPONSE_MEMO"]

#: where a message stands (ClientSide's table; BackendSide uses HEAD, BODY, DONE too)
HEAD, BODY, DONE = "HEAD", "BODY", "DONE"
#: how a body is framed: Content-Length, chunked, by the close, or no body
LENGTH, CHUNKED, CLOSE, NONE = "length", "chunked", "close", "none"

_MEMO_MAX_HEAD = 4096
_CRLFCRLF = b"\r\n\r\n"

HeadT = TypeVar("HeadT")


class HeadMemo(Generic[HeadT]):
    """Recently parsed heads by their exact bytes (and limits): a bounded dict,
    the oldest entry dropped first.  Only heads h11 parsed to the same end
    (CRLF CRLF) and whose body it does not have to decode are stored."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: dict[tuple[bytes, Limits], HeadT] = {}

    def get(self, key: tuple[bytes, Limits]) -> HeadT | None:
        return self._entries.get(key)

    def put(self, key: tuple[bytes, Limits], value: HeadT) -> None:
        entries = self._entries
        if len(entries) >= self.size:
            del entries[next(iter(entries))]
        entries[key] = value


REQUEST_MEMO: HeadMemo[tuple[RequestHead, bool]] = HeadMemo()
RESPONSE_MEMO: HeadMemo[ResponseHead] = HeadMemo()


def memo_key(data: bytes, limits: Limits) -> tuple[bytes, Limits] | None:
    """The memo key of the head at the start of ``data``, if it may be memoized."""
    end = data.find(_CRLFCRLF, 0, _MEMO_MAX_HEAD)
    if end <= 0 or end + 4 > limits.max_head_size:
        return None
    return (data[:end + 4], limits)
