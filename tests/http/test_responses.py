"""Tests for perlbal.http.responses against bytes recorded from Perl Perlbal 1.80.

Every ``RECORDED_*`` constant below was captured from a live /usr/bin/perlbal
(1.80, role web_server / reverse_proxy, listening on 127.0.0.1) with raw
socket requests; dates are replaced by the values passed in.
"""

from __future__ import annotations

import pytest

from perlbal.http.responses import (
    HTTP_CODE_ENGLISH,
    SERVER_TOKEN,
    file_response_head,
    keep_alive_headers,
    reason_phrase,
    render_head,
    simple_response,
    status_line,
)

# Recorded from Perl Perlbal 1.80: GET /nope HTTP/1.0 (persist_client on, server_tokens default)
RECORDED_404_CLOSE = (
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 25\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>404 - Not Found</h1>\n"
)
# Recorded from Perl Perlbal 1.80: same with "Connection: keep-alive" (and for HTTP/1.1 + Host)
RECORDED_404_KEEPALIVE = (
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 25\r\n"
    b"Server: Perlbal\r\nConnection: keep-alive\r\nKeep-Alive: timeout=30, max=100\r\n\r\n"
    b"<h1>404 - Not Found</h1>\n"
)
# Recorded from Perl Perlbal 1.80: server_tokens = off, persist_client = off, client asked keep-alive
RECORDED_404_NO_TOKENS = (
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 25\r\n"
    b"Connection: close\r\n\r\n<h1>404 - Not Found</h1>\n"
)
# Recorded from Perl Perlbal 1.80: HEAD /nope HTTP/1.0 -- length announced, no body
RECORDED_404_HEAD = (
    b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 25\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n"
)
# Recorded from Perl Perlbal 1.80: GET /../x HTTP/1.0
RECORDED_403_BOGUS_URL = (
    b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 34\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>403 - Forbidden</h1>\nBogus URL"
)
# Recorded from Perl Perlbal 1.80: PUT with enable_put off
RECORDED_403 = (
    b"HTTP/1.0 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 25\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>403 - Forbidden</h1>\n"
)
# Recorded from Perl Perlbal 1.80: POST to a web_server (and lowercase "get")
RECORDED_400 = (
    b"HTTP/1.0 400 Bad request\r\nContent-Type: text/html\r\nContent-Length: 27\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>400 - Bad request</h1>\n"
)
# Recorded from Perl Perlbal 1.80: reverse_proxy, POST with Content-Length: -5
RECORDED_400_NEGATIVE_LENGTH = (
    b"HTTP/1.0 400 Bad request\r\nContent-Type: text/html\r\nContent-Length: 62\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n"
    b"<h1>400 - Bad request</h1>\nInvalid request: Content-Length < 0"
)
# Recorded from Perl Perlbal 1.80: GET / on a docroot without index files
RECORDED_200_DIR_LISTING_DISABLED = (
    b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 44\r\n"
    b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>200 - OK</h1>\nDirectory listing disabled"
)

DATE = "Fri, 27 Nov 2026 00:03:59 GMT"
LASTMOD = "Fri, 27 Nov 2026 00:03:48 GMT"

# Recorded from Perl Perlbal 1.80: 23-byte file.txt, "Range: bytes=0-4", no keep-alive
RECORDED_206 = (
    b"HTTP/1.0 206 Partial Content\r\nDate: " + DATE.encode() + b"\r\nServer: Perlbal\r\n"
    b"Last-Modified: " + LASTMOD.encode() + b"\r\nAccept-Ranges: bytes\r\n"
    b"Content-Type: text/plain\r\nContent-Range: bytes 0-4/23\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\n"
)
# Recorded from Perl Perlbal 1.80: "Range: bytes=50-" with Connection: keep-alive
RECORDED_416_KEEPALIVE = (
    b"HTTP/1.0 416 Request range not satisfiable\r\nContent-Range: bytes */23\r\n"
    b"Content-Length: 0\r\nDate: " + DATE.encode() + b"\r\nServer: Perlbal\r\n"
    b"Last-Modified: " + LASTMOD.encode() + b"\r\nAccept-Ranges: bytes\r\n"
    b"Connection: keep-alive\r\nKeep-Alive: timeout=30, max=100\r\n\r\n"
)
# Recorded from Perl Perlbal 1.80: empty file, "Range: bytes=0-"
RECORDED_416_EMPTY = (
    b"HTTP/1.0 416 Request range not satisfiable\r\nContent-Range: *\r\nContent-Length: 0\r\n"
    b"Date: " + DATE.encode() + b"\r\nServer: Perlbal\r\nLast-Modified: " + LASTMOD.encode()
    + b"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
)
# Recorded from Perl Perlbal 1.80: plain GET of a directory's index.html (10 bytes)
RECORDED_200_FILE = (
    b"HTTP/1.0 200 OK\r\nDate: " + DATE.encode() + b"\r\nServer: Perlbal\r\n"
    b"Last-Modified: " + LASTMOD.encode() + b"\r\nAccept-Ranges: bytes\r\n"
    b"Content-Type: text/html\r\nContent-Length: 10\r\nConnection: close\r\n\r\n"
)
# Recorded from Perl Perlbal 1.80: If-Modified-Since matching, Connection: keep-alive
RECORDED_304_KEEPALIVE = (
    b"HTTP/1.0 304 Not Modified\r\nDate: " + DATE.encode() + b"\r\nServer: Perlbal\r\n"
    b"Last-Modified: " + LASTMOD.encode() + b"\r\nAccept-Ranges: bytes\r\n"
    b"Connection: keep-alive\r\nKeep-Alive: timeout=30, max=100\r\n\r\n"
)


class TestSimpleResponse:
    def test_404(self) -> None:
        assert simple_response(404) == RECORDED_404_CLOSE

    def test_404_keep_alive(self) -> None:
        assert simple_response(404, keep_alive=True) == RECORDED_404_KEEPALIVE

    def test_404_without_server_tokens(self) -> None:
        assert simple_response(404, server_tokens=False) == RECORDED_404_NO_TOKENS

    def test_head_request_has_no_body(self) -> None:
        assert simple_response(404, head_request=True) == RECORDED_404_HEAD

    def test_messages(self) -> None:
        assert simple_response(403, "Bogus URL") == RECORDED_403_BOGUS_URL
        assert simple_response(403) == RECORDED_403
        assert simple_response(400) == RECORDED_400
        assert simple_response(400, "Invalid request: Content-Length < 0") == RECORDED_400_NEGATIVE_LENGTH
        assert simple_response(200, "Directory listing disabled") == RECORDED_200_DIR_LISTING_DISABLED

    def test_unknown_code_has_empty_phrase(self) -> None:
        # $HTTPCode has no 405: the status line keeps its trailing space, the h1 has no " - ".
        assert simple_response(405) == (
            b"HTTP/1.0 405 \r\nContent-Type: text/html\r\nContent-Length: 13\r\n"
            b"Server: Perlbal\r\nConnection: close\r\n\r\n<h1>405</h1>\n"
        )

    @pytest.mark.parametrize("status", [204, 304])
    def test_no_body_codes(self, status: int) -> None:
        out = simple_response(status, "ignored")
        assert b"Content-Length" not in out and b"Content-Type" not in out
        assert out.endswith(b"Server: Perlbal\r\nConnection: close\r\n\r\n")

    def test_keep_alive_without_timeout(self) -> None:
        assert keep_alive_headers(True, 0) == [("Connection", "keep-alive")]
        assert keep_alive_headers(False, 30) == [("Connection", "close")]


class TestStatusLines:
    def test_table(self) -> None:
        assert reason_phrase(301) == "Permanent Redirect"
        assert reason_phrase(416) == "Request range not satisfiable"
        assert reason_phrase(502) == ""
        assert len(HTTP_CODE_ENGLISH) == 13
        assert SERVER_TOKEN == "Perlbal"

    def test_backend_phrase_kept(self) -> None:
        # Recorded from Perl Perlbal 1.80: a backend's "HTTP/1.1 200 Fine Thanks" reached
        # the client as "HTTP/1.0 200 Fine Thanks".
        assert status_line(200, "Fine Thanks") == b"HTTP/1.0 200 Fine Thanks\r\n"
        assert status_line(200, "") == b"HTTP/1.0 200 OK\r\n"

    def test_render_head(self) -> None:
        assert render_head(204, [("A", "b")]) == b"HTTP/1.0 204 No Content\r\nA: b\r\n\r\n"


class TestFileResponseHead:
    def common(self) -> dict[str, object]:
        return {"date": DATE, "last_modified": LASTMOD}

    def test_206(self) -> None:
        out = file_response_head(
            206, date=DATE, last_modified=LASTMOD, content_type="text/plain", size=23,
            range_start=0, range_end=4,
        )
        assert out == RECORDED_206

    def test_416(self) -> None:
        out = file_response_head(
            416, date=DATE, last_modified=LASTMOD, content_type="text/plain", size=23, keep_alive=True
        )
        assert out == RECORDED_416_KEEPALIVE
        out = file_response_head(416, date=DATE, last_modified=LASTMOD, content_type="text/plain", size=0)
        assert out == RECORDED_416_EMPTY

    def test_200_and_304(self) -> None:
        out = file_response_head(200, date=DATE, last_modified=LASTMOD, content_type="text/html", size=10)
        assert out == RECORDED_200_FILE
        out = file_response_head(
            304, date=DATE, last_modified=LASTMOD, content_type="text/html", size=10, keep_alive=True
        )
        assert out == RECORDED_304_KEEPALIVE

    def test_206_needs_range(self) -> None:
        with pytest.raises(ValueError):
            file_response_head(206, date=DATE, last_modified=LASTMOD, content_type="x", size=1)
