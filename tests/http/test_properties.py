"""Property tests: arbitrary input never escapes as anything but our protocol errors."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from perlbal.http.connection import BackendSide, ClientSide, parse_request_head
from perlbal.http.errors import BackendProtocolError, HttpError
from perlbal.http.fields import header_get, header_get_all
from perlbal.http.head import RequestHead, ResponseHead
from perlbal.http.policy import Limits
from perlbal.http.proxyheaders import (
    backend_request_headers,
    client_response_headers,
    forwarding_headers,
    munge_headers,
    set_header,
    strip_hop_by_hop,
)
from perlbal.http.ranges import evaluate_range, evaluate_ranges
from perlbal.http.responses import keep_alive_headers

# Bytes biased toward the interesting alphabet of HTTP heads.
head_bytes = st.lists(
    st.sampled_from(
        [b"\r\n", b"\r", b"\n", b" ", b"\t", b":", b"GET", b" / ", b"HTTP/1.1", b"HTTP/1.0",
         b"Host: a", b"Content-Length: ", b"Transfer-Encoding: chunked", b"5", b"-", b",",
         b"\x00", b"\x7f", b"\xff", b"X", b"\r\n\r\n"]
    )
    | st.binary(max_size=8),
    max_size=40,
).map(b"".join)


@settings(max_examples=400)
@given(head_bytes)
def test_request_head_parser_total(raw: bytes) -> None:
    try:
        head = parse_request_head(raw)
    except HttpError as exc:
        assert 400 <= exc.status <= 599
        return
    # Whatever is accepted obeys the framing invariants.
    assert not (head.chunked and head.content_length is not None)
    if head.http_version == (1, 1):
        assert head.get("Host")


Outcome = tuple[str, RequestHead | None, bytes]


def _read(pieces: list[bytes]) -> Outcome:
    side = ClientSide(Limits(max_head_size=200))
    try:
        for piece in pieces:
            side.receive_data(piece)
            head = side.next_head()
            if head is not None:
                return ("head", head, side.buffered)
    except HttpError:
        return ("error", None, b"")
    return ("pending", None, b"")


@settings(max_examples=300)
@given(head_bytes, st.lists(st.integers(min_value=1, max_value=9), max_size=10))
def test_client_side_total_and_split_invariant(raw: bytes, cuts: list[int]) -> None:
    whole = _read([raw])
    pieces, rest = [], raw
    for cut in cuts:
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    split = _read(pieces)
    if whole[0] == "head":
        # Same head however the bytes are cut; the split run may stop before
        # its later pieces are fed, so what it has past the head is a prefix.
        assert split[0] == "head" and split[1] == whole[1]
        assert whole[2].startswith(split[2])
    elif whole[0] == "error":
        assert split[0] != "head"


@settings(max_examples=300)
@given(head_bytes, st.integers(min_value=1, max_value=9))
def test_backend_side_total(raw: bytes, step: int) -> None:
    side = BackendSide("GET", Limits(max_head_size=100, max_header_count=10))
    wire = b"HTTP/1.1 200 OK\r\n" + raw
    try:
        head = None
        for i in range(0, len(wire), step):
            side.receive_data(wire[i:i + step])
            head = side.next_head()
            if head is not None:
                break
        if head is not None:
            side.receive_data(b"")
            while side.next_body():
                pass
            assert side.done
    except BackendProtocolError:
        pass


chunk_bytes = st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"0", b"5", b"a", b"F", b";", b"x=y", b" ", b"hello",
                     b"X: y", b"Host: h", b"\x00"])
    | st.binary(max_size=6),
    max_size=40,
).map(b"".join)

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@settings(max_examples=400)
@given(chunk_bytes, st.integers(min_value=1, max_value=7))
def test_chunked_body_total(raw: bytes, step: int) -> None:
    side = ClientSide(max_body_size=64)
    side.receive_data(CHUNKED_HEAD)
    assert side.next_head() is not None
    size = 0
    try:
        for i in range(0, len(raw), step):
            side.receive_data(raw[i:i + step])
            while (piece := side.next_body()):
                size += len(piece)
            if side.state == "DONE":
                break
    except HttpError as exc:
        assert exc.status in (400, 413)
    assert size <= 64 + 6


def _encode(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=50), max_size=8), st.integers(min_value=1, max_value=9))
def test_chunked_round_trip(parts: list[bytes], step: int) -> None:
    wire = CHUNKED_HEAD + _encode(parts) + b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    side = ClientSide()
    out = b""
    head = None
    for i in range(0, len(wire), step):
        side.receive_data(wire[i:i + step])
        if head is None:
            head = side.next_head()
            if head is None:
                continue
        while side.state != "DONE" and (piece := side.next_body()):
            out += piece
    assert out == b"".join(parts) and side.state == "DONE"
    side.start_next()
    assert side.next_head() == parse_request_head(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")



@given(st.text(max_size=30), st.integers(min_value=0, max_value=10_000))
def test_ranges_total(header: str, size: int) -> None:
    single = evaluate_range(header, size)
    assert single.status in (200, 206, 416)
    multi = evaluate_ranges(header, size, allow_multiple=True)
    assert multi.status in (200, 206, 416)
    if multi.status == 206:
        previous_end = -2
        for start, end in multi.ranges:
            assert previous_end + 1 < start <= end < size
            previous_end = end


_FIELD_NAMES = st.sampled_from(["Connection", "connection", "Keep-Alive", "KEEP-ALIVE",
                                "Content-Length", "X-Foo", "x-foo", "TE", "Upgrade",
                                "Transfer-Encoding", "Proxy-Authenticate", "Server"])
_FIELD_VALUES = st.sampled_from(["close", "keep-alive", "X-Foo", "x-foo, close", "",
                                 "timeout=5", "Upgrade, TE", "1024", ", ,"])


@given(st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=8), st.booleans(),
       st.integers(min_value=0, max_value=100), st.booleans())
def test_client_response_headers_is_strip_then_set(
        headers: list[tuple[str, str]], keep_alive: bool, idle_timeout: int,
        strip: bool) -> None:
    """The one-pass rewrite equals what it replaced: strip_hop_by_hop (keeping
    Connection and Keep-Alive in place), then set_header for each."""
    wanted = dict(keep_alive_headers(keep_alive, idle_timeout))
    expected = (strip_hop_by_hop(headers, keep=("connection", "keep-alive"))
                if strip else list(headers))
    expected = set_header(expected, "Connection", wanted["Connection"])
    expected = set_header(expected, "Keep-Alive", wanted.get("Keep-Alive"))
    assert client_response_headers(headers, keep_alive=keep_alive, idle_timeout=idle_timeout,
                                   strip_hop_by_hop=strip) == expected


@given(st.lists(st.tuples(_FIELD_NAMES, _FIELD_VALUES), max_size=8), _FIELD_NAMES)
def test_head_lookups_match_a_scan_of_the_fields(headers: list[tuple[str, str]],
                                                 name: str) -> None:
    """RequestHead/ResponseHead answer get/get_all from a name index: it must
    say what a scan of the fields says, also after dataclasses.replace."""
    response = ResponseHead(200, "OK", (1, 1), tuple(headers), None, False)
    assert response.get(name) == header_get(headers, name)
    assert response.get_all(name) == header_get_all(headers, name)
    request = RequestHead("GET", "/", (1, 1), (("Host", "a"),), None, False)
    assert request.get("Host") == "a"
    changed = replace(request, headers=tuple(headers))
    assert changed.get(name) == header_get(headers, name)
    assert changed.get_all(name) == header_get_all(headers, name)


_REQUEST_FIELDS = st.sampled_from(["Connection", "X-Forwarded-For", "x-forwarded-for", "X-Host",
                                   "X-Forwarded-Host", "X-Proxy-Capabilities", "Keep-Alive",
                                   "Host", "X-Foo", "X-Forwarded-Proto", "x-forwarded-port",
                                   "Forwarded"])
_REQUEST_VALUES = st.sampled_from(["close", "keep-alive", "1.2.3.4", "1.2.3.4, 5.6.7.8", "",
                                   "X-Forwarded-For", "X-Host, X-Foo", "a"])


@given(st.lists(st.tuples(_REQUEST_FIELDS, _REQUEST_VALUES), max_size=8), st.booleans(),
       st.booleans(), st.booleans(), st.booleans(),
       st.lists(st.sampled_from(["x-foo", "host", "x-host"]), max_size=2),
       st.lists(st.tuples(st.sampled_from(["x-added", "X-Foo", "Connection"]),
                          st.sampled_from(["1", "v"])), max_size=2),
       st.sampled_from([None, ("http", 80), ("https", 8443)]))
def test_backend_request_headers_is_the_step_by_step_rewrite(
        headers: list[tuple[str, str]], trusted: bool, blind: bool, persist: bool,
        reproxy: bool, remove: list[str], insert: list[tuple[str, str]],
        listener: tuple[str, int] | None) -> None:
    """The one-pass rewrite equals the steps it replaced, each a public function."""
    expected = strip_hop_by_hop(headers, keep=("connection",))
    expected = set_header(expected, "Connection", "keep-alive" if persist else "close")
    if reproxy:
        expected = set_header(expected, "X-Proxy-Capabilities", "reproxy-file")
    expected = forwarding_headers(expected, "9.9.9.9", trusted=trusted, blind_proxy=blind,
                                  listener=listener)
    expected = munge_headers(expected, remove, insert)
    assert backend_request_headers(
        headers, client_ip="9.9.9.9", trusted=trusted, blind_proxy=blind,
        persist_backend=persist, enable_reproxy=reproxy, remove=remove,
        insert=insert, listener=listener) == expected


field_text = st.text(alphabet=st.sampled_from(list("aZ-_:; \t\r\n\x00\x7f\xe9\u2028")), max_size=8)


@settings(max_examples=400)
@given(st.lists(st.tuples(field_text, field_text), min_size=1, max_size=4))
def test_render_fields_refuses_exactly_what_check_fields_refuses(
        headers: list[tuple[str, str]]) -> None:
    from perlbal.http.fields import UnsafeField, check_fields, render_fields

    try:
        check_fields(headers)
        safe = True
    except UnsafeField:
        safe = False
    try:
        out = render_fields(headers)
    except UnsafeField:
        assert not safe
        return
    assert safe
    lines = out.decode("latin-1").split("\r\n")
    assert lines[-1] == "" and len(lines) == len(headers) + 1  # no field split the block


@settings(max_examples=300)
@given(head_bytes)
def test_head_memo_answers_what_h11_answered(raw: bytes) -> None:
    # the same bytes twice: the second parse may come from the memo
    assert _read([raw + b"\r\n\r\n"]) == _read([raw + b"\r\n\r\n"])
