"""Where a backend may send Perlbal with X-REPROXY-FILE / X-REPROXY-URL (beyond Perl).

Perl Perlbal 1.80 obeys any reproxy target a backend names: ``X-REPROXY-FILE:
/etc/shadow`` is served, and ``X-REPROXY-URL`` may point at the management
port or any other host the proxy can reach (security issue #19, item 10).
Two opt-in service parameters narrow that down; both default to Perl's
behaviour:

* ``reproxy_file_roots = DIR...``: the file, with every symlink resolved
  (``os.path.realpath``), must lie under one of these directories (also
  resolved).  The resolved path is what is then served, so a symlink swapped
  after the check cannot lead elsewhere than the path that was judged.
* ``reproxy_url_hosts = any | pool | HOST[:PORT]...``: ``any`` (default) is
  Perl's behaviour; ``pool`` allows exactly the ip:port nodes of the
  service's pool; a HOST allows that host on any port, HOST:PORT only that
  port.  ``pool`` may be combined with hosts.  A reply naming several URLs is
  refused as a whole if any one of them is not allowed: a backend that names
  a forbidden target is not trusted with the others.

Every function here is pure apart from ``file_verdict``, which reads the
file system (``realpath``) and so is run on the disk threads by the caller.
A refusal is a sentence for the 502 page and the log line.

Public API::

    file_verdict(path, roots) -> FileVerdict
    url_refusal(targets, allowed, pool_nodes) -> str | None
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from perlbal.http.reproxy import ReproxyTarget
from perlbal.params import ANY_HOST as ANY, POOL_HOSTS as POOL, parse_host_entry

__all__ = ["FileVerdict", "file_verdict", "url_refusal"]


@dataclass(frozen=True)
class FileVerdict:
    """``path`` is what to serve (resolved when roots apply); ``refusal`` is None if allowed."""

    path: str
    refusal: str | None = None


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def file_verdict(path: str, roots: Sequence[str]) -> FileVerdict:
    """Judge an X-REPROXY-FILE path against ``reproxy_file_roots`` (empty: anything goes).

    A relative path or one holding NUL is left alone here: the reproxy code
    already answers 404 for those, as before.
    """
    if not roots or not os.path.isabs(path) or "\0" in path:
        return FileVerdict(path)
    resolved = os.path.realpath(path)
    for root in roots:
        if _under(resolved, os.path.realpath(root)):
            return FileVerdict(resolved)
    return FileVerdict(path, f"X-REPROXY-FILE {path} resolves to {resolved}, outside "
                             f"reproxy_file_roots ({' '.join(roots)})")


def url_refusal(targets: Sequence[ReproxyTarget], allowed: Sequence[str],
                pool_nodes: Sequence[tuple[str, int]]) -> str | None:
    """Judge X-REPROXY-URL targets against ``reproxy_url_hosts``; None when all are allowed."""
    if not allowed or ANY in allowed:
        return None
    nodes = {(ip.lower(), port) for ip, port in pool_nodes}
    hosts: list[tuple[str, int | None]] = []
    for entry in allowed:
        if entry == POOL:
            continue
        parsed = parse_host_entry(entry)
        if parsed is not None:
            hosts.append(parsed)
    for target in targets:
        host = target.host.lower()
        if POOL in allowed and (host, target.port) in nodes:
            continue
        if any(host == h and (p is None or p == target.port) for h, p in hosts):
            continue
        return (f"X-REPROXY-URL target {target.host}:{target.port} is not allowed by "
                f"reproxy_url_hosts ({' '.join(allowed)})")
    return None
