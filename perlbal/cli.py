"""The ``perlbal`` command: Perl Perlbal's flags, plus subcommands.

    perlbal [--config=FILE | -c FILE] [--daemon]   run the server (Perl's flags)
    perlbal --version | --help
    perlbal check [--strict] [--perl] [--here] [--format text|json] FILE...
    perlbal explain -c FILE [options] [METHOD] URL | --expect ROUTES [--fail-under PCT]
    perlbal serve DIR [--listen HOST:PORT] [--put] [--delete] [--dirindex] [--print-config]
    perlbal console [HOST:PORT] [-c COMMAND]...      a client for the management port
    perlbal reload [-c FILE] [--pidfile FILE]        reload the running server; exit 0 if applied
    perlbal reopen-logs [-c FILE] [--pidfile FILE]   reopen its log files (SIGUSR1), for logrotate
    perlbal fmt [--check] FILE...                    rewrite configs in one canonical layout
    perlbal lsp                                      a language server on stdio (perlbal[lsp])

Subcommands come first on the line; anything else is read with Perl's options.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Sequence

from perlbal import PERL_COMPAT_VERSION, __version__

if TYPE_CHECKING:
    from perlbal.graph import Graph

DEFAULT_CONFIG = "/etc/perlbal/perlbal.conf"

USAGE = """Usage: perlbal [OPTS]
       perlbal check [--strict] [--perl] [--here] [--format text|json] FILE...
       perlbal serve DIR [--listen HOST:PORT] [--put] [--delete] [--dirindex]
       perlbal explain -c FILE [--header 'K: V']... [METHOD] URL   (or --expect ROUTES)
       perlbal console [HOST:PORT] [-c COMMAND]...   (the management console, with
                        history and tab completion; -c runs commands for scripts)
       perlbal fmt [--check] FILE...   (one canonical layout; --check: diff, exit 1;
                        - reads stdin; a file with errors is never rewritten: exit 2)
       perlbal lsp   (a language server for editors, on stdio; needs the [lsp] extra)
       perlbal reload [-c FILE] [--pidfile FILE]   (SIGHUP to the running server; waits,
                        prints what changed or why not; exit 0 only if it was applied)
       perlbal reopen-logs [-c FILE] [--pidfile FILE]   (SIGUSR1: reopen the log files)
  --help           This usage info
  --version        Print perlbal release version
  --config=[file]  Specify Perlbal config file
                   (default: /etc/perlbal/perlbal.conf)
  --daemon         Daemonize
"""

CHECK_DESCRIPTION = """\
Lint Perlbal config files without starting anything.  Every line runs through
the same interpreter the server uses, against a graph with no sockets; every
problem is reported as FILE:LINE:COL with the source line, not only the first.
(This is not Perl Perlbal's perlbal-check, which monitors a running server.)
With --here, what would stop the server starting on this host (a missing
docroot or TLS file, an unreadable key, a SERVER user it lacks, a port this
user may not bind or that is taken) is an error instead of a warning.
Exit status: 0 clean, 1 errors (or warnings with --strict), 2 usage."""


def _check_main(argv: Sequence[str]) -> int:
    from perlbal.check import check_paths

    parser = argparse.ArgumentParser(prog="perlbal check", description=CHECK_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--here", action="store_true",
                        help="this host must be able to start it: what it lacks (a "
                             "docroot, a readable key, the right to bind a port, a free "
                             "port) is an error, and each listener is bound for a moment")
    parser.add_argument("--perl", action="store_true",
                        help="also an error for each of our extensions Perl Perlbal 1.80 "
                             "would refuse (for a config that must run under both)")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    result = check_paths(args.files, perl=args.perl, here=args.here)
    if args.format == "json":
        print(result.to_json())
        return result.exit_code(args.strict)
    for diag in result.diagnostics:
        print(diag.render(), file=sys.stderr)
    errors, warnings = len(result.errors), len(result.warnings)
    if result.exit_code(args.strict) == 0:
        blockers = len(result.start_blockers)
        verdict = "" if not blockers else (
            f". It will NOT start on this host as it is: {blockers} of the warnings name "
            "something it needs that this host lacks (--here makes them errors)")
        print(f"OK: checked {len(result.files)} file(s): {result.services} service(s), "
              f"{result.pools} pool(s); {warnings} warning(s){verdict}")
    else:
        print(f"FAILED: {errors} error(s), {warnings} warning(s) in "
              f"{len(result.files)} file(s)", file=sys.stderr)
    return result.exit_code(args.strict)


SERVE_DESCRIPTION = """\
Serve DIR with a web_server and no config file (what a MogileFS storage node
needs).  The options become ordinary config commands run through the same
interpreter as a config file; --print-config shows them instead of serving."""


def serve_config(docroot: str, listen: str, *, put: bool, delete: bool, dirindex: bool,
                 mgmt: str | None) -> str:
    """The config text `perlbal serve` runs: the same commands a file would hold."""
    onoff = {True: "on", False: "off"}
    lines = [
        "# generated by: perlbal serve",
        "CREATE SERVICE serve",
        "  SET role           = web_server",
        f"  SET listen         = {listen}",
        f"  SET docroot        = {docroot}",
        f"  SET dirindexing    = {onoff[dirindex]}",
        "  SET persist_client = on",
        f"  SET enable_put     = {onoff[put]}",
        f"  SET enable_delete  = {onoff[delete]}",
        "ENABLE serve",
    ]
    if mgmt:
        lines += ["CREATE SERVICE mgmt", "  SET role   = management",
                  f"  SET listen = {mgmt}", "ENABLE mgmt"]
    return "\n".join(lines) + "\n"


def _serve_main(argv: Sequence[str]) -> int:
    import tempfile

    parser = argparse.ArgumentParser(prog="perlbal serve", description=SERVE_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", metavar="DIR")
    parser.add_argument("--listen", default="127.0.0.1:8080",
                        help="ip:port or port (default 127.0.0.1:8080)")
    parser.add_argument("--put", action="store_true", help="accept PUT uploads")
    parser.add_argument("--delete", action="store_true", help="accept DELETE")
    parser.add_argument("--dirindex", action="store_true", help="list directories")
    parser.add_argument("--mgmt", metavar="HOST:PORT", help="also run a management console")
    parser.add_argument("--print-config", action="store_true",
                        help="print the generated config and exit")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if "\n" in args.dir or "#" in args.dir:
        print("perlbal serve: DIR may not contain '#' or a newline", file=sys.stderr)
        return 2
    text = serve_config(os.path.abspath(args.dir), args.listen, put=args.put,
                        delete=args.delete, dirindex=args.dirindex, mgmt=args.mgmt)
    if args.print_config:
        sys.stdout.write(text)
        return 0
    from perlbal.runtime.main import run_server

    with tempfile.TemporaryDirectory(prefix="perlbal-serve-") as tmp:
        path = os.path.join(tmp, "serve.conf")
        with open(path, "w") as fh:
            fh.write(text)
        return run_server(path)


def _explain_main(argv: Sequence[str]) -> int:
    from perlbal.dryrun import load_graph
    from perlbal.explain import _parser, explain, parse_args, render_text

    parser = _parser("perlbal explain")
    parser.description = ("Show how the server would route a request: listener, service, "
                          "each selector rule and plugin decision, and the target.  Runs the "
                          "real interpreter and router with no sockets.  Exit status: 0 ok, "
                          "1 route mismatch or coverage under --fail-under, 2 usage or config "
                          "error.")
    parser.add_argument("--config", "-c", required=True)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--expect", metavar="ROUTES", help="a file of requests with their "
                        "expected targets (see docs/explain.md)")
    parser.add_argument("--fail-under", type=float, metavar="PERCENT",
                        help="with --expect: fail when rule coverage is lower")
    try:
        args = parser.parse_intermixed_args(list(argv))
    except (SystemExit, argparse.ArgumentError) as exc:
        if isinstance(exc, SystemExit) and exc.code == 0:
            return 0
        if isinstance(exc, argparse.ArgumentError):
            print(f"perlbal explain: {exc}", file=sys.stderr)
        return 2
    positional: list[str] = args.url
    if len(positional) == 2 and positional[0].isalpha() and positional[0].isupper():
        method_word: str | None = positional[0]
        positional = positional[1:]
    else:
        method_word = None
    if len(positional) > 1:
        print(f"perlbal explain: one URL, optionally after a method word; got "
              f"{' '.join(args.url)}", file=sys.stderr)
        return 2
    url = positional[0] if positional else None
    try:
        graph, errors = load_graph(args.config)
    except OSError as exc:
        print(f"perlbal explain: cannot read {args.config}: {exc.strerror}", file=sys.stderr)
        return 2
    if errors:
        for line in errors:
            print(f"{args.config}: {line}", file=sys.stderr)
        print("perlbal explain: the config does not load (see perlbal check)", file=sys.stderr)
        return 2
    if args.expect:
        return _route_tests(graph, args.expect, args.fail_under, args.format)
    if not url:
        print("perlbal explain: give a URL or --expect ROUTES", file=sys.stderr)
        return 2
    words = ([method_word] if method_word else []) + [url, "--from", args.peer_ip] + [w for h in args.header for w in ("-H", h)]
    for flag, value in (("--listen", args.listen), ("--method", args.method),
                        ("--host", args.host)):
        if value:
            words += [flag, value]
    try:
        request = parse_args(words)
    except ValueError as exc:
        print(f"perlbal explain: {exc}", file=sys.stderr)
        return 2
    exp = explain(graph, request)
    if args.format == "json":
        print(exp.to_json())
    else:
        print("\n".join(render_text(exp)))
    return 0


def _route_tests(graph: "Graph", path: str, fail_under: float | None, fmt: str) -> int:
    import json

    from perlbal.routetest import parse_routes, run_routes
    from perlbal.safefile import read_text

    try:
        cases, errors = parse_routes(read_text(path, regular_only=False))
    except OSError as exc:
        print(f"perlbal explain: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    if errors:
        for err in errors:
            print(f"{path}:{err}", file=sys.stderr)
        return 2
    report = run_routes(graph, cases)
    low = fail_under is not None and report.coverage < fail_under
    if fmt == "json":
        print(json.dumps({
            "cases": report.cases, "coverage": round(report.coverage, 1),
            "unused_rules": report.unused,
            "failures": [{"line": c.line, "request": c.text, "problems": p,
                          "explanation": e.model_dump(mode="json") if e else None}
                         for c, p, e in report.failures]}, indent=2))
    else:
        print("\n".join(report.render(path)))
        if low:
            print(f"FAILED: rule coverage {report.coverage:.0f}% is under {fail_under:g}%")
    return 1 if report.failures or low else 0


#: the words ``main`` dispatches on before the server's own options
SUBCOMMANDS = ("check", "explain", "serve", "lsp", "fmt", "console", "reload", "reopen-logs")


def _run_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="perlbal", add_help=False)
    parser.add_argument("--config", "-c")
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--version", action="store_true")
    args, rest = parser.parse_known_args(list(argv))
    if rest:
        # as Perl's Getopt::Long says it (the name, without dashes, lower case)
        # and exits 1; a stray word, which Perl would ignore, is an error here too
        for item in rest:
            if item.startswith("-") and item != "-":
                sys.stderr.write(f"Unknown option: {item.lstrip('-').split('=', 1)[0].lower()}\n")
            else:
                import difflib

                close = difflib.get_close_matches(item, SUBCOMMANDS, n=1)
                hint = f" (did you mean 'perlbal {close[0]}'?)" if close else ""
                sys.stderr.write(f"Unknown argument: {item}{hint}\n")
        sys.stderr.write(USAGE)
        return 1
    if args.help:
        sys.stderr.write(USAGE)
        return 0
    if args.version:
        print(f"Perlbal version {PERL_COMPAT_VERSION} (perlbal-python {__version__})")
        return 0
    config = args.config
    if config is None and os.path.exists(DEFAULT_CONFIG):
        config = DEFAULT_CONFIG
    from perlbal.runtime.main import run_server

    return run_server(config, daemon=args.daemon)


def _leave(status: int) -> int:
    """End the process now, with ``status``, once the output is flushed.

    ``perlbal check`` run as the command (``argv`` not given) leaves this way:
    tearing the interpreter down frees every module and every node of a large
    config one by one, about a tenth of checking one (issue #16 part 6).
    Nothing is registered to run at exit on this path; if the output cannot be
    flushed (a closed pipe) the interpreter's own exit reports it, as before.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return status
    os._exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "check":
        if argv is None:
            # a short-lived process: the cyclic collector would walk every module
            # and node again and again for garbage a check hardly makes
            import gc

            gc.disable()
            return _leave(_check_main(args[1:]))
        return _check_main(args[1:])
    if args and args[0] == "explain":
        return _explain_main(args[1:])
    if args and args[0] == "serve":
        return _serve_main(args[1:])
    if args and args[0] == "lsp":
        from perlbal.lsp import main as lsp_main

        return lsp_main(args[1:])
    if args and args[0] == "fmt":
        from perlbal.fmt import main as fmt_main

        return fmt_main(args[1:])
    if args and args[0] == "reload":
        from perlbal.reload_client import main as reload_main

        return reload_main(args[1:])
    if args and args[0] == "reopen-logs":
        from perlbal.reload_client import reopen_main

        return reopen_main(args[1:])
    if args and args[0] == "console":
        from perlbal.console_client import main as console_main

        return console_main(args[1:])
    return _run_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
