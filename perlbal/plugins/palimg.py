"""Palimg: serve GIF/PNG files from a web_server with their palette rewritten.

No commands or parameters; ``SET plugins = Palimg`` works on any service.

A request for ``/palimg/<name>.<ext>/p<palspec>`` is served from
``/palimg/<name>.<ext>`` with the palette rewritten per ``palspec``, without
re-encoding the image: the palette sits in the first bytes of the file, so
only that prefix is rebuilt and the rest is sent as it is on disk.

palspec, as Perl Perlbal's Palimg (lower-case hex only):
- ``g<i><rrggbb><j><rrggbb>``: a gradient between palette indexes i and j;
- ``t<rrggbb>[<rrggbb>]``: tint every colour towards the first colour (the
  second, default black, is the "dark" end);
- up to six ``<i><rrggbb>`` groups: replace single palette entries (i is one
  hex digit).
A bad spec, or an image whose palette cannot be changed (not a paletted PNG,
palette not within the first 2048 bytes, truncated), answers 404; a file that
cannot be read, 500.  PNG's PLTE CRC is recomputed (zlib.crc32, where Perl
needed String::CRC32).

Beyond Perl: ``/palimg/<name>.gif/still`` (or ``/p<palspec>/still``) serves a
GIF's first frame only — the seed lists de-animation as upcoming.  The still
image is the header, the global palette and the blocks up to the end of the
first image, then the GIF trailer.

The transformation is pure (bytes in, bytes out); the hooks apply it:
start_serve_request runs ``plan_request`` on the decoded path and serves the
plain file instead (the plan is kept in ``ctx.scratch``); start_send_file
reads the file's first 2048 bytes, sends the head and ``rewrite_prefix``'s
bytes, then the rest of the file from disk.  The answer is always a whole 200
(a Range is ignored).  A still GIF is built from the file's first
``STILL_MAX_BYTES`` (1 MiB) only: a first frame that does not end within them
answers 404, and at most ``STILL_CONCURRENCY`` (4) stills are built at once
(others wait their turn), so still requests hold at most 4 MiB of memory
whatever the files' size or the number of clients.  A still is sent with its
own Content-Length.  A refusal is sent as Perl's simple
page; a corrupt image is refused (404), never sent broken, never a crash.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field

from typing import TYPE_CHECKING, BinaryIO

import anyio
from anyio.lowlevel import RunVar

from perlbal.plugins import Plugin

if TYPE_CHECKING:
    from perlbal.plugins.hooks import StartSendFile, StartServeRequest

PREFIX_READ = 2048
#: bytes of a GIF read to find its first frame (the frame must end within them)
STILL_MAX_BYTES = 1024 * 1024
#: still GIFs built at once per process (each holds up to STILL_MAX_BYTES)
STILL_CONCURRENCY = 4
#: one semaphore per event loop
_slots: RunVar[anyio.Semaphore] = RunVar("palimg_still_slots")


def _still_slots() -> anyio.Semaphore:
    """This event loop's semaphore of STILL_CONCURRENCY slots."""
    try:
        return _slots.get()
    except LookupError:
        slots = anyio.Semaphore(STILL_CONCURRENCY)
        _slots.set(slots)
        return slots
_URI_RE = re.compile(r"^/palimg/(.+)\.(\w+)(.*)$")
_HEX = "[0-9a-f]"
_GRADIENT = re.compile(f"^g({_HEX}{{2}})({_HEX}{{6}})({_HEX}{{2}})({_HEX}{{6}})$")
_TINT = re.compile(f"^t({_HEX}{{6}})({_HEX}{{6}})?$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Color = tuple[int, int, int]


class PalimgRefused(Exception):
    """The request or image cannot be served modified; ``status`` says how."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Palette:
    """What to do to a palette: fixed entries, or a tint of every entry."""

    entries: dict[int, Color] = field(default_factory=dict)
    tint: Color | None = None
    tint_dark: Color = (0, 0, 0)


@dataclass(frozen=True)
class PalimgRequest:
    path: str  # the file to serve, e.g. /palimg/logo.gif
    ext: str
    palette: Palette | None
    still: bool = False


def _color(hex6: str) -> Color:
    return (int(hex6[0:2], 16), int(hex6[2:4], 16), int(hex6[4:6], 16))


def parse_palspec(spec: str) -> Palette:
    """Perl's PalImg::modify_file spec parsing; raises PalimgRefused(404)."""
    m = _GRADIENT.match(spec)
    if m:
        start, end = int(m.group(1), 16), int(m.group(3), 16)
        if start == end:
            raise PalimgRefused(404, "gradient needs two different indexes")
        c_from, c_to = _color(m.group(2)), _color(m.group(4))
        if end < start:
            start, end, c_from, c_to = end, start, c_to, c_from
        entries: dict[int, Color] = {}
        for i in range(start, end + 1):
            entries[i] = tuple(  # type: ignore[assignment]
                int(c_from[k] + (c_to[k] - c_from[k]) * (i - start) / (end - start))
                for k in range(3))
        return Palette(entries=entries)
    m = _TINT.match(spec)
    if m:
        return Palette(tint=_color(m.group(1)),
                       tint_dark=_color(m.group(2)) if m.group(2) else (0, 0, 0))
    if len(spec) > 42 or re.search("[^0-9a-f]", spec) or len(spec) % 7:
        raise PalimgRefused(404, "bad palette specification")
    return Palette(entries={int(spec[i], 16): _color(spec[i + 1:i + 7])
                            for i in range(0, len(spec), 7)})


def plan_request(path: str) -> PalimgRequest | None:
    """None when the path is not a palimg request (served as a plain file)."""
    m = _URI_RE.match(path)
    if not m:
        return None
    name, ext, extra = m.group(1), m.group(2), m.group(3)
    if not extra:
        return None
    still = False
    if extra.endswith("/still"):
        still, extra = True, extra[: -len("/still")]
        if ext.lower() != "gif":
            raise PalimgRefused(404, "only GIF images can be de-animated")
    palette = None
    if extra:
        pm = re.match(r"^/p(.+)$", extra)
        if not pm:
            return None if not still else _refuse_bad_extra()
        palette = parse_palspec(pm.group(1))
    elif not still:
        return None
    return PalimgRequest(path=f"/palimg/{name}.{ext}", ext=ext.lower(), palette=palette,
                         still=still)


def _refuse_bad_extra() -> PalimgRequest:
    raise PalimgRefused(404, "bad palimg path")


def alter_table(palette: Palette, table: bytes) -> bytes:
    """Apply ``palette`` to an RGB table (Perl's common_alter)."""
    size = len(table) // 3
    entries = palette.entries
    if palette.tint is not None:
        tint, dark = palette.tint, palette.tint_dark
        diff = [tint[k] - dark[k] for k in range(3)]
        entries = {idx: tuple(int(dark[k] + diff[k] * table[idx * 3 + k] / 255)  # type: ignore[misc]
                              for k in range(3)) for idx in range(size)}
    out = bytearray(table)
    for idx, color in entries.items():
        if idx < size:
            out[idx * 3: idx * 3 + 3] = bytes(color)
    return bytes(out)


def _gif_prefix(data: bytes, palette: Palette) -> bytes:
    if len(data) < 13 or not data.startswith((b"GIF87a", b"GIF89a")):
        raise PalimgRefused(404, "not a GIF image")
    flags = data[10]
    if not flags & 0x80:
        raise PalimgRefused(404, "GIF has no global palette")
    size = 2 ** ((flags & 7) + 1)
    if len(data) < 13 + 3 * size:
        raise PalimgRefused(404, "GIF palette truncated")
    return data[:13] + alter_table(palette, data[13:13 + 3 * size])


def _png_prefix(data: bytes, palette: Palette) -> bytes:
    if not data.startswith(PNG_SIGNATURE):
        raise PalimgRefused(404, "not a PNG image")
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body_end = pos + 8 + length
        if body_end + 4 > len(data):
            break
        if kind == b"IHDR" and (length < 13 or data[pos + 8 + 9] != 3):
            raise PalimgRefused(404, "PNG is not a paletted image")
        if kind == b"PLTE":
            table = alter_table(palette, data[pos + 8:body_end])
            crc = zlib.crc32(b"PLTE" + table) & 0xFFFFFFFF
            return data[:pos + 8] + table + struct.pack(">I", crc)
        pos = body_end + 4
    raise PalimgRefused(404, "PNG palette not found in the first bytes")


def rewrite_prefix(data: bytes, ext: str, palette: Palette) -> bytes:
    """Given the file's first bytes, the replacement for its first
    ``len(result)`` bytes: send the result, then the file from that offset."""
    if ext == "gif":
        return _gif_prefix(data, palette)
    if ext == "png":
        return _png_prefix(data, palette)
    raise PalimgRefused(404, "palimg serves only gif and png")


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    while True:
        if pos >= len(data):
            raise PalimgRefused(404, "GIF truncated")
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def first_frame(data: bytes) -> bytes:
    """A still GIF: everything up to the end of the first image, then a trailer."""
    if len(data) < 13 or not data.startswith((b"GIF87a", b"GIF89a")):
        raise PalimgRefused(404, "not a GIF image")
    pos = 13
    if data[10] & 0x80:
        pos += 3 * 2 ** ((data[10] & 7) + 1)
    out = bytearray(data[:pos])
    while pos < len(data):
        block = data[pos]
        if block == 0x21:  # extension: keep all but the looping (NETSCAPE) one
            if pos + 2 > len(data):
                break
            end = _skip_sub_blocks(data, pos + 2)
            if data[pos + 1] != 0xFF:
                out += data[pos:end]
            pos = end
        elif block == 0x2C:  # image descriptor (+ local palette) + LZW data
            if pos + 10 > len(data):
                break
            flags = data[pos + 9]
            head_end = pos + 10 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
            end = _skip_sub_blocks(data, head_end + 1)
            out += data[pos:end] + b"\x3b"
            return bytes(out)
        else:
            break
    raise PalimgRefused(404, "GIF has no complete first image")


class Palimg(Plugin):
    name = "Palimg"

    async def start_serve_request(self, hook: "StartServeRequest") -> bool:
        try:
            plan = plan_request(hook.uri)
        except PalimgRefused as refusal:
            await hook.ctx.send_simple(refusal.status)
            return True
        if plan is not None:
            hook.uri = plan.path
            hook.ctx.scratch["palimg"] = plan
        return False

    async def start_send_file(self, hook: "StartSendFile") -> bool:
        from perlbal.http.responses import render_head

        ctx = hook.ctx
        plan = ctx.scratch.get("palimg")
        if not isinstance(plan, PalimgRequest) or hook.fh is None:
            return False
        fh = hook.fh
        size = os.fstat(fh.fileno()).st_size
        if plan.still:
            async with _still_slots():  # bounds the memory of concurrent stills
                body = await _build(hook, fh, plan, min(size, STILL_MAX_BYTES))
        else:
            body = await _build(hook, fh, plan, PREFIX_READ)
        if body is None:
            return True  # refused
        prefix = b"" if plan.still else body
        total = len(body) if plan.still else size
        from perlbal.http import set_header  # the HTTP layer only where requests are served

        headers = [(k, v) for k, v in hook.headers if k.lower() != "content-range"]
        headers = set_header(headers, "Content-Length", str(total))
        await ctx.send(render_head(200, headers) + body)
        if not plan.still:
            await ctx.send_file(fh, len(prefix), size - len(prefix))
        ctx.last_keep_alive = ctx.keep_alive
        return True


async def _build(hook: "StartSendFile", fh: BinaryIO, plan: PalimgRequest,
                 count: int) -> bytes | None:
    """The bytes to send first (the still image, or the rewritten prefix) from
    the file's first ``count`` bytes; None when a refusal was sent instead."""
    from anyio import to_thread

    try:
        await to_thread.run_sync(fh.seek, 0)
        data: bytes = await to_thread.run_sync(fh.read, count)
    except OSError:
        await _refuse(hook, 500)
        return None
    if not data:
        await _refuse(hook, 500)
        return None
    try:
        prefix = rewrite_prefix(data, plan.ext, plan.palette) if plan.palette else b""
        return first_frame(prefix + data[len(prefix):]) if plan.still else prefix
    except PalimgRefused as refusal:
        await _refuse(hook, refusal.status)
        return None


async def _refuse(hook: "StartSendFile", status: int) -> bool:
    await hook.ctx.send_simple(status)
    return True


PLUGIN = Palimg()
