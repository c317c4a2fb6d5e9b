"""Range requests, answered the way Perl Perlbal 1.80's web server answers them.

Perl (``HTTPHeaders::range``) understands one form only: the whole header
must match ``bytes=(\\d*)-(\\d*)`` exactly -- no spaces, no ``Bytes=``, no
lists.  Anything else is ignored and the full file is sent with 200.  For a
single range it answers (verified against the live server):

* 416 when first > last, when the form is ``bytes=-0``, or when first >= size
  (so every range on an empty file is 416), with ``Content-Range: bytes */SIZE``
  (``*`` alone for an empty file) and ``Content-Length: 0``;
* otherwise 206, the last byte clamped to size - 1.

Perl has one bug a client can see: a suffix range ``bytes=-N`` is served as
``0-N`` (N + 1 bytes from the start), not as the last N bytes, and on an
empty file ``bytes=-5`` yields ``206`` with ``Content-Range: bytes 0--1/0``.
:func:`evaluate_range` reproduces that by default (``perl_suffix_quirk=True``)
for byte-for-byte parity; pass ``False`` for RFC 9110 section 14.1.2 meaning.

Multiple ranges (multipart/byteranges) are an extension Perl never had, off
unless ``allow_multiple=True``.  CVE-2011-3192 ("Apache Killer", many
overlapping ranges) is defused by coalescing overlapping or adjacent ranges
and by ignoring the header (full 200) when more than ``max_ranges`` remain.

Public API::

    evaluate_range(range_header, size, *, perl_suffix_quirk=True) -> RangeResult
    evaluate_ranges(range_header, size, *, allow_multiple=False, max_ranges=16,
                    perl_suffix_quirk=True) -> MultiRangeResult
    content_range(start, end, size) -> str
    unsatisfiable_content_range(size) -> str
    multipart_byteranges(ranges, size, content_type, boundary) -> MultipartPlan

Invariants: a 206 result always has 0 <= start and end <= size - 1 except in
the reproduced Perl quirk above; coalesced ranges are sorted, disjoint and
non-adjacent; no result lists more than ``max_ranges`` ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "RangeResult",
    "MultiRangeResult",
    "MultipartPlan",
    "evaluate_range",
    "evaluate_ranges",
    "content_range",
    "unsatisfiable_content_range",
    "multipart_byteranges",
]

_PERL_SINGLE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII)
_RANGE_SPEC = re.compile(r"(\d*)-(\d*)", re.ASCII)
_MAX_DIGITS = 19  # beyond any real file size; keeps int() cheap
_BEYOND_ANY_FILE = 10**_MAX_DIGITS


def _position(text: str) -> int:
    """A byte position; a longer number than any file can reach reads as "past the
    end", which RFC 9110 section 14.1.2 clamps for a last-byte-pos (Perl compares
    such numbers as floats and clamps too: ``bytes=0-99999999999999999999`` -> 206)."""
    return int(text) if len(text) <= _MAX_DIGITS else _BEYOND_ANY_FILE


@dataclass(frozen=True, slots=True)
class RangeResult:
    """``status`` is 200 (ignore Range), 206 (serve start..end inclusive) or 416."""

    status: int
    start: int = 0
    end: int = 0


@dataclass(frozen=True, slots=True)
class MultiRangeResult:
    """200, 416, or 206 with one or more disjoint inclusive ranges."""

    status: int
    ranges: tuple[tuple[int, int], ...] = ()


def evaluate_range(range_header: str | None, size: int | None, *, perl_suffix_quirk: bool = True) -> RangeResult:
    """Perl's single-range evaluation; ``size`` None means "not a regular file"."""
    if not range_header or size is None:
        return RangeResult(200)
    match = _PERL_SINGLE.fullmatch(range_header)
    if match is None:
        return RangeResult(200)
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return RangeResult(200)
    first = _position(first_text) if first_text else None
    last = _position(last_text) if last_text else None

    if first is not None and last is not None and first > last:
        return RangeResult(416)
    if first is None and last == 0:
        return RangeResult(416)
    if first is not None and size <= first:
        return RangeResult(416)

    if first is None and last is not None and not perl_suffix_quirk:
        # RFC 9110: the last N bytes.
        if size == 0:
            return RangeResult(416)
        return RangeResult(206, max(0, size - last), size - 1)

    start = first if first is not None else 0
    end = last if last is not None and last < size else size - 1
    return RangeResult(206, start, end)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def evaluate_ranges(
    range_header: str | None,
    size: int | None,
    *,
    allow_multiple: bool = False,
    max_ranges: int = 16,
    perl_suffix_quirk: bool = True,
) -> MultiRangeResult:
    """Like :func:`evaluate_range`, optionally accepting ``bytes=a-b, c-, -n`` lists.

    Unsatisfiable members of a list are dropped; if none is left the answer
    is 416.  Lists use RFC suffix semantics (Perl never parsed lists, so there
    is no quirk to preserve there).  A list whose coalesced form still has
    more than ``max_ranges`` members is ignored entirely (200), the
    conservative answer to CVE-2011-3192.
    """
    if not allow_multiple or not range_header or "," not in range_header:
        single = evaluate_range(range_header, size, perl_suffix_quirk=perl_suffix_quirk)
        if single.status == 206:
            return MultiRangeResult(206, ((single.start, single.end),))
        return MultiRangeResult(single.status)
    if size is None:
        return MultiRangeResult(200)
    unit, equals, spec_text = range_header.partition("=")
    if not equals or unit.strip(" \t").lower() != "bytes":
        return MultiRangeResult(200)
    specs = [spec.strip(" \t") for spec in spec_text.split(",")]
    # Bound the work before parsing: an attacker can send thousands of members.
    if len(specs) > max_ranges * 4:
        return MultiRangeResult(200)
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        if not spec:
            continue
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None or (not match.group(1) and not match.group(2)):
            return MultiRangeResult(200)
        first_text, last_text = match.groups()
        if first_text:
            first = _position(first_text)
            if last_text and _position(last_text) < first:
                return MultiRangeResult(200)  # syntactically invalid member
            if first >= size:
                continue
            last = _position(last_text) if last_text else size - 1
            ranges.append((first, min(last, size - 1)))
        else:
            suffix = _position(last_text)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size - 1))
    if not ranges:
        return MultiRangeResult(416)
    merged = _coalesce(ranges)
    if len(merged) > max_ranges:
        return MultiRangeResult(200)
    return MultiRangeResult(206, tuple(merged))


def content_range(start: int, end: int, size: int) -> str:
    """The Content-Range value of a 206 part, as Perl writes it."""
    return f"bytes {start}-{end}/{size}"


def unsatisfiable_content_range(size: int) -> str:
    """Perl's 416 Content-Range: ``bytes */SIZE``, or ``*`` for an empty file."""
    return f"bytes */{size}" if size else "*"


@dataclass(frozen=True, slots=True)
class MultipartPlan:
    """How to send a multipart/byteranges body without holding the file in memory.

    ``content_type`` is the value for the response's Content-Type header;
    ``parts`` alternate between literal bytes to write and ``(start, end)``
    inclusive file ranges to copy; ``content_length`` is their total size.
    """

    content_type: str
    parts: tuple[bytes | tuple[int, int], ...]
    content_length: int


def multipart_byteranges(
    ranges: tuple[tuple[int, int], ...], size: int, content_type: str, boundary: str
) -> MultipartPlan:
    """Lay out a multipart/byteranges body (RFC 9110 section 14.6)."""
    if not re.fullmatch(r"[0-9A-Za-z'()+_,./:=?-]{1,70}", boundary):
        raise ValueError("invalid multipart boundary")
    parts: list[bytes | tuple[int, int]] = []
    length = 0
    for start, end in ranges:
        preamble = (
            f"\r\n--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: {content_range(start, end, size)}\r\n\r\n"
        ).encode("latin-1")
        parts.append(preamble)
        parts.append((start, end))
        length += len(preamble) + end - start + 1
    closing = f"\r\n--{boundary}--\r\n".encode("latin-1")
    parts.append(closing)
    length += len(closing)
    return MultipartPlan(f"multipart/byteranges; boundary={boundary}", tuple(parts), length)
