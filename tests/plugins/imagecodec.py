"""A small pure-Python GIF and PNG writer and reader, for testing Palimg.

Just enough of each format to build paletted test images and to decode what
the server sends back into pixel colours (checking PNG CRCs and GIF LZW data
on the way), so a test can assert that the served image decodes and shows the
requested colours.
"""

from __future__ import annotations

import struct
import zlib

Color = tuple[int, int, int]


# --- PNG -------------------------------------------------------------------------

def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def make_png(palette: list[Color], pixels: list[list[int]]) -> bytes:
    height, width = len(pixels), len(pixels[0])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) +
            _chunk(b"PLTE", b"".join(bytes(c) for c in palette)) +
            _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def decode_png(data: bytes) -> list[list[Color]]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), "bad signature"
    pos, palette, idat, width, height = 8, b"", b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
            assert body[8] == 8 and body[9] == 3
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    rows = []
    for y in range(height):
        row = raw[y * (width + 1) + 1:(y + 1) * (width + 1)]
        rows.append([tuple(palette[i * 3:i * 3 + 3]) for i in row])
    return rows  # type: ignore[return-value]


# --- GIF -------------------------------------------------------------------------

def _lzw_literal_codes(indices: list[int], min_size: int) -> bytes:
    """Encode with literal codes only, clearing often so the width stays fixed."""
    clear, end = 1 << min_size, (1 << min_size) + 1
    width = min_size + 1
    room = (1 << width) - (end + 1)  # entries that fit before the width grows
    codes = [clear]
    since_clear = 0
    for idx in indices:
        if since_clear >= room:
            codes.append(clear)
            since_clear = 0
        codes.append(idx)
        since_clear += 1
    codes.append(end)
    bits = 0
    nbits = 0
    out = bytearray()
    for code in codes:
        bits |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255])
                      for i in range(0, len(out), 255))
    return bytes([min_size]) + blocks + b"\x00"


def make_gif(palette: list[Color], frames: list[list[list[int]]]) -> bytes:
    height, width = len(frames[0]), len(frames[0][0])
    depth = max(1, (len(palette) - 1).bit_length())
    table = b"".join(bytes(c) for c in palette) + b"\x00" * (3 * (2 ** depth - len(palette)))
    out = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80 | (depth - 1), 0, 0) + table
    if len(frames) > 1:  # looping extension, as animated GIFs carry
        out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for frame in frames:
        out += b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # graphic control: 0.1 s delay
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        out += _lzw_literal_codes([i for row in frame for i in row], max(2, depth))
    return out + b"\x3b"


def _lzw_decode(data: bytes, min_size: int) -> list[int]:
    clear, end = 1 << min_size, (1 << min_size) + 1
    width = min_size + 1
    table: list[list[int]] = [[i] for i in range(clear)] + [[], []]
    out: list[int] = []
    prev: list[int] | None = None
    bits = nbits = pos = 0
    while True:
        while nbits < width:
            assert pos < len(data), "LZW data ran out"
            bits |= data[pos] << nbits
            nbits += 8
            pos += 1
        code = bits & ((1 << width) - 1)
        bits >>= width
        nbits -= width
        if code == clear:
            table = table[:end + 1]
            width = min_size + 1
            prev = None
            continue
        if code == end:
            return out
        if code < len(table):
            entry = table[code]
            if prev is not None:
                table.append(prev + [entry[0]])
        else:
            assert prev is not None and code == len(table), "bad LZW code"
            entry = prev + [prev[0]]
            table.append(entry)
        out.extend(entry)
        prev = entry
        if len(table) == (1 << width) and width < 12:
            width += 1


def decode_gif(data: bytes) -> list[list[list[Color]]]:
    """Every frame, as rows of colours.  Asserts the file is well formed."""
    assert data[:6] in (b"GIF87a", b"GIF89a"), "bad signature"
    width, height, flags = struct.unpack("<HHB", data[6:11])
    pos = 13
    gct = b""
    if flags & 0x80:
        size = 2 ** ((flags & 7) + 1)
        gct = data[13:13 + 3 * size]
        pos += 3 * size
    frames = []
    while True:
        block = data[pos]
        if block == 0x3B:
            assert pos == len(data) - 1, "bytes after the trailer"
            return frames
        if block == 0x21:
            pos += 2
            while data[pos]:
                pos += 1 + data[pos]
            pos += 1
        elif block == 0x2C:
            fw, fh, fflags = struct.unpack("<HHB", data[pos + 5:pos + 10])[0], \
                struct.unpack("<HHB", data[pos + 5:pos + 10])[1], data[pos + 9]
            pos += 10
            table = gct
            if fflags & 0x80:
                lsize = 2 ** ((fflags & 7) + 1)
                table = data[pos:pos + 3 * lsize]
                pos += 3 * lsize
            min_size = data[pos]
            pos += 1
            lzw = b""
            while data[pos]:
                lzw += data[pos + 1:pos + 1 + data[pos]]
                pos += 1 + data[pos]
            pos += 1
            indices = _lzw_decode(lzw, min_size)
            assert len(indices) >= fw * fh
            frames.append([[tuple(table[i * 3:i * 3 + 3]) for i in indices[y * fw:(y + 1) * fw]]
                           for y in range(fh)])
        else:
            raise AssertionError(f"unknown GIF block {block:#x}")
