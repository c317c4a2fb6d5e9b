"""buffer_uploads keeps slow uploaders away from backends; interrupted uploads leave no spool file.

One server, one backend, one 5 MB upload paced at 100 KB/s (~51 s).  While it
crawls in, the test checks, against the same server:

* no backend connection is opened for the upload until its last byte arrived
  (the backend's accept log), and the spool file exists meanwhile;
* a GET through the same pool is answered at once (the backend is free);
* two other uploads are cut off mid-body (one spooled for size, one chunked)
  and their spool files disappear; nothing of them reaches the backend.

The measured numbers are printed (pytest -s) and written to
tests/artifacts/slow_upload.json.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.ports import LOOPBACK, free_ports
from tests.support.rawhttp import HTTPConnection
from tests.uploads.rig import body_bytes, upload_config

SIZE = 5 * 1024 * 1024
RATE = 100 * 1024  # bytes per second
PIECE = 10 * 1024
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "slow_upload.json"


def _interrupted(port: int, spool: Path, chunked: bool) -> list[str]:
    """Start an upload, let it spool, cut it; returns the spool names seen while it ran."""
    sock = socket.create_connection((LOOPBACK, port), timeout=10)
    before = {p.name for p in spool.iterdir()}
    if chunked:
        sock.sendall(b"POST /cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b"%x\r\n%s\r\n" % (100000, b"c" * 100000))
    else:
        sock.sendall(b"POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        sock.sendall(b"s" * 300000)
    deadline = time.monotonic() + 5
    seen: set[str] = set()
    while time.monotonic() < deadline and not seen:
        seen = {p.name for p in spool.iterdir()} - before
        time.sleep(0.05)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST: the client is gone mid-body
    return sorted(seen)


def test_slow_upload_does_not_hold_a_backend() -> None:
    (port,) = free_ports(1)
    accepts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="spool-") as spool_dir, Backend("b") as backend:
        spool = Path(spool_dir)
        conf = upload_config(backend, port, spool_dir, early=102400, time=5, rate=0,
                             size=256000)
        stop = threading.Event()

        def watch() -> None:  # when does the backend see a new connection?
            count = 0
            while not stop.is_set():
                now = backend.connection_count
                accepts.extend([time.monotonic()] * (now - count))
                count = now
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        with PyPerlbal(conf):
            watcher.start()
            body = body_bytes(SIZE)
            with HTTPConnection(port, timeout=120) as conn:
                started = time.monotonic()
                conn.send(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % SIZE)
                probe_latency = cut_spools = cut_chunked = None
                spool_during: list[str] = []
                for n, offset in enumerate(range(0, SIZE, PIECE)):
                    delay = started + n * PIECE / RATE - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    conn.sock.sendall(body[offset:offset + PIECE])
                    elapsed = time.monotonic() - started
                    if probe_latency is None and elapsed > 5:
                        t0 = time.monotonic()
                        with HTTPConnection(port, timeout=10) as probe:
                            assert probe.request("GET", "/probe").status == 200
                        probe_latency = time.monotonic() - t0
                        spool_during = sorted(p.name for p in spool.iterdir())
                    if cut_spools is None and elapsed > 10:
                        cut_spools = _interrupted(port, spool, chunked=False)
                        cut_chunked = _interrupted(port, spool, chunked=True)
                upload_done = time.monotonic()
                resp = conn.read_response("POST")
                answered = time.monotonic()
            time.sleep(0.3)
            spool_after = sorted(p.name for p in spool.iterdir())
            stop.set()
            watcher.join()
        requests = backend.requests()

    upload_seconds = upload_done - started
    big = [r for r in requests if r.target == "/big"]
    assert resp.status == 200 and len(big) == 1 and big[0].body == body
    assert [r.target for r in requests if r.target == "/cut"] == []
    # the probe's connection, then the upload's -- opened only after the last byte
    assert len(accepts) == 2, accepts
    backend_wait = accepts[1] - started
    assert accepts[0] - started < 10
    assert backend_wait >= upload_seconds - 0.05
    assert probe_latency is not None and probe_latency < 2.0
    assert len(spool_during) == 1 and spool_during[0].startswith("proxy-127.0.0.1:")
    assert cut_spools and cut_chunked  # both were being spooled when cut
    assert spool_after == []
    numbers = {
        "upload_bytes": SIZE, "upload_seconds": round(upload_seconds, 2),
        "client_rate_kib_s": round(SIZE / upload_seconds / 1024, 1),
        "backend_connection_opened_after_s": round(backend_wait, 2),
        "backend_connection_after_last_byte_s": round(accepts[1] - upload_done, 3),
        "backend_busy_s": round(answered - accepts[1], 3),
        "probe_get_latency_s": round(probe_latency, 3),
        "backend_connections": len(accepts),
    }
    print("slow upload:", numbers)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(numbers, indent=1) + "\n")
