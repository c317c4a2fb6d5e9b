"""``perlbal check``: lint config files with the real interpreter and no sockets.

Every line runs through ``Interpreter`` exactly as at start-up, but with
``DryEffects`` (nothing is bound; two services on one address still clash) and
``keep_going`` set, so every problem is reported, not only the first.  Each
``ERROR:`` the interpreter answers becomes a positioned diagnostic; then
checks beyond Perl Perlbal look at the finished graph (they are warnings:
Perl would accept the config).

Severity policy, matching Perl's verdicts on real configs: a missing docroot
or upload spool directory, TLS key or certificate is a warning (content and
keys are deployed separately, and may exist on the target host); a missing
node file is an error, as Perl refuses it at the SET line.  Those warnings,
and what else this host lacks to start the server (``perlbal.checkhost``: a
TLS file this user cannot read, a port it may not bind), are marked
``blocks_start``; ``--here`` makes each an error and also bind-probes the
listeners.  What is wrong wherever the server runs (a key that does not match
its certificate, an expired certificate) is an error.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Literal

from perlbal import checkhost
from perlbal.graph import Graph
from perlbal.grammar import ast
from perlbal.grammar.parser import CORE_COMMANDS
from perlbal.interp import CommandContext, DiskEnv, DryEffects, Interpreter, Reply
from perlbal.params import CORE_ROLES, REGISTRY, did_you_mean
from perlbal.safefile import read_text

#: a note says what the dry run did instead of acting (PERLREQUIRE: where the
#: module would be imported from); it never fails a check, even with --strict
Severity = Literal["error", "warning", "note"]


@dataclass
class Diagnostic:
    file: str
    line: int
    column: int
    severity: Severity
    message: str
    source: str = ""
    #: a warning about something missing on this host that the server needs to
    #: start (a docroot, a TLS key): the file passes, but will not start here as is
    blocks_start: bool = False

    def render(self) -> str:
        # line 0: about the whole file (one named on the command line that cannot
        # be read), so no made-up position (#27)
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        head = f"{where}: {self.severity}: {self.message}"
        if not self.source:
            return head
        caret = " " * max(0, self.column - 1) + "^"
        return f"{head}\n    {self.source}\n    {caret}"


@dataclass
class CheckResult:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    services: int = 0
    pools: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    @property
    def start_blockers(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.blocks_start]

    def exit_code(self, strict: bool) -> int:
        if self.errors or (strict and self.warnings):
            return 1
        return 0

    def to_json(self) -> str:
        return json.dumps({
            "ok": not self.errors,
            "files": self.files,
            "services": self.services,
            "pools": self.pools,
            "starts_here": not self.errors and not self.start_blockers,
            "diagnostics": [asdict(d) for d in self.diagnostics],
        }, indent=2)


class _CheckEnv(DiskEnv):
    """Disk facts for a dry run: missing content directories become warnings.

    With ``live_rules`` (a SIGHUP reload: the file is about to be applied on
    this very host) the disk is judged exactly as the live interpreter judges
    it: a missing directory is an error and node files are not looked for
    beside the config."""

    def __init__(self, interp: Interpreter, live_rules: bool = False) -> None:
        super().__init__(interp)
        self.live_rules = live_rules
        self.missing_dirs: list[str] = []
        self.config_dir: str | None = None
        self.relocated: list[tuple[str, str]] = []

    def content_dir(self, path: str) -> bool:
        if self.live_rules:
            return super().content_dir(path)
        if not self.is_dir(path):
            self.missing_dirs.append(path)
        return True

    def exists(self, path: str) -> bool:
        """Node files: Perl resolves a relative path against the working
        directory.  A file missing there but shipped beside the config (as
        Debian flattens the CPAN tarball's conf/ into examples/) is accepted
        with a warning."""
        if self.live_rules:
            return super().exists(path)
        if os.path.exists(path) or os.path.isabs(path) or self.config_dir is None:
            return os.path.exists(path)
        for candidate in (os.path.join(self.config_dir, path),
                          os.path.join(self.config_dir, os.path.basename(path))):
            if os.path.exists(candidate):
                self.relocated.append((path, candidate))
                return True
        return False


class Checker:
    def __init__(self, perl: bool = False, live_rules: bool = False,
                 here: bool = False) -> None:
        #: --perl: also an error for each line Perl Perlbal 1.80 itself would refuse
        #: because it uses one of our extensions (Param.beyond_perl)
        self.perl = perl
        #: --here: bind-probe the listeners, and what would stop the server starting
        #: on this host (blocks_start) is an error, not a warning
        self.here = here
        self.interp = Interpreter(Graph(), effects=DryEffects())
        #: live_rules: judge the disk as the running server will (SIGHUP reload)
        self.env = _CheckEnv(self.interp, live_rules)
        self.interp.env = self.env
        self.interp.keep_going = True
        self.interp.observer = self._observe
        self.result = CheckResult()
        self.sources: dict[str, list[str]] = {}
        self.last_line: dict[str, int] = {}
        # where things were defined / referenced, for positioned graph checks
        self.where: dict[str, ast.Node] = {}
        #: (service or pool, parameter) -> the line that last set it; the ENABLE
        #: line of each service (checkhost positions its findings with these)
        self.set_at: dict[tuple[str, str], ast.Node] = {}
        self.enabled_at: dict[str, ast.Node] = {}
        self._context: dict[str, str | None] = {}  # file -> what a bare SET names

    # --- per line --------------------------------------------------------------

    def _source(self, file: str, line: int) -> str:
        lines = self.sources.get(file)
        if lines is None:
            try:  # (an INCLUDEd file, read once already: the same rules again)
                lines = read_text(file).splitlines()
            except OSError:
                lines = []
            self.sources[file] = lines
        return lines[line - 1] if 0 < line <= len(lines) else ""

    def add(self, node: ast.Node, severity: Severity, message: str,
            column: int | None = None, blocks_start: bool = False) -> None:
        self.result.diagnostics.append(Diagnostic(
            node.file, node.line, column or node.column, severity, message,
            self._source(node.file, node.line), blocks_start))

    def _observe(self, node: ast.Node, reply: Reply) -> None:
        file, env = node.file, self.env
        if file not in self.result.files:
            self.result.files.append(file)
        self.last_line[file] = max(self.last_line.get(file, 0), node.line)
        if env.missing_dirs:
            for path in env.missing_dirs:
                self.add(node, "warning", f"directory '{path}' does not exist here; Perl "
                         "Perlbal refuses to start unless it exists on the host that runs it",
                         blocks_start=True)
            env.missing_dirs.clear()
        if env.relocated:
            for path, found in env.relocated:
                self.add(node, "warning", f"'{path}' is not in the working directory; found "
                         f"{found}. Perl Perlbal resolves it against the directory it starts in")
            env.relocated.clear()
        for warning in reply.warnings:
            self.add(node, "warning", warning,
                     blocks_start="the server would refuse ENABLE" in warning)
        for note in reply.notes:
            self.add(node, "note", note)
        if isinstance(node, (ast.Create, ast.Use, ast.Enable, ast.Set)):
            self._remember(node)
            self._track(node, reply)
        elif isinstance(node, ast.Server) and reply.ok:
            self.set_at[("SERVER", node.key.lower())] = node
        if self.perl and reply.ok:
            self._perl_refuses(node)
        if isinstance(node, (ast.Set, ast.Default, ast.Server)):
            for quote in ('"', "'"):
                if quote in node.value and node.value.count(quote) % 2:
                    self.add(node, "warning", f"unbalanced {quote} in the value: Perl Perlbal "
                             "has no quoting, the quote becomes part of the value",
                             node.column + node.orig.find(quote))
        if reply.ok and not reply.lines:
            return  # (the common case: nothing to report)
        errors = [ln[len("ERROR: "):] for ln in reply.lines if ln.startswith("ERROR: ")]
        if not reply.ok and not errors:
            errors = [self._silent_failure(node)]
        column = node.error_column if isinstance(node, ast.SyntaxFailure) else reply.error_column
        # An ERROR on a line that still succeeded (SET plugins naming a plugin that
        # is not loaded) does not stop Perl: it is a warning.
        severity: Severity = "error" if not reply.ok else "warning"
        for message in errors:
            self.add(node, severity, message.replace("\n", " ") + self._hint(node, message),
                     column)

    def _track(self, node: ast.Node, reply: Reply) -> None:
        """Which line set what (as Perl's context: CREATE and USE name the target
        of a bare SET, per file: an INCLUDEd file starts with none)."""
        if isinstance(node, ast.Create):
            self._context[node.file] = node.name
        elif isinstance(node, ast.Use):
            self._context[node.file] = node.name
        elif not reply.ok:
            return
        elif isinstance(node, ast.Set):
            owner = node.target or self._context.get(node.file)
            if owner is not None:
                self.set_at[(owner, node.key.lower())] = node
        elif isinstance(node, ast.Enable) and node.verb == "enable":
            self.enabled_at[node.service] = node

    def _perl_refuses(self, node: ast.Node) -> None:
        if isinstance(node, ast.Set) and node.key.lower() in REGISTRY.pool \
                and node.key.lower() not in REGISTRY.service:
            pool_param = REGISTRY.pool[node.key.lower()]
            if pool_param.beyond_perl:
                self.add(node, "error", f"Perl Perlbal 1.80 has no pool parameter "
                         f"'{pool_param.name}' (ours only: Perl fails the line silently)")
            elif pool_param.perl_choices and node.value not in pool_param.perl_choices:
                self.add(node, "error", f"Perl Perlbal 1.80 knows only "
                         f"{' or '.join(pool_param.perl_choices)} for '{pool_param.name}' "
                         f"('{node.value}' is ours only: Perl answers \"Unknown balance "
                         f"method\")")
            return
        if isinstance(node, ast.Set | ast.Default):
            param = REGISTRY.service.get(node.key.lower())
            if param is not None and param.beyond_perl:
                self.add(node, "error", f"Perl Perlbal 1.80 has no service parameter "
                         f"'{param.name}' (ours only: it answers \"Unknown service "
                         f"parameter\")")
        elif isinstance(node, ast.Server):
            param = REGISTRY.server.get(node.key.lower())
            if param is not None and param.beyond_perl:
                self.add(node, "error", f"Perl Perlbal 1.80 has no SERVER setting "
                         f"'{param.name}' (ours only: it answers \"unknown server option\")")

    def _remember(self, node: ast.Node) -> None:
        fields = vars(node)  # (getattr on a pydantic model that lacks the field is slow)
        name = fields.get("name") or fields.get("service")
        if isinstance(name, str):
            self.where.setdefault(name, node)

    def _silent_failure(self, node: ast.Node) -> str:
        # Perl prints nothing for an unknown pool parameter, but stops loading
        if isinstance(node, ast.Set):
            hint = did_you_mean(node.key, REGISTRY.pool)
            extra = f" (did you mean '{hint}'?)" if hint else ""
            return (f"unknown pool parameter '{node.key}'{extra}; Perl Perlbal fails here "
                    "without saying why")
        return "command failed"

    def _hint(self, node: ast.Node, message: str) -> str:
        if isinstance(node, ast.SyntaxFailure) and node.hint:
            return f" ({node.hint})"
        graph = self.interp.graph
        candidates: list[str] = []
        word: str | None = None
        if message.startswith("unknown command:"):
            word = node.keyword
            candidates = list(CORE_COMMANDS) + [
                e.keyword for e in self.interp.plugins.syntax_extensions()]
        elif message.startswith("Unknown service parameter") and isinstance(node, ast.Set):
            word = node.key
            candidates = list(REGISTRY.service) + [
                p.name for p in self.interp.plugins.loaded_params(graph.plugins_loaded.values())]
        elif "does not exist" in message or "not found" in message.lower():
            word = (getattr(node, "service", None) or getattr(node, "target", None)
                    or getattr(node, "name", None))
            if isinstance(node, ast.Set) and message.startswith("Pool '"):
                word = node.value
                candidates = list(graph.pools)
            else:
                candidates = list(graph.services) + list(graph.pools)
        elif message.startswith("Unknown balance method") and isinstance(node, ast.Set):
            word = node.value
            candidates = list(REGISTRY.pool["balance_method"].choices)
        elif message.startswith("Role not valid") and isinstance(node, ast.Set):
            word = node.value
            candidates = list(CORE_ROLES) + sorted(self.interp.plugin_roles())
        elif message.startswith("Can't locate Perlbal/Plugin/") and isinstance(node, ast.Load):
            word = node.name
            candidates = self.interp.plugins.names()
        if not word or not isinstance(word, str):
            return ""
        hint = did_you_mean(word, [c for c in candidates if c != word])
        if hint is None and candidates:
            lowered = {c.lower(): c for c in candidates}
            hint = lowered.get(word.lower())
            if hint == word:
                hint = None
        return f" (did you mean '{hint}'?)" if hint else ""

    # --- whole files ---------------------------------------------------------------

    def check_file(self, path: str) -> None:
        try:  # named by the operator: a pipe is fine (check <(...)), still bounded
            text = read_text(path, regular_only=False)
        except OSError as exc:
            self.result.diagnostics.append(Diagnostic(path, 0, 0, "error",
                                                      f"cannot read: {exc.strerror}"))
            return
        self.sources[path] = text.splitlines()
        if path not in self.result.files:
            self.result.files.append(path)
        self.env.config_dir = os.path.dirname(os.path.abspath(path))
        self.interp.load_config_text(text, file=path, ctx=CommandContext(verbose=False))

    def finish(self) -> CheckResult:
        graph = self.interp.graph
        self.result.services = len(graph.services)
        self.result.pools = len(graph.pools)
        targets: set[str] = set()
        for svc in graph.services.values():
            for target in (svc.extra.get("vhosts") or {}).values():
                targets.add(str(target))
            for rule in svc.extra.get("vpaths") or []:
                if isinstance(rule, (list, tuple)) and len(rule) == 2:
                    targets.add(str(rule[1]))
            default = svc.tunables.default_service
            if default is not None:
                targets.add(default)
        listening = [s for s in graph.services.values() if s.enabled and
                     (s.listen or s.role == "upload_tracker")]
        if self.result.files and not self.result.errors and not listening:
            first = self.result.files[0]
            self.result.diagnostics.append(Diagnostic(
                first, max(1, self.last_line.get(first, 1)), 1, "error",
                "no enabled service listens, so the server would not start (Perl Perlbal, "
                "when nothing was ever enabled, stops with 'No services or management "
                "port configured.  Nothing to do.  Stopping.')"))
        for name, svc in graph.services.items():
            node = self.where.get(name)
            if node is None:
                first = self.result.files[0] if self.result.files else "<config>"
                node = ast.construct(ast.Blank, file=first, line=1)
            if svc.enabled and not svc.listen and name not in targets and \
                    svc.role != "upload_tracker":
                self.add(node, "warning", f"service '{name}' is enabled but has no listen "
                         "address and no selector maps to it: nothing can reach it")
            if svc.role == "reverse_proxy":
                pool = graph.pools.get(svc.pool_name or "")
                if pool is None:
                    self.add(node, "warning", f"reverse_proxy '{name}' has no pool: every "
                             "request will get 503")
                elif not pool.nodes and not pool.nodefile and not pool.tunables.dns_name:
                    self.add(node, "warning", f"pool '{pool.name}' of service '{name}' has "
                             "no nodes: requests get 503 until nodes are added")
            if svc.tunables.proxy_protocol and not svc.tunables.always_trusted \
                    and not svc.tunables.trusted_upstream_proxies:
                self.add(node, "warning", f"service '{name}' expects PROXY protocol headers "
                         "but trusts no peer to send them (trusted_upstream_proxies): every "
                         "connection will be refused")
            if svc.role == "management" and svc.listen and svc.enabled:
                host = svc.listen.rsplit(":", 1)[0] if ":" in svc.listen else "0.0.0.0"
                host = host.strip("[]")
                try:
                    loopback = ipaddress.ip_address(host).is_loopback
                except ValueError:
                    loopback = False
                if not loopback:
                    self.add(node, "warning", f"management service '{name}' listens on "
                             f"{svc.listen}: the console has no authentication, bind it to "
                             "127.0.0.1")
            for target in (svc.extra.get("vhosts") or {}).values():
                if target not in graph.services:
                    self.add(node, "warning", f"selector '{name}' maps to service '{target}', "
                             "which is never created: those requests will fail")
        if not self.env.live_rules:  # (a reload's dry run: the server prepares those)
            checkhost.run(self, here=self.here)
        if self.here:
            for diag in self.result.diagnostics:
                if diag.blocks_start:
                    diag.severity = "error"
        self.result.diagnostics.sort(key=lambda d: (self.result.files.index(d.file)
                                                    if d.file in self.result.files else 99,
                                                    d.line, d.column))
        return self.result


def check_paths(paths: list[str], *, perl: bool = False, here: bool = False) -> CheckResult:
    checker = Checker(perl=perl, here=here)
    for path in paths:
        checker.check_file(path)
    return checker.finish()
