"""perlbal.http.proxyproto: PROXY protocol v1 and v2, parsed in any split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perlbal.http.proxyproto import (V2_MAX, HeaderReader, ProxyHeader, ProxyProtocolError,
                                     V2_SIGNATURE, encode_v1, encode_v2, parse)


@pytest.mark.parametrize(("raw", "client"), [
    (b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\n", ("192.0.2.7", 56324)),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n", ("2001:db8::7", 4000)),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n", None),
])
def test_v1(raw: bytes, client: tuple[str, int] | None) -> None:
    assert parse(raw + b"GET / HTTP/1.1\r\n") == ProxyHeader(client, len(raw))


@pytest.mark.parametrize("raw", [
    b"PROXY TCP4 192.0.2.7 10.0.0.1 56324\r\n", b"PROXY TCP4 300.0.0.1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", b"PROXY " + b"A" * 110,
    b"GET / HTTP/1.1\r\n\r\n", b"\r\n\r\n\x00\r\nQUIX\n" + bytes(8),
    V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12), V2_SIGNATURE + b"\x2f\x11\x00\x00",
    V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),
])
def test_refused(raw: bytes) -> None:
    with pytest.raises(ProxyProtocolError):
        parse(raw)


def test_v2_round_trip_and_local() -> None:
    for client, server in ((("192.0.2.7", 1234), ("10.0.0.1", 80)),
                           (("2001:db8::7", 4321), ("2001:db8::1", 443))):
        raw = encode_v2(client, server)
        assert parse(raw + b"rest") == ProxyHeader(client, len(raw))
        raw1 = encode_v1(client, server)
        assert parse(raw1) == ProxyHeader(client, len(raw1))
    local = V2_SIGNATURE + b"\x20\x00\x00\x00"
    assert parse(local) == ProxyHeader(None, 16)
    with_tlv = V2_SIGNATURE + b"\x21\x11\x00\x0f" + bytes([192, 0, 2, 7, 10, 0, 0, 1, 0, 80, 1, 187]) + b"\x04\x00\x00"
    assert parse(with_tlv) == ProxyHeader(("192.0.2.7", 80), 31)


@settings(max_examples=200)
@given(st.sampled_from([encode_v1(("192.0.2.7", 5), ("10.0.0.1", 80)),
                        encode_v2(("192.0.2.7", 5), ("10.0.0.1", 80)),
                        encode_v2(("2001:db8::7", 5), ("2001:db8::1", 80))]),
       st.integers(min_value=0, max_value=60))
def test_any_prefix_waits_for_more(raw: bytes, cut: int) -> None:
    cut = min(cut, len(raw) - 1)
    assert parse(raw[:cut]) is None
    assert parse(raw) == ProxyHeader(("192.0.2.7", 5) if b"192.0.2.7" in raw or raw[:1] == b"\r"
                                     and b"\xc0\x00\x02\x07" in raw else ("2001:db8::7", 5),
                                     len(raw))


def _long_v2(tlv_bytes: int) -> bytes:
    """A v2 header naming 192.0.2.7:5 with one NOOP TLV of ``tlv_bytes`` bytes."""
    plain = encode_v2(("192.0.2.7", 5), ("10.0.0.1", 80))
    tlv = b"\x04" + (tlv_bytes - 3).to_bytes(2, "big") + bytes(tlv_bytes - 3)
    return plain[:14] + (12 + len(tlv)).to_bytes(2, "big") + plain[16:] + tlv


@settings(max_examples=100)
@given(st.sampled_from([encode_v1(("192.0.2.7", 5), ("10.0.0.1", 80)), b"PROXY UNKNOWN\r\n",
                        V2_SIGNATURE + b"\x20\x00\x00\x00", _long_v2(2048),
                        _long_v2(V2_MAX - 28)]),
       st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=40))
def test_header_reader_takes_the_header_and_not_a_byte_more(raw: bytes, pieces: list[int]) -> None:
    """Whatever the pieces, every byte looked at and taken is header; the
    client's bytes after it stay unread (issue 24 item 6)."""
    stream = raw + b"GET / HTTP/1.1\r\n\r\n"
    reader, position, turn = HeaderReader(), 0, 0
    while reader.header is None:
        arrived = stream[position:position + min(reader.window(), pieces[turn % len(pieces)])]
        turn += 1
        taken = reader.take(arrived)
        assert taken == len(arrived) or reader.header is not None
        position += taken
    assert position == len(raw) == reader.header.consumed


def test_header_reader_refuses_a_v2_length_over_the_cap_at_once() -> None:
    reader = HeaderReader()
    with pytest.raises(ProxyProtocolError, match=f"over the {V2_MAX}-byte limit"):
        reader.take(_long_v2(V2_MAX - 27)[:16])


def test_a_mapped_client_is_unmapped() -> None:
    raw = encode_v2(("::ffff:192.0.2.7", 5), ("2001:db8::1", 80))
    assert parse(raw) == ProxyHeader(("192.0.2.7", 5), len(raw))
    assert parse(b"PROXY TCP6 ::ffff:192.0.2.7 ::1 5 80\r\n") == ProxyHeader(("192.0.2.7", 5), 38)
