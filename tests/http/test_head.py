"""Tests for perlbal.http.head: strict request/response head parsing and readers."""

from __future__ import annotations

import pytest

from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import (
    DEFAULT_MAX_HEAD_SIZE,
    HeadReader,
    ResponseHeadReader,
    parse_request_head,
    parse_response_head,
)


def req(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def refused(raw: bytes, status: int = 400) -> HttpError:
    with pytest.raises(HttpError) as info:
        parse_request_head(raw)
    assert info.value.status == status, info.value.reason
    return info.value


class TestRequestHeadAccepted:
    def test_simple_get(self) -> None:
        head = parse_request_head(req("GET /a?b=c HTTP/1.1\nHost: example.com\nX-Y:  spaced  \n\n"))
        assert head.method == "GET"
        assert head.target == "/a?b=c"
        assert head.http_version == (1, 1)
        assert head.version_string == "1.1"
        assert head.headers == (("Host", "example.com"), ("X-Y", "spaced"))
        assert head.get("host") == "example.com"
        assert head.content_length is None
        assert not head.chunked

    def test_http10_needs_no_host(self) -> None:
        assert parse_request_head(req("GET / HTTP/1.0\n\n")).headers == ()

    def test_duplicates_joined_like_perl(self) -> None:
        head = parse_request_head(req("GET / HTTP/1.0\nA: 1\nB: x\na: 2\n\n"))
        assert head.get("A") == "1, 2"
        assert head.get_all("a") == ["1", "2"]
        assert head.get("missing") is None

    def test_content_length(self) -> None:
        assert parse_request_head(req("POST / HTTP/1.0\nContent-Length: 42\n\n")).content_length == 42
        # identical duplicates are one length (RFC 9112 section 6.3)
        raw = req("POST / HTTP/1.0\nContent-Length: 7\nContent-Length: 7, 7\n\n")
        assert parse_request_head(raw).content_length == 7

    def test_chunked_case_insensitive(self) -> None:
        head = parse_request_head(req("PUT /f HTTP/1.1\nHost: h\nTransfer-Encoding: Chunked \n\n"))
        assert head.chunked

    def test_absolute_uri_rewritten_as_perl_does(self) -> None:
        head = parse_request_head(req("GET http://WWW.Example.com:8080/p?q HTTP/1.1\nHost: other\n\n"))
        assert head.target == "/p?q"
        assert head.headers == (("Host", "www.example.com"),)
        head = parse_request_head(req("GET http://example.com HTTP/1.0\n\n"))
        assert head.target == "/"
        assert head.get("Host") == "example.com"

    def test_obs_text_allowed_in_values(self) -> None:
        head = parse_request_head(b"GET / HTTP/1.0\r\nX: caf\xe9\tok\r\n\r\n")
        assert head.get("x") == "caf\xe9\tok"

    @pytest.mark.parametrize(
        ("head", "expected"),
        [
            ("GET / HTTP/1.0\n\n", False),
            ("GET / HTTP/1.0\nConnection: keep-alive\n\n", True),
            ("GET / HTTP/1.0\nConnection: Keep-Alive\n\n", True),
            ("GET / HTTP/1.1\nHost: h\n\n", True),
            ("GET / HTTP/1.1\nHost: h\nConnection: close\n\n", False),
            ("GET / HTTP/1.1\nHost: h\nConnection: keep-alive, close\n\n", False),
        ],
    )
    def test_wants_keep_alive(self, head: str, expected: bool) -> None:
        assert parse_request_head(req(head)).wants_keep_alive is expected


class TestRequestHeadRefused:
    @pytest.mark.parametrize(
        "head",
        [
            "POST / HTTP/1.1\nHost: h\nContent-Length: 3\nTransfer-Encoding: chunked\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: xchunked\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked, identity\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: identity\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding : chunked\n\n",
            "POST / HTTP/1.1\nHost: h\n Transfer-Encoding: chunked\n\n",
            "POST / HTTP/1.1\nHost: h\nTransfer-Encoding: \x0bchunked\n\n",
            "POST / HTTP/1.0\nTransfer-Encoding: chunked\n\n",
        ],
    )
    def test_transfer_encoding_smuggling(self, head: str) -> None:
        refused(req(head))

    @pytest.mark.parametrize(
        "value",
        ["abc", "1 2", "+5", "0x10", "5, 6", "", "1" * 19, "\xb2", "\xb9"],
    )
    def test_bad_content_length(self, value: str) -> None:
        refused(req(f"POST / HTTP/1.0\nContent-Length: {value}\n\n"))

    def test_conflicting_content_lengths(self) -> None:
        refused(req("POST / HTTP/1.0\nContent-Length: 5\nContent-Length: 6\n\n"))

    def test_negative_content_length_uses_perls_wording(self) -> None:
        error = refused(req("POST / HTTP/1.0\nContent-Length: -5\n\n"))
        # Perl's ClientProxy answers exactly this message (recorded, see test_responses).
        assert error.reason == "Invalid request: Content-Length < 0"
        assert not error.perl_closes_silently

    @pytest.mark.parametrize(
        "raw",
        [
            b"GET / HTTP/1.0\nX: y\r\n\r\n",
            b"GET / HTTP/1.0\r\nX: y\n\r\n\r\n",
            b"GET / HTTP/1.0\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.0\r\nX: y\r\r\n\r\n",
        ],
    )
    def test_bare_cr_or_lf(self, raw: bytes) -> None:
        refused(raw)

    @pytest.mark.parametrize(
        "line",
        [
            "Foo : bar",
            "Foo\t: bar",
            "Fo o: bar",
            "Fo(o): bar",
            ": bar",
            "NoColon",
            "X: a\x00b",
            "X: a\x7fb",
            "X: a\x1bb",
            " folded",
            "\tfolded",
        ],
    )
    def test_bad_field_lines(self, line: str) -> None:
        refused(req(f"GET / HTTP/1.0\nA: b\n{line}\n\n"))

    def test_obs_fold_refused_even_though_perl_accepts_it(self) -> None:
        # Perl Perlbal 1.80 glued " folded" onto Foo and served the request.
        refused(req("GET /nope HTTP/1.0\nFoo: bar\n folded\n\n"))

    @pytest.mark.parametrize(
        "head",
        [
            "GET / HTTP/1.1\n\n",
            "GET / HTTP/1.1\nHost: \n\n",
            "GET / HTTP/1.1\nHost: a\nHost: b\n\n",
            "GET / HTTP/1.0\nHost: a\nHost: a\n\n",
            "GET / HTTP/1.0\nHost: a b\n\n",
            "GET / HTTP/1.0\nHost: a/b\n\n",
        ],
    )
    def test_host_rules(self, head: str) -> None:
        refused(req(head))

    @pytest.mark.parametrize(
        "line",
        [
            "GET /nope",
            "GET  /nope HTTP/1.0",
            "GET /nope  HTTP/1.0",
            "GET /nope HTTP/1.0 ",
            " GET / HTTP/1.0",
            "GET / http/1.0",
            "GET / HTTP/1",
            "GET / HTTP/01.0",
            "GET / HTTP/1.10",
            "G(T / HTTP/1.0",
            "GET /caf\xe9 HTTP/1.0",
            "GET",
            "",
        ],
    )
    def test_bad_request_lines(self, line: str) -> None:
        refused(req(f"{line}\n\n"))

    @pytest.mark.parametrize("version", ["2.0", "0.9", "1.2", "3.1"])
    def test_unsupported_versions(self, version: str) -> None:
        refused(req(f"GET / HTTP/{version}\nHost: h\n\n"), 505)

    def test_not_terminated(self) -> None:
        refused(b"GET / HTTP/1.0\r\n")
        refused(b"GET / HTTP/1.0\r\n\r\nX: y\r\n\r\n")

    def test_size_limit(self) -> None:
        raw = req("GET / HTTP/1.0\nX: " + "a" * 200 + "\n\n")
        with pytest.raises(HttpError) as info:
            parse_request_head(raw, max_head_size=100)
        assert info.value.status == 431
        assert parse_request_head(raw, max_head_size=len(raw)).get("x") == "a" * 200

    def test_header_count_limit(self) -> None:
        raw = req("GET / HTTP/1.0\n" + "X: y\n" * 5 + "\n")
        with pytest.raises(HttpError) as info:
            parse_request_head(raw, max_header_count=4)
        assert info.value.status == 431
        assert len(parse_request_head(raw, max_header_count=5).headers) == 5

    def test_default_limit_is_perls(self) -> None:
        assert DEFAULT_MAX_HEAD_SIZE == 102400


class TestHeadReader:
    def test_byte_at_a_time_with_leftover(self) -> None:
        raw = req("POST /x HTTP/1.0\nContent-Length: 4\n\n") + b"bodyGET"
        reader = HeadReader()
        results = [reader.feed(raw[i : i + 1]) for i in range(len(raw) - 7)]
        assert all(result is None for result in results[:-1])
        head = results[-1]
        assert head is not None and head.content_length == 4
        assert reader.done and reader.leftover == b""
        reader2 = HeadReader()
        head2 = reader2.feed(raw)
        assert head2 is not None and reader2.leftover == b"bodyGET"
        with pytest.raises(RuntimeError):
            reader2.feed(b"more")

    def test_skips_leading_empty_lines(self) -> None:
        # Perl ditches the stray CRLF some browsers send after a POST body.
        reader = HeadReader()
        assert reader.feed(b"\r\n") is None
        head = reader.feed(b"\r\nGET / HTTP/1.0\r\n\r\n")
        assert head is not None and head.target == "/"

    def test_one_huge_read_refused(self) -> None:
        reader = HeadReader(max_head_size=1000)
        with pytest.raises(HttpError) as info:
            reader.feed(b"GET / HTTP/1.0\r\nX: " + b"a" * 5000 + b"\r\n\r\n")
        assert info.value.status == 431

    def test_incremental_size_limit(self) -> None:
        reader = HeadReader(max_head_size=1000)
        reader.feed(b"GET / HTTP/1.0\r\nX: ")
        with pytest.raises(HttpError) as info:
            for _ in range(100):
                reader.feed(b"a" * 50)
        assert info.value.status == 431

    def test_limit_is_inclusive(self) -> None:
        raw = b"GET / HTTP/1.0\r\n\r\n"
        assert HeadReader(max_head_size=len(raw)).feed(raw) is not None
        with pytest.raises(HttpError):
            HeadReader(max_head_size=len(raw) - 1).feed(raw)

    def test_bare_lf_refused_before_head_completes(self) -> None:
        # Perl accepts LF-only heads; we refuse at once instead of waiting for CRLFCRLF.
        reader = HeadReader()
        with pytest.raises(HttpError) as info:
            reader.feed(b"GET /nope HTTP/1.0\n\n")
        assert info.value.status == 400

    def test_split_crlf_is_not_bare(self) -> None:
        reader = HeadReader()
        assert reader.feed(b"GET / HTTP/1.0\r") is None
        assert reader.feed(b"\nX: y\r") is None
        assert reader.feed(b"\n\r") is None
        assert reader.feed(b"\n") is not None

    def test_errors_from_parser_propagate(self) -> None:
        with pytest.raises(HttpError):
            HeadReader().feed(req("GET / HTTP/1.1\n\n"))


class TestResponseHead:
    def test_parse(self) -> None:
        head = parse_response_head(req("HTTP/1.1 200 Fine Thanks\nContent-Length: 2\nX: y\n\n"))
        assert (head.status, head.reason, head.http_version) == (200, "Fine Thanks", (1, 1))
        assert head.content_length == 2 and not head.chunked
        assert head.get("x") == "y"

    def test_empty_reason(self) -> None:
        assert parse_response_head(req("HTTP/1.0 299 \n\n")).reason == ""

    def test_chunked(self) -> None:
        head = parse_response_head(req("HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n"))
        assert head.chunked

    def test_has_body(self) -> None:
        ok = parse_response_head(req("HTTP/1.1 200 OK\n\n"))
        assert ok.has_body("GET") and not ok.has_body("HEAD")
        for status in (100, 204, 304):
            assert not parse_response_head(req(f"HTTP/1.1 {status} X\n\n")).has_body("GET")

    @pytest.mark.parametrize(
        "head",
        [
            "HTTP/1.1 299\n\n",  # Perl too wants a space after the code ("Bogus response line")
            "HTTP/1.1 20 OK\n\n",
            "HTTP/1.1 2000 OK\n\n",
            "HTTP/1.1 099 OK\n\n",
            "HTTP/2.0 200 OK\n\n",
            "HTTP/1.1  200 OK\n\n",
            "ICY 200 OK\n\n",
            "HTTP/1.1 200 OK\nContent-Length: 0\nTransfer-Encoding: chunked\n\n",
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked, gzip\n\n",
            "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n",
            "HTTP/1.0 200 OK\nTransfer-Encoding: chunked\n\n",
            "HTTP/1.1 200 OK\nContent-Length: -1\n\n",
            "HTTP/1.1 200 OK\nContent-Length: 1\nContent-Length: 2\n\n",
            "HTTP/1.1 200 OK\nBad Name: x\n\n",
            "HTTP/1.1 200 OK\nX: y\n folded\n\n",
        ],
    )
    def test_refused(self, head: str) -> None:
        with pytest.raises(BackendProtocolError):
            parse_response_head(req(head))

    def test_bare_lf_refused(self) -> None:
        with pytest.raises(BackendProtocolError):
            parse_response_head(b"HTTP/1.0 200 OK\nX: y\n\r\n\r\n")

    def test_reader(self) -> None:
        reader = ResponseHeadReader()
        assert reader.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n") is None
        head = reader.feed(b"\r\nokHTTP")
        assert head is not None and head.status == 200
        assert reader.leftover == b"okHTTP"

    def test_reader_limit(self) -> None:
        reader = ResponseHeadReader(max_head_size=64)
        with pytest.raises(BackendProtocolError):
            reader.feed(b"HTTP/1.0 200 OK\r\nX: " + b"a" * 100)

    def test_reader_does_not_skip_leading_crlf(self) -> None:
        with pytest.raises(BackendProtocolError):
            ResponseHeadReader().feed(b"\r\nHTTP/1.0 200 OK\r\n\r\n")
