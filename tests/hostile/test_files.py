"""File-serving attacks: traversal in its encodings, symlinks out of docroot,
concatenated GETs that escape or explode, and the overlapping-ranges attack."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of
from tests.support.rawhttp import request

TRAVERSALS = [
    "/../outside.txt", "/sub/../../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E%2Fetc%2Fpasswd",
    "/sub/%2e%2e/%2e%2e/etc/passwd", "/..%2fetc/passwd", "/sub\\..\\..\\etc\\passwd",
    "/ok.txt%00.png", "/sub/..", "/sub/../..", "//etc/passwd", "/escape/secret.txt",
    "/%252e%252e/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_never_leaves_docroot(hostile: Hostile, path: str) -> None:
    reply = raw_exchange(hostile.web, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    status = status_of(reply)
    assert status in (400, 403, 404) or (status == 200 and b"root:" not in reply
                                          and b"secret" not in reply), reply[:300]
    assert b"root:x:" not in reply and b"secret\n" not in reply
    hostile.assert_healthy()


def test_concat_get_cannot_escape_or_explode(hostile: Hostile) -> None:
    got = request(hostile.web, "GET", "/sub/??a.txt,../../etc/passwd")
    assert b"root:" not in got.body
    huge = ",".join(["a.txt"] * 5000)
    reply = raw_exchange(hostile.web, f"GET /sub/??{huge} HTTP/1.0\r\n\r\n".encode())
    assert status_of(reply) in (200, 400, 403, 414, 431), reply[:200]
    hostile.assert_healthy()


def test_many_overlapping_ranges(hostile: Hostile) -> None:
    (hostile.docroot / "big.bin").write_bytes(b"x" * 100_000)
    ranges = ",".join(f"{i}-{100_000 - i}" for i in range(1, 1500))
    got = request(hostile.web, "GET", "/big.bin", [("Range", f"bytes={ranges}")])
    # never a multipart amplification: at most the file once
    assert got.status in (200, 206, 416)
    assert len(got.body) <= 100_000
    hostile.assert_healthy()


@pytest.mark.parametrize("value", ["bytes=99999999-", "bytes=5-1", "bytes=-0", "bytes=abc",
                                   "bytes=0-0,-1", "items=0-1", "bytes=" + "9" * 40 + "-"])
def test_range_edge_cases_do_not_break_anything(hostile: Hostile, value: str) -> None:
    got = request(hostile.web, "GET", "/ok.txt", [("Range", value)])
    assert got.status in (200, 206, 416)
    hostile.assert_healthy()
