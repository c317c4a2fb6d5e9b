"""The graph a server would start with, built dry: the real interpreter on a
config file with no sockets (``DryEffects``), for ``perlbal explain`` and the
route tests.  (Apart from ``perlbal.explain`` so that the explanation itself,
which the console's EXPLAIN also runs, needs nothing of the interpreter.)"""

from __future__ import annotations

from perlbal.graph import Graph
from perlbal.interp import CommandContext, DiskEnv, DryEffects, Interpreter
from perlbal.safefile import read_text

__all__ = ["load_graph"]


def load_graph(path: str) -> tuple[Graph, list[str]]:
    """The graph a server would start with, built dry; and the config's errors."""
    class LenientEnv(DiskEnv):
        # as perlbal check: a docroot missing here may exist where the server runs;
        # explain then says the file is not there
        def content_dir(self, path: str) -> bool:
            return True

    interp = Interpreter(effects=DryEffects())
    interp.env = LenientEnv(interp)
    errors: list[str] = []
    # named on the command line, so a pipe is fine; still never past the cap
    # (``perlbal explain -c /dev/zero`` ended in MemoryError)
    text = read_text(path, regular_only=False)
    interp.load_config_text(text, file=path, out=lambda ln: errors.append(ln)
                            if ln.startswith("ERROR") else None,
                            ctx=CommandContext(verbose=False))
    return interp.graph, errors
