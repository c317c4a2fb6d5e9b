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

Commands whose rule is a plain sequence are read without Lark, by a reader
derived from the same grammar text (``fastparse``), and Lark is imported only
when a line needs it (``larkparse``): a ``perlbal check`` of a config made of
such lines never loads it.  Both build the node with ``nodes.build``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from perlbal.grammar import ast
from perlbal.grammar.fastparse import FastReader, fast_reader
from perlbal.grammar.nodes import CORE_BUILDERS, build as build_node
from perlbal.grammar.preprocess import ExpansionError, Normalized, normalize
from perlbal.grammar.syntax import (
    Arg as Arg, BadArgument, PluginArgs as PluginArgs, SyntaxExtension as SyntaxExtension,
    grammar_text as grammar_text, parser_cache_path as parser_cache_path, Tok)

if TYPE_CHECKING:
    from lark import Lark


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


def _usage(basecmd: str, core: CoreCommand | None, ext: SyntaxExtension | None) -> str:
    """What a line of this command that does not parse answers (Perl's usage text)."""
    usage = core.usage if core is not None else ext.usage if ext is not None else None
    return usage or f"Invalid syntax to '{basecmd}' command"


class Parser:
    """Parses lines with the core grammar plus the given plugin extensions."""

    def __init__(self, extensions: Iterable[SyntaxExtension] = (), *,
                 more: Callable[[], Iterable[SyntaxExtension]] | None = None) -> None:
        """``more``: asked, when a line's command is neither core nor one of
        ``extensions``, for every extension there is (the plugin registry reads
        its entry points then); if it names new ones the grammar grows."""
        self._more = more
        self._lark: Lark | None = None
        # A config repeats lines ("SET role = reverse_proxy" in every service): a
        # core command that parsed once is copied with its new position.
        self._seen: dict[tuple[str, str], ast.Node] = {}
        self._set_extensions(extensions)

    def _set_extensions(self, extensions: Iterable[SyntaxExtension]) -> None:
        self.extensions = tuple(sorted(extensions, key=lambda e: e.keyword))
        self.ext_by_keyword = {e.keyword: e for e in self.extensions}
        dupes = set(CORE_COMMANDS) & set(self.ext_by_keyword)
        if dupes:
            raise ValueError(f"plugin commands clash with core commands: {sorted(dupes)}")
        self._lark = None
        # the reader derived from this grammar text (None: every line goes to Lark)
        self._fast: FastReader | None = fast_reader(self.extensions)

    def _learn(self, keyword: str) -> SyntaxExtension | None:
        """The extension for ``keyword`` after asking ``more`` (None: there is none)."""
        if self._more is None:
            return None
        extensions = tuple(self._more())
        if {e.keyword for e in extensions} != set(self.ext_by_keyword):
            self._set_extensions(extensions)
        return self.ext_by_keyword.get(keyword)

    @property
    def lark(self) -> Lark:
        """The LALR parser, built (or loaded from its cache) the first time a line
        needs it: importing Lark and loading the tables is a good part of a small
        ``perlbal check``, and lines the parser recognises itself never need it."""
        if self._lark is None:
            from perlbal.grammar.larkparse import build

            self._lark = build(self.extensions)
        return self._lark

    def parse_line(self, raw: str, *, file: str = "<console>", line: int = 1,
                   env: Mapping[str, str] | None = None) -> ast.Node:
        if not raw or raw.isspace():  # (what normalising it would make of it)
            return ast.construct(ast.Blank, file=file, line=line, column=1, text="", orig="")
        try:
            norm = normalize(raw, env)
        except ExpansionError as exc:
            return ast.construct(
                ast.SyntaxFailure, file=file, line=line, text=raw.strip(), orig=raw.strip(),
                usage=str(exc))
        return self.parse_normalized(norm, file=file, line=line)

    def parse_normalized(self, norm: Normalized, *, file: str, line: int) -> ast.Node:
        text = norm.text
        column = norm.source_column(0)
        # (what follows depends on the text alone: a line seen before is copied)
        key = (text, norm.orig)
        seen = self._seen.get(key)
        if seen is not None:
            return ast.relocated(seen, file, line, column)
        # Nodes are made with model_construct: every field comes from the grammar
        # (or from the lines above) already checked, and validating them again
        # built pydantic's validators at each start (a third of a small check).
        base: dict[str, Any] = {
            "file": file, "line": line, "column": column, "text": text, "orig": norm.orig,
        }
        if not text or text[0].isspace():
            return ast.construct(ast.Blank, **base)
        basecmd = norm.basecmd
        if basecmd is None:
            return ast.construct(ast.InvalidCommand, **base)
        base["keyword"] = basecmd
        core = CORE_COMMANDS.get(basecmd)
        ext = self.ext_by_keyword.get(basecmd)
        if core is None and ext is None:
            ext = self._learn(basecmd)
            if ext is None:
                return ast.construct(ast.UnknownCommand, **base)
        if core is not None and core.no_opts:
            if text != basecmd:
                return ast.construct(
                    ast.SyntaxFailure, usage=f"The '{basecmd}' command takes no arguments",
                    error_column=norm.source_column(len(basecmd)), **base)
            return ast.construct(ast.Query, **base)
        if core is not None and not core.any_args and \
                text[len(basecmd):len(basecmd) + 1] not in ("", " "):
            # every core command regex wants whitespace (or the end) after its name;
            # a plugin's rule says itself (PERLREQUIRE=x needs none)
            return ast.construct(
                ast.SyntaxFailure, usage=_usage(basecmd, core, ext),
                error_column=norm.source_column(len(basecmd)), **base)
        rule = self._fast.rule(basecmd) if self._fast is not None else None
        tokens = rule.read(basecmd, text) if rule is not None else None
        result = None
        if tokens is not None:
            assert rule is not None
            result = self._build(rule.rule, tokens, norm, base, ext)
        if result is None:
            result = self._parse_with_lark(norm, base, _usage(basecmd, core, ext), ext)
        if isinstance(result, (ast.SyntaxFailure, ast.PluginCommand)):
            return result  # (a plugin node's fields hold token columns)
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[key] = result
        return result

    def _read_fast(self, norm: Normalized, base: dict[str, Any],
                   ext: SyntaxExtension | None) -> ast.Node | None:
        """The line's node from the reader derived from the grammar (None: ask Lark)."""
        read = self._fast.read(base["keyword"], norm.text) if self._fast is not None else None
        return None if read is None else self._build(read[0], read[1], norm, base, ext)

    def _build(self, rule: str, tokens: list[Tok | None], norm: Normalized,
               base: dict[str, Any], ext: SyntaxExtension | None) -> ast.Node | None:
        """The node of the tokens the derived reader read (None: ask Lark)."""
        try:
            builder = CORE_BUILDERS.get(rule)
            if builder is not None:
                return builder(tokens, base, norm)
            return build_node(rule, tokens, base, norm, self.ext_by_keyword)
        except BadArgument as bad:
            return ast.construct(ast.SyntaxFailure, usage=bad.message,
                                 error_column=norm.source_column(bad.offset), **base)
        except Exception:  # pragma: no cover - Lark's path raises it as it always did
            if ext is None:
                raise
            return None

    def _parse_with_lark(self, norm: Normalized, base: dict[str, Any], usage: str,
                         ext: SyntaxExtension | None) -> ast.Node:
        from perlbal.grammar.larkparse import UnexpectedInput, to_ast

        try:
            return to_ast(self.lark.parse(norm.text), base, norm, self.ext_by_keyword)
        except UnexpectedInput as exc:
            pos = getattr(exc, "pos_in_stream", None)
            col = norm.source_column(pos if isinstance(pos, int) else len(norm.text))
            hint = typical_mistake(base["keyword"], norm.text)
            if ext is not None and ext.mistakes:
                hint = exc.match_examples(self.lark.parse, ext.mistakes, use_accepts=True)
            return ast.construct(ast.SyntaxFailure, usage=usage, error_column=col, hint=hint,
                                 **base)
        except Exception as exc:  # lark wraps what the transformer raises
            bad = exc if isinstance(exc, BadArgument) else getattr(exc, "orig_exc", None)
            if isinstance(bad, BadArgument):
                return ast.construct(
                    ast.SyntaxFailure, usage=bad.message,
                    error_column=norm.source_column(bad.offset), **base)
            raise
