"""Real HTTP servers for the interoperability matrix (tests/interop), each on loopback.

Every server is started by the test on an ephemeral 127.0.0.1 port with its
own configuration in a temporary directory, and stopped (with every child it
forked) when the ``with`` block ends:

- ``Nginx``: Debian's nginx-light, static files, WebDAV PUT under ``/dav/``,
  and ``/upload`` answering 200 to any body (nginx reads and discards it);
- ``Apache``: Debian's apache2 (event MPM), static files and a CGI script at
  ``/cgi/digest`` answering the digest of the body;
- ``AppServer``: gunicorn (sync worker) or uvicorn (``--http h11`` or
  ``httptools``) running the digest application of ``digest_backend``;
- ``serve_http_server``: Python's ``http.server`` (HTTP/1.0): files for
  GET/HEAD, and POST/PUT answered with the digest, close-delimited (no
  Content-Length).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support.digest_backend import digest_json
from tests.support.ports import LOOPBACK, free_port, port_accepts

ROOT = Path(__file__).resolve().parents[2]
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def apache_binary() -> str | None:
    return shutil.which("apache2") or (
        "/usr/sbin/apache2" if Path("/usr/sbin/apache2").exists() else None)


class _Process:
    """A server in its own process group; stop() ends the whole group."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=f"interop-{self.name}-"))
        self.dir.chmod(0o755)  # apache's children run as www-data
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def __enter__(self) -> "_Process":
        log = open(self.dir / "server.log", "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=self.env(),
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log()}")
            time.sleep(0.05)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        proc = self.proc
        if proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    continue
                # the group may outlive its leader (apache's cgid, gunicorn's worker)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _group_alive(proc.pid):
                    time.sleep(0.05)
                if not _group_alive(proc.pid):
                    break
        shutil.rmtree(self.dir, ignore_errors=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class Nginx(_Process):
    name = "nginx"

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        www = self.dir / "www"
        (www / "dav").mkdir(parents=True)
        for name, data in files.items():
            (www / name).write_bytes(data)
        temp = "\n".join(f"    {kind}_temp_path {self.dir}/{kind};"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (self.dir / "nginx.conf").write_text(textwrap.dedent(f"""\
            user root;
            daemon off;
            worker_processes 1;
            pid {self.dir}/nginx.pid;
            error_log {self.dir}/error.log warn;
            events {{ worker_connections 512; }}
            http {{
            access_log off;
            {temp}
            server {{
                listen {LOOPBACK}:{self.port};
                root {www};
                client_max_body_size 100m;
                keepalive_requests 10000;
                location /upload {{ return 200 "ok\\n"; }}
                location /dav/ {{ dav_methods PUT DELETE; create_full_put_path on; }}
            }}
            }}
            """))

    def command(self) -> list[str]:
        binary = nginx_binary()
        assert binary is not None
        return [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                "-e", str(self.dir / "error.log")]


_CGI_DIGEST = """\
#!/usr/bin/python3
import hashlib, json, os, sys
length = int(os.environ.get("CONTENT_LENGTH") or 0)
body = sys.stdin.buffer.read(length) if length else b""
reply = json.dumps({"method": os.environ["REQUEST_METHOD"], "path": os.environ["SCRIPT_NAME"],
                    "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
sys.stdout.buffer.write(b"Content-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(reply)
                        + reply)
"""


class Apache(_Process):
    name = "apache"

    def __init__(self, files: dict[str, bytes]) -> None:
        super().__init__()
        www, cgi = self.dir / "www", self.dir / "cgi"
        www.mkdir(mode=0o755)
        cgi.mkdir(mode=0o755)
        for name, data in files.items():
            (www / name).write_bytes(data)
            (www / name).chmod(0o644)
        script = cgi / "digest"
        script.write_text(_CGI_DIGEST)
        script.chmod(0o755)
        modules = "\n".join(
            f"LoadModule {name}_module {APACHE_MODULES}/mod_{name}.so"
            for name in ("mpm_event", "authz_core", "mime", "alias", "cgid"))
        (self.dir / "apache2.conf").write_text(textwrap.dedent(f"""\
            ServerRoot {self.dir}
            ServerName localhost
            {modules}
            Listen {LOOPBACK}:{self.port}
            User www-data
            Group www-data
            PidFile {self.dir}/apache2.pid
            DefaultRuntimeDir {self.dir}
            ScriptSock {self.dir}/cgid.sock
            Mutex file:{self.dir}
            ErrorLog {self.dir}/error.log
            LogLevel warn
            KeepAlive On
            MaxKeepAliveRequests 1000
            KeepAliveTimeout 15
            StartServers 1
            ServerLimit 2
            ThreadsPerChild 25
            MaxRequestWorkers 50
            TypesConfig /etc/mime.types
            DocumentRoot {www}
            <Directory {self.dir}>
                Require all granted
            </Directory>
            ScriptAlias /cgi/ {cgi}/
            """))

    def command(self) -> list[str]:
        binary = apache_binary()
        assert binary is not None
        return [binary, "-f", str(self.dir / "apache2.conf"), "-DFOREGROUND"]

    def env(self) -> dict[str, str]:
        # apache2's own start-up reads these from /etc/apache2/envvars when run by apache2ctl
        return dict(os.environ, APACHE_RUN_DIR=str(self.dir), APACHE_LOCK_DIR=str(self.dir),
                    APACHE_LOG_DIR=str(self.dir))


class AppServer(_Process):
    """``AppServer("gunicorn")``, ``AppServer("uvicorn-h11")`` or
    ``AppServer("uvicorn-httptools")`` serving the digest application."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = kind
        super().__init__()

    def command(self) -> list[str]:
        address = f"{LOOPBACK}:{self.port}"
        if self.kind == "gunicorn":
            return [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync",
                    "--bind", address, "--log-level", "warning",
                    "tests.support.digest_backend:digest_app"]
        http = self.kind.split("-", 1)[1]
        return [sys.executable, "-m", "uvicorn", "--http", http, "--host", LOOPBACK,
                "--port", str(self.port), "--log-level", "warning", "--no-access-log",
                "--lifespan", "off", "tests.support.asgi_digest:app"]

    def env(self) -> dict[str, str]:
        return dict(os.environ, PYTHONPATH=str(ROOT))


class _DigestFilesHandler(SimpleHTTPRequestHandler):
    """http.server as shipped (HTTP/1.0: one request per connection) for GET and
    HEAD of files; POST and PUT answer the digest of the body with no
    Content-Length, so the reply ends when the connection closes."""

    def _digest(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = digest_json(self.command, self.path, len(body), hashlib.sha256(body).hexdigest())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)

    do_POST = _digest
    do_PUT = _digest

    def log_message(self, format: str, *args: Any) -> None:
        pass


class serve_http_server:
    """``with serve_http_server(directory) as port:`` http.server in a thread."""

    def __init__(self, directory: Path) -> None:
        handler = partial(_DigestFilesHandler, directory=str(directory))
        self.server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return self.port

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()
