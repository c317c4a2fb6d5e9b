"""perlbal.http.connection and perlbal.http.policy: h11 framing plus our rules.

Each policy rule (R1-R10, B1-B5 in perlbal/http/policy.py) has a test here;
tests/hostile/ sends the same bytes through the real server.
"""

from __future__ import annotations

import pytest

from perlbal.http.connection import BODY, DONE, HEAD, BackendSide, ClientSide, parse_request_head
from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.head import RequestHead
from perlbal.http.policy import DEFAULT_MAX_HEAD_SIZE, Limits, http10_chunked_refusal


def req(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


def refused(raw: bytes, status: int = 400, limits: Limits = Limits()) -> HttpError:
    side = ClientSide(limits)
    side.receive_data(raw)
    with pytest.raises(HttpError) as info:
        head = side.next_head()
        while head is not None and side.state == BODY and side.next_body():
            pass
    assert info.value.status == status, info.value.reason
    return info.value


def backend(raw: bytes, method: str = "GET") -> BackendSide:
    side = BackendSide(method)
    side.receive_data(raw)
    return side


class TestRequestAccepted:
    def test_simple_get(self) -> None:
        head = parse_request_head(req("GET /a?b=c HTTP/1.1\nHost: example.com\nX-Y:  spaced  \n\n"))
        assert (head.method, head.target, head.http_version) == ("GET", "/a?b=c", (1, 1))
        assert head.headers == (("Host", "example.com"), ("X-Y", "spaced"))
        assert head.get("host") == "example.com"
        assert head.content_length is None and not head.chunked

    def test_http10_needs_no_host(self) -> None:
        assert parse_request_head(req("GET / HTTP/1.0\n\n")).headers == ()

    def test_duplicates_joined_like_perl(self) -> None:
        head = parse_request_head(req("GET / HTTP/1.0\nA: 1\nB: x\na: 2\n\n"))
        assert head.get("A") == "1, 2" and head.get_all("a") == ["1", "2"]

    def test_identical_content_lengths_become_one(self) -> None:
        head = parse_request_head(req("POST / HTTP/1.0\nContent-Length: 7\nContent-Length: 7, 7\n\n"))
        assert head.content_length == 7
        assert [k for k, _ in head.headers if k.lower() == "content-length"] == ["Content-Length"]

    def test_absolute_uri_rewritten_as_perl_does(self) -> None:  # R6
        head = parse_request_head(req("GET http://WWW.Example.com:8080/p?q HTTP/1.1\nHost: other\n\n"))
        assert head.target == "/p?q" and head.headers == (("Host", "www.example.com"),)
        assert parse_request_head(req("GET http://example.com HTTP/1.0\n\n")).target == "/"

    def test_absolute_form_of_any_http_uri(self) -> None:  # R6, RFC 9112 section 3.2.2
        for target, origin, host in [
                ("https://example.com/foo", "/foo", "example.com"),
                ("http://[::1]:8080/foo", "/foo", "[::1]"),
                ("HtTpS://[2001:DB8::1]/", "/", "[2001:db8::1]"),
                ("http://h?q=1", "/?q=1", "h"),
                ("http://10.0.0.1:/a/b?c", "/a/b?c", "10.0.0.1")]:
            head = parse_request_head(req(f"GET {target} HTTP/1.1\nHost: other\n\n"))
            assert (head.target, head.headers) == (origin, (("Host", host),)), target
        for target in ("http://u:p@h/", "http://@h/", "ftp://h/", "http:///", "http://[::1/",
                       "http://h:x/", "mailto:a@b", "http:/h/", "http://[v1.x]/"):
            with pytest.raises(HttpError) as refused:
                parse_request_head(req(f"GET {target} HTTP/1.1\nHost: h\n\n"))
            assert refused.value.status == 400, target

    def test_obs_text_allowed_in_values(self) -> None:
        head = parse_request_head(b"GET / HTTP/1.0\r\nX: caf\xe9\tok\r\n\r\n")
        assert head.get("x") == "caf\xe9\tok"

    def test_bare_lf_tolerated(self) -> None:  # RFC 9112 section 2.2
        head = parse_request_head(b"GET / HTTP/1.1\nHost: h\nX: y\n\n")
        assert head.get("X") == "y"

    def test_obs_fold_replaced_by_a_space(self) -> None:  # RFC 9112 section 5.2
        assert parse_request_head(req("GET / HTTP/1.0\nFoo: bar\n folded\n\n")).get("foo") == "bar folded"

    def test_http_1_2_is_served_as_1_1(self) -> None:  # R4, RFC 9110 section 2.5
        assert parse_request_head(req("GET / HTTP/1.2\nHost: h\n\n")).http_version == (1, 1)
        refused(req("GET / HTTP/1.2\n\n"))  # and so needs a Host

    def test_leading_empty_lines_skipped(self) -> None:
        side = ClientSide()
        side.receive_data(b"\r\n")
        assert side.next_head() is None
        side.receive_data(b"\r\n\nGET / HTTP/1.0\r\n\r\n")
        head = side.next_head()
        assert head is not None and head.target == "/"

    @pytest.mark.parametrize(("head", "expected"), [
        ("GET / HTTP/1.0\n\n", False),
        ("GET / HTTP/1.0\nConnection: Keep-Alive\n\n", True),
        ("GET / HTTP/1.1\nHost: h\n\n", True),
        ("GET / HTTP/1.1\nHost: h\nConnection: keep-alive, close\n\n", False),
    ])
    def test_wants_keep_alive(self, head: str, expected: bool) -> None:
        assert parse_request_head(req(head)).wants_keep_alive is expected


class TestRequestRefused:
    @pytest.mark.parametrize(("head", "status"), [
        ("POST / HTTP/1.1\nHost: h\nContent-Length: 3\nTransfer-Encoding: chunked\n\n", 400),  # R3
        ("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: xchunked\n\n", 501),
        ("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked, identity\n\n", 501),
        ("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n", 501),
        ("POST / HTTP/1.1\nHost: h\nTransfer-Encoding : chunked\n\n", 400),
        ("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: \x0bchunked\n\n", 400),
    ])
    def test_transfer_encoding_smuggling(self, head: str, status: int) -> None:
        refused(req(head), status)

    @pytest.mark.parametrize("value", ["abc", "1 2", "+5", "0x10", "5, 6", "1" * 21, "\xb2"])
    def test_bad_content_length(self, value: str) -> None:
        refused(req(f"POST / HTTP/1.0\nContent-Length: {value}\n\n"))

    def test_huge_digit_string_is_a_400_not_a_traceback(self) -> None:
        refused(req("POST / HTTP/1.0\nContent-Length: " + "0" * 5000 + "1\n\n"))

    def test_conflicting_content_lengths(self) -> None:
        refused(req("POST / HTTP/1.0\nContent-Length: 5\nContent-Length: 6\n\n"))

    def test_negative_content_length_uses_perls_wording(self) -> None:  # R8
        error = refused(req("POST / HTTP/1.0\nContent-Length: -5\n\n"))
        assert error.reason == "Invalid request: Content-Length < 0"
        assert not error.perl_closes_silently

    @pytest.mark.parametrize("raw", [b"GET / HTTP/1.0\r\nX: a\rb\r\n\r\n",
                                     b"GET / HTTP/1.0\r\nX: y\r\r\n\r\n"])
    def test_bare_cr(self, raw: bytes) -> None:
        refused(raw)

    @pytest.mark.parametrize("line", ["Foo : bar", "Fo o: bar", "Fo(o): bar", ": bar", "NoColon",
                                      "X: a\x00b", "X: a\x7fb", "X: a\x1bb"])
    def test_bad_field_lines(self, line: str) -> None:
        error = refused(req(f"GET / HTTP/1.0\nA: b\n{line}\n\n"))
        assert "\x00" not in error.reason and line not in error.reason  # no peer bytes in pages

    @pytest.mark.parametrize("head", [
        "GET / HTTP/1.1\n\n", "GET / HTTP/1.1\nHost: \n\n", "GET / HTTP/1.1\nHost: a\nHost: b\n\n",
        "GET / HTTP/1.0\nHost: a b\n\n", "GET / HTTP/1.0\nHost: a/b\n\n",
    ])
    def test_host_rules(self, head: str) -> None:  # R7
        refused(req(head))

    @pytest.mark.parametrize("line", ["GET /nope", "GET  /nope HTTP/1.0", "GET /nope HTTP/1.0 ",
                                      "GET / http/1.0", "GET / HTTP/1", "GET / HTTP/1.10",
                                      "G(T / HTTP/1.0", "GET /caf\xe9 HTTP/1.0", "GET",
                                      "GET nope HTTP/1.0"])
    def test_bad_request_lines(self, line: str) -> None:
        refused(req(f"{line}\n\n"))

    @pytest.mark.parametrize("version", ["2.0", "0.9", "3.1"])
    def test_unsupported_versions(self, version: str) -> None:  # R4
        refused(req(f"GET / HTTP/{version}\nHost: h\n\n"), 505)

    def test_connect(self) -> None:  # R5
        refused(req("CONNECT example.com:443 HTTP/1.1\nHost: example.com\n\n"), 405)

    def test_size_limit_431_and_414(self) -> None:  # R1
        limits = Limits(max_head_size=100)
        refused(req("GET / HTTP/1.0\nX: " + "a" * 200 + "\n\n"), 431, limits)
        refused(req("GET /" + "a" * 200 + " HTTP/1.0\n\n"), 414, limits)
        raw = req("GET / HTTP/1.0\nX: " + "a" * 70 + "\n\n")
        assert len(raw) < 100 and ClientSide(limits) is not None
        assert parse_request_head(raw, limits).get("x") == "a" * 70

    def test_limit_enforced_while_incomplete(self) -> None:
        side = ClientSide(Limits(max_head_size=1000))
        side.receive_data(b"GET /")
        with pytest.raises(HttpError) as info:
            for _ in range(100):
                side.receive_data(b"a" * 50)
                assert side.next_head() is None
        assert info.value.status == 414
        side = ClientSide(Limits(max_head_size=1000))
        side.receive_data(b"GET / HTTP/1.0\r\nX: ")
        with pytest.raises(HttpError) as info:
            for _ in range(100):
                side.receive_data(b"a" * 50)
                assert side.next_head() is None
        assert info.value.status == 431

    def test_limit_is_inclusive(self) -> None:
        raw = b"GET / HTTP/1.0\r\n\r\n"
        assert parse_request_head(raw, Limits(max_head_size=len(raw))) is not None
        refused(raw, 431, Limits(max_head_size=len(raw) - 1))

    def test_header_count_limit(self) -> None:  # R2
        raw = req("GET / HTTP/1.0\n" + "X: y\n" * 5 + "\n")
        refused(raw, 431, Limits(max_header_count=4))
        assert len(parse_request_head(raw, Limits(max_header_count=5)).headers) == 5

    def test_default_limit(self) -> None:
        assert DEFAULT_MAX_HEAD_SIZE == 16384


class TestRequestBody:
    def test_length_body_and_pipelined_request(self) -> None:
        raw = req("POST /x HTTP/1.0\nContent-Length: 4\n\n") + b"bodyGET / HTTP/1.0\r\n\r\n"
        side = ClientSide()
        for i in range(len(raw)):  # a byte at a time
            side.receive_data(raw[i:i + 1])
        head = side.next_head()
        assert head is not None and head.content_length == 4 and side.state == BODY
        assert side.remaining == 4
        assert side.next_body(2) == b"bo" and side.next_body() == b"dy"
        assert side.state == DONE and side.next_body() == b""
        side.start_next()
        nxt = side.next_head()
        assert nxt is not None and nxt.target == "/" and side.state == DONE

    def test_unread_gives_bytes_back(self) -> None:
        side = ClientSide()
        side.receive_data(req("POST /x HTTP/1.0\nContent-Length: 6\n\n") + b"abcdef")
        side.next_head()
        sample = side.next_body(3)
        assert sample == b"abc"
        side.unread(sample)
        assert side.remaining == 6 and side.body_size == 0 and side.next_body() == b"abcdef"

    def test_chunked_body_with_trailer(self) -> None:
        side = ClientSide()
        side.receive_data(req("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n")
                          + b"3\r\nabc\r\n0\r\nX-Sum: 1\r\n\r\nGET")
        side.next_head()
        assert side.remaining is None
        assert side.next_body() == b"abc" and side.next_body() == b"" and side.state == DONE
        assert side.buffered == b"GET"

    @pytest.mark.parametrize("body", [
        b"zz\r\n", b"-1\r\n", b"3\r\nabcXX0\r\n\r\n",
        b"f" * 21 + b"\r\nx\r\n",  # more hex digits than h11's 20
    ])
    def test_bad_chunking(self, body: bytes) -> None:
        refused(req("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n") + body)

    @pytest.mark.parametrize("field", ["Content-Length: 44", "Transfer-Encoding: chunked",
                                       "Host: evil"])
    def test_framing_fields_in_trailer_refused(self, field: str) -> None:  # R10
        refused(req("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n")
                + f"0\r\n{field}\r\n\r\n".encode())

    def test_chunked_body_limit(self) -> None:
        side = ClientSide(max_body_size=4)
        side.receive_data(req("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n")
                          + b"5\r\nabcde\r\n0\r\n\r\n")
        side.next_head()
        with pytest.raises(HttpError) as info:
            side.next_body()
        assert info.value.status == 413

    def test_http10_chunked_is_read_then_closes(self) -> None:  # R9
        side = ClientSide()
        side.receive_data(req("POST / HTTP/1.0\nConnection: keep-alive\nTransfer-Encoding: chunked\n\n")
                          + b"1\r\nx\r\n0\r\n\r\n")
        head = side.next_head()
        assert head is not None and head.chunked and side.must_close
        assert side.next_body() == b"x" and side.next_body() == b""

    def test_http10_chunked_served_only_on_perls_chunked_paths(self) -> None:  # R9
        def head(method: str, version: str) -> RequestHead:
            parsed = parse_request_head(req(f"{method} / HTTP/{version}\nHost: h\n"
                                            f"Transfer-Encoding: chunked\n\n"))
            assert parsed is not None
            return parsed
        for role, method, buffered in [("web_server", "POST", True), ("web_server", "GET", False),
                                       ("reverse_proxy", "PUT", False), ("management", "POST", True),
                                       (None, "POST", True)]:
            refusal = http10_chunked_refusal(head(method, "1.0"), role, buffered)
            assert refusal is not None and refusal.status == 400, (role, method)
        assert http10_chunked_refusal(head("PUT", "1.0"), "web_server", False) is None
        assert http10_chunked_refusal(head("POST", "1.0"), "reverse_proxy", True) is None
        assert http10_chunked_refusal(head("POST", "1.1"), "web_server", False) is None

    def test_continue_due_once_when_no_body_arrived(self) -> None:
        side = ClientSide()
        side.receive_data(req("PUT / HTTP/1.1\nHost: h\nExpect: 100-continue\nContent-Length: 3\n\n"))
        side.next_head()
        assert side.next_body() is None  # the handler wants the body: nothing yet
        assert side.take_continue() and not side.take_continue()
        side = ClientSide()
        side.receive_data(req("PUT / HTTP/1.1\nHost: h\nExpect: 100-continue\nContent-Length: 3\n\n") + b"a")
        side.next_head()
        assert not side.take_continue()  # the body is already coming
        side = ClientSide()
        side.receive_data(req("PUT / HTTP/1.0\nExpect: 100-continue\nContent-Length: 3\n\n"))
        side.next_head()
        assert not side.take_continue()  # HTTP/1.0 clients get no interim reply...
        side = ClientSide()
        side.receive_data(req("PUT / HTTP/1.0\nExpect: 100-continue\nTransfer-Encoding: chunked\n\n"))
        side.next_head()
        assert side.take_continue()  # ...except on Perl's chunked paths


class TestBackendSide:
    def test_length_reply_and_what_follows(self) -> None:
        side = backend(b"HTTP/1.1 200 Fine Thanks\r\nContent-Length: 2\r\nX: y\r\n\r\nokEXTRA")
        head = side.next_head()
        assert head is not None and (head.status, head.reason) == (200, "Fine Thanks")
        assert side.next_body() == b"ok" and side.done
        assert side.leftover == b"EXTRA" and not side.ended_cleanly

    def test_interim_replies_dropped(self) -> None:
        side = backend(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        head = side.next_head()
        assert head is not None and head.status == 204 and side.done and side.ended_cleanly

    def test_head_reply_has_no_body(self) -> None:
        side = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method="HEAD")
        assert side.next_head() is not None and side.done and side.ended_cleanly

    def test_chunked_reply(self) -> None:
        side = backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        assert side.next_head() is not None and side.remaining is None
        assert side.next_body() == b"ok" and side.next_body() == b"" and side.ended_cleanly

    def test_chunked_reply_cut_short_is_an_error(self) -> None:
        side = backend(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
        side.next_head()
        assert side.next_body() == b"ok" and side.next_body() is None
        side.receive_data(b"")
        with pytest.raises(BackendProtocolError, match="closed mid-body"):
            side.next_body()

    def test_length_reply_cut_short_is_an_error(self) -> None:
        side = backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
        side.next_head()
        assert side.next_body() == b"ab"
        side.receive_data(b"")
        with pytest.raises(BackendProtocolError):
            side.next_body()

    def test_close_delimited_reply(self) -> None:
        side = backend(b"HTTP/1.0 200 OK\r\n\r\nsome")
        side.next_head()
        assert side.next_body() == b"some" and side.next_body() is None
        side.receive_data(b"")
        assert side.next_body() == b"" and side.done and not side.ended_cleanly

    def test_bare_lf_reply_tolerated(self) -> None:
        side = backend(b"HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: keep-alive\n"
                       b"Content-Length: 2\n\nhi")
        head = side.next_head()
        assert head is not None and head.get("Connection") == "keep-alive"
        assert side.next_body() == b"hi" and side.ended_cleanly

    def test_chunked_http10_reply_is_not_reused(self) -> None:  # B5
        side = backend(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        side.next_head()
        assert side.next_body() == b"" and not side.ended_cleanly

    @pytest.mark.parametrize("head", [
        b"HTTP/1.1 299\n\n" if False else b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/2.0 200 OK\r\n\r\n", b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",  # B3
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    ])
    def test_refused(self, head: bytes) -> None:
        with pytest.raises(BackendProtocolError):
            backend(head).next_head()

    def test_closed_before_head(self) -> None:
        side = backend(b"HTTP/1.1 200 O")
        assert side.next_head() is None
        side.receive_data(b"")
        with pytest.raises(BackendProtocolError, match="before a complete reply head"):
            side.next_head()

    def test_head_limit(self) -> None:  # B1
        side = BackendSide("GET", Limits(max_head_size=64))
        side.receive_data(b"HTTP/1.0 200 OK\r\nX: " + b"a" * 100)
        with pytest.raises(BackendProtocolError):
            side.next_head()


class TestHeadMemo:
    """The memo of recent heads gives exactly what h11 gave for the same bytes."""

    def test_request_heads_repeat(self) -> None:
        raw = req("GET /m HTTP/1.1\nHost: h\nX-Memo: 1\n\n")
        first, second = ClientSide(), ClientSide()
        first.receive_data(raw + b"GET")
        second.receive_data(raw + b"POST")
        a, b = first.next_head(), second.next_head()
        assert a is not None and a == b and a is b  # the second one came from the memo
        assert first.buffered == b"GET" and second.buffered == b"POST"

    def test_memo_respects_limits(self) -> None:
        raw = req("GET /m HTTP/1.1\nHost: h\nA: 1\nB: 2\n\n")
        assert parse_request_head(raw) is not None
        refused(raw, 431, Limits(max_header_count=1))  # the same bytes, stricter limits

    def test_memoized_length_body_is_framed(self) -> None:
        raw = req("POST /m HTTP/1.1\nHost: h\nContent-Length: 3\n\n")
        for body in (b"abc", b"xyz"):
            side = ClientSide()
            side.receive_data(raw + body + b"NEXT")
            side.next_head()
            assert side.next_body() == body and side.state == DONE and side.buffered == b"NEXT"

    def test_reply_heads_repeat(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Memo: r\r\n\r\n"
        for method, body in (("GET", b"ok"), ("HEAD", b"")):
            side = backend(raw + body, method)
            head = side.next_head()
            assert head is not None and head.content_length == 2
            assert side.next_body() == body and side.done and side.ended_cleanly

    def test_cut_short_after_a_memoized_head(self) -> None:
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Memo: c\r\n\r\n"
        backend(raw + b"12345").next_head()
        side = backend(raw + b"12")
        side.next_head()
        assert side.next_body() == b"12"
        side.receive_data(b"")
        with pytest.raises(BackendProtocolError):
            side.next_body()

    def test_early_end_without_head(self) -> None:
        side = BackendSide("GET")
        side.receive_data(b"HTTP/1.1 200")
        side.receive_data(b"")
        with pytest.raises(BackendProtocolError, match="before a complete reply head"):
            side.next_head()
