"""Incremental, strict decoding (and encoding) of chunked transfer-coding.

Perl Perlbal 1.80 decodes chunked uploads in ``ChunkedUploadState.pm`` with a
single permissive regex: an optional CRLF, hex digits of any length, anything
after ``;``, and trailers assumed absent.  A smuggler can play with each of
those, so this decoder follows RFC 9112 section 7.1 strictly instead.

Public API::

    ChunkedDecoder(*, max_body_size=209715200, max_size_digits=16,
                   max_line_length=4096, max_trailer_size=16384,
                   max_trailer_count=100)
    ChunkedDecoder.feed(data) -> list[bytes]      # decoded body pieces
    ChunkedDecoder.done / .trailers / .unused_data / .body_size
    encode_chunk(data) -> bytes
    encode_last_chunk(trailers=()) -> bytes

Invariants:

* ``feed`` either returns body bytes that are certainly part of the body, or
  raises :class:`HttpError`; after an error the decoder must be discarded;
* ``body_size`` never exceeds ``max_body_size`` (0 means no limit).  The
  default is Perl's ``max_chunked_request_size`` (200 MB).  Perl closes the
  connection when it is exceeded; we raise 413 flagged ``perl_closes_silently``;
* a chunk-size line is 1..``max_size_digits`` hex digits, then optionally
  BWS ``;`` extensions, then CRLF, the whole line at most ``max_line_length``
  bytes; chunk data is followed by exactly CRLF;
* trailer fields are validated like header fields and may not carry framing,
  routing or connection fields (RFC 9110 section 6.5.1);
* once ``done``, bytes after the final CRLF are in ``unused_data`` (a pipelined
  next request) and ``feed`` must not be called again.
"""

from __future__ import annotations

import enum
import re

from perlbal.http.errors import HttpError
from perlbal.http.fields import Header, parse_field_lines

__all__ = [
    "DEFAULT_MAX_CHUNKED_REQUEST_SIZE",
    "ChunkedDecoder",
    "FORBIDDEN_TRAILER_FIELDS",
    "encode_chunk",
    "encode_last_chunk",
]

#: Perl's max_chunked_request_size default (Service.pm): 200 MB; 0 = no limit.
DEFAULT_MAX_CHUNKED_REQUEST_SIZE = 209715200

FORBIDDEN_TRAILER_FIELDS = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "host",
        "trailer",
        "te",
        "connection",
        "keep-alive",
        "upgrade",
        "content-encoding",
        "content-range",
    }
)

_CRLF = b"\r\n"
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;([\t\x20-\x7e\x80-\xff]*))?")


class _State(enum.Enum):
    SIZE_LINE = "size line"
    DATA = "chunk data"
    DATA_END = "CRLF after chunk data"
    TRAILER = "trailer section"
    DONE = "done"


def _bad(reason: str) -> HttpError:
    return HttpError(400, reason)


class ChunkedDecoder:
    """Feed raw bytes of a chunked body; get the decoded body pieces back."""

    def __init__(
        self,
        *,
        max_body_size: int = DEFAULT_MAX_CHUNKED_REQUEST_SIZE,
        max_size_digits: int = 16,
        max_line_length: int = 4096,
        max_trailer_size: int = 16384,
        max_trailer_count: int = 100,
    ) -> None:
        self.max_body_size = max_body_size
        self.max_size_digits = max_size_digits
        self.max_line_length = max_line_length
        self.max_trailer_size = max_trailer_size
        self.max_trailer_count = max_trailer_count
        self._state = _State.SIZE_LINE
        self._buffer = bytearray()
        self._chunk_remaining = 0
        self._trailer_lines: list[bytes] = []
        self._trailer_bytes = 0
        self._trailers: tuple[Header, ...] = ()
        self.body_size = 0

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def trailers(self) -> tuple[Header, ...]:
        """Trailer fields, available once ``done``."""
        return self._trailers

    @property
    def unused_data(self) -> bytes:
        """Bytes received after the end of the body (only meaningful once ``done``)."""
        return bytes(self._buffer) if self.done else b""

    def feed(self, data: bytes) -> list[bytes]:
        if self.done:
            raise RuntimeError("chunked body already complete")
        self._buffer += data
        pieces: list[bytes] = []
        while self._step(pieces):
            pass
        return pieces

    def _take_line(self, limit: int, what: str) -> bytes | None:
        """Pop one CRLF-terminated line (without CRLF), or None if incomplete."""
        end = self._buffer.find(_CRLF, 0, limit + 2)
        if end == -1:
            stray = self._buffer.find(b"\n", 0, limit + 2)
            if stray != -1:
                raise _bad(f"bare LF in {what}")
            cr = self._buffer.find(b"\r", 0, limit + 2)
            if cr != -1 and cr + 1 < len(self._buffer) and self._buffer[cr + 1 : cr + 2] != b"\n":
                raise _bad(f"bare CR in {what}")
            if len(self._buffer) > limit:
                raise _bad(f"{what} too long")
            return None
        line = bytes(self._buffer[:end])
        if b"\r" in line or b"\n" in line:
            raise _bad(f"bare CR or LF in {what}")
        del self._buffer[: end + 2]
        return line

    def _step(self, pieces: list[bytes]) -> bool:
        """Advance the state machine once; False when more input is needed."""
        state = self._state
        if state is _State.SIZE_LINE:
            line = self._take_line(self.max_line_length, "chunk size line")
            if line is None:
                return False
            self._start_chunk(line)
            return True
        if state is _State.DATA:
            if not self._buffer:
                return False
            take = min(self._chunk_remaining, len(self._buffer))
            pieces.append(bytes(self._buffer[:take]))
            del self._buffer[:take]
            self._chunk_remaining -= take
            if self._chunk_remaining == 0:
                self._state = _State.DATA_END
            return True
        if state is _State.DATA_END:
            if len(self._buffer) < 2:
                if self._buffer and self._buffer[:1] != b"\r":
                    raise _bad("chunk data not followed by CRLF")
                return False
            if self._buffer[:2] != _CRLF:
                raise _bad("chunk data not followed by CRLF")
            del self._buffer[:2]
            self._state = _State.SIZE_LINE
            return True
        if state is _State.TRAILER:
            remaining = self.max_trailer_size - self._trailer_bytes
            line = self._take_line(max(remaining, 0), "trailer section")
            if line is None:
                return False
            if line == b"":
                self._finish_trailers()
                return False
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > self.max_trailer_size:
                raise _bad("trailer section too long")
            self._trailer_lines.append(line)
            if len(self._trailer_lines) > self.max_trailer_count:
                raise _bad("too many trailer fields")
            return True
        return False

    def _start_chunk(self, line: bytes) -> None:
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise _bad("malformed chunk size line")
        digits = match.group(1).lstrip(b"0") or b"0"
        if len(digits) > self.max_size_digits:
            raise _bad("chunk size too large")
        size = int(digits, 16)
        if self.max_body_size and self.body_size + size > self.max_body_size:
            # Perl's ClientProxy/ClientHTTP just close once max_chunked_request_size is passed.
            raise HttpError(413, "chunked request body too large", perl_closes_silently=True)
        self.body_size += size
        if size == 0:
            self._state = _State.TRAILER
        else:
            self._chunk_remaining = size
            self._state = _State.DATA

    def _finish_trailers(self) -> None:
        fields = parse_field_lines(self._trailer_lines, _bad, self.max_trailer_count)
        for name, _value in fields:
            if name.lower() in FORBIDDEN_TRAILER_FIELDS:
                raise _bad(f"{name} is not allowed in a trailer")
        self._trailers = tuple(fields)
        self._trailer_lines = []
        self._state = _State.DONE


def encode_chunk(data: bytes) -> bytes:
    """One chunk carrying ``data``; empty data encodes to nothing (it would end the body)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode_last_chunk(trailers: tuple[Header, ...] | list[Header] = ()) -> bytes:
    """The zero-size chunk, optional trailer fields, and the final CRLF."""
    lines = b"".join(
        name.encode("ascii") + b": " + value.encode("latin-1") + _CRLF for name, value in trailers
    )
    return b"0\r\n" + lines + _CRLF
