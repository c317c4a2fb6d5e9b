"""perlbal check through the real command line: output format, exit codes, hints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.configs import proxy_config

EXAMPLES = Path("/usr/share/doc/perlbal/examples")
REPO = Path(__file__).resolve().parents[2]


def run_check(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perlbal.cli", "check", *args],
                          capture_output=True, text=True, cwd=cwd or REPO, timeout=60)


def write(tmp_path: Path, text: str, name: str = "perlbal.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


DEBIAN_CONFIGS = sorted(EXAMPLES.glob("*.conf")) + [Path("/etc/perlbal/perlbal.conf")]


@pytest.mark.parametrize("conf", DEBIAN_CONFIGS, ids=[p.name for p in DEBIAN_CONFIGS])
def test_debian_sample_configs_pass_unmodified(conf: Path) -> None:
    if not conf.exists():
        pytest.skip("Debian's perlbal package is not installed")
    proc = run_check(str(conf))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: checked 1 file(s)")


def test_reports_every_error_with_position_caret_and_hint(tmp_path: Path) -> None:
    conf = write(tmp_path, (
        "CREATE POOL backends\n"
        "  POOL backends ADD 127.0.0.1:8080\n"
        "CREATE SERVICE web\n"
        "  SET role = reverse_proxy\n"
        "  SET persist_clinet = on\n"
        "  SET pool = backend\n"
        "  SET listen 127.0.0.1:80\n"
        "ENABLE wbe\n"
        "FROBNICATE everything\n"
        "CREATE SERVICE mgmt\n"
        "  SET role = managment\n"
    ))
    proc = run_check(conf)
    assert proc.returncode == 1
    err = proc.stderr
    assert f"{conf}:5:3: error: Unknown service parameter 'persist_clinet' " \
           "(did you mean 'persist_client'?)" in err
    assert "    SET persist_clinet = on\n      ^" in err
    assert f"{conf}:6:3: error: Pool 'backend' not found (did you mean 'backends'?)" in err
    assert f"{conf}:7:" in err and "usage: SET [<service>] <param> = <value>" in err
    assert f"{conf}:8:1: error: service 'wbe' does not exist (did you mean 'web'?)" in err
    assert f"{conf}:9:1: error: unknown command: frobnicate" in err
    assert f"{conf}:11:3: error: Role not valid for service mgmt (did you mean 'management'?)" \
        in err
    assert "FAILED: 6 error(s)" in err


def test_clean_config_says_what_it_checked(tmp_path: Path) -> None:
    conf = write(tmp_path, proxy_config(8081, [8080], service="web"))
    proc = run_check(conf)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK: checked 1 file(s): 1 service(s), 1 pool(s); 0 warning(s)"


def test_warnings_beyond_perl_and_strict(tmp_path: Path) -> None:
    conf = write(tmp_path, (
        "CREATE POOL empty\n"
        "CREATE SERVICE rp\n  SET role = reverse_proxy\n  SET pool = empty\n"
        "  SET listen = 127.0.0.1:8082\nENABLE rp\n"
        "CREATE SERVICE orphan\n  SET role = web_server\n  SET docroot = /tmp\nENABLE orphan\n"
        "CREATE SERVICE nopool\n  SET role = reverse_proxy\n  SET listen = 127.0.0.1:8083\n"
        "ENABLE nopool\n"
        "CREATE SERVICE mgmt\n  SET role = management\n  SET listen = 0.0.0.0:60000\n"
        "ENABLE mgmt\n"
    ))
    proc = run_check(conf)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "pool 'empty' of service 'rp' has no nodes" in err
    assert "service 'orphan' is enabled but has no listen address" in err
    assert "reverse_proxy 'nopool' has no pool" in err
    assert "management service 'mgmt' listens on 0.0.0.0:60000" in err
    assert run_check("--strict", conf).returncode == 1


def test_two_services_on_one_address_is_an_error(tmp_path: Path) -> None:
    conf = write(tmp_path, (
        "CREATE SERVICE a\n  SET role = web_server\n  SET docroot = /tmp\n"
        "  SET listen = 127.0.0.1:8090\nENABLE a\n"
        "CREATE SERVICE b\n  SET role = web_server\n  SET docroot = /tmp\n"
        "  SET listen = 127.0.0.1:8090\nENABLE b\n"
    ))
    proc = run_check(conf)
    assert proc.returncode == 1
    assert f"{conf}:10:1: error: Can't start service 'b' on 127.0.0.1:8090: " \
           "Address already in use" in proc.stderr


def test_param_on_wrong_role(tmp_path: Path) -> None:
    conf = write(tmp_path, "CREATE SERVICE p\n  SET role = reverse_proxy\n  SET docroot = /tmp\n")
    proc = run_check(conf)
    assert "3:3: error: The 'docroot' option can only be set on a 'web_server' service" \
        in proc.stderr


def test_nothing_listening_is_an_error(tmp_path: Path) -> None:
    conf = write(tmp_path, "CREATE SERVICE w\n  SET role = web_server\n  SET docroot = /tmp\n")
    proc = run_check(conf)
    assert proc.returncode == 1
    assert "no enabled service listens" in proc.stderr


def test_json_format(tmp_path: Path) -> None:
    conf = write(tmp_path, "CREATE SERVICE w\n  SET rol = web_server\n")
    proc = run_check("--format", "json", conf)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1
    assert data["ok"] is False
    first = data["diagnostics"][0]
    assert (first["line"], first["column"], first["severity"]) == (2, 3, "error")
    assert "did you mean 'role'?" in first["message"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run_check().returncode == 2
    assert run_check("--format", "xml", "x.conf").returncode == 2


def test_help_says_what_it_is() -> None:
    proc = run_check("--help")
    assert proc.returncode == 0
    assert "not Perl Perlbal's perlbal-check" in proc.stdout


def test_unreadable_file(tmp_path: Path) -> None:
    proc = run_check(str(tmp_path / "missing.conf"))
    assert proc.returncode == 1
    # the whole file: no made-up line 0 (#27)
    assert f"{tmp_path}/missing.conf: error: cannot read: No such file or directory\n" \
        in proc.stderr


def test_multiple_files_share_one_graph(tmp_path: Path) -> None:
    pools = write(tmp_path, "CREATE POOL shared\n  POOL shared ADD 127.0.0.1:9000\n", "a.conf")
    svc = write(tmp_path, ("CREATE SERVICE rp\n  SET role = reverse_proxy\n  SET pool = shared\n"
                           "  SET listen = 127.0.0.1:9001\nENABLE rp\n"), "b.conf")
    proc = run_check(pools, svc)
    assert proc.returncode == 0, proc.stderr
    assert "checked 2 file(s): 1 service(s), 1 pool(s)" in proc.stdout
