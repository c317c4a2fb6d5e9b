"""HTTP or console on the management port, decided from the first bytes (issue 24, item 1).

Before, the port waited for the first LF (up to 8 KiB): a request line longer
than one read, or slower than ``idle_timeout``, became console input, so a
cross-site POST with a ``text/plain`` body ran console commands.  Perl's
ClientManage.pm decides from the leading method token; so do we
(``perlbal.http.firstbytes``), and these tests send the request in pieces,
split at several points, each piece after a pause, through the real server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from perlbal.http.firstbytes import HTTP_METHODS, Speaks, first_bytes_speak
from perlbal.interp import CommandContext, Interpreter
from tests.support.perl_perlbal import PerlPerlbal, console, perl_perlbal_available
from tests.support.pyserver import PyPerlbal
from tests.support.ports import LOOPBACK, free_port

LONG_LINE = b"POST /nope?" + b"a" * 9000
#: the issue's bytes (its Content-Length says 30 for a 26-byte body: Perl
#: never reads the body and answers at once, and so do we)
REST = (b" HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: 30\r\n\r\n"
        b"\r\nCREATE POOL probe_pool\r\n")
#: where a request is cut: inside the method, right after it, after the space,
#: inside the target, and the issue's own 9,000-byte request line with no LF
SPLITS = (1, 3, 4, 5, 7, len(LONG_LINE))
PAUSE = 0.2  # the slow client's pause between pieces (the attack's own timing)

Starter = Callable[[str], AbstractContextManager[object]]


def _config(port: int, extra: str = "") -> str:
    return (f"CREATE SERVICE mgmt\nSET role = management\nSET listen = {LOOPBACK}:{port}\n"
            f"{extra}ENABLE mgmt\n")


@pytest.fixture(params=["perl", "ours"])
def mgmt(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    if request.param == "perl" and not perl_perlbal_available():
        pytest.skip("/usr/bin/perlbal (Perl Perlbal) not installed")
    start: Starter = PerlPerlbal if request.param == "perl" else PyPerlbal
    port = free_port()
    with start(_config(port)):
        yield request.param, port


def _send_in_pieces(port: int, pieces: list[bytes], pause: float = PAUSE) -> bytes:
    """Each piece in its own segment, a pause between them; then read to close."""
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for number, piece in enumerate(pieces):
            if number:
                time.sleep(pause)
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break  # closed already: what it answered is read below
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    return out


def _pools(port: int) -> list[str]:
    with console(LOOPBACK, port) as con:
        return con.command("show pool")


@pytest.mark.parametrize("split", SPLITS)
def test_request_in_pieces_is_http_and_runs_nothing(mgmt: tuple[str, int], split: int) -> None:
    """Perl and ours: the same 404 page status, and the body's console line never runs.

    Perl keeps only the bytes of the read that completed ``POST `` as the
    request, so a cut inside the method loses its start: ``P`` + ``OST ...``
    is served as method ``OST``, ``POST`` + `` /...`` is closed unanswered.
    Those cuts are checked on ours only."""
    who, port = mgmt
    if who == "perl" and split < len(b"POST "):
        pytest.skip("Perl loses the bytes read before the method was complete")
    request = LONG_LINE + REST.replace(b"{host}", b"127.0.0.1")
    out = _send_in_pieces(port, [request[:split], request[split:]])
    assert out.startswith(b"HTTP/1.0 404 "), out[:200]
    assert b"ERROR" not in out and b"OK\r\n" not in out
    assert _pools(port) == ["."]


@pytest.fixture(scope="module")
def ours() -> Iterator[int]:
    port = free_port()
    with PyPerlbal(_config(port, "SET idle_timeout = 1\n")):
        yield port


@pytest.mark.parametrize("split", SPLITS)
def test_rebinding_post_in_pieces_is_refused(ours: int, split: int) -> None:
    """The issue's reproduction: a page whose name rebinds to the console's address."""
    request = LONG_LINE + REST.replace(b"{host}", b"rebind.example")
    out = _send_in_pieces(ours, [request[:split], request[split:]])
    assert out.startswith(b"HTTP/1.0 403 "), out[:200]
    assert _pools(ours) == ["."]


def test_request_line_slower_than_idle_timeout_is_not_console(ours: int) -> None:
    """The first bytes name a method: when the rest comes after ``idle_timeout``
    (1 s here) the request is late, and the connection is closed; nothing runs."""
    request = b"POST /nope?aaaa" + REST.replace(b"{host}", b"127.0.0.1")
    out = _send_in_pieces(ours, [request[:15], request[15:]], pause=1.5)
    assert b"ERROR" not in out and b"OK\r\n" not in out, out
    assert _pools(ours) == ["."]


def test_console_typed_a_byte_at_a_time(ours: int) -> None:
    out = _send_in_pieces(ours, [bytes([b]) for b in b"show pool\r\n"] + [b"quit\r\n"],
                          pause=0.01)
    assert out == b".\r\n"


def test_empty_lines_before_a_request_are_passed_over(ours: int) -> None:
    request = b"\r\n" + LONG_LINE + REST.replace(b"{host}", b"127.0.0.1")
    out = _send_in_pieces(ours, [request[:3], request[3:]])
    assert out.startswith(b"HTTP/1.0 404 "), out[:200]
    assert _pools(ours) == ["."]


def test_other_methods_still_reach_http(ours: int) -> None:
    for method in (b"PUT", b"BREW"):  # a registered method, and a whole request line
        out = _send_in_pieces(ours, [method[:1], method[1:] + b" / HTTP/1.1\r\nHost: x\r\n\r\n"],
                              pause=0.05)
        assert out.startswith(b"HTTP/1.0 405 "), (method, out[:200])


def test_first_bytes_rules() -> None:
    assert first_bytes_speak(b"") is Speaks.MORE
    assert first_bytes_speak(b"", final=True) is Speaks.CONSOLE
    assert first_bytes_speak(b"PO") is Speaks.MORE
    assert first_bytes_speak(b"PO", final=True) is Speaks.HTTP
    assert first_bytes_speak(b"POST ") is Speaks.HTTP
    assert first_bytes_speak(b"POST") is Speaks.MORE
    assert first_bytes_speak(b"post /") is Speaks.MORE  # methods are case-sensitive
    assert first_bytes_speak(b"post / HTTP/1.1\n") is Speaks.HTTP
    assert first_bytes_speak(b"show pool") is Speaks.MORE
    assert first_bytes_speak(b"show pool\r\n") is Speaks.CONSOLE
    assert first_bytes_speak(b"VERSION\r\n") is Speaks.CONSOLE
    assert first_bytes_speak(b"x" * 8192) is Speaks.CONSOLE
    # empty lines first (RFC 9112 section 2.2) change nothing
    assert first_bytes_speak(b"\r\n") is Speaks.MORE
    assert first_bytes_speak(b"\r\n\nPOST ") is Speaks.HTTP
    assert first_bytes_speak(b"\r\nshow pool\r\n") is Speaks.CONSOLE


def test_no_console_command_is_named_like_a_method() -> None:
    """Rule 1 sends ``METHOD `` to HTTP unseen: no console line (any case) that
    starts so may be a valid command (``VERSION-CONTROL x`` is ``version`` with
    an argument, an error)."""
    interp = Interpreter()
    for method in sorted(HTTP_METHODS):
        for word in (method, method.lower()):
            reply = interp.run_line(f"{word} x", CommandContext(verbose=True))
            assert len(reply) == 1 and reply[0].startswith("ERROR: "), (word, reply)


@pytest.mark.parametrize("target,status", [
    ("/", b"200"), ("/socks", b"200"), ("/obj", b"200"),
    ("/socks?x", b"404"), ("/obj?1", b"404"), ("/socks?", b"404"),
    ("/service?mgmt", b"200"), ("/service?a-b", b"404"), ("/nothing", b"404"),
])
def test_perls_pages_answer_their_exact_targets(mgmt: tuple[str, int], target: str,
                                                status: bytes) -> None:
    """Perl serves its pages for exactly '/', '/socks' and '/obj' (``$uri eq``): a
    query on '/socks' or '/obj' is a 404, where ours served the page.  ('/?...' is
    the difference docs/migrating.md names: our web UI reads ?interval= there.)"""
    who, port = mgmt
    reply = _send_in_pieces(port, [f"GET {target} HTTP/1.0\r\n\r\n".encode()])
    assert reply.split(b"\r\n", 1)[0].split(b" ")[1] == status, reply[:200]
    web_ui = _send_in_pieces(port, [b"GET /?interval=1 HTTP/1.0\r\n\r\n"])
    assert web_ui.split(b"\r\n", 1)[0].split(b" ")[1] == (b"200" if who == "ours"
                                                           else b"404")
