"""SERVER aio_mode: `ioaio` (default) does disk work in a thread pool, `none`
on the event loop, as Perl Perlbal's two modes; both serve the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.pyserver import PyPerlbal
from tests.support.ports import free_port
from tests.support.rawhttp import request


@pytest.mark.parametrize("mode", ["none", "ioaio"])
def test_both_modes_serve_get_range_put(tmp_path: Path, mode: str) -> None:
    (tmp_path / "small.txt").write_bytes(b"0123456789")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: streamed
    port = free_port()
    config = f"""
SERVER aio_mode = {mode}
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:{port}
  SET docroot = {tmp_path}
  SET enable_put = on
  SET persist_client = on
ENABLE web
"""
    with PyPerlbal(config):
        small = request(port, "GET", "/small.txt")
        assert small.status == 200 and small.body == b"0123456789"
        part = request(port, "GET", "/small.txt", [("Range", "bytes=2-4")])
        assert part.status == 206 and part.body == b"234"
        big = request(port, "GET", "/big.bin")
        assert big.status == 200 and big.body == (tmp_path / "big.bin").read_bytes()
        put = request(port, "PUT", "/new.txt", body=b"written")
        assert put.status == 200 and (tmp_path / "new.txt").read_bytes() == b"written"
        head = request(port, "HEAD", "/small.txt")
        assert head.status == 200 and head.body == b""
        assert head.header("Content-Length") == "10"
