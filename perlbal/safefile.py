"""Reading a file whose name comes from configuration text: a regular file, bounded.

``INCLUDE``, ``SET nodefile``, Throttle's white/black lists and the TLS files
name paths that ``perlbal check`` and ``perlbal lsp`` read too, on text an
editor buffer may hold (issue #24 item 8).  A name can point anywhere:
``/dev/stdin`` is the language server's own JSON-RPC input (reading it hangs
the server), ``/dev/zero`` never ends (MemoryError), a FIFO blocks at open
until a writer comes, a directory cannot be read.  So, invariants:

- the name is ``stat``-ed first and anything but a regular file is refused
  before it is opened (opening a FIFO blocks, opening a device may act);
- it is then opened ``O_NONBLOCK | O_NOCTTY`` and ``fstat``-ed again (the name
  may have been swapped between the two);
- a file over ``MAX_FILE_BYTES`` is refused, and no more than that is ever
  read, even from a file that grows while it is read.

Every refusal is a ``FileRefused``, an ``OSError`` whose ``strerror`` says why
in words a diagnostic can print after the path.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["MAX_FILE_BYTES", "FileRefused", "read_bytes", "read_text"]

#: the cap on any one file a configuration names (16 MiB: a config of half a
#: million lines, a node file of 800,000 nodes; docs/check.md)
MAX_FILE_BYTES = 16 * 1024 * 1024


class FileRefused(OSError):
    """Not read: not a regular file, or larger than the cap (``strerror`` says which)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse_mode(path: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        kind = _kind(mode)
        raise FileRefused(errno.EINVAL, kind if kind.startswith("not ") else
                          f"{kind}, not a regular file", path)


def _too_big(path: str, size: int | None, limit: int) -> FileRefused:
    how = f" ({size} bytes)" if size is not None else ""
    return FileRefused(errno.EFBIG, f"larger than the {limit // (1024 * 1024)} MiB cap on "
                       f"files a config names{how}", path)


def read_bytes(path: str, *, limit: int = MAX_FILE_BYTES, regular_only: bool = True) -> bytes:
    """The content of ``path``; ``FileRefused`` (or another ``OSError``) if it cannot be.

    ``regular_only=False`` is for a file the operator named on the command line
    (``perlbal check <(generate)`` reads a pipe): it is still read to the cap only.
    """
    if regular_only:
        _refuse_mode(path, os.stat(path).st_mode)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    else:
        flags = os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if regular_only:
            _refuse_mode(path, info.st_mode)
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise _too_big(path, info.st_size, limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise _too_big(path, None, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str, *, encoding: str = "utf-8", errors: str = "replace",
              limit: int = MAX_FILE_BYTES, regular_only: bool = True) -> str:
    """``read_bytes`` decoded (``errors="replace"`` by default, as configs are read)."""
    return read_bytes(path, limit=limit, regular_only=regular_only).decode(encoding, errors)
