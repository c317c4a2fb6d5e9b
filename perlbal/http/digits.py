"""Client- and backend-supplied digit strings, turned into numbers safely.

Python's ``int()`` refuses strings of more than 4,300 digits (ValueError, the
CVE-2020-10735 guard) and is quadratic below that, so a header such as
``If-Modified-Since: ...; length=000...0001`` with 5,000 zeros must never
reach it unbounded.  ``decimal_value`` strips leading zeros (Perl compares
``"0001" == 1``) and answers None when what is left has more than
``max_digits`` digits: no file size, port, version or timestamp is that big,
so callers treat None as "larger than anything" or "invalid", never raise.

Only ASCII digits count: ``str.isdigit`` and ``\\d`` also accept other
scripts' digits (``int("\\u0663")`` is 3), which no HTTP grammar allows.
"""

from __future__ import annotations

__all__ = ["decimal_value", "MAX_DIGITS"]

#: digits of the largest value accepted (10**18 - 1: beyond any real size or time)
MAX_DIGITS = 18

_ASCII_DIGITS = frozenset("0123456789")


def decimal_value(text: str, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` (ASCII digits only) as an int; None when it is empty, not all
    digits, or longer than ``max_digits`` once leading zeros are dropped."""
    if not text or not _ASCII_DIGITS.issuperset(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > max_digits:
        return None
    return int(significant) if significant else 0
