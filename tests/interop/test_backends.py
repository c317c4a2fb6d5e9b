"""Real backends behind our reverse_proxy role, with curl as the client.

For every backend kind (tests/interop/conftest.py) and both proxy services
(plain, and ``buffer_uploads = on``): GET, HEAD, a 5 MB POST with and without
``Expect: 100-continue``, a chunked POST, a Range, and two requests on one
client connection.  Bodies are compared by sha256 end to end: what the client
sent against what the backend hashed, what the backend served against what
the client received.  The table in docs/works-with.md is this file's result.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.interop.conftest import BACKENDS, DOWNLOAD_SIZE, BackendSpec, Interop
from tests.support.digest_backend import payload
from tests.support.rawhttp import HTTPConnection

UPLOAD_SIZE = 5 * 1024 * 1024
SERVICES = ["plain", "buffered"]
NAMES = sorted(BACKENDS)


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args],
                          capture_output=True, timeout=timeout + 5)


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("upload") / "five.bin"
    path.write_bytes(payload(UPLOAD_SIZE)[::-1])  # not a prefix of any download
    return path


def _check_upload_reply(spec: BackendSpec, got: subprocess.CompletedProcess[bytes],
                        data: bytes, method: str = "POST") -> None:
    assert got.returncode == 0, got.stderr
    body, _, status = got.stdout.rpartition(b"\n")
    assert status == b"200", (status, body[:300])
    if spec.digests_uploads:
        reply = json.loads(body)
        assert reply["method"] == method
        assert reply["length"] == len(data)
        assert reply["sha256"] == hashlib.sha256(data).hexdigest()
    else:
        assert body == b"ok\n"  # nginx: the whole body was read (and discarded)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_get(interop: Interop, name: str, service: str) -> None:
    spec = BACKENDS[name]
    port = interop.port(name, service)
    got = curl("-w", "\n%{http_code}", f"http://127.0.0.1:{port}{spec.download}")
    assert got.returncode == 0, got.stderr
    body, _, status = got.stdout.rpartition(b"\n")
    assert status == b"200"
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(spec.body).hexdigest()


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_head(interop: Interop, name: str, service: str) -> None:
    spec = BACKENDS[name]
    port = interop.port(name, service)
    with HTTPConnection(port, timeout=10) as conn:
        reply = conn.request("HEAD", spec.download, [("Host", "example.com")])
        assert reply.status == 200, reply
        assert reply.body == b""
        assert reply.header("Content-Length") == str(spec.head_length)
        # nothing but the head came: the same connection answers a GET next
        again = conn.request("GET", spec.download, [("Host", "example.com")])
        assert again.status == 200 and again.body == spec.body


@pytest.mark.parametrize("expect", ["without-expect", "with-expect"])
@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_post_5mb(interop: Interop, upload_file: Path, name: str, service: str,
                  expect: str) -> None:
    spec = BACKENDS[name]
    port = interop.port(name, service)
    # curl sends Expect: 100-continue by itself past 1 MB; "Expect:" removes it
    extra = ["-H", "Expect:"] if expect == "without-expect" else []
    got = curl("-v", "--data-binary", f"@{upload_file}", *extra, "-w", "\n%{http_code}",
               f"http://127.0.0.1:{port}{spec.upload}")
    sent_expect = b"> Expect: 100-continue" in got.stderr
    assert sent_expect == (expect == "with-expect"), got.stderr[-2000:]
    if sent_expect:
        assert b"< HTTP/1.1 100 Continue" in got.stderr
    _check_upload_reply(spec, got, upload_file.read_bytes())


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_post_chunked(interop: Interop, upload_file: Path, name: str, service: str) -> None:
    spec = BACKENDS[name]
    port = interop.port(name, service)
    got = curl("-v", "--data-binary", f"@{upload_file}", "-H", "Transfer-Encoding: chunked",
               "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{spec.upload}")
    assert b"> Transfer-Encoding: chunked" in got.stderr
    _check_upload_reply(spec, got, upload_file.read_bytes())


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_range(interop: Interop, name: str, service: str) -> None:
    spec = BACKENDS[name]
    port = interop.port(name, service)
    got = curl("-r", "1000-1999", "-D", "-", f"http://127.0.0.1:{port}{spec.download}")
    assert got.returncode == 0, got.stderr
    head, _, body = got.stdout.partition(b"\r\n\r\n")
    # the status line is HTTP/1.0 whatever the backend said: Perl's is too
    status = head.split(b" ", 2)[1]
    if spec.ranges:
        assert status == b"206", head
        assert f"Content-Range: bytes 1000-1999/{DOWNLOAD_SIZE}".lower().encode() \
            in head.lower()
        assert body == spec.body[1000:2000]
    else:  # the backend ignores Range; the proxy passes its whole 200 on, as Perl does
        assert status == b"200", head
        assert body == spec.body


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("name", NAMES)
def test_keep_alive(interop: Interop, name: str, service: str) -> None:
    """A GET and a POST on one client connection, whether or not the backend
    keeps its own connection.  The client connection stays open after both
    unless the backend's reply to the POST had no length: then, as in Perl,
    that reply says Connection: close and ends with the connection."""
    spec = BACKENDS[name]
    port = interop.port(name, service)
    data = payload(70_000)
    with HTTPConnection(port, timeout=10) as conn:
        first = conn.request("GET", spec.download, [("Host", "example.com")])
        assert first.status == 200, first
        assert first.body == spec.body
        assert first.header("Connection") == "keep-alive"
        second = conn.request("POST", spec.upload, [("Host", "example.com")], data)
        assert second.status == 200, second
        if spec.digests_uploads:
            assert json.loads(second.body)["sha256"] == hashlib.sha256(data).hexdigest()
        framed = spec.framed_uploads
        if framed is None:
            framed = second.header("Content-Length") is not None
        if framed:
            assert second.header("Content-Length") is not None
            assert second.header("Connection") == "keep-alive"
            assert not conn.is_closed_by_peer(wait=0.2)
        else:
            assert second.header("Connection") == "close"
            assert conn.is_closed_by_peer(wait=2)


def test_nginx_dav_put_round_trip(interop: Interop, upload_file: Path) -> None:
    """nginx cannot hash a body, but it can store one: PUT 5 MB through each
    proxy service (curl's default Expect), GET it back, compare sha256."""
    data = upload_file.read_bytes()
    for service in SERVICES:
        port = interop.port("nginx", service)
        url = f"http://127.0.0.1:{port}/dav/{service}.bin"
        put = curl("-T", str(upload_file), "-w", "%{http_code}", "-o", "/dev/null", url)
        assert put.returncode == 0 and put.stdout == b"201", put
        got = curl(url)
        assert got.returncode == 0, got.stderr
        assert hashlib.sha256(got.stdout).hexdigest() == hashlib.sha256(data).hexdigest()
