"""One live stack for the interoperability matrix: real backends, one server of ours.

Every backend kind is started once for the package (nginx, Apache httpd,
http.server, wsgiref, gunicorn, uvicorn with h11 and with httptools, the
bare-LF backend); our server runs, in one process, two reverse-proxy services
per backend (``NAME`` plain and ``NAME-buffered`` with ``buffer_uploads =
on``), a web server over a docroot the client tests fill, and a reverse proxy
in front of that web server.  Every service writes a JSON access log to one
file, so a test can see which client connection carried which request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.digest_backend import BareLFBackend, digest_reply, payload, serve_wsgiref
from tests.support.interop_servers import (
    Apache, AppServer, Nginx, apache_binary, nginx_binary, serve_http_server)
from tests.support.configs import PERSIST, pool, proxy_service, web_config
from tests.support.ports import free_ports

#: size of the file every backend serves for GET / HEAD / Range
DOWNLOAD_SIZE = 1_000_000


@dataclass(frozen=True)
class BackendSpec:
    """What one backend kind serves and how it answers."""

    name: str
    download: str  # a path answering DOWNLOAD_SIZE bytes of payload() (or ``body`` below)
    upload: str  # a path taking any request body
    digests_uploads: bool  # the reply to a body is digest_backend's JSON
    ranges: bool  # answers a single Range with 206
    body: bytes = payload(DOWNLOAD_SIZE)
    head_length: int = DOWNLOAD_SIZE  # Content-Length of the reply to HEAD
    #: the reply to a body has a Content-Length; without one (http.server's
    #: close-delimited POST) the proxy cannot keep the client connection, as
    #: Perl cannot.  None: the backend decides reply by reply (Apache's CGI
    #: answering an HTTP/1.0 request gets a Content-Length only when the script
    #: has finished before Apache sends its first bytes, a race)
    framed_uploads: bool | None = True


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("nginx", "/file.bin", "/upload", False, True),
    BackendSpec("apache", "/file.bin", "/cgi/digest", True, True, framed_uploads=None),
    BackendSpec("http.server", "/file.bin", "/digest", True, False, framed_uploads=False),
    BackendSpec("wsgiref", f"/bytes/{DOWNLOAD_SIZE}", "/digest", True, True),
    BackendSpec("gunicorn", f"/bytes/{DOWNLOAD_SIZE}", "/digest", True, True),
    BackendSpec("uvicorn-h11", f"/bytes/{DOWNLOAD_SIZE}", "/digest", True, True),
    BackendSpec("uvicorn-httptools", f"/bytes/{DOWNLOAD_SIZE}", "/digest", True, True),
    BackendSpec("bare-lf", "/bare", "/digest", True, False,
                body=digest_reply("GET", "/bare", b""),
                head_length=len(digest_reply("HEAD", "/bare", b""))),
)}


@dataclass
class Interop:
    """Ports of every service; ``proxies[name]`` / ``buffered[name]`` per backend."""

    web: int
    web_proxy: int
    docroot: Path
    access_log: Path
    server: PyPerlbal
    proxies: dict[str, int] = field(default_factory=dict)
    buffered: dict[str, int] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # backend -> why it is not here

    def port(self, backend: str, service: str) -> int:
        if backend in self.missing:
            pytest.skip(self.missing[backend])
        return (self.proxies if service == "plain" else self.buffered)[backend]

    def log_records(self, wanted: int, service: str, tag: str = "",
                    **match: Any) -> list[dict[str, Any]]:
        """Access log records of ``service`` whose URI ends with ``tag`` and whose
        fields equal ``match``, waiting (the log is flushed within a second)
        until there are at least ``wanted`` of them."""
        deadline = time.monotonic() + 5
        while True:
            text = self.access_log.read_text() if self.access_log.exists() else ""
            lines = text.split("\n")[:-1]  # a line still being written is left for later
            found = [r for r in map(json.loads, lines)
                     if r["service"] == service and r["uri"].endswith(tag)
                     and all(r.get(k) == v for k, v in match.items())]
            if len(found) >= wanted or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def _proxy(name: str, port: int, pool: str, log: Path, *extra: str) -> str:
    return proxy_service(name, port, pool, extra=[
        *PERSIST, f"SET access_log = {log}", "SET access_log_format = json", *extra])


@pytest.fixture(scope="package")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    docroot = tmp_path_factory.mktemp("docroot")
    spool = tmp_path_factory.mktemp("spool")
    log = tmp_path_factory.mktemp("logs") / "access.json"
    files_dir = tmp_path_factory.mktemp("files")
    (files_dir / "file.bin").write_bytes(payload(DOWNLOAD_SIZE))
    files = {"file.bin": payload(DOWNLOAD_SIZE)}
    with ExitStack() as stack:
        addresses: dict[str, int] = {}
        missing: dict[str, str] = {}
        if nginx_binary():
            addresses["nginx"] = stack.enter_context(Nginx(files)).port
        else:
            missing["nginx"] = "nginx is not installed (scripts/test.sh installs nginx-light)"
        if apache_binary():
            addresses["apache"] = stack.enter_context(Apache(files)).port
        else:
            missing["apache"] = "apache2 is not installed (scripts/test.sh installs it)"
        addresses["http.server"] = stack.enter_context(serve_http_server(files_dir))
        addresses["wsgiref"] = stack.enter_context(serve_wsgiref())
        for kind in ("gunicorn", "uvicorn-h11", "uvicorn-httptools"):
            addresses[kind] = stack.enter_context(AppServer(kind)).port
        addresses["bare-lf"] = stack.enter_context(BareLFBackend()).port

        names = sorted(addresses)
        ports = free_ports(2 + 2 * len(names))
        web, web_proxy = ports[0], ports[1]
        config = (web_config(web, docroot, extra=[
                      "SET persist_client = on", "SET enable_put = on", f"SET access_log = {log}",
                      "SET access_log_format = json"])
                  + pool("p_web", [web]) + _proxy("webproxy", web_proxy, "p_web", log))
        proxies: dict[str, int] = {}
        buffered_proxies: dict[str, int] = {}
        for i, name in enumerate(names):
            p = "p_" + name.replace(".", "_").replace("-", "_")
            plain, buffered = ports[2 + 2 * i], ports[3 + 2 * i]
            config += pool(p, [addresses[name]]) + _proxy(p[2:], plain, p, log)
            config += _proxy(f"{p[2:]}_buffered", buffered, p, log, "SET buffer_uploads = on",
                             f"SET buffer_uploads_path = {spool}")
            proxies[name], buffered_proxies[name] = plain, buffered
        with PyPerlbal(config) as server:
            yield Interop(web, web_proxy, docroot, log, server, proxies, buffered_proxies,
                          missing)
