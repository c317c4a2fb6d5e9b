"""The ``perlbal`` command: Perl Perlbal's flags, plus subcommands.

    perlbal [--config=FILE | -c FILE] [--daemon]   run the server (Perl's flags)
    perlbal --version | --help
    perlbal check [--strict] [--format text|json] FILE...

Subcommands come first on the line; anything else is read with Perl's options.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from perlbal import PERL_COMPAT_VERSION, __version__

DEFAULT_CONFIG = "/etc/perlbal/perlbal.conf"

USAGE = """Usage: perlbal [OPTS]
       perlbal check [--strict] [--format text|json] FILE...
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
Exit status: 0 clean, 1 errors (or warnings with --strict), 2 usage."""


def _check_main(argv: Sequence[str]) -> int:
    from perlbal.check import check_paths

    parser = argparse.ArgumentParser(prog="perlbal check", description=CHECK_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    result = check_paths(args.files)
    if args.format == "json":
        print(result.to_json())
        return result.exit_code(args.strict)
    for diag in result.diagnostics:
        print(diag.render(), file=sys.stderr)
    errors, warnings = len(result.errors), len(result.warnings)
    if result.exit_code(args.strict) == 0:
        print(f"OK: checked {len(result.files)} file(s): {result.services} service(s), "
              f"{result.pools} pool(s); {warnings} warning(s)")
    else:
        print(f"FAILED: {errors} error(s), {warnings} warning(s) in "
              f"{len(result.files)} file(s)", file=sys.stderr)
    return result.exit_code(args.strict)


def _run_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="perlbal", add_help=False)
    parser.add_argument("--config", "-c")
    parser.add_argument("--daemon", action="store_true")
    parser.add_argument("--help", "-h", action="store_true")
    parser.add_argument("--version", action="store_true")
    args, rest = parser.parse_known_args(list(argv))
    if rest:
        sys.stderr.write(f"Unknown option: {' '.join(rest)}\n" + USAGE)
        return 2
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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "check":
        return _check_main(args[1:])
    return _run_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
