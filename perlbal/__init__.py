"""Perlbal in Python: a reverse proxy, load balancer and web server configured by
Perl Perlbal's own console language.

The package is layered: ``grammar`` parses text into AST nodes, ``params`` declares
every tunable once, ``graph`` holds the configuration as pure data, ``interp``
executes AST nodes against a graph (config files and the live console share it),
``routing`` maps a request head onto the graph, ``http`` holds sans-IO protocol
pieces and ``runtime`` runs it all on anyio.
"""

__version__ = "0.1.0"

# The Perl release whose behaviour we match; reported by `version`/`uptime`.
PERL_COMPAT_VERSION = "1.80"
