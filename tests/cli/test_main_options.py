"""The server command's own options against Perl's: an unknown option is
named as Getopt::Long names it and exits 1, before any config is read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.pyserver import ROOT

PERL = "/usr/bin/perlbal"


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30,
                          stdin=subprocess.DEVNULL)


def _complaints(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Unknown ")]


@pytest.mark.parametrize("args", [["--bogus"], ["--bogus", "-x", "--Zed=3"],
                                  ["--daemon", "--CONFIG-FILE=/nonexistent"]])
def test_unknown_options_as_perl(args: list[str]) -> None:
    ours = _run([sys.executable, "-m", "perlbal.cli", *args])
    perl = _run([PERL, *args])
    assert perl.returncode == 1 and ours.returncode == 1, (perl.stderr, ours.stderr)
    assert _complaints(ours.stderr) == _complaints(perl.stderr) != []
    assert "Usage: perlbal [OPTS]" in ours.stderr and "--config=[file]" in ours.stderr


def test_a_stray_word_is_refused() -> None:
    """Perl ignores it and starts; a word here is more likely a mistyped
    subcommand ('perlbal chek'), so it is named and nothing starts."""
    proc = _run([sys.executable, "-m", "perlbal.cli", "--config=/nonexistent", "chek"])
    assert proc.returncode == 1
    assert _complaints(proc.stderr) == ["Unknown argument: chek (did you mean 'perlbal check'?)"]
    proc = _run([sys.executable, "-m", "perlbal.cli", "--config=/nonexistent", "zzz"])
    assert proc.returncode == 1 and _complaints(proc.stderr) == ["Unknown argument: zzz"]
