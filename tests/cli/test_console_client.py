"""``perlbal console``: the management client, against Perl Perlbal 1.80 and our server.

Script mode (``-c``, piped stdin) is run as a real process against both
servers on loopback; what it prints is compared with the raw reply read by the
tests' own console reader (tests/support/perl_perlbal.py), and the two servers'
transcripts with each other.  Interactive mode runs in a tmux pane (send-keys,
capture-pane): TAB completion from the registry and from the live server,
history kept across sessions, ERROR lines in red.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perlbal.console_client import (SYNC_REPLY, SYNC_WORD, Connection, Names, candidates,
                                    learn_live, registry_names)
from tests.support.configs import pool, proxy_service, service
from tests.support.perl_perlbal import PerlPerlbal, console, requires_perl_perlbal
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal
from tests.support.threadserver import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]


def _conf(web: int, mgmt: int, *mgmt_extra: str) -> str:
    return (pool("apps", ["127.0.0.1:9"]) + proxy_service("web", web, "apps")
            + service("mgmt", "management", listen=mgmt, extra=mgmt_extra))


SERVERS = ["python", pytest.param("perl", marks=requires_perl_perlbal)]


@pytest.fixture(params=SERVERS)
def mgmt_port(request: pytest.FixtureRequest) -> Iterator[int]:
    web, mgmt = free_ports(2)
    server = PyPerlbal if request.param == "python" else PerlPerlbal
    with server(_conf(web, mgmt)):
        yield mgmt


def run_console(*args: str, stdin: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perlbal.cli", "console", *args],
                          input=stdin, capture_output=True, text=True, timeout=30, cwd=ROOT,
                          env=env or dict(os.environ, PYTHONPATH=str(ROOT)))


# --- script mode against both servers ----------------------------------------------


def test_one_command_prints_the_whole_reply(mgmt_port: int) -> None:
    with console(LOOPBACK, mgmt_port) as con:
        raw = con.command("show service web")
    proc = run_console(f"{LOOPBACK}:{mgmt_port}", "-c", "show service web")
    assert proc.returncode == 0, proc.stderr
    assert raw[-1] == "."  # a listing ends with a lone dot: protocol, not printed
    assert proc.stdout.splitlines() == raw[:-1]
    assert "SERVICE web" in proc.stdout and "role: reverse_proxy" in proc.stdout


def test_error_reply_exits_1_without_colour_when_not_a_tty(mgmt_port: int) -> None:
    proc = run_console(f"{LOOPBACK}:{mgmt_port}", "-c", "show pool apps", "-c", "frobnicate")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == ["127.0.0.1:9 0", "ERROR: unknown command: frobnicate"]
    assert "\033[" not in proc.stdout


def test_replies_without_terminator_and_the_connection_context(mgmt_port: int) -> None:
    """verbose off makes successes silent (no OK, no '.'); the client must neither hang
    nor lose the per-connection context between -c commands."""
    proc = run_console(f"{LOOPBACK}:{mgmt_port}", "-c", "CREATE POOL extra", "-c", "verbose off",
                       "-c", "POOL extra ADD 127.0.0.1:10", "-c", "SET balance_method = random",
                       "-c", "show pool extra", "--timeout", "5")
    assert proc.returncode == 0, proc.stderr
    # verbose off answers nothing itself (it silences its own OK)
    assert proc.stdout.splitlines() == ["OK", "127.0.0.1:10 0"]


def test_stdin_commands_and_quit(mgmt_port: int) -> None:
    proc = run_console(str(mgmt_port), stdin="show pool\nquit\nshow service\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["apps nodes 1", "apps services 1"]


def test_both_servers_answer_the_client_alike() -> None:
    if not os.access("/usr/bin/perlbal", os.X_OK):
        pytest.skip("Perl Perlbal not installed")
    commands = ["show pool", "show service web", "CREATE POOL p2", "POOL p2 ADD 127.0.0.1:11",
                "SET web.pool = p2", "show pool", "nodes 127.0.0.1:11", "verbose off",
                "SET web.persist_client = on", "SET web.nonsense = 1", "show service"]
    out = {}
    for name, server in (("python", PyPerlbal), ("perl", PerlPerlbal)):
        web, mgmt = free_ports(2)
        with server(_conf(web, mgmt)):
            args = [a for c in commands for a in ("-c", c)]
            proc = run_console(f"{LOOPBACK}:{mgmt}", *args)
        assert proc.returncode == 1, proc.stdout  # SET web.nonsense
        out[name] = proc.stdout.replace(str(web), "WEB").replace(str(mgmt), "MGMT")
    assert out["python"] == out["perl"]
    assert "p2 nodes 1" in out["perl"] and "ERROR: Unknown service parameter" in out["perl"]


def test_unreachable_exits_2() -> None:
    (port,) = free_ports(1)
    proc = run_console(f"{LOOPBACK}:{port}", "-c", "show service")
    assert proc.returncode == 2
    assert "cannot connect" in proc.stderr


def test_help_lists_console() -> None:
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=30)
    assert "perlbal console [HOST:PORT] [-c COMMAND]" in proc.stderr


# --- completion: the registry and the live server ------------------------------------


def test_completion_words() -> None:
    names = registry_names()
    names.services, names.pools = {"web", "mgmt"}, {"apps"}
    assert "buffer_size" in candidates("SET ", "buf", names)
    assert candidates("SET ", "buffer_size_r", names) == ["buffer_size_reproxy_url"]
    assert candidates("SET ", "web.persist_c", names)[0] == "web.persist_client"
    assert candidates("SET ", "apps.b", names) == ["apps.balance_method"]
    assert candidates("", "cr", names) == ["create"]
    assert candidates("", "CR", names) == ["CREATE"]
    assert candidates("CREATE ", "", names) == ["pool", "service"]
    assert candidates("show service ", "", names) == ["mgmt", "web"]
    assert candidates("show pool ", "a", names) == ["apps"]
    assert candidates("SET role = ", "r", names) == ["reverse_proxy"]
    assert candidates("SET web.persist_client = ", "", names) == ["off", "on"]
    assert candidates("SET web.pool = ", "", names) == ["apps"]
    assert candidates("POOL ADD ", "", names) == ["apps"]
    assert candidates("SERVER ", "max_c", names) == ["max_connections"]
    assert candidates("ENABLE ", "w", names) == ["web"]


def test_completion_learns_live_names(mgmt_port: int) -> None:
    from perlbal.console_client import Connection, learn_live

    conn = Connection(LOOPBACK, mgmt_port, timeout=5)
    try:
        names = Names()
        learn_live(names, conn.command)
        assert names.services == {"web", "mgmt"}
        assert names.pools == {"apps"}
        assert {"show", "set", "create", "nodes", "queues"} <= names.commands
    finally:
        conn.close()


# --- interactive, in a terminal (tmux) ------------------------------------------------


class Tmux:
    """One private tmux server (its own socket) running one pane."""

    def __init__(self, tmp: Path, command: list[str]) -> None:
        self.sock = str(tmp / "tmux.sock")
        self._tmux("new-session", "-d", "-x", "160", "-y", "40", " ".join(command))

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "0", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self._tmux("capture-pane", "-p", "-t", "0", *(["-e"] if escapes else []))

    def wait_for(self, text: str, escapes: bool = False, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(escapes)
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared; screen:\n{screen}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")
def test_interactive_completion_history_and_colour(mgmt_port: int, tmp_path: Path) -> None:
    state = tmp_path / "state"
    command = ["env", f"HOME={tmp_path}", f"XDG_STATE_HOME={state}", "TERM=xterm",
               f"PYTHONPATH={ROOT}", sys.executable, "-m", "perlbal.cli", "console",
               f"{LOOPBACK}:{mgmt_port}"]
    pane = Tmux(tmp_path, command)
    try:
        pane.wait_for(f"perlbal {LOOPBACK}:{mgmt_port}>")
        # SET buf<TAB>: completes the common part, a second TAB lists the parameters
        pane.keys("SET buf", "Tab")
        pane.wait_for("SET buffer_")
        pane.keys("Tab", "Tab")  # after a partial completion: TAB TAB lists, as in bash
        listing = pane.wait_for("buffer_uploads_path")
        assert "buffer_size_reproxy_url" in listing and "buffer_backend_connect" in listing
        pane.keys("C-u", "SET web.buffer_size_r", "Tab")
        pane.wait_for("SET web.buffer_size_reproxy_url")
        pane.keys("= 65536")  # the completion ended the word with a space
        pane.wait_for("SET web.buffer_size_reproxy_url = 65536")
        pane.keys("Enter")
        pane.wait_for("OK")
        # a pool created now completes at the next TAB (live names re-read)
        pane.keys("CREATE POOL freshpool", "Enter")
        pane.keys("show pool fre", "Tab")
        pane.wait_for("show pool freshpool")
        pane.keys("Enter", "show pool apps", "Enter")
        pane.wait_for("127.0.0.1:9 0")
        pane.keys("frobnicate", "Enter")
        coloured = pane.wait_for("ERROR: unknown command: frobnicate", escapes=True)
        # tmux re-encodes the attributes it saw: bold and red (SGR 1 and 31) before the line
        error_line = next(ln for ln in coloured.splitlines() if "frobnicate" in ln
                          and "ERROR" in ln)
        assert re.search(r"\x1b\[[0-9;]*\b31m.*ERROR: unknown command", error_line), error_line
        assert "31m" not in next(ln for ln in coloured.splitlines() if "127.0.0.1:9 0" in ln)
        pane.keys("C-d")
        time.sleep(0.5)
    finally:
        pane.close()
    history = (state / "perlbal" / "console_history").read_text().splitlines()
    assert history[-5:] == ["SET web.buffer_size_reproxy_url = 65536", "CREATE POOL freshpool",
                            "show pool freshpool", "show pool apps", "frobnicate"]
    # a new session: Up brings back the last command of the previous one
    pane = Tmux(tmp_path, command)
    try:
        pane.wait_for(f"perlbal {LOOPBACK}:{mgmt_port}>")
        pane.keys("Up", "Up")
        screen = pane.wait_for("> show pool apps")
        assert "127.0.0.1:9 0" not in screen
        pane.keys("Enter")
        pane.wait_for("127.0.0.1:9 0")
    finally:
        pane.close()


def test_reconnects_after_the_server_closed_an_idle_connection() -> None:
    """Our management port closes a console silent for its idle_timeout (Perl never
    does); the next command reconnects instead of failing, and says so."""
    from perlbal.console_client import Connection

    web, mgmt = free_ports(2)
    conf = _conf(web, mgmt, "SET idle_timeout = 1")
    with PyPerlbal(conf):
        conn = Connection(LOOPBACK, mgmt, timeout=5)
        try:
            assert conn.command("show pool").shown == ["apps nodes 1", "apps services 1"]
            time.sleep(1.6)
            assert conn.command("show pool apps").shown == ["127.0.0.1:9 0"]
            assert conn.reconnected
        finally:
            conn.close()


# --- what the server sends is shown, never obeyed by the terminal (issue 24, item 7) --

#: a reply quoting hostile text: window title, clipboard write (OSC 52), clear
#: screen, C1 CSI (U+009B in UTF-8), DEL, a bare CR that would overwrite the line
HOSTILE_REPLY = (b"\x1b]0;owned\x07title\r\n\x1b]52;c;aGVsbG8=\x07clip\r\n\x1b[2Jcleared\r\n"
                 b"\xc2\x9b31mred\x7f\r\nhidden\rshown\ttab\r\n.\r\n")


class HostileConsole(ThreadedServer):
    """A management port that answers every command with ``HOSTILE_REPLY`` (and the
    client's sync line as a console does), one line at a time over a socket."""

    def serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while chunk := conn.recv(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    word = line.strip().decode()
                    if word == SYNC_WORD:
                        conn.sendall(SYNC_REPLY.encode() + b"\r\n")
                    elif word:
                        conn.sendall(HOSTILE_REPLY)


def test_control_characters_from_the_server_are_shown_not_obeyed() -> None:
    with HostileConsole() as server:
        proc = run_console(f"{LOOPBACK}:{server.port}", "-c", "show pool")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "^[]0;owned^Gtitle", "^[]52;c;aGVsbG8=^Gclip", "^[[2Jcleared", "M-^[31mred^?",
        "hidden^Mshown\ttab"]
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", proc.stdout)


def test_live_names_with_control_characters_are_not_offered() -> None:
    names = registry_names()
    with HostileConsole() as server:
        conn = Connection(LOOPBACK, server.port, timeout=5)
        try:
            learn_live(names, conn.command)
        finally:
            conn.close()
    # every line of the reply holds a control character: no name is learnt from it
    assert names.services == set() and names.pools == set()
    assert not any("\x1b" in name or "\x9b" in name for name in names.commands)
