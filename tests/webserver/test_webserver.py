"""web_server role over real sockets, and differentially against Perl Perlbal 1.80.

One Python server and one Perl server run the same config on copies of the
same docroot; each case sends identical bytes to both and compares what a
client relies on: status, Content-Type, Content-Length, Content-Range,
Last-Modified and body.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal, perl_perlbal_available
from tests.support.ports import free_ports
from tests.support.rawhttp import RawResponse, request, send_raw

COMPARED = ("Content-Type", "Content-Length", "Content-Range", "Last-Modified")


def _populate(root: Path) -> None:
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "page.html").write_bytes(b"<p>hi</p>\n")
    (root / "data.bin").write_bytes(bytes(range(256)) * 4)
    (root / "a.css").write_bytes(b"a{}\n")
    (root / "b.css").write_bytes(b"b{}\n")
    (root / "withindex").mkdir()
    (root / "withindex" / "index.html").write_bytes(b"<h1>index</h1>\n")
    (root / "listed").mkdir()
    (root / "listed" / "one.txt").write_bytes(b"1")
    (root / "listed" / "sub").mkdir()
    (root / "up").mkdir()
    for path in [root, *root.rglob("*")]:
        os.utime(path, (1_600_000_000, 1_600_000_000))


def _config(docroot: Path, ports: dict[str, int]) -> str:
    return f"""
CREATE SERVICE files
  SET role = web_server
  SET listen = 127.0.0.1:{ports['files']}
  SET docroot = {docroot}
  SET dirindexing = 0
  SET enable_concatenate_get = 1
ENABLE files
CREATE SERVICE listing
  SET role = web_server
  SET listen = 127.0.0.1:{ports['listing']}
  SET docroot = {docroot}
  SET dirindexing = 1
  SET enable_put = 1
  SET enable_delete = 1
  SET max_put_size = 1000
  SET persist_client = 1
ENABLE listing
"""


class Servers:
    def __init__(self, roots: dict[str, Path], ports: dict[str, dict[str, int]]) -> None:
        self.roots = roots
        self.ports = ports


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    base = tmp_path_factory.mktemp("web")
    roots = {"py": base / "py", "perl": base / "perl"}
    for root in roots.values():
        root.mkdir()
        _populate(root)
    numbers = free_ports(4)
    ports = {"py": {"files": numbers[0], "listing": numbers[1]},
             "perl": {"files": numbers[2], "listing": numbers[3]}}
    with PyPerlbal(_config(roots["py"], ports["py"])):
        if perl_perlbal_available():
            with PerlPerlbal(_config(roots["perl"], ports["perl"])):
                yield Servers(roots, ports)
        else:
            yield Servers(roots, ports)


def _both(servers: Servers, svc: str, method: str, path: str,
          headers: list[tuple[str, str]] | None = None,
          body: bytes = b"") -> tuple[RawResponse, RawResponse | None]:
    ours = request(servers.ports["py"][svc], method, path, headers, body)
    theirs = None
    if perl_perlbal_available():
        theirs = request(servers.ports["perl"][svc], method, path, headers, body)
    return ours, theirs


def _same(ours: RawResponse, theirs: RawResponse | None) -> None:
    if theirs is None:
        return
    assert (ours.status, ours.reason) == (theirs.status, theirs.reason)
    for name in COMPARED:
        assert ours.header(name) == theirs.header(name), name
    assert ours.body == theirs.body


LMOD = "Sun, 13 Sep 2020 12:26:40 GMT"

CASES: dict[str, tuple[str, str, str, list[tuple[str, str]], int]] = {
    "file": ("files", "GET", "/hello.txt", [], 200),
    "html_mime": ("files", "GET", "/page.html", [], 200),
    "unknown_ext_is_text_plain": ("files", "GET", "/data.bin", [], 200),
    "index_file": ("files", "GET", "/withindex/", [], 200),
    "index_file_no_slash": ("files", "GET", "/withindex", [], 200),
    "missing_404": ("files", "GET", "/nope.txt", [], 404),
    "listing_off": ("files", "GET", "/listed/", [], 200),
    "listing_on": ("listing", "GET", "/listed/", [], 200),
    "head": ("files", "HEAD", "/hello.txt", [], 200),
    "range": ("files", "GET", "/data.bin", [("Range", "bytes=10-19")], 206),
    "range_open_end": ("files", "GET", "/data.bin", [("Range", "bytes=1000-")], 206),
    "range_416": ("files", "GET", "/hello.txt", [("Range", "bytes=500-600")], 416),
    # RFC 9110 14.1.2: a last-byte-pos past the end is clamped, however long (#15 defect 9)
    "range_huge_last": ("files", "GET", "/data.bin",
                        [("Range", "bytes=0-99999999999999999999")], 206),
    "range_huge_first": ("files", "GET", "/data.bin",
                         [("Range", "bytes=99999999999999999999-")], 416),
    "ims_304": ("files", "GET", "/hello.txt", [("If-Modified-Since", LMOD)], 304),
    "ims_ie_length_mismatch": ("files", "GET", "/hello.txt",
                               [("If-Modified-Since", LMOD + "; length=3")], 200),
    "ims_other_date": ("files", "GET", "/hello.txt",
                       [("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")], 200),
    "concat": ("files", "GET", "/??a.css,b.css", [], 200),
    "concat_missing": ("files", "GET", "/??a.css,zz.css", [], 404),
    "concat_off": ("listing", "GET", "/??a.css,b.css", [], 403),
    "dotdot": ("files", "GET", "/withindex/../../etc/passwd", [], 403),
    "encoded_dotdot": ("files", "GET", "/%2e%2e/%2e%2e/etc/passwd", [], 403),
    "post_400": ("files", "POST", "/hello.txt", [], 400),
    "put_disabled": ("files", "PUT", "/new.txt", [], 403),
    "delete_disabled": ("files", "DELETE", "/hello.txt", [], 403),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_case(servers: Servers, name: str) -> None:
    svc, method, path, headers, status = CASES[name]
    ours, theirs = _both(servers, svc, method, path, headers)
    assert ours.status == status
    _same(ours, theirs)


def test_file_headers_exact(servers: Servers) -> None:
    resp = request(servers.ports["py"]["files"], "GET", "/hello.txt")
    assert resp.header("Last-Modified") == LMOD
    assert resp.header("Content-Type") == "text/plain"
    assert resp.header("Content-Length") == "13"
    assert resp.header("Accept-Ranges") == "bytes"
    assert resp.body == b"hello, world\n"


def test_put_then_get_then_delete(servers: Servers) -> None:
    body = b"uploaded bytes\n"
    for side in ("py", "perl") if perl_perlbal_available() else ("py",):
        port = servers.ports[side]["listing"]
        put = request(port, "PUT", "/up/new.txt", [], body)
        assert put.status == 200, side
        assert (servers.roots[side] / "up" / "new.txt").read_bytes() == body
        assert request(port, "GET", "/up/new.txt").body == body
        assert request(port, "DELETE", "/up/new.txt").status == 204
        assert request(port, "DELETE", "/up/new.txt").status == 404
    # Perl 1.80 drops the connection without a reply here; we answer 400 first
    ours = request(servers.ports["py"]["listing"], "PUT", "/up/big.txt", [], b"x" * 1001)
    assert ours.status == 400 and b"Content-length of 1001 is invalid." in ours.body
    assert not (servers.roots["py"] / "up" / "big.txt").exists()


def test_put_md5(servers: Servers) -> None:
    body = b"checked\n"
    good = base64.b64encode(hashlib.md5(body).digest()).decode()
    port = servers.ports["py"]["listing"]
    resp = request(port, "PUT", "/up/md5.txt", [("Content-MD5", good)], body)
    assert resp.status == 201
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    resp = request(port, "PUT", "/up/md5bad.txt", [("Content-MD5", bad)], body)
    assert resp.status == 400 and b"Content-MD5 mismatch" in resp.body
    assert [n for n in os.listdir(servers.roots["py"] / "up") if "md5" in n] == ["md5.txt"]


def test_put_chunked_and_aborted_upload_leaves_nothing(servers: Servers) -> None:
    port = servers.ports["py"]["listing"]
    raw = (b"PUT /up/chunked.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert send_raw(port, raw).startswith(b"HTTP/1.0 200")
    assert (servers.roots["py"] / "up" / "chunked.txt").read_bytes() == b"hello world"
    partial = b"PUT /up/partial.txt HTTP/1.0\r\nContent-Length: 500\r\n\r\nonly a little"
    send_raw(port, partial)
    leftovers = [n for n in os.listdir(servers.roots["py"] / "up") if "partial" in n]
    assert leftovers == []


def test_symlink_out_of_docroot_refused(servers: Servers, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    link = servers.roots["py"] / "escape.txt"
    link.symlink_to(secret)
    try:
        resp = request(servers.ports["py"]["files"], "GET", "/escape.txt")
        assert resp.status == 403 and b"secret" not in resp.body
    finally:
        link.unlink()


@pytest.mark.parametrize("path", ["/a%00b", "/a\\..\\b", "relative", "/%2e%2e%2fetc/passwd"])
def test_hostile_paths(servers: Servers, path: str) -> None:
    resp = request(servers.ports["py"]["files"], "GET", path)
    assert resp.status in (400, 403, 404)
    assert b"Traceback" not in resp.raw


def test_listing_escapes_names(servers: Servers) -> None:
    odd = servers.roots["py"] / "listed" / "<b>&'.txt"
    odd.write_text("x")
    try:
        resp = request(servers.ports["py"]["listing"], "GET", "/listed/")
        assert b"&lt;b&gt;&amp;&#x27;.txt" in resp.body
        assert b"<b>&'" not in resp.body
    finally:
        odd.unlink()


def test_keep_alive_serves_several_files(servers: Servers) -> None:
    shutil.copy(servers.roots["py"] / "hello.txt", servers.roots["py"] / "copy.txt")
    from tests.support.rawhttp import HTTPConnection

    with HTTPConnection(servers.ports["py"]["listing"]) as conn:
        first = conn.request("GET", "/hello.txt", [("Connection", "keep-alive")])
        second = conn.request("GET", "/copy.txt", [("Connection", "keep-alive")])
    assert first.body == second.body == b"hello, world\n"
