"""#24 item 9: ``perlbal check`` never runs code a config names; the server still does.

``PERLREQUIRE = module`` was imported by check (and so by ``perlbal lsp`` on
every keystroke).  Probe modules on PYTHONPATH write a marker file when
imported: check must leave no marker and say where each module would be
found (a note, which fails nothing, even with --strict), including a dotted
name whose parent package must not run either (``importlib.util.find_spec``
would import it); the server imports them at start-up, as before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_ports
from tests.support.pyserver import PyPerlbal

REPO = Path(__file__).resolve().parents[2]
PROBES = ("perlbal_probe_mod", "perlbal_probe_pkg.sub")
_MARK = ("import os\nopen(os.path.join(os.path.dirname(os.path.abspath(__file__)), {name!r}),"
         " 'w').close()\n")


def write_probes(where: Path) -> None:
    """Modules that leave ``imported-*`` files in ``where`` (the package's one level up)."""
    (where / "perlbal_probe_mod.py").write_text(_MARK.format(name="imported-mod"))
    pkg = where / "perlbal_probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(_MARK.format(name="../imported-pkg"))
    (pkg / "sub.py").write_text(_MARK.format(name="../imported-sub"))


def _config(port: int) -> str:
    return ("LOAD Cgilike\n" + "".join(f"PERLREQUIRE = {name}\n" for name in PROBES) +
            f"CREATE SERVICE w\n  SET role = web_server\n  SET docroot = /tmp\n"
            f"  SET listen = 127.0.0.1:{port}\nENABLE w\n")


def test_check_says_where_and_imports_nothing(tmp_path: Path) -> None:
    write_probes(tmp_path)
    conf = tmp_path / "r.conf"
    conf.write_text(_config(8089) + "PERLREQUIRE = perlbal_probe_pkg.nope\n"
                    "PERLREQUIRE = perlbal_probe_mod.sub\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]))
    proc = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", "--strict", str(conf)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, env=env)
    assert list(tmp_path.glob("imported-*")) == []
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(str(conf))]
    assert lines == [
        f"{conf}:2:1: note: PERLREQUIRE = perlbal_probe_mod: the server imports "
        f"perlbal_probe_mod from {tmp_path}/perlbal_probe_mod.py when it runs this line; a "
        "dry run does not run it",
        f"{conf}:3:1: note: PERLREQUIRE = perlbal_probe_pkg.sub: the server imports "
        f"perlbal_probe_pkg.sub from {tmp_path}/perlbal_probe_pkg/sub.py when it runs this "
        "line; a dry run does not run it",
        f"{conf}:9:15: error: Failed to load perlbal_probe_pkg.nope: ModuleNotFoundError: "
        "No module named 'perlbal_probe_pkg.nope'",
        f"{conf}:10:15: error: Failed to load perlbal_probe_mod.sub: ModuleNotFoundError: "
        "No module named 'perlbal_probe_mod.sub'; 'perlbal_probe_mod' is not a package"]
    assert proc.returncode == 1  # (the two errors; the notes fail nothing)
    conf.write_text(_config(8089))
    clean = subprocess.run([sys.executable, "-m", "perlbal.cli", "check", "--strict",
                            str(conf)], capture_output=True, text=True, cwd=REPO, timeout=60,
                           env=env)
    assert clean.returncode == 0, clean.stderr
    assert list(tmp_path.glob("imported-*")) == []


def test_the_server_still_imports_at_start(tmp_path: Path) -> None:
    write_probes(tmp_path)
    port, = free_ports(1)
    with PyPerlbal(_config(port), extra_pythonpath=(str(tmp_path),)):
        assert sorted(p.name for p in tmp_path.glob("imported-*")) == [
            "imported-mod", "imported-pkg", "imported-sub"]
