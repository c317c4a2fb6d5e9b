"""Real clients against our server, each with its own defaults: curl, wget,
urllib.request, http.client, requests, git (dumb HTTP), pip, headless Chromium.

``target`` is ``web`` (our web_server role over a docroot) or ``proxy`` (our
reverse_proxy in front of that web server); uploads that need a hash go to
the proxy in front of the wsgiref digest backend.  Which client connection
carried which request is read from the server's JSON access log.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.interop.conftest import Interop
from tests.support.digest_backend import payload

BIG = payload(3_000_000)
TARGETS = ["web", "proxy"]
#: a name no real index has: pip can only find it on ours
PROBE = "perlbal-interop-probe"
PAGE = """<!DOCTYPE html>
<html><head><title>interop</title></head>
<body><p id="static">served</p><img id="pixel" src="pixel.gif" alt="">
<div id="out">pending</div>
<script>
fetch("data.txt").then(r => r.text()).then(t => {
  document.getElementById("out").textContent = "fetched:" + t.trim();
});
</script></body></html>
"""
# a 1x1 transparent GIF
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c"
                      "00000000010001000002024401003b")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def clean_env(home: Path) -> dict[str, str]:
    """The environment for a client: no proxy variables, no pip or git
    configuration from this machine, a HOME of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and not k.startswith(("PIP_", "GIT_"))}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, GIT_CONFIG_NOSYSTEM="1",
               GIT_TERMINAL_PROMPT="0")
    return env


def run(args: list[str], home: Path, timeout: float = 60,
        cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, capture_output=True, timeout=timeout, env=clean_env(home),
                          cwd=cwd)


def _git(home: Path, cwd: Path, *args: str) -> str:
    env = dict(clean_env(home), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return out.stdout.decode().strip()


def _wheel(directory: Path) -> Path:
    """A minimal, valid wheel of PROBE 1.0 (PEP 427), built by hand."""
    dist = PROBE.replace("-", "_")
    path = directory / f"{dist}-1.0-py3-none-any.whl"
    files = {
        f"{dist}/__init__.py": b"VALUE = 42\n",
        f"{dist}-1.0.dist-info/METADATA":
            f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.0\n".encode(),
        f"{dist}-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},sha256={_urlsafe_sha(data)},{len(data)}\n"
                     for name, data in files.items())
    record += f"{dist}-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{dist}-1.0.dist-info/RECORD", record)
    return path


def _urlsafe_sha(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


class Site:
    def __init__(self, interop: Interop, home: Path) -> None:
        self.interop = interop
        self.home = home
        self.commit = ""
        self.wheel = b""

    def port(self, target: str) -> int:
        return self.interop.web if target == "web" else self.interop.web_proxy

    def url(self, target: str, path: str) -> str:
        return f"http://127.0.0.1:{self.port(target)}{path}"

    @property
    def digest_url(self) -> str:
        return f"http://127.0.0.1:{self.interop.proxies['wsgiref']}/digest"

    def service(self, target: str) -> str:
        return "web" if target == "web" else "webproxy"


@pytest.fixture(scope="module")
def site(interop: Interop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = interop.docroot
    home = tmp_path_factory.mktemp("home")
    result = Site(interop, home)
    (root / "big.bin").write_bytes(BIG)
    for name in ("one.txt", "two.txt"):
        (root / name).write_text(f"{name}\n")
    (root / "put").mkdir()
    (root / "page.html").write_text(PAGE)
    (root / "data.txt").write_text("hello-from-data\n")
    (root / "pixel.gif").write_bytes(PIXEL)
    # a bare repository for git's dumb HTTP protocol
    work = tmp_path_factory.mktemp("gitwork")
    _git(home, work, "init", "-q", "-b", "main")
    (work / "README").write_text("cloned through perlbal\n")
    (work / "big.bin").write_bytes(payload(200_000))
    _git(home, work, "add", "README", "big.bin")
    _git(home, work, "commit", "-q", "-m", "first")
    result.commit = _git(home, work, "rev-parse", "HEAD")
    _git(home, work, "clone", "-q", "--bare", str(work), str(root / "repo.git"))
    _git(home, root / "repo.git", "update-server-info")
    # a PEP 503 simple index of one wheel
    (root / "packages").mkdir()
    wheel = _wheel(root / "packages")
    result.wheel = wheel.read_bytes()
    (root / "simple" / PROBE).mkdir(parents=True)
    (root / "simple" / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="{PROBE}/">{PROBE}</a></body></html>\n')
    (root / "simple" / PROBE / "index.html").write_text(
        f'<!DOCTYPE html><html><body><a href="../../packages/{wheel.name}'
        f'#sha256={sha(result.wheel)}">{wheel.name}</a></body></html>\n')
    yield result


# --- curl -------------------------------------------------------------------------


def curl(site: Site, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run(["curl", "-sS", "--max-time", "60", *args], site.home)


@pytest.mark.parametrize("size", [5 * 1024 * 1024, 50 * 1024])
@pytest.mark.parametrize("target", TARGETS)
def test_curl_upload(site: Site, tmp_path: Path, target: str, size: int) -> None:
    """POST through the proxy (the backend hashes it), PUT into the web server
    (the file on disk is hashed)."""
    data = payload(size)[::-1]
    upload = tmp_path / "up.bin"
    upload.write_bytes(data)
    if target == "proxy":
        got = curl(site, "-v", "--data-binary", f"@{upload}", site.digest_url)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["sha256"] == sha(data)
    else:
        name = f"put/curl-{size}.bin"
        got = curl(site, "-v", "-T", str(upload), "-o", "/dev/null", "-w", "%{http_code}",
                   site.url("web", f"/{name}"))
        assert got.returncode == 0 and got.stdout in (b"200", b"201", b"204"), got
        assert sha((site.interop.docroot / name).read_bytes()) == sha(data)
    # curl asks before a POST past 1 MB, and before any PUT
    expects = size > 1024 * 1024 or target == "web"
    assert (b"> Expect: 100-continue" in got.stderr) == expects
    if expects:
        assert b"< HTTP/1.1 100 Continue" in got.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_curl_chunked_upload(site: Site, tmp_path: Path, target: str) -> None:
    data = payload(300_000)[::-1]
    upload = tmp_path / "up.bin"
    upload.write_bytes(data)
    chunked = ["-H", "Transfer-Encoding: chunked"]
    if target == "proxy":
        got = curl(site, "--data-binary", f"@{upload}", *chunked, site.digest_url)
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["sha256"] == sha(data)
    else:
        got = curl(site, "-T", str(upload), *chunked, "-o", "/dev/null", "-w", "%{http_code}",
                   site.url("web", "/put/chunked.bin"))
        assert got.returncode == 0 and got.stdout in (b"200", b"201", b"204"), got
        assert sha((site.interop.docroot / "put/chunked.bin").read_bytes()) == sha(data)


@pytest.mark.parametrize("target", TARGETS)
def test_curl_http10(site: Site, target: str) -> None:
    got = curl(site, "--http1.0", "-D", "-", site.url(target, "/big.bin"))
    assert got.returncode == 0, got.stderr
    head, _, body = got.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert sha(body) == sha(BIG)
    posted = curl(site, "--http1.0", "--data-binary", "hello", site.digest_url)
    assert json.loads(posted.stdout)["sha256"] == sha(b"hello")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("spec,first,last", [("0-99", 0, 99), ("-100", len(BIG) - 100, len(BIG) - 1),
                                             ("2999000-", 2999000, len(BIG) - 1)])
def test_curl_range(site: Site, target: str, spec: str, first: int, last: int) -> None:
    got = curl(site, "-r", spec, "-D", "-", site.url(target, "/big.bin"))
    assert got.returncode == 0, got.stderr
    head, _, body = got.stdout.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"206", head
    assert f"content-range: bytes {first}-{last}/{len(BIG)}".encode() in head.lower()
    assert body == BIG[first:last + 1]


@pytest.mark.parametrize("target", TARGETS)
def test_curl_two_urls_one_connection(site: Site, target: str) -> None:
    tag = f"curl-reuse-{target}"
    got = curl(site, "-v", site.url(target, f"/one.txt?{tag}"),
               site.url(target, f"/two.txt?{tag}"))
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"one.txt\ntwo.txt\n"
    records = site.interop.log_records(2, site.service(target), tag)
    assert [r["uri"].split("?")[0] for r in records] == ["/one.txt", "/two.txt"]
    assert records[0]["remote_port"] == records[1]["remote_port"]  # one client connection


# --- wget ---------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_wget_download_and_continue(site: Site, tmp_path: Path, target: str) -> None:
    got = run(["wget", "-q", "-O", str(tmp_path / "whole.bin"), site.url(target, "/big.bin")],
              site.home, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert sha((tmp_path / "whole.bin").read_bytes()) == sha(BIG)
    # wget -c asks for the rest with a Range and appends it
    (tmp_path / "big.bin").write_bytes(BIG[:1_234_567])
    got = run(["wget", "-q", "-c", site.url(target, "/big.bin")], site.home, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert sha((tmp_path / "big.bin").read_bytes()) == sha(BIG)
    records = site.interop.log_records(1, site.service(target), status=206)
    assert any(r["uri"] == "/big.bin" for r in records)


def test_wget_post_file(site: Site, tmp_path: Path) -> None:
    data = payload(2_000_000)[::-1]
    (tmp_path / "up.bin").write_bytes(data)
    got = run(["wget", "-q", "-O", "-", f"--post-file={tmp_path / 'up.bin'}", site.digest_url],
              site.home)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["sha256"] == sha(data)


# --- Python's urllib.request and http.client ------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_urllib_request(site: Site, target: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(site.url(target, "/big.bin"), timeout=30) as reply:
        assert reply.status == 200
        assert sha(reply.read()) == sha(BIG)
    request = urllib.request.Request(site.url(target, "/big.bin"),
                                     headers={"Range": "bytes=10-19"})
    with opener.open(request, timeout=30) as reply:
        assert reply.status == 206 and reply.read() == BIG[10:20]
    data = payload(500_000)
    with opener.open(urllib.request.Request(site.digest_url, data=data), timeout=30) as reply:
        assert json.loads(reply.read())["sha256"] == sha(data)


@pytest.mark.parametrize("target", TARGETS)
def test_http_client_keep_alive(site: Site, target: str) -> None:
    """GET, HEAD, GET on one http.client connection; the log shows one
    client port for all three."""
    tag = f"httpclient-{target}"
    conn = http.client.HTTPConnection("127.0.0.1", site.port(target), timeout=30)
    try:
        conn.request("GET", f"/big.bin?{tag}")
        reply = conn.getresponse()
        assert reply.status == 200 and sha(reply.read()) == sha(BIG)
        sock = conn.sock
        conn.request("HEAD", f"/big.bin?{tag}")
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b""
        assert reply.getheader("Content-Length") == str(len(BIG))
        conn.request("GET", f"/one.txt?{tag}")
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b"one.txt\n"
        assert conn.sock is sock is not None  # never reconnected
    finally:
        conn.close()
    records = site.interop.log_records(3, site.service(target), tag)
    assert [r["method"] for r in records] == ["GET", "HEAD", "GET"]
    assert len({r["remote_port"] for r in records}) == 1


# --- requests -------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_requests_session(site: Site, target: str) -> None:
    tag = f"requests-{target}"
    with requests.Session() as session:
        session.trust_env = False  # no proxy variables
        with session.get(site.url(target, f"/big.bin?{tag}"), stream=True, timeout=30) as reply:
            assert reply.status_code == 200
            digest = hashlib.sha256()
            for piece in reply.iter_content(65536):
                digest.update(piece)
            assert digest.hexdigest() == sha(BIG)
        reply = session.get(site.url(target, f"/two.txt?{tag}"), timeout=30)
        assert reply.text == "two.txt\n"
        # a generator body goes out chunked
        pieces = [payload(100_000), payload(7), payload(250_000)[::-1]]
        reply = session.post(site.digest_url, data=iter(pieces), timeout=30)
        assert reply.json()["sha256"] == sha(b"".join(pieces))
    records = site.interop.log_records(2, site.service(target), tag)
    assert len(records) == 2 and records[0]["remote_port"] == records[1]["remote_port"]


# --- git over dumb HTTP, pip from a simple index ----------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_git_clone_dumb_http(site: Site, tmp_path: Path, target: str) -> None:
    got = run(["git", "clone", "-q", site.url(target, "/repo.git"), str(tmp_path / "clone")],
              site.home)
    assert got.returncode == 0, got.stderr
    assert _git(site.home, tmp_path / "clone", "rev-parse", "HEAD") == site.commit
    assert (tmp_path / "clone" / "README").read_text() == "cloned through perlbal\n"
    assert sha((tmp_path / "clone" / "big.bin").read_bytes()) == sha(payload(200_000))
    _git(site.home, tmp_path / "clone", "fsck", "--strict")


@pytest.mark.parametrize("target", TARGETS)
def test_pip_download(site: Site, tmp_path: Path, target: str) -> None:
    got = run([sys.executable, "-m", "pip", "download", "--isolated", "--no-cache-dir",
               "--disable-pip-version-check", "--no-deps", "-d", str(tmp_path),
               "--index-url", site.url(target, "/simple/"), PROBE], site.home, timeout=90)
    assert got.returncode == 0, got.stdout + got.stderr
    wheels = list(tmp_path.glob("*.whl"))
    assert [w.name for w in wheels] == [f"{PROBE.replace('-', '_')}-1.0-py3-none-any.whl"]
    assert sha(wheels[0].read_bytes()) == sha(site.wheel)


# --- a browser --------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_chromium_renders_page(site: Site, tmp_path: Path, target: str) -> None:
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.skip("/usr/bin/chromium is not installed")
    tag = f"chromium-{target}"
    got = run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
               "--dump-dom", site.url(target, f"/page.html?{tag}")], site.home, timeout=60)
    assert got.returncode == 0, got.stderr[-2000:]
    assert b'<p id="static">served</p>' in got.stdout
    assert b'<div id="out">fetched:hello-from-data</div>' in got.stdout, got.stdout
    assert site.interop.log_records(1, site.service(target), f"/page.html?{tag}")
    assert site.interop.log_records(1, site.service(target), "/data.txt")
    assert site.interop.log_records(1, site.service(target), "/pixel.gif")
