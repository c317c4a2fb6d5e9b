"""Runtime hardening (#19 items 5-8, 13, 14; #15 defect 1), each attack sent
through the real server on a loopback socket.

- PUT through a symlink leading out of docroot creates nothing outside, and
  PUT files get mode 0666 less the umask (Perl's), not mkstemp's 0600;
- a digit string beyond Python's int() limit in If-Modified-Since's IE
  ``; length=`` is answered, not a dropped connection and a traceback;
- buffered-upload spool files live in a private 0700 directory, mode 0600;
- JSON and combined access log lines cannot be split into forged records;
- an idle console connection is closed after the management idle_timeout,
  and console connections are capped by max_connections;
- Palimg's still GIF reads a bounded prefix; EchoService's line is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.hostile.conftest import Hostile, raw_exchange, status_of
from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import proxy_config
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import request


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or ``limit`` seconds pass (False)."""
    data = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


# --- item 5: PUT ---------------------------------------------------------------------


def test_put_through_outward_symlink_creates_no_directory_outside(hostile: Hostile) -> None:
    outside = (hostile.docroot / "escape").resolve()
    reply = raw_exchange(hostile.web, b"PUT /escape/newdir/deeper/f.txt HTTP/1.0\r\n"
                                      b"Content-Length: 2\r\n\r\nhi")
    assert status_of(reply) == 403, reply[:200]
    assert not (outside / "newdir").exists()
    assert not (outside / "newdir" / "deeper" / "f.txt").exists()
    hostile.assert_healthy()


def test_put_file_and_directories_follow_the_umask(tmp_path: Path) -> None:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    port, = free_ports(1)
    server = PyPerlbal(f"CREATE SERVICE web\n  SET role = web_server\n"
                       f"  SET listen = {LOOPBACK}:{port}\n  SET docroot = {docroot}\n"
                       f"  SET enable_put = on\nENABLE web\n")
    old = os.umask(0o027)  # inherited by the server process
    try:
        server.start()
    finally:
        os.umask(old)
    try:
        got = request(port, "PUT", "/made/new.txt", [("Content-Length", "5")], body=b"hello")
        assert got.status == 200, got
        target = docroot / "made" / "new.txt"
        assert target.read_bytes() == b"hello"
        assert stat.S_IMODE(target.stat().st_mode) == 0o640  # 0666 & ~027, as Perl
        assert stat.S_IMODE((docroot / "made").stat().st_mode) == 0o750
        assert [p.name for p in (docroot / "made").iterdir()] == ["new.txt"]  # no temp left
    finally:
        server.stop()


# --- item 6: digit strings beyond int()'s limit ----------------------------------------


def test_huge_ims_length_is_answered_not_dropped(hostile: Hostile) -> None:
    ims = "Thu, 01 Jan 1970 00:00:00 GMT; length=" + "0" * 5000 + "3"
    reply = raw_exchange(hostile.web, f"GET /ok.txt HTTP/1.0\r\nIf-Modified-Since: {ims}"
                                      f"\r\n\r\n".encode())
    assert status_of(reply) == 200, reply[:200]
    assert reply.endswith(b"\r\n\r\nok\n")
    hostile.assert_healthy()
    _out, err = hostile.server.output()
    assert "Traceback" not in err and "Exceeds the limit" not in err, err[-2000:]


# --- item 7: the spool directory -------------------------------------------------------


def test_spool_files_are_private_when_no_path_is_set(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))  # where the server's mkdtemp goes
    port, = free_ports(1)
    with Backend(name="b") as backend, PyPerlbal(proxy_config(port, [backend], extra=[
            "SET buffer_uploads = on", "SET buffer_upload_threshold_size = 1"])):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            sock.sendall(b"POST /up HTTP/1.0\r\nContent-Length: 2000\r\n\r\n" + b"x" * 1000)
            deadline = time.monotonic() + 5
            spools: list[Path] = []
            while time.monotonic() < deadline and not spools:
                spools = [f for d in tmpdir.glob("perlbal-uploads-*") for f in d.iterdir()]
                time.sleep(0.02)
            assert len(spools) == 1, list(tmpdir.rglob("*"))
            spool = spools[0]
            assert stat.S_IMODE(spool.parent.stat().st_mode) == 0o700
            assert stat.S_IMODE(spool.stat().st_mode) == 0o600
            sock.sendall(b"y" * 1000)
            data, _closed = _read_until_closed(sock, 5)
        assert data.startswith(b"HTTP/1.0 200"), data[:200]
        assert backend.log and len(backend.log[-1].body) == 2000
        assert not spool.exists()  # unlinked once the body was complete


# --- item 8: access log records cannot be forged --------------------------------------

#: the line separators a client can get into a header value (the others are
#: control characters, refused with a 400 by the head parser)
_FORGED = b'\x85{"status":500,"uri":"/admin"}'


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path, Path]]:
    root = tmp_path_factory.mktemp("logged")
    (root / "f.txt").write_text("f\n")
    json_port, clf_port = free_ports(2)
    json_log, clf_log = root / "json.log", root / "combined.log"
    conf = ""
    for name, port, log, fmt in (("j", json_port, json_log, "json"),
                                 ("c", clf_port, clf_log, "combined")):
        conf += (f"CREATE SERVICE {name}\n  SET role = web_server\n"
                 f"  SET listen = {LOOPBACK}:{port}\n  SET docroot = {root}\n"
                 f"  SET access_log = {log}\n  SET access_log_format = {fmt}\nENABLE {name}\n")
    with PyPerlbal(conf):
        yield json_port, clf_port, json_log, clf_log


def _forging_request(port: int) -> None:
    reply = raw_exchange(port, b"GET /f.txt HTTP/1.0\r\nUser-Agent: agent" + _FORGED +
                         b"\r\nReferer: r" + _FORGED + b"\r\n\r\n")
    assert status_of(reply) == 200, reply[:200]


def _wait_for_lines(path: Path, count: int) -> str:
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = path.read_bytes().decode("utf-8") if path.exists() else ""
        if text.count("\n") >= count:
            break
        time.sleep(0.05)
    return text


def test_json_access_log_escapes_every_line_separator(logged: tuple[int, int, Path, Path]
                                                      ) -> None:
    json_port, _clf_port, json_log, _clf_log = logged
    _forging_request(json_port)
    text = _wait_for_lines(json_log, 1)
    records = text.splitlines()  # splits on \x85, \u2028, \x1c... as many readers do
    assert len(records) == 1, records
    record = json.loads(records[0])
    assert record["status"] == 200 and record["uri"] == "/f.txt"
    assert record["user_agent"] == "agent" + _FORGED.decode("latin-1")  # kept, escaped
    assert record["referer"] == "r" + _FORGED.decode("latin-1")
    assert "\x85" not in text and "\\u0085" in text


def test_combined_access_log_escapes_every_line_separator(logged: tuple[int, int, Path, Path]
                                                          ) -> None:
    _json_port, clf_port, _json_log, clf_log = logged
    _forging_request(clf_port)
    text = _wait_for_lines(clf_log, 1)
    records = text.splitlines()
    assert len(records) == 1, records
    assert '"GET /f.txt HTTP/1.0" 200 ' in records[0]
    assert "\\x85" in records[0] and "\x85" not in text


# --- item 13: console idle timeout and cap ---------------------------------------------


def _console_line(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    sock.settimeout(5)
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_idle_console_connection_is_closed_after_idle_timeout() -> None:
    mgmt, = free_ports(1)
    with PyPerlbal(f"CREATE SERVICE mgmt\n  SET role = management\n"
                   f"  SET listen = {LOOPBACK}:{mgmt}\n  SET idle_timeout = 2\nENABLE mgmt\n"):
        with socket.create_connection((LOOPBACK, mgmt), timeout=5) as sock:
            assert b"mgmt" in _console_line(sock, b"show service")
            started = time.monotonic()
            time.sleep(1.0)
            assert _console_line(sock, b"show service")  # activity restarts the clock
            _data, closed = _read_until_closed(sock, 8)
            assert closed, "an idle console connection was kept open"
            assert 1.5 < time.monotonic() - started < 6


def test_a_live_idle_timeout_applies_to_consoles_already_open() -> None:
    """The limit is read at every wait: a console opened under no limit is
    closed by a later SET from another console, and one opened under a short
    limit is kept once the limit is lifted."""
    mgmt, = free_ports(1)
    with PyPerlbal(f"CREATE SERVICE mgmt\n  SET role = management\n"
                   f"  SET listen = {LOOPBACK}:{mgmt}\n  SET idle_timeout = 0\nENABLE mgmt\n"):
        with socket.create_connection((LOOPBACK, mgmt), timeout=5) as idle, \
                socket.create_connection((LOOPBACK, mgmt), timeout=5) as admin:
            assert b"mgmt" in _console_line(idle, b"show service")
            assert _console_line(admin, b"SET mgmt.idle_timeout = 1") == b"OK\r\n"
            assert _console_line(idle, b"show service")  # its next wait has the limit
            started = time.monotonic()
            _data, closed = _read_until_closed(idle, 8)
            assert closed and time.monotonic() - started < 5
        with socket.create_connection((LOOPBACK, mgmt), timeout=5) as kept, \
                socket.create_connection((LOOPBACK, mgmt), timeout=5) as admin:
            assert b"mgmt" in _console_line(kept, b"show service")
            assert _console_line(admin, b"SET mgmt.idle_timeout = 0") == b"OK\r\n"
            assert b"mgmt" in _console_line(kept, b"show service")
            time.sleep(1.6)
            assert b"mgmt" in _console_line(kept, b"show service")  # lifted: kept


def test_console_connections_are_capped_by_max_connections() -> None:
    mgmt, = free_ports(1)
    with PyPerlbal(f"SERVER max_connections = 2\nCREATE SERVICE mgmt\n"
                   f"  SET role = management\n  SET listen = {LOOPBACK}:{mgmt}\nENABLE mgmt\n"):
        time.sleep(0.3)  # PyPerlbal's own probe connections are gone
        held = [socket.create_connection((LOOPBACK, mgmt), timeout=5) for _ in range(2)]
        try:
            for sock in held:
                assert b"mgmt" in _console_line(sock, b"show service")
            with socket.create_connection((LOOPBACK, mgmt), timeout=5) as third:
                try:
                    third.sendall(b"show service\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data, closed = _read_until_closed(third, 5)
            assert closed and b"mgmt" not in data
            assert data.startswith(b"HTTP/1.0 503") and b"at most 2" in data
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while True:  # once they are gone, the console is reachable again
            with socket.create_connection((LOOPBACK, mgmt), timeout=5) as sock:
                if b"mgmt" in _console_line(sock, b"show service") or \
                        time.monotonic() > deadline:
                    break
            time.sleep(0.1)


# --- item 14: Palimg still GIF and EchoService line bounds -----------------------------


def _gif(first_frame_data: int, more_frames: int = 0) -> bytes:
    """A GIF without a global palette: one image of ``first_frame_data`` LZW bytes,
    then ``more_frames`` bytes of further images."""
    head = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0, 0, 0)

    def image(size: int) -> bytes:
        blocks = b"".join(b"\xff" + b"\x00" * 255 for _ in range(size // 255))
        return b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02" + blocks + b"\x00"

    return head + image(first_frame_data) + (image(more_frames) if more_frames else b"") + b"\x3b"


def test_palimg_still_reads_a_bounded_prefix(tmp_path: Path) -> None:
    (tmp_path / "palimg").mkdir()
    (tmp_path / "palimg" / "hugeframe.gif").write_bytes(_gif(2 * 1024 * 1024))
    (tmp_path / "palimg" / "longanim.gif").write_bytes(_gif(1020, 3 * 1024 * 1024))
    port, = free_ports(1)
    with PyPerlbal(f"LOAD Palimg\nCREATE SERVICE web\n  SET role = web_server\n"
                   f"  SET listen = {LOOPBACK}:{port}\n  SET docroot = {tmp_path}\n"
                   f"  SET plugins = Palimg\nENABLE web\n") as server:
        # a first frame beyond STILL_MAX_BYTES is not read into memory: refused
        got = request(port, "GET", "/palimg/hugeframe.gif/still")
        assert got.status == 404, (got.status, len(got.body))
        # a small first frame of a large file is still served, from the prefix
        got = request(port, "GET", "/palimg/longanim.gif/still")
        assert got.status == 200 and got.body == _gif(1020)
        _out, err = server.output()
        assert "Traceback" not in err


def test_echo_line_is_bounded() -> None:
    port, = free_ports(1)
    with PyPerlbal(f"LOAD EchoService\nCREATE SERVICE echo\n  SET role = echo\n"
                   f"  SET listen = {LOOPBACK}:{port}\nENABLE echo\n"):
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            assert _console_line(sock, b"hello") == b"hello\r\n"
            try:
                sock.sendall(b"x" * 100_000)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data, closed = _read_until_closed(sock, 5)
            assert closed and data == b"ERROR: line too long\r\n"
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            line = b"y" * 8192  # the longest line accepted
            sock.sendall(line + b"\r\n")
            got = b""
            while len(got) < len(line) + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert got == line + b"\r\n"
