"""Time `perlbal check` on a generated 10,000-line config.

1,000 pools and 1,000 services (reverse proxies, web servers and selectors with
vhosts), about 10,000 lines in all.  Target (issue: foundation): under 1 s on
the 2-core development machine.  Run:  .venv/bin/python bench/check_bench.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def generate(pools: int = 1000, services: int = 1000) -> str:
    lines = ["LOAD vhosts", ""]
    for i in range(pools):
        lines += [f"CREATE POOL pool{i}", f"  POOL pool{i} ADD 10.{i // 250}.{i % 250}.1:8080",
                  f"  POOL pool{i} ADD 10.{i // 250}.{i % 250}.2:8080", ""]
    docroot = tempfile.gettempdir()
    selectors = services // 10
    for i in range(services - selectors):
        if i % 2:
            lines += [f"CREATE SERVICE svc{i}", "  SET role = reverse_proxy",
                      f"  SET pool = pool{i % pools}", "  SET persist_backend = on",
                      "  SET buffer_size = 512k", f"ENABLE svc{i}", ""]
        else:
            lines += [f"CREATE SERVICE svc{i}", "  SET role = web_server",
                      f"  SET docroot = {docroot}", "  SET dirindexing = off",
                      f"ENABLE svc{i}", ""]
    for j in range(selectors):
        lines += [f"CREATE SERVICE sel{j}", "  SET role = selector",
                  f"  SET listen = 127.0.0.1:{20000 + j}", "  SET plugins = vhosts"]
        for k in range(9):
            lines.append(f"  VHOST host{k}.site{j}.example.com = svc{(j * 9 + k) % (services - selectors)}")
        lines += [f"ENABLE sel{j}", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    text = generate()
    with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as fh:
        fh.write(text)
        path = fh.name
    try:
        nlines = text.count("\n")
        # in-process (what the target is about) and as a command (with start-up)
        from perlbal.check import check_paths

        start = time.perf_counter()
        result = check_paths([path])
        inproc = time.perf_counter() - start
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", path],
                              capture_output=True, text=True)
        command = time.perf_counter() - start
        print(f"config: {nlines} lines, {result.pools} pools, {result.services} services, "
              f"{len(result.errors)} errors, {len(result.warnings)} warnings")
        print(f"perlbal check in-process: {inproc:.3f} s")
        print(f"perlbal check command (incl. interpreter start-up): {command:.3f} s "
              f"(exit {proc.returncode})")
        print("target: < 1 s  ->", "MET" if inproc < 1.0 else "MISSED")
        return 0 if proc.returncode == 0 else 1
    finally:
        os.unlink(path)


if __name__ == "__main__":
    sys.exit(main())
