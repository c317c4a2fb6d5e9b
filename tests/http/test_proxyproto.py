"""perlbal.http.proxyproto: PROXY protocol v1 and v2, parsed in any split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perlbal.http.proxyproto import (ProxyHeader, ProxyProtocolError, V2_SIGNATURE, encode_v1,
                                     encode_v2, parse)


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
