"""Fuzzing the request path: random bytes and mutated valid requests sent to the
proxy and web listeners of the live hostile server.

Whatever arrives, the server must stay up and keep serving: after every
example a normal request on a fresh connection is answered on both
listeners, and at the end the server's descriptor count is back near where it
started (no connection, file or backend socket leaked by a bad request).

Bounded: ~150 examples, each exchange waits at most ``_WAIT`` seconds.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.conftest import Hostile

_WAIT = 0.2  # seconds an exchange waits for the server after sending

TEMPLATES = [
    b"GET /fuzz?a=1&b=%41 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n",
    b"POST /fuzz HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /fuzz HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n\r\n",
    b"GET /ok.txt HTTP/1.0\r\nConnection: keep-alive\r\nRange: bytes=0-1\r\n\r\n",
    b"PUT /fuzz.txt HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n\r\nfuzz",
    b"GET /sub/??a.txt,a.txt HTTP/1.1\r\nHost: x\r\n"
    b"If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"HEAD /sub/a.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
]

_mutation = st.one_of(
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 16)),
    st.tuples(st.just("replace"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("duplicate"), st.floats(0, 1), st.integers(1, 64)),
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("bare_lf"), st.just(0.0), st.just(0)),
    st.tuples(st.just("special"), st.floats(0, 1),
              st.sampled_from([b"\x00", b"\r", b"\n", b" ", b":", b"\t", b"%", b"..", b"\xff",
                               b"\r\n\r\n", b"Content-Length: 3\r\n",
                               b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n"])),
)


def mutate(data: bytes, mutations: list[tuple[str, float, object]]) -> bytes:
    for kind, where, arg in mutations:
        pos = int(where * len(data))
        if kind in ("insert", "special"):
            assert isinstance(arg, bytes)
            data = data[:pos] + arg + data[pos:]
        elif kind == "delete":
            assert isinstance(arg, int)
            data = data[:pos] + data[pos + arg:]
        elif kind == "replace" and data:
            assert isinstance(arg, int)
            pos = min(pos, len(data) - 1)
            data = data[:pos] + bytes([arg]) + data[pos + 1:]
        elif kind == "duplicate":
            assert isinstance(arg, int)
            data = data[:pos + arg] + data[pos:]
        elif kind == "truncate":
            data = data[:pos]
        elif kind == "bare_lf":
            data = data.replace(b"\r\n", b"\n")
    return data


payloads = st.one_of(
    st.binary(max_size=2048),
    st.builds(mutate, st.sampled_from(TEMPLATES), st.lists(_mutation, min_size=1, max_size=4)),
)


def poke(port: int, data: bytes, half_close: bool) -> None:
    """Send ``data``, read whatever comes back for at most ``_WAIT`` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=_WAIT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            return  # refused and closed before all was sent
        deadline = time.monotonic() + _WAIT
        while time.monotonic() < deadline:
            try:
                if not sock.recv(65536):
                    return
            except OSError:  # timeout or reset
                return


def open_fds(hostile: Hostile) -> int:
    assert hostile.server.proc is not None
    return len(os.listdir(f"/proc/{hostile.server.proc.pid}/fd"))


def _snapshot(docroot: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in docroot.rglob("*") if p.is_file() and not p.is_symlink()}


def _restore(docroot: Path, original: dict[Path, bytes]) -> None:
    """Undo what fuzzed PUTs may have written (other hostile tests check the docroot)."""
    for path in sorted(docroot.rglob("*"), reverse=True):
        if path.is_symlink() or path in original:
            continue
        if path.is_file():
            path.unlink()
        elif path.is_dir() and path != docroot / "sub":
            try:
                path.rmdir()
            except OSError:
                pass
    for path, content in original.items():
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)


def test_fuzzed_requests_never_break_the_server(hostile: Hostile) -> None:
    original = _snapshot(hostile.docroot)
    hostile.assert_healthy()
    before = open_fds(hostile)

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(payload=payloads, to_web=st.booleans(), half_close=st.booleans())
    def one(payload: bytes, to_web: bool, half_close: bool) -> None:
        poke(hostile.web if to_web else hostile.proxy, payload, half_close)
        assert hostile.server.proc is not None and hostile.server.proc.poll() is None, "server died"
        _restore(hostile.docroot, original)
        hostile.assert_healthy()

    try:
        one()
    finally:
        _restore(hostile.docroot, original)
    deadline = time.monotonic() + 5
    while open_fds(hostile) > before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open_fds(hostile) <= before + 3, f"fds {before} -> {open_fds(hostile)}"
