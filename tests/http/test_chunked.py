"""Tests for perlbal.http.chunked: strict incremental decoding and encoding."""

from __future__ import annotations

import pytest

from perlbal.http.chunked import ChunkedDecoder, encode_chunk, encode_last_chunk
from perlbal.http.errors import HttpError


def decode_all(raw: bytes, step: int | None = None, **limits: int) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder(**limits)
    out = b""
    if step is None:
        out = b"".join(decoder.feed(raw))
    else:
        for i in range(0, len(raw), step):
            out += b"".join(decoder.feed(raw[i : i + step]))
            if decoder.done:
                break
    return out, decoder


def refused(raw: bytes, status: int = 400, **limits: int) -> HttpError:
    with pytest.raises(HttpError) as info:
        decode_all(raw, **limits)
    assert info.value.status == status, info.value.reason
    return info.value


BODY = b"5\r\nhello\r\n6;name=value\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n"


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_decodes_in_any_split(step: int) -> None:
    raw = BODY + b"NEXT"
    decoder = ChunkedDecoder()
    out, rest = b"", b""
    for i in range(0, len(raw), step):
        out += b"".join(decoder.feed(raw[i : i + step]))
        if decoder.done:
            rest = decoder.unused_data + raw[i + step :]
            break
    assert out == b"hello world0123456789"
    assert decoder.done and decoder.trailers == ()
    assert rest == b"NEXT"
    assert decoder.body_size == 21


def test_trailers() -> None:
    out, decoder = decode_all(b"3\r\nabc\r\n0\r\nX-Checksum: 1234\r\nX-Other:  v \r\n\r\n")
    assert out == b"abc"
    assert decoder.trailers == (("X-Checksum", "1234"), ("X-Other", "v"))


def test_uppercase_hex_and_leading_zeros() -> None:
    out, _ = decode_all(b"00000000000000000000A\r\n0123456789\r\n0\r\n\r\n")
    assert out == b"0123456789"


def test_bws_before_extension() -> None:
    out, _ = decode_all(b"1 ;ext\r\nx\r\n0\r\n\r\n")
    assert out == b"x"


def test_feed_after_done() -> None:
    _, decoder = decode_all(b"0\r\n\r\n")
    with pytest.raises(RuntimeError):
        decoder.feed(b"x")


def test_not_done_until_final_crlf() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"0\r\n")
    assert not decoder.done and decoder.unused_data == b""
    decoder.feed(b"\r\n")
    assert decoder.done


@pytest.mark.parametrize(
    "raw",
    [
        b"x\r\n",
        b"\r\n5\r\nhello\r\n0\r\n\r\n",  # Perl tolerates a leading CRLF; we do not
        b"-5\r\nhello\r\n",
        b"+5\r\nhello\r\n",
        b"0x5\r\nhello\r\n",
        b" 5\r\nhello\r\n",
        b"5 \r\nhello\r\n",
        b"5\nhello\r\n",
        b"5\rhello\r\n",
        b"5\r\nhelloXX",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r\r\n",
        b"5;a=\x01\r\nhello\r\n",
        b"0\r\nContent-Length: 5\r\n\r\n",
        b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"0\r\nHost: evil\r\n\r\n",
        b"0\r\nBad Name: x\r\n\r\n",
        b"0\r\nX: y\n\r\n",
        b"0\r\n folded\r\n\r\n",
    ],
)
def test_malformed(raw: bytes) -> None:
    refused(raw)


def test_chunk_size_digit_limit() -> None:
    refused(b"1" + b"0" * 16 + b"\r\n", max_body_size=0)
    refused(b"F" * 17 + b"\r\n", max_body_size=0)


def test_size_line_length_limit() -> None:
    refused(b"5;" + b"a" * 200, max_line_length=100)
    refused(b"5;" + b"a" * 200 + b"\r\nhello\r\n", max_line_length=100)
    out, _ = decode_all(b"5;" + b"a" * 90 + b"\r\nhello\r\n0\r\n\r\n", max_line_length=100)
    assert out == b"hello"


def test_max_body_size_is_413() -> None:
    error = refused(b"5\r\nhello\r\n6\r\n world\r\n", 413, max_body_size=10)
    assert error.perl_closes_silently
    out, _ = decode_all(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", max_body_size=10)
    assert out == b"helloworld"
    # 0 disables the limit, as in Perl
    out, _ = decode_all(b"5\r\nhello\r\n0\r\n\r\n", max_body_size=0)
    assert out == b"hello"


def test_refused_before_data_arrives() -> None:
    decoder = ChunkedDecoder(max_body_size=100)
    with pytest.raises(HttpError):
        decoder.feed(b"FFFFFFFF\r\n")


def test_trailer_limits() -> None:
    refused(b"0\r\nX: " + b"a" * 100 + b"\r\n\r\n", max_trailer_size=50)
    refused(b"0\r\n" + b"X: y\r\n" * 5 + b"\r\n", max_trailer_count=4)


def test_encoder_round_trip() -> None:
    wire = encode_chunk(b"hello") + encode_chunk(b"") + encode_chunk(b"x" * 300)
    wire += encode_last_chunk([("X-T", "1")])
    assert wire.startswith(b"5\r\nhello\r\n12c\r\n")
    out, decoder = decode_all(wire)
    assert out == b"hello" + b"x" * 300
    assert decoder.trailers == (("X-T", "1"),)
    assert encode_last_chunk() == b"0\r\n\r\n"
