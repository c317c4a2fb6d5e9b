"""A tiny application for examples/reproxy.conf.

    python3 examples/reproxy_backend.py PORT HTDOCS STATIC_PORT

GET /file/NAME answers with ``X-REPROXY-FILE: <HTDOCS>/NAME`` (perlbal sends
the file), GET /url/NAME with ``X-REPROXY-URL: http://127.0.0.1:STATIC_PORT/NAME``
(perlbal fetches it); anything else is answered directly.  Standard library only.
"""

from __future__ import annotations

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(htdocs: str, static_port: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            name = self.path.split("/", 2)[-1]
            if ".." in name.split("/"):
                self.send_error(403)
                return
            self.send_response(200)
            if self.path.startswith("/file/"):
                self.send_header("X-REPROXY-FILE", os.path.join(htdocs, name))
            elif self.path.startswith("/url/"):
                self.send_header("X-REPROXY-URL", f"http://127.0.0.1:{static_port}/{name}")
            else:
                body = b"answered by the application itself\n"
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    port, htdocs, static_port = int(sys.argv[1]), os.path.abspath(sys.argv[2]), int(sys.argv[3])
    ThreadingHTTPServer(("127.0.0.1", port), make_handler(htdocs, static_port)).serve_forever()


if __name__ == "__main__":
    main()
