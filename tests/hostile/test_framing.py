"""Request framing and smuggling (RFC 9112 §6): every ambiguous framing is
refused with 4xx/5xx and a close, and the backend never sees a second request;
what RFC 9112 lets a recipient tolerate (and Perl Perlbal and nginx accept) is
served, re-rendered with CRLF (perlbal/http/policy.py)."""

from __future__ import annotations

import re

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of

H = b"Host: example.com\r\n"
SMUGGLE = b"GET /smuggle HTTP/1.1\r\nHost: example.com\r\n\r\n"

CASES: dict[str, bytes] = {
    "cl_and_te": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLE,
    "te_xchunked": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n"
                   b"0\r\n\r\n" + SMUGGLE,
    "te_chunked_identity": b"POST /a HTTP/1.1\r\n" + H +
                           b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLE,
    "te_duplicated": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLE,
    "te_vertical_tab": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding:\x0bchunked\r\n\r\n"
                       b"0\r\n\r\n" + SMUGGLE,
    "te_space_before_colon": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n"
                             b"\r\n0\r\n\r\n" + SMUGGLE,
    "cl_space_before_colon": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length : 0\r\n\r\n" + SMUGGLE,
    "cl_conflicting_list": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 0, 44\r\n\r\n" + SMUGGLE,
    "cl_duplicate_different": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n"
                              b"Content-Length: 44\r\n\r\n" + SMUGGLE,
    "cl_plus_sign": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: +0\r\n\r\n" + SMUGGLE,
    "cl_negative": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n" + SMUGGLE,
    "cl_hex": b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n" + SMUGGLE,
    "chunk_size_not_hex": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\n" + SMUGGLE,
    "chunk_size_overflow": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"ffffffffffffffffffffffff\r\nx\r\n0\r\n\r\n" + SMUGGLE,
    "chunk_bad_terminator": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                            b"3\r\nabcXX0\r\n\r\n" + SMUGGLE,
    "chunk_size_negative": b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"-1\r\n" + SMUGGLE,
    "bare_cr_in_head": b"GET /a HTTP/1.1\r\n" + H + b"X-A: b\rX-B: c\r\n\r\n" + SMUGGLE,
    "trailer_carries_content_length": b"POST /a HTTP/1.1\r\n" + H +
                                      b"Transfer-Encoding: chunked\r\n\r\n"
                                      b"0\r\nContent-Length: 44\r\n\r\n" + SMUGGLE,
    # RFC 9112 6.1: faulty framing (but a web_server PUT or a buffer_uploads
    # proxy, Perl's own chunked paths: tests/hostile/test_conformance.py)
    "http10_with_te": b"POST /a HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" + SMUGGLE,
}


# h11's status hint: 501 for a transfer coding it does not implement (RFC 9112 6.1)
STATUS = {"te_xchunked": 501, "te_chunked_identity": 501, "te_duplicated": 501}

# Tolerated (RFC 9112 2.2 bare LF, 5.2 obs-fold replaced by SP), and the number of
# responses the client gets: a pipelined second request is served as one, since
# what reaches the backend is our own CRLF rendering.
TOLERATED: dict[str, tuple[bytes, int]] = {
    "bare_lf_line_endings": (b"GET /a HTTP/1.1\n" + b"Host: example.com\n\n"
                             b"GET /b HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", 2),
    "obs_fold": (b"GET /a HTTP/1.1\r\n" + H + b"X-A: b\r\n  folded\r\n\r\n"
                 b"GET /b HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", 2),
}


@pytest.mark.parametrize("name", sorted(TOLERATED))
def test_tolerated_framing_is_served(hostile: Hostile, name: str) -> None:
    data, responses = TOLERATED[name]
    seen_before = len(hostile.backend.log)
    reply = raw_exchange(hostile.proxy, data)
    # (the backend's JSON bodies end without a newline)
    assert re.findall(rb"HTTP/1\.[01] (\d{3}) OK\r\n", reply) == [b"200"] * responses, reply
    assert hostile.smuggled() == []
    log = hostile.backend.log[seen_before:]
    assert len(log) == responses
    if name == "obs_fold":
        assert log[0].header("X-A") == "b folded"  # one line on the way out
    hostile.assert_healthy()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("target", ["proxy", "web"])
def test_ambiguous_framing_is_refused(hostile: Hostile, name: str, target: str) -> None:
    port = hostile.proxy if target == "proxy" else hostile.web
    seen_before = len(hostile.backend.log)
    reply = raw_exchange(port, CASES[name])
    assert status_of(reply) == STATUS.get(name, 400), reply[:200]
    # the refusal says why (Perl-style page with a reason after the title)
    assert len(re.findall(rb"(?:^|\n)HTTP/1\.[01] \d{3}", reply)) == 1, \
        "a second response was served"
    assert hostile.smuggled() == []
    assert len(hostile.backend.log) == seen_before, "the backend saw the refused request"
    hostile.assert_healthy()


def test_valid_chunked_request_still_works(hostile: Hostile) -> None:
    reply = raw_exchange(hostile.proxy, b"POST /chunked HTTP/1.1\r\n" + H +
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                         b"3\r\nabc\r\n0\r\n\r\n")
    assert status_of(reply) == 200, reply[:300]
    last = hostile.backend.log[-1]
    assert last.target == "/chunked" and last.body == b"abc"
    assert last.header("Content-Length") == "3"


def test_a_bad_request_after_a_good_one_is_refused_with_a_reason(hostile: Hostile) -> None:
    reply = raw_exchange(hostile.web, b"GET /ok.txt HTTP/1.1\r\nHost: a\r\n\r\n"
                         b"GET /ok.txt HTTP/1.1\r\nHost: a\r\nX-A: b\r\x00\r\n\r\n")
    responses = re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3})", reply)
    assert responses == [b"200", b"400"], reply[-300:]
    assert reply.rstrip().endswith(b"malformed header line")
