"""Palimg's palette rewriting: the served image decodes and has the requested
colours; a bad spec or a corrupt image is refused cleanly."""

from __future__ import annotations

import pytest

from perlbal.plugins.palimg import (PREFIX_READ, PalimgRefused, alter_table, first_frame,
                                    parse_palspec, plan_request, rewrite_prefix)
from tests.plugins.imagecodec import decode_gif, decode_png, make_gif, make_png

PALETTE = [(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255)]
PIXELS = [[0, 1, 2, 3], [3, 2, 1, 0]]


def serve(data: bytes, ext: str, spec: str) -> bytes:
    """What the web server sends: the rewritten prefix, then the rest of the file."""
    prefix = rewrite_prefix(data[:PREFIX_READ], ext, parse_palspec(spec))
    return prefix + data[len(prefix):]


@pytest.mark.parametrize("ext", ["gif", "png"])
def test_replace_single_entries(ext: str) -> None:
    data = make_gif(PALETTE, [PIXELS]) if ext == "gif" else make_png(PALETTE, PIXELS)
    out = serve(data, ext, "200ff00" + "3123456")
    rows = decode_gif(out)[0] if ext == "gif" else decode_png(out)
    assert rows[0] == [(0, 0, 0), (255, 255, 255), (0, 255, 0), (0x12, 0x34, 0x56)]
    assert rows[1] == [(0x12, 0x34, 0x56), (0, 255, 0), (255, 255, 255), (0, 0, 0)]
    # the image data itself is untouched: only the palette prefix changed
    assert out[-20:] == data[-20:]


def test_gradient_and_tint() -> None:
    grad = parse_palspec("g00000000030000ff")
    assert grad.entries == {0: (0, 0, 0), 1: (0, 0, 85), 2: (0, 0, 170), 3: (0, 0, 255)}
    reversed_grad = parse_palspec("g030000ff00000000")
    assert reversed_grad.entries == grad.entries
    table = bytes([0, 0, 0, 255, 255, 255, 128, 128, 128])
    tinted = alter_table(parse_palspec("tff0000"), table)
    assert tinted == bytes([0, 0, 0, 255, 0, 0, 128, 0, 0])
    data = make_png(PALETTE, PIXELS)
    rows = decode_png(serve(data, "png", "t00ff00"))
    assert rows[0][1] == (0, 255, 0) and rows[0][0] == (0, 0, 0)


@pytest.mark.parametrize("spec", ["xyz", "g0000000000000000", "1234", "0" * 49, "tGGGGGG",
                                  "g00000000"])
def test_bad_specs_are_404(spec: str) -> None:
    with pytest.raises(PalimgRefused) as info:
        parse_palspec(spec)
    assert info.value.status == 404


def test_request_paths() -> None:
    req = plan_request("/palimg/logo.gif/p0ff0000")
    assert req is not None and req.path == "/palimg/logo.gif" and req.ext == "gif"
    assert plan_request("/palimg/logo.gif") is None  # served plainly
    assert plan_request("/other/logo.gif/p0ff0000") is None
    still = plan_request("/palimg/anim.gif/still")
    assert still is not None and still.still and still.palette is None
    both = plan_request("/palimg/anim.gif/p0ff0000/still")
    assert both is not None and both.still and both.palette is not None
    with pytest.raises(PalimgRefused):
        plan_request("/palimg/x.png/still")


@pytest.mark.parametrize("data,ext", [
    (b"", "gif"), (b"GIF89a", "gif"), (b"not an image at all" * 10, "gif"),
    (make_gif(PALETTE, [PIXELS])[:20], "gif"), (b"\x89PNG\r\n\x1a\n", "png"),
    (make_png(PALETTE, PIXELS)[:40], "png"), (b"garbage" * 100, "png"),
])
def test_corrupt_images_are_refused_not_crashed(data: bytes, ext: str) -> None:
    with pytest.raises(PalimgRefused) as info:
        rewrite_prefix(data, ext, parse_palspec("0ff0000"))
    assert info.value.status == 404


def test_truecolor_png_is_refused() -> None:
    data = bytearray(make_png(PALETTE, PIXELS))
    data[8 + 8 + 9] = 2  # colour type: truecolour (CRC now wrong too; still refused)
    with pytest.raises(PalimgRefused):
        rewrite_prefix(bytes(data), "png", parse_palspec("0ff0000"))


def test_deanimate_keeps_only_the_first_frame() -> None:
    frames = [PIXELS, [[1, 1, 1, 1], [2, 2, 2, 2]], [[3, 3, 3, 3], [0, 0, 0, 0]]]
    anim = make_gif(PALETTE, frames)
    assert len(decode_gif(anim)) == 3
    still = first_frame(anim)
    decoded = decode_gif(still)
    assert len(decoded) == 1
    assert decoded[0] == decode_gif(anim)[0]
    assert b"NETSCAPE2.0" not in still
    # palette and still together
    recoloured = first_frame(serve(anim, "gif", "200ff00"))
    assert decode_gif(recoloured)[0][0][2] == (0, 255, 0)


def test_deanimate_truncated_gif_is_refused() -> None:
    anim = make_gif(PALETTE, [PIXELS, PIXELS])
    with pytest.raises(PalimgRefused):
        first_frame(anim[:40])
