"""``perlbal console [HOST:PORT]``: a client for the management port, in place of telnet.

Interactive (stdin a terminal): readline editing and history (kept in
``$XDG_STATE_HOME/perlbal/console_history``, else ``~/.local/state/...``), tab
completion of command words, services, pools, parameters and their enumerated
values, ERROR lines in red when stdout is a terminal.  ``-c COMMAND`` (may be
repeated) runs commands for scripts; so does a non-terminal stdin, one command
a line.  Exit status: 0; 1 when a reply held an ``ERROR:`` line; 2 when the
server cannot be reached or the arguments are wrong.

How a reply is framed.  Perl Perlbal 1.80's console (ClientManage.pm, and ours
byte for byte) ends listings with a lone ``.`` and answers ``OK`` or
``ERROR: ...``, but several replies carry no terminator at all (``xs``,
``mime set``, any success under ``verbose off``).  Reading "until . or OK or
ERROR" would hang on those, so each command is followed by a sync line, an
unknown command whose reply is always exactly ``ERROR: unknown command:
<word>`` and which leaves the connection's context (verbose, the last CREATE
or USE) alone.  Everything before that line is the command's whole reply.
The lone ``.`` ending a listing is protocol, not content: it is not printed.

Completion words come from two sources: the parameter registry and the
grammar's command table (what this version knows), and the live server's
``show service``, ``show pool`` and ``help`` (names that exist there, and a
Perl server's own command list).  Live names are re-read at the first TAB
after any command, so a pool created a moment ago completes.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence, TextIO

DEFAULT_ADDRESS = "127.0.0.1:60000"
SYNC_WORD = "perlbal_console_sync"
SYNC_REPLY = f"ERROR: unknown command: {SYNC_WORD}"
#: Perl's /^quit|exit$/ closes the connection; the client ends the session instead
_QUIT = re.compile(r"^\s*(quit|exit)\s*$", re.I)
_RED, _RESET = "\033[1;31m", "\033[0m"

DESCRIPTION = """\
Talk to a management port (Perl Perlbal's console protocol; works with Perl
Perlbal 1.80 too).  Without -c: an interactive prompt with history and tab
completion.  Exit status: 0 ok, 1 a reply held an ERROR: line, 2 unreachable."""


class ConsoleError(Exception):
    """The server could not be reached, or the connection broke mid-reply."""


@dataclass
class Reply:
    lines: list[str]
    #: the server closed the connection before the reply's end (quit, shutdown)
    closed: bool = False

    @property
    def failed(self) -> bool:
        return any(line.startswith("ERROR:") for line in self.lines)

    @property
    def shown(self) -> list[str]:
        """The lines to print: all but a listing's terminating ``.``."""
        return self.lines[:-1] if self.lines and self.lines[-1] == "." else self.lines


class Connection:
    """One console connection; reconnects when the server closed an idle one."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self._buf = b""
        #: set when a reconnect dropped the per-connection context (verbose, USE)
        self.reconnected = False

    def connect(self) -> None:
        try:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise ConsoleError(f"cannot connect to {self.host}:{self.port}: "
                               f"{exc.strerror or exc}") from None
        self._buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _peer_gone(self) -> bool:
        """True when the server has closed this connection (its idle_timeout)."""
        assert self.sock is not None
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def command(self, line: str) -> Reply:
        if self.sock is None or self._peer_gone():
            if self.sock is not None:
                self.close()
                self.reconnected = True
            self.connect()
        assert self.sock is not None
        try:
            self.sock.sendall(f"{line}\r\n{SYNC_WORD}\r\n".encode("utf-8"))
        except OSError as exc:
            self.close()
            raise ConsoleError(f"sending failed: {exc}") from None
        lines: list[str] = []
        while True:
            newline = self._buf.find(b"\n")
            if newline >= 0:
                raw, self._buf = self._buf[:newline], self._buf[newline + 1:]
                text = raw.rstrip(b"\r").decode("utf-8", "replace")
                if text == SYNC_REPLY:
                    return Reply(lines)
                lines.append(text)
                continue
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                self.close()
                raise ConsoleError(f"no complete reply within {self.timeout:g}s") from None
            except OSError:
                data = b""
            if not data:
                if self._buf:
                    lines.append(self._buf.decode("utf-8", "replace").rstrip("\r"))
                self.close()
                return Reply(lines, closed=True)
            self._buf += data


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or a bare ``PORT`` (on 127.0.0.1)."""
    if text.isdigit():
        return "127.0.0.1", int(text)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


# C0 but tab, DEL, and C1 (U+0080-U+009F: a UTF-8 terminal takes
# U+009B for CSI just as it takes ESC [)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _caret(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x7F:
        return "^?"
    if code >= 0x80:
        return "M-^" + chr(code - 0x80 + 0x40)
    return "^" + chr(code + 0x40)


def visible(text: str) -> str:
    """One line of ``text`` with every control character but tab shown as
    ``cat -v`` shows it (a line holds no newline; the lines are printed one to
    a line): ESC as ``^[``, BEL as ``^G``, DEL as
    ``^?``, C1's CSI as ``M-^[``.  What the server sends is data, never a
    terminal command: a reply quoting a peer's text (``ESC ] 0;...BEL`` sets the
    window title, ``ESC ] 52`` writes the clipboard, ``ESC [2J`` clears the
    screen) would otherwise act on the operator's terminal."""
    return _CONTROL.sub(_caret, text)


def render(lines: Iterable[str], color: bool) -> str:
    shown = (visible(ln) for ln in lines)
    return "".join((f"{_RED}{ln}{_RESET}" if color and ln.startswith("ERROR:") else ln) + "\n"
                   for ln in shown)


def wants_color(stream: TextIO) -> bool:
    return (stream.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM", "") != "dumb")


def history_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "perlbal", "console_history")


# --- completion ----------------------------------------------------------------


@dataclass
class Names:
    """What can be completed: from this version's tables and the live server."""

    commands: set[str] = field(default_factory=set)
    services: set[str] = field(default_factory=set)
    pools: set[str] = field(default_factory=set)
    service_params: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> values
    pool_params: dict[str, tuple[str, ...]] = field(default_factory=dict)
    server_params: dict[str, tuple[str, ...]] = field(default_factory=dict)


def registry_names() -> Names:
    """Command words from the grammar, parameters and their values from the registry."""
    from perlbal.grammar.parser import CORE_COMMANDS
    from perlbal.params import CORE_ROLES, REGISTRY, Kind, Param

    def values(param: Param) -> tuple[str, ...]:
        if param.choices:
            return param.choices
        if param.kind is Kind.BOOL:
            return ("on", "off")
        if param.kind is Kind.ROLE:
            return CORE_ROLES
        return ()

    # crash is Perl's debugging aid and ends the server: not offered
    return Names(commands=set(CORE_COMMANDS) - {"crash"} | {"disable", "quit", "exit"},
                 service_params={n: values(p) for n, p in REGISTRY.service.items()},
                 pool_params={n: values(p) for n, p in REGISTRY.pool.items()},
                 server_params={n: values(p) for n, p in REGISTRY.server.items()})


def learn_live(names: Names, ask: Callable[[str], Reply]) -> None:
    """Add the live server's services (``show service``: ``name listen STATE``), pools
    (``show pool``: ``name nodes N`` / ``name services N``) and commands (``help``)."""
    names.services = {ln.split()[0] for ln in ask("show service").shown
                      if ln.strip() and not ln.startswith(("ERROR:", "#"))
                      and not _CONTROL.search(ln)}
    names.pools = {ln.split()[0] for ln in ask("show pool").shown
                   if ln.strip() and not ln.startswith(("ERROR:", "#"))
                   and not _CONTROL.search(ln)}
    names.commands |= {ln.strip().lower() for ln in ask("help").shown
                       if re.fullmatch(r"\s*\w+\s*", ln, re.ASCII)}


_SIMPLE_ARGS = {"verbose": ("on", "off"), "shutdown": ("graceful",), "socks": ("summary",),
                "create": ("service", "pool"), "show": ("service", "pool"),
                "xs": ("enable", "disable")}


def _match(prefix: str, words: Iterable[str]) -> list[str]:
    """Words starting with ``prefix`` (case-insensitive), in the prefix's case when it
    is all capitals (``CR`` -> ``CREATE``: the console ignores the case of keywords)."""
    low = prefix.lower()
    upper = prefix.isupper()
    return sorted({w.upper() if upper else w for w in words if w.lower().startswith(low)})


def candidates(before: str, prefix: str, names: Names) -> list[str]:
    """Completions of the word ``prefix`` after the text ``before`` on the line."""
    words = [w.lower() for w in re.split(r"[\s=]+", before.strip()) if w]
    if not words:
        return _match(prefix, names.commands)
    cmd, nth = words[0], len(words)
    named = names.services | names.pools
    if cmd in _SIMPLE_ARGS and nth == 1:
        return _match(prefix, _SIMPLE_ARGS[cmd])
    if cmd == "show" and nth == 2:
        return _match(prefix, names.services if words[1] == "service" else names.pools)
    if cmd in ("enable", "disable", "states") and nth == 1:
        return _match(prefix, names.services)
    if cmd == "use" and nth == 1:
        return _match(prefix, named)
    if cmd == "pool" and nth in (1, 2):
        verbs = ("add", "remove")
        if nth == 1:
            return _match(prefix, (*verbs, *names.pools))
        return _match(prefix, names.pools if words[1] in verbs else verbs)
    if cmd in ("set", "default", "server"):
        table = (names.server_params if cmd == "server" else names.service_params
                 if cmd == "default" else {**names.service_params, **names.pool_params})
        if nth == 1:
            if cmd != "set":
                return _match(prefix, table)
            return _set_target(prefix, names)
        if nth == 2 and "=" not in before:
            return ["="]
        param = words[1].rpartition(".")[2]
        if nth == 2 and param == "pool":
            return _match(prefix, names.pools)
        if nth == 2:
            return _match(prefix, table.get(param, ()))
    return []


def _set_target(prefix: str, names: Names) -> list[str]:
    """``SET param`` or ``SET name.param`` (a service's or pool's parameter)."""
    owner, dot, _rest = prefix.partition(".")
    if dot:
        low = owner.lower()
        params = (names.pool_params if low in {p.lower() for p in names.pools}
                  else names.service_params)
        return _match(prefix, (f"{owner}.{p}" for p in params))
    out = _match(prefix, {**names.service_params, **names.pool_params})
    low = prefix.lower()
    for name in names.services | names.pools:
        if name.lower().startswith(low):  # several matches: readline stops after the dot
            params = names.pool_params if name in names.pools else names.service_params
            out += [f"{name}.{p}" for p in sorted(params)]
    return out


class Completer:
    """readline's completer: ``complete(text, state)``; live names re-read when stale."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.names: Names | None = None
        self.stale = True
        self._matches: list[str] = []

    def refresh(self) -> Names:
        if self.names is None:
            self.names = registry_names()
        if self.stale:
            try:
                learn_live(self.names, self.conn.command)
            except ConsoleError:
                pass  # completion keeps the registry's words
            self.stale = False
        return self.names

    def complete(self, text: str, state: int) -> str | None:
        import readline

        if state == 0:
            try:
                line = readline.get_line_buffer()
                before = line[:readline.get_begidx()]
                self._matches = candidates(before, text, self.refresh())
                # Python's readline appends nothing itself (as rlcompleter, add the space)
                if len(self._matches) == 1:
                    self._matches = [self._matches[0] + " "]
            except Exception:  # readline swallows errors; never break the prompt
                self._matches = []
        return self._matches[state] if state < len(self._matches) else None


# --- the two modes ------------------------------------------------------------


def run_commands(conn: Connection, commands: Iterable[str], out: TextIO) -> int:
    color = wants_color(out)
    status = 0
    for command in commands:
        if not command.strip():
            continue
        if _QUIT.match(command):
            break
        reply = conn.command(command)
        out.write(render(reply.shown, color))
        out.flush()
        if reply.failed:
            status = 1
        if reply.closed:
            break
    return status


def interactive(conn: Connection, label: str, out: TextIO) -> int:
    import readline

    path = history_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # append_history_file needs the file to exist; commands typed may hold secrets
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)
    completer = Completer(conn)
    readline.set_completer(completer.complete)
    readline.set_completer_delims(" \t\n=")
    readline.parse_and_bind("tab: complete")
    color = wants_color(out)
    out.write(f"Connected to {label} (Perlbal console). Tab completes; 'quit' or ^D ends.\n")
    while True:
        try:
            line = input(f"perlbal {label}> ")
        except EOFError:
            out.write("\n")
            return 0
        except KeyboardInterrupt:
            out.write("^C\n")
            continue
        if not line.strip():
            continue
        if line != line.strip():  # a completion's trailing space: not worth keeping
            readline.replace_history_item(readline.get_current_history_length() - 1,
                                          line.strip())
        try:
            readline.append_history_file(1, path)  # at once: a killed session keeps it
        except OSError:
            pass
        if _QUIT.match(line):
            return 0
        try:
            reply = conn.command(line)
        except ConsoleError as exc:
            out.write(render([f"ERROR: {exc}"], color))
            continue
        completer.stale = True
        if conn.reconnected:
            conn.reconnected = False
            out.write("(reconnected: the server had closed the idle connection; verbose "
                      "and the last CREATE/USE start afresh)\n")
        out.write(render(reply.shown, color))
        if reply.closed:
            out.write("(the server closed the connection)\n")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="perlbal console", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address", nargs="?", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                        help=f"the management service (default {DEFAULT_ADDRESS})")
    parser.add_argument("-c", "--command", action="append", metavar="COMMAND",
                        help="run COMMAND, print its reply and exit (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for a reply (default 30)")
    try:
        args = parser.parse_args(list(argv))
        host, port = parse_address(args.address)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    except ValueError as exc:
        print(f"perlbal console: {exc}", file=sys.stderr)
        return 2
    conn = Connection(host, port, args.timeout)
    try:
        conn.connect()
        if args.command:
            return run_commands(conn, args.command, sys.stdout)
        if not sys.stdin.isatty():
            return run_commands(conn, (ln.rstrip("\n") for ln in sys.stdin), sys.stdout)
        return interactive(conn, f"{host}:{port}", sys.stdout)
    except ConsoleError as exc:
        print(f"perlbal console: {exc}", file=sys.stderr)
        return 2
    finally:
        conn.close()
