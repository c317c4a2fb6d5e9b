"""Tests for perlbal.http.ranges; the single-range cases were checked against Perl Perlbal 1.80.

Each ``PERL_CASES`` row is (Range header, file size, expected status, start, end)
as the live Perl web server answered it (Content-Range "bytes START-END/SIZE").
"""

from __future__ import annotations

import pytest

from perlbal.http.ranges import (
    MultiRangeResult,
    RangeResult,
    content_range,
    evaluate_range,
    evaluate_ranges,
    multipart_byteranges,
    unsatisfiable_content_range,
)

# Recorded from Perl Perlbal 1.80 serving a 23-byte file (and an empty one).
PERL_CASES = [
    ("bytes=0-4", 23, 206, 0, 4),
    ("bytes=0-0", 23, 206, 0, 0),
    ("bytes=5-", 23, 206, 5, 22),
    ("bytes=3-1000", 23, 206, 3, 22),
    ("bytes=-5", 23, 206, 0, 5),  # Perl's suffix quirk: first six bytes, not the last five
    ("bytes=-100", 23, 206, 0, 22),
    ("bytes=50-", 23, 416, 0, 0),
    ("bytes=5-2", 23, 416, 0, 0),
    ("bytes=-0", 23, 416, 0, 0),
    ("bytes=0-", 0, 416, 0, 0),
    ("bytes=-5", 0, 206, 0, -1),  # recorded: "Content-Range: bytes 0--1/0"
    ("bytes=0-1,3-4", 23, 200, 0, 0),
    ("bytes=-", 23, 200, 0, 0),
    ("Bytes=0-1", 23, 200, 0, 0),
    ("bytes = 0-1", 23, 200, 0, 0),
]


@pytest.mark.parametrize(("header", "size", "status", "start", "end"), PERL_CASES)
def test_matches_perl(header: str, size: int, status: int, start: int, end: int) -> None:
    assert evaluate_range(header, size) == RangeResult(status, start, end)


def test_no_header_or_not_a_file() -> None:
    assert evaluate_range(None, 10).status == 200
    assert evaluate_range("", 10).status == 200
    assert evaluate_range("bytes=0-1", None).status == 200


def test_rfc_suffix_mode() -> None:
    assert evaluate_range("bytes=-5", 23, perl_suffix_quirk=False) == RangeResult(206, 18, 22)
    assert evaluate_range("bytes=-100", 23, perl_suffix_quirk=False) == RangeResult(206, 0, 22)
    assert evaluate_range("bytes=-5", 0, perl_suffix_quirk=False).status == 416


def test_huge_numbers_clamp_or_are_unsatisfiable_as_in_perl() -> None:
    # recorded from Perl 1.80 on a 6-byte file (#15 defect 9; RFC 9110 14.1.2)
    huge = "9" * 50
    assert evaluate_range(f"bytes={huge}-", 10) == RangeResult(416)
    assert evaluate_range(f"bytes={huge}-{huge}", 10) == RangeResult(416)
    assert evaluate_range("bytes=0-99999999999999999999", 10) == RangeResult(206, 0, 9)
    assert evaluate_range(f"bytes=2-{huge}", 6) == RangeResult(206, 2, 5)
    assert evaluate_range(f"bytes=-{huge}", 6) == RangeResult(206, 0, 5)
    assert evaluate_range(f"bytes=-{huge}", 6, perl_suffix_quirk=False) == RangeResult(206, 0, 5)
    assert evaluate_ranges(f"bytes=0-1, 4-{huge}", 6, allow_multiple=True).ranges == (
        (0, 1), (4, 5))
    assert evaluate_ranges(f"bytes=0-1, {huge}-", 6, allow_multiple=True).ranges == ((0, 1),)


def test_content_range_strings() -> None:
    assert content_range(0, 4, 23) == "bytes 0-4/23"
    assert unsatisfiable_content_range(23) == "bytes */23"
    assert unsatisfiable_content_range(0) == "*"


class TestMultipleRanges:
    def test_off_by_default_behaves_like_perl(self) -> None:
        assert evaluate_ranges("bytes=0-1,3-4", 23) == MultiRangeResult(200)
        assert evaluate_ranges("bytes=0-4", 23) == MultiRangeResult(206, ((0, 4),))
        assert evaluate_ranges("bytes=50-", 23) == MultiRangeResult(416)

    def test_list(self) -> None:
        result = evaluate_ranges("bytes=0-1, 3-4, -2", 23, allow_multiple=True)
        assert result == MultiRangeResult(206, ((0, 1), (3, 4), (21, 22)))

    def test_overlaps_coalesced(self) -> None:
        result = evaluate_ranges("bytes=0-5,2-8,9-10,20-", 23, allow_multiple=True)
        assert result == MultiRangeResult(206, ((0, 10), (20, 22)))

    def test_apache_killer_is_cheap(self) -> None:
        # CVE-2011-3192: thousands of overlapping ranges collapse or are ignored.
        header = "bytes=" + ",".join(f"5-{i}" for i in range(5, 1300))
        assert evaluate_ranges(header, 10_000, allow_multiple=True).status == 200
        header = "bytes=" + ",".join(["0-"] * 40)
        assert evaluate_ranges(header, 100, allow_multiple=True) == MultiRangeResult(206, ((0, 99),))

    def test_too_many_disjoint(self) -> None:
        header = "bytes=" + ",".join(f"{i * 2}-{i * 2}" for i in range(20))
        assert evaluate_ranges(header, 100, allow_multiple=True, max_ranges=16).status == 200
        assert evaluate_ranges(header, 100, allow_multiple=True, max_ranges=20).status == 206

    def test_unsatisfiable_members(self) -> None:
        assert evaluate_ranges("bytes=50-60,70-", 23, allow_multiple=True).status == 416
        assert evaluate_ranges("bytes=50-60,1-2", 23, allow_multiple=True) == MultiRangeResult(206, ((1, 2),))

    @pytest.mark.parametrize("header", ["bytes=1-0,2-3", "items=0-1,2-3", "bytes=a-1,2-3", "bytes=-,1-2"])
    def test_invalid_lists_ignored(self, header: str) -> None:
        assert evaluate_ranges(header, 23, allow_multiple=True).status == 200

    def test_multipart_plan(self) -> None:
        plan = multipart_byteranges(((0, 1), (5, 7)), 23, "text/plain", "B0UND")
        assert plan.content_type == "multipart/byteranges; boundary=B0UND"
        assert plan.parts[1] == (0, 1) and plan.parts[3] == (5, 7)
        assert plan.parts[0] == b"\r\n--B0UND\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/23\r\n\r\n"
        assert plan.parts[-1] == b"\r\n--B0UND--\r\n"
        literal = sum(len(p) for p in plan.parts if isinstance(p, bytes))
        assert plan.content_length == literal + 2 + 3
        with pytest.raises(ValueError):
            multipart_byteranges(((0, 1),), 23, "text/plain", "bad boundary\r\n")
