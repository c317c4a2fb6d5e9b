"""SERVER aio_mode: `ioaio` (default) does disk work in a thread pool, `none`
on the event loop, as Perl Perlbal's two modes; both serve the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.rawhttp import request


@pytest.mark.parametrize("mode", ["none", "ioaio"])
def test_both_modes_serve_get_range_put(tmp_path: Path, mode: str) -> None:
    (tmp_path / "small.txt").write_bytes(b"0123456789")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: streamed
    config = f"""
SERVER aio_mode = {mode}
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:0
  SET docroot = {tmp_path}
  SET enable_put = on
  SET persist_client = on
ENABLE web
"""
    with PyPerlbal(config) as server:
        port = server.port("web")  # bound by the server on port 0
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


def _disk_threads(pid: int) -> int:
    """Threads besides the main one (Python 3.11 does not give pool threads
    an OS-level name; a web server starts no other threads)."""
    return len(list(Path(f"/proc/{pid}/task").iterdir())) - 1


def _burst(port: int, n: int) -> None:
    import threading

    threads = [threading.Thread(target=request, args=(port, "GET", "/f.txt")) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_aio_threads_sizes_the_pool_and_follows_a_live_set(tmp_path: Path) -> None:
    """SERVER aio_threads (Perl's IO::AIO::min_parallel) sets how many disk
    threads serve files, at start and when SET from the console."""
    from tests.support.perl_perlbal import console

    (tmp_path / "f.txt").write_bytes(b"x" * 100)
    config = f"""
SERVER aio_threads = 1
CREATE SERVICE mgmt
  SET role = management
  SET listen = 127.0.0.1:0
ENABLE mgmt
CREATE SERVICE web
  SET role = web_server
  SET listen = 127.0.0.1:0
  SET docroot = {tmp_path}
ENABLE web
"""
    with PyPerlbal(config) as server:
        assert server.proc is not None
        port, mgmt = server.port("web"), server.port("mgmt")  # bound on port 0
        for _ in range(5):
            _burst(port, 30)
        assert _disk_threads(server.proc.pid) == 1
        with console("127.0.0.1", mgmt) as con:
            assert con.command("SERVER aio_threads = 3") == ["OK"]
        for _ in range(10):  # enough concurrent calls to need more than one thread
            _burst(port, 30)
        assert 1 < _disk_threads(server.proc.pid) <= 3
