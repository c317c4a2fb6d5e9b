"""upload_status_listeners: the UDP progress packets of Perl Perlbal 1.80 and ours, side by side.

Perl 1.80 never delivers them: its setter packs the listener address after a
second regex match has reset ``$2``, so every packet goes to port 0 and
sendto() fails with EINVAL.  What Perl *means* to send is read from strace
instead, and ours must send the same to the configured port.

The values depend on timing, so the packets are compared by their shape:
``UPLOAD:<session>:<done>:<total>:<start>:<now>``, done rising and below total,
at most one per second, start <= now; both servers must send some, and the
same number give or take two (scheduling on a busy machine).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal
from tests.support.ports import LOOPBACK
from tests.uploads.rig import Mode, Outcome, both, run_upload

PACKET = re.compile(rb"UPLOAD:(\w+):(\d+):(\d+):(\d+):(\d+)")
TOTAL = 30000


def _listen() -> tuple[socket.socket, list[tuple[float, bytes]], threading.Event]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(0.1)
    got: list[tuple[float, bytes]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                got.append((time.time(), sock.recv(600)))
            except socket.timeout:
                continue
            except OSError:  # closed by the test
                return

    threading.Thread(target=loop, daemon=True).start()
    return sock, got, stop


def _run(start: object, session: str) -> tuple[Outcome, list[tuple[float, bytes]]]:
    sock, got, stop = _listen()
    port = sock.getsockname()[1]
    # ~3 s at 10 KB/s, streamed (no spooling) so the backend gets it as it comes
    mode = Mode(body_size=TOTAL, piece=1000, interval=0.1, time=0, size=0, early=0,
                path=f"/up?client_up_sess={session}",
                extra=f"SET upload_status_listeners = {LOOPBACK}:{port}")
    try:
        out = run_upload(start, mode)  # type: ignore[arg-type]
    finally:
        stop.set()
        time.sleep(0.15)
        sock.close()
    return out, got


def _check(packets: list[tuple[float, bytes]], session: str) -> int:
    assert packets, "no upload status packet"
    last_done, last_now = -1, 0
    for _, data in packets:
        match = PACKET.fullmatch(data)
        assert match is not None, data
        sess, done, total, since, now = match.groups()
        assert sess.decode() == session and int(total) == TOTAL
        assert last_done < int(done) < TOTAL
        assert int(since) <= int(now) and int(now) > last_now  # at most one a second
        last_done, last_now = int(done), int(now)
    return len(packets)


def test_upload_progress_packets_like_perl(need_perl_perlbal: None, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is needed to see the packets Perl tries to send")
    trace = tmp_path / "perl.strace"
    popen = subprocess.Popen

    def traced(args: list[str], **kwargs: object) -> object:
        if args and args[0].endswith("/perlbal"):
            args = ["strace", "-f", "-s", "200", "-e", "trace=sendto", "-o", str(trace), *args]
        return popen(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "Popen", traced)
    try:
        (perl, _lost), (ours, our_packets) = _both(
            lambda: _run(lambda c: PerlPerlbal(c, startup_timeout=30), "perlsess1"),
            lambda: _run(lambda c: PyPerlbal(c), "oursess1"))
    finally:
        _kill_traced_perlbal(trace)
    assert _lost == []  # Perl's bug: nothing arrives
    perl_packets = [(0.0, m.group(1).encode()) for m in
                    re.finditer(r'sendto\(\d+, "(UPLOAD:[^"]*)"', trace.read_text())]
    assert perl.status == ours.status == 200
    perl_count = _check(perl_packets, "perlsess1")
    our_count = _check(our_packets, "oursess1")
    assert abs(perl_count - our_count) <= 2, (perl_packets, our_packets)  # timing


def _kill_traced_perlbal(trace: Path) -> None:
    """Killing strace (what PerlPerlbal.stop does here) detaches its tracee, which
    would outlive the test: kill every traced perlbal process ourselves."""
    import os
    import signal

    try:
        text = trace.read_text(errors="replace")
    except OSError:
        return
    for pid in {int(m.group(1)) for m in re.finditer(r"^(\d+) ", text, re.M)}:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if b"perlbal" not in fh.read():
                    continue
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_no_packets_without_a_session(need_perl_perlbal: None) -> None:
    sock, got, stop = _listen()
    mode = Mode(body_size=5000, piece=1000, interval=0.3, early=0,
                extra=f"SET upload_status_listeners = {LOOPBACK}:{sock.getsockname()[1]}")
    try:
        out = run_upload(lambda c: PyPerlbal(c), mode)
    finally:
        stop.set()
        sock.close()
    assert out.status == 200 and got == []


def _both(a, b):  # type: ignore[no-untyped-def]
    results: dict[int, object] = {}

    def run(i: int, fn) -> None:  # type: ignore[no-untyped-def]
        results[i] = fn()

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if len(results) != 2:
        pytest.fail("an upload run did not finish")
    return results[0], results[1]


_ = both  # the rig's runner is for Outcome pairs; packets need the local one above
