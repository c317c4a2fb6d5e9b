"""Parse one console/config line into an AST node, the way Perl dispatches it.

Perl Perlbal takes the first word of the normalised line as the command and
hands the line to that command's own regex; a line that fails it gets the
command's usage text.  We keep that contract with one Lark LALR grammar
(perlbal.lark): the first word picks the command, Lark parses the line, and a
failure becomes a ``SyntaxFailure`` node carrying Perl's usage message and the
column where parsing stopped.

Plugins contribute commands with ``SyntaxExtension``s: a rule added to the
grammar as a new alternative of ``command``.  The core grammar file is never
edited; the parser for each set of extensions is built once and cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Iterable, Mapping, TypeVar

from lark import Lark, Token, Transformer, Tree, UnexpectedInput

from perlbal.grammar import ast
from perlbal.grammar.preprocess import ExpansionError, Normalized, normalize


@dataclass(frozen=True)
class Arg:
    """One token a plugin rule matched: its terminal, its text and where it starts
    (1-based column in the raw line, so a diagnostic can point at it)."""

    kind: str
    text: str
    column: int


PluginNode = TypeVar("PluginNode", bound=ast.PluginCommand)


class PluginArgs:
    """The tokens of one plugin command, handed to its ``SyntaxExtension.build``."""

    def __init__(self, args: tuple[Arg | None, ...], base: Mapping[str, Any], plugin: str) -> None:
        self.args = args
        self.base = base
        self.plugin = plugin

    def get(self, *kinds: str) -> Arg | None:
        """The first token of one of these terminals (None when the rule had none)."""
        return next((a for a in self.args if a is not None and a.kind in kinds), None)

    def every(self, kind: str) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a is not None and a.kind == kind)

    def build(self, cls: type[PluginNode], **fields: Any) -> PluginNode:
        """``cls`` with ``fields``; an ``Arg`` becomes its text and records its
        column under the field's name (``name.i`` for a tuple of them)."""
        values: dict[str, Any] = {}
        at: list[tuple[str, int]] = []
        for name, value in fields.items():
            if isinstance(value, Arg):
                values[name] = value.text
                at.append((name, value.column))
            elif isinstance(value, tuple) and all(isinstance(v, Arg) for v in value):
                values[name] = tuple(v.text for v in value)
                at.extend((f"{name}.{i}", v.column) for i, v in enumerate(value))
            else:
                values[name] = value
        return cls(plugin=self.plugin, at=tuple(at), **values, **self.base)


@dataclass(frozen=True)
class SyntaxExtension:
    """A plugin's command: ``rule`` is the Lark body of rule ``<keyword>_cmd``.

    ``terminals`` defines the terminals (and sub-rules) the rule uses; their
    names must start with the upper-cased keyword (the lower-cased one for
    rules) to stay apart.  ``build`` turns the matched tokens into the plugin's
    typed node; without it the node is a ``PluginCommand`` whose ``args`` are
    the tokens' texts (None for an absent optional).  ``mistakes`` names typical
    wrong lines for ``UnexpectedInput.match_examples``: (hint, example lines).
    """

    keyword: str
    plugin: str
    rule: str
    usage: str | None = None
    terminals: str = ""
    build: Callable[[PluginArgs], ast.PluginCommand] | None = None
    mistakes: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


@dataclass(frozen=True)
class CoreCommand:
    usage: str | None = None  # Perl's usage text; None: "Invalid syntax to 'x' command"
    no_opts: bool = False
    any_args: bool = False  # Perl runs it whatever follows its name (dumpconfig)
    syntax: str = ""  # for the docs
    doc: str = ""  # one line, for the docs


def _c(syntax: str, doc: str, usage: str | None = None, no_opts: bool = False,
       any_args: bool = False) -> CoreCommand:
    return CoreCommand(usage=usage, no_opts=no_opts, any_args=any_args, syntax=syntax, doc=doc)


# Perl Perlbal 1.80's commands (the MANAGE_* subs), with their usage texts.
CORE_COMMANDS: dict[str, CoreCommand] = {
    "create": _c("CREATE {SERVICE|POOL} <name>", "Create a service or a pool; later SETs "
                 "without a name apply to it.", "usage: CREATE {service|pool} <name>"),
    "use": _c("USE <service_or_pool>", "Make an existing service or pool the implied target "
              "of later SETs.", "usage: USE <service_or_pool_name>"),
    "pool": _c("POOL {ADD|REMOVE} <pool> <ip>[:<port>]", "Add or remove a node (port 80 by "
               "default); the verb and the pool name may come in either order."),
    "set": _c("SET [<name>][.| ]<param> = <value>", "Set a service or pool parameter (see "
              "parameters.md); the name defaults to the last CREATE or USE.",
              "usage: SET [<service>] <param> = <value>"),
    "default": _c("DEFAULT <param> = <value>", "Change a parameter's default for services "
                  "whose role is set afterwards.", "usage: DEFAULT <param> = <value>"),
    "header": _c("HEADER <service> {INSERT|REMOVE} <header>[: <value>]", "Add or strip a "
                 "header on requests passing through the service.",
                 "Usage: HEADER <service> {INSERT|REMOVE} <header>[: <value>]"),
    "enable": _c("ENABLE <service>", "Start the service (open its listener).",
                 "Usage: {ENABLE|DISABLE} <service>"),
    "disable": _c("DISABLE <service>", "Stop accepting on the service's listener; open "
                  "connections finish.", "Usage: {ENABLE|DISABLE} <service>"),
    "load": _c("LOAD <plugin>", "Load a plugin (name as typed, lower-case or Capitalised)."),
    "unload": _c("UNLOAD <plugin>", "Unload a plugin."),
    "reload": _c("RELOAD <plugin>", "Reload a plugin that supports it (no stock plugin does)."),
    "verbose": _c("VERBOSE {on|off}", "Whether successful commands answer OK (on by default "
                  "on a console, off in config files).", "usage: VERBOSE {on|off}"),
    "shutdown": _c("SHUTDOWN [GRACEFUL [<seconds>]]", "Exit now, or stop accepting and exit "
                   "once in-flight requests finish (forcibly after <seconds>)."),
    "mime": _c("MIME [LIST | SET <ext> <type> | REMOVE <ext>]", "Show or change the "
               "extension-to-Content-Type table of the web server."),
    "xs": _c("XS [{ENABLE|DISABLE} <module>]", "Perl's XS accelerators; 'headers' is "
             "accepted for compatibility (our header parser is always on)."),
    "node": _c("NODE [<ip>[:<port>]]", "Same as NODES."),
    "nodes": _c("NODES [<ip>[:<port>]]", "Per-backend-node statistics."),
    "show": _c("SHOW {SERVICE [<name>] | POOL [<name>]}", "List services or pools, or "
               "describe one."),
    "server": _c("SERVER <setting> = <value>", "Process-wide settings (see parameters.md)."),
    "socks": _c("SOCKS [all|summary]", "Open sockets with their age and state."),
    "states": _c("STATES [<service>]", "Connections counted by class and state."),
    "state": _c("STATE CHANGES", "Perl debugging aid; answers an ERROR here."),
    "prof": _c("PROF {on|off|data}", "Perl profiler; answers an ERROR here."),
    "leaks": _c("LEAKS", "Perl debugging aid; answers an ERROR here."),
    "crash": _c("CRASH", "Crashes Perl Perlbal on purpose; here it only answers an ERROR."),
    "explain": _c("EXPLAIN [<METHOD>] <url> [--listen ip:port] [--header 'K: V']... "
                  "[--from ip] [--host h]", "Not in Perl Perlbal: how the running server "
                  "routes that request (listener, rules tried, plugin decisions, target); "
                  "see explain.md.", "usage: EXPLAIN [<METHOD>] <url> [options]"),
    "dumpconfig": _c("DUMPCONFIG", "Print the running configuration as commands that "
                     "rebuild it.", any_args=True),
    "reproxy_state": _c("REPROXY_STATE", "Reproxy connections and queues by host.",
                        any_args=True),
    "obj": _c("OBJ", "Live object counts.", no_opts=True),
    "fd": _c("FD", "File descriptor limit and use.", no_opts=True),
    "proc": _c("PROC", "Time, pid, CPU use and requests served since the last PROC.",
               no_opts=True),
    "uptime": _c("UPTIME", "Start time, uptime and version.", no_opts=True),
    "version": _c("VERSION", "Same as UPTIME.", no_opts=True),
    "track": _c("TRACK", "Perl object tracking; answers an ERROR here.", no_opts=True),
    "backends": _c("BACKENDS", "Open backend connections per node.", no_opts=True),
    "noverify": _c("NOVERIFY", "Nodes currently exempt from verify_backend, with seconds "
                   "left.", no_opts=True),
    "pending": _c("PENDING", "Backend connections being opened, by service and node.",
                  no_opts=True),
    "queues": _c("QUEUES", "Age and length of each reverse proxy's request queues.",
                 no_opts=True),
    "plugins": _c("PLUGINS", "Plugins in use, per service.", no_opts=True),
    "help": _c("HELP", "List the commands.", no_opts=True),
    "aio": _c("AIO", "Disk I/O statistics.", no_opts=True),
    "gladiator": _c("GLADIATOR", "Perl memory walker; answers an ERROR here.", no_opts=True),
    "varsize": _c("VARSIZE", "Perl data structure sizes; answers an ERROR here.",
                  no_opts=True),
}

# What `help` lists: Perl's MANAGE_* names (not crash or our additions).
OUR_COMMANDS = frozenset({"explain"})
PERL_HELP = sorted(k for k in CORE_COMMANDS if k != "crash" and k not in OUR_COMMANDS)


def _grammar_text() -> str:
    return resources.files("perlbal.grammar").joinpath("perlbal.lark").read_text()


_CORE_RULES = [
    "create_cmd", "use_cmd", "pool_cmd", "set_cmd", "default_cmd", "header_cmd",
    "enable_cmd", "load_cmd", "unload_cmd", "reload_cmd", "verbose_cmd", "shutdown_cmd",
    "mime_cmd", "xs_cmd", "nodes_cmd", "show_cmd", "server_cmd", "socks_cmd", "states_cmd",
    "simple_cmd", "any_args_cmd", "perl_only_cmd", "explain_cmd",
]


def grammar_text(extensions: tuple[SyntaxExtension, ...]) -> str:
    """perlbal.lark plus one ``command`` alternative per extension, with its rule."""
    rules = _CORE_RULES + [f"{e.keyword}_cmd" for e in extensions]
    text = _grammar_text()
    text += "\n?command: " + "\n        | ".join(rules) + "\n"
    for ext in extensions:
        text += f"\n{ext.keyword}_cmd: {ext.rule}\n{ext.terminals}\n"
    return text


def parser_cache_path(text: str) -> str | None:
    """Where Lark keeps the LALR tables built for grammar ``text``: one file per
    grammar (so plugin sets never evict each other) under the user's cache
    directory; None when it cannot be created (then every start builds them)."""
    import hashlib
    import os

    import lark

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "perlbal")
    digest = hashlib.sha256(f"{lark.__version__}\0{text}".encode()).hexdigest()[:32]
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return os.path.join(folder, f"grammar-{digest}.lark") if os.access(folder, os.W_OK) else None


@functools.lru_cache(maxsize=16)
def _build(extensions: tuple[SyntaxExtension, ...]) -> Lark:
    # Building the LALR tables takes about as long as checking a small config;
    # Lark's cache stores them and checks they belong to this very grammar text.
    text = grammar_text(extensions)
    cache = parser_cache_path(text)
    return Lark(text, parser="lalr", lexer="contextual", maybe_placeholders=True,
                cache=cache if cache is not None else False)


class _BadArgument(Exception):
    """Raised inside the transformer for an argument we refuse although Perl takes it;
    ``offset`` is where in the normalised line the offending text starts."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# RFC 9110 section 5.1 (field-name = token) and 5.5 (field values hold no CTL
# but HTAB).  Beyond Perl, which inserts whatever the line holds: a CR, LF or
# NUL in an inserted header would corrupt or split every backend request.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _field_value_bad(c: str) -> bool:
    return (c < " " and c != "\t") or c == "\x7f"


def _visible(text: str) -> str:
    """``text`` with control bytes spelled out, fit for an ERROR line."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _check_inserted_header(name: Token, value: Token) -> None:
    bad = next((i for i, c in enumerate(name) if c not in _TCHAR), None)
    if bad is not None:
        raise _BadArgument(f"invalid header name '{_visible(name)}': a header name is an "
                           "RFC 9110 token (letters, digits and !#$%&'*+-.^_`|~)",
                           (name.start_pos or 0) + bad)
    bad = next((i for i, c in enumerate(value) if _field_value_bad(c)), None)
    if bad is not None:
        raise _BadArgument(f"invalid header value '{_visible(value)}': control character "
                           f"\\x{ord(value[bad]):02x} (only HTAB is allowed)",
                           (value.start_pos or 0) + bad)


def _s(tok: Any) -> str | None:
    return None if tok is None else str(tok)


def _tokens(children: Iterable[Any]) -> Iterable[Token | None]:
    for child in children:
        if isinstance(child, Tree):
            yield from _tokens(child.children)
        else:
            yield child


class _ToAst(Transformer[Token, ast.Node]):
    def __init__(self, base: dict[str, Any], norm: Normalized,
                 extensions: Mapping[str, SyntaxExtension]) -> None:
        super().__init__()
        self.base = base
        self.norm = norm
        self.extensions = extensions

    def start(self, items: list[ast.Node]) -> ast.Node:
        return items[0]

    def create_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Create(kind=str(t[0]), name=str(t[1]), **self.base)  # type: ignore[arg-type]

    def use_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Use(name=str(t[0]), **self.base)

    def pool_cmd(self, t: list[Token]) -> ast.Node:
        port = int(t[3]) if t[3] is not None else None
        return ast.PoolEdit(word1=str(t[0]), word2=str(t[1]), ip=str(t[2]), port=port, **self.base)

    def set_cmd(self, t: list[Token]) -> ast.Node:
        # SET_TARGET is "<service>." or "<service> ": drop the separator
        target = None if t[0] is None else str(t[0])[:-1]
        return ast.Set(target=target, key=str(t[1]), value=str(t[2]), **self.base)

    def default_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Default(key=str(t[0]), value=str(t[1]), **self.base)

    def header_cmd(self, t: list[Token]) -> ast.Node:
        action, name, value = str(t[1]), t[2], t[3]
        if action == "insert" and value is not None:
            # (without a value the handler answers Perl's "no value provided")
            _check_inserted_header(name, value)
        return ast.Header(service=str(t[0]), action=action,  # type: ignore[arg-type]
                          header=str(name), value=_s(value), **self.base)

    def enable_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Enable(verb=str(t[0]), service=str(t[1]), **self.base)  # type: ignore[arg-type]

    def load_cmd(self, t: list[Token]) -> ast.Node:
        # Perl takes the plugin name from the original case of the line
        # ($mc->orig =~ /^load (\w+)$/i), which a variable expansion spoils
        name, orig = str(t[0]), self.norm.orig
        if orig.lower() == self.norm.text and t[0].start_pos is not None:
            name = orig[t[0].start_pos:t[0].start_pos + len(name)]
        return ast.Load(name=name, **self.base)

    def unload_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Unload(name=str(t[0]), **self.base)

    def reload_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Reload(name=str(t[0]), **self.base)

    def verbose_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Verbose(on=str(t[0]) == "on", **self.base)

    def shutdown_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Shutdown(graceful=t[0] is not None,
                            timeout=int(t[1]) if t[1] is not None else None, **self.base)

    def mime_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Mime(sub=_s(t[0]), arg1=_s(t[1]), arg2=_s(t[2]), **self.base)

    def xs_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Xs(sub=_s(t[0]), module=_s(t[1]), **self.base)

    def nodes_cmd(self, t: list[Token]) -> ast.Node:
        port = int(t[2]) if t[2] is not None else None
        return ast.Nodes(ip=_s(t[1]), port=port, **self.base)

    def show_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Show(what=str(t[0]), name=_s(t[1]), **self.base)  # type: ignore[arg-type]

    def server_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Server(key=str(t[0]), value=str(t[1]), **self.base)

    def socks_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Socks(mode=_s(t[0]), **self.base)

    def states_cmd(self, t: list[Token]) -> ast.Node:
        return ast.States(service=_s(t[0]), **self.base)

    def simple_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Query(**self.base)

    def any_args_cmd(self, t: list[Token]) -> ast.Node:
        return ast.AnyArgs(**self.base)

    def explain_cmd(self, t: list[Token]) -> ast.Node:
        return ast.Explain(args=_s(t[0]) or "", **self.base)

    def perl_only_cmd(self, t: list[Token]) -> ast.Node:
        return ast.PerlOnly(**self.base)

    def __default__(self, data: str, children: list[Any], meta: Any) -> Any:
        ext = self.extensions.get(data[: -len("_cmd")]) if data.endswith("_cmd") else None
        if ext is None:
            return Tree(data, children, meta)  # a plugin's sub-rule: flattened below
        args = tuple(None if tok is None else Arg(tok.type, str(tok),
                                                  self.norm.source_column(tok.start_pos or 0))
                     for tok in _tokens(children))
        if ext.build is not None:
            return ext.build(PluginArgs(args, self.base, ext.plugin))
        return ast.PluginCommand(plugin=ext.plugin, args=tuple(None if a is None else a.text
                                                               for a in args),
                                 at=tuple((f"args.{i}", a.column)
                                          for i, a in enumerate(args) if a is not None),
                                 **self.base)


_NEEDS_EQUALS = frozenset({"set", "default", "server", "vhost", "vpath", "include"})


def typical_mistake(basecmd: str, text: str) -> str | None:
    """Name a common mistake in a line that failed to parse (for diagnostics)."""
    words = text.split(" ")
    if basecmd in _NEEDS_EQUALS and "=" not in text:
        return "missing '=' between the parameter and its value"
    if basecmd == "create" and (len(words) < 2 or words[1] not in ("service", "pool")):
        return "expected SERVICE or POOL after CREATE"
    if basecmd == "create" and len(words) != 3:
        return "expected one name made of letters, digits and '_'"
    if basecmd in ("pool", "nodes", "node"):
        return "expected an address as <ip>[:<port>], e.g. 10.0.0.1:8080"
    if basecmd == "header" and (len(words) < 3 or words[2] not in ("insert", "remove")):
        return "expected INSERT or REMOVE after the service name"
    if basecmd in ("enable", "disable", "use") and len(words) != 2:
        return "expected exactly one service name"
    return None


_SEEN_MAX = 4096


class Parser:
    """Parses lines with the core grammar plus the given plugin extensions."""

    def __init__(self, extensions: Iterable[SyntaxExtension] = ()) -> None:
        self.extensions = tuple(sorted(extensions, key=lambda e: e.keyword))
        self.ext_by_keyword = {e.keyword: e for e in self.extensions}
        dupes = set(CORE_COMMANDS) & set(self.ext_by_keyword)
        if dupes:
            raise ValueError(f"plugin commands clash with core commands: {sorted(dupes)}")
        self.lark = _build(self.extensions)
        # A config repeats lines ("SET role = reverse_proxy" in every service): a
        # core command that parsed once is copied with its new position.
        self._seen: dict[tuple[str, str], ast.Node] = {}

    def parse_line(self, raw: str, *, file: str = "<console>", line: int = 1,
                   env: Mapping[str, str] | None = None) -> ast.Node:
        try:
            norm = normalize(raw, env)
        except ExpansionError as exc:
            return ast.SyntaxFailure(file=file, line=line, text=raw.strip(), orig=raw.strip(),
                                     usage=str(exc))
        return self.parse_normalized(norm, file=file, line=line)

    def parse_normalized(self, norm: Normalized, *, file: str, line: int) -> ast.Node:
        base: dict[str, Any] = {
            "file": file, "line": line, "column": norm.source_column(0),
            "text": norm.text, "orig": norm.orig,
        }
        if not norm.text or norm.text[0].isspace():
            return ast.Blank(**base)
        basecmd = norm.basecmd
        if basecmd is None:
            return ast.InvalidCommand(**base)
        base["keyword"] = basecmd
        core = CORE_COMMANDS.get(basecmd)
        ext = self.ext_by_keyword.get(basecmd)
        if core is None and ext is None:
            return ast.UnknownCommand(**base)
        if core is not None and core.no_opts:
            if norm.text != basecmd:
                return ast.SyntaxFailure(usage=f"The '{basecmd}' command takes no arguments",
                                         error_column=norm.source_column(len(basecmd)), **base)
            return ast.Query(**base)
        usage = (core.usage if core is not None else ext.usage if ext is not None else None)
        usage = usage or f"Invalid syntax to '{basecmd}' command"
        after = norm.text[len(basecmd):len(basecmd) + 1]
        if core is not None and after not in ("", " ") and not core.any_args:
            # every core command regex wants whitespace (or the end) after its name;
            # a plugin's rule says itself (PERLREQUIRE=x needs none)
            return ast.SyntaxFailure(usage=usage, error_column=norm.source_column(len(basecmd)),
                                     **base)
        seen = self._seen.get((norm.text, norm.orig))
        if seen is not None:
            return seen.model_copy(update={"file": file, "line": line, "column": base["column"]})
        try:
            tree = self.lark.parse(norm.text)
            result = _ToAst(base, norm, self.ext_by_keyword).transform(tree)
        except UnexpectedInput as exc:
            pos = getattr(exc, "pos_in_stream", None)
            col = norm.source_column(pos if isinstance(pos, int) else len(norm.text))
            hint = typical_mistake(basecmd, norm.text)
            if ext is not None and ext.mistakes:
                hint = exc.match_examples(self.lark.parse, ext.mistakes, use_accepts=True)
            return ast.SyntaxFailure(usage=usage, error_column=col, hint=hint, **base)
        except Exception as exc:  # lark wraps what the transformer raises
            bad = exc if isinstance(exc, _BadArgument) else getattr(exc, "orig_exc", None)
            if isinstance(bad, _BadArgument):
                return ast.SyntaxFailure(usage=bad.message,
                                         error_column=norm.source_column(bad.offset), **base)
            raise
        assert isinstance(result, ast.Node)
        if not isinstance(result, ast.PluginCommand):  # whose fields hold token columns
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[(norm.text, norm.orig)] = result
        return result
