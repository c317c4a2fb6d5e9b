"""#25 item 5: ``perlbal check`` catches what would stop start-up; ``--here`` makes it fail.

Every case runs the real command as a subprocess.  TLS pairs are loaded as
the server loads them (a key that does not match, an expired certificate: an
error at the line that set the file); what this host lacks (a docroot, a key
this user cannot read, the right to bind a port, a free port) is a warning
that says the config will not start here, and an error with ``--here``.
Tests run as root, so the unreadable-file and privileged-port cases run the
check as ``nobody`` through ``setpriv`` (skipped, saying why, where that
cannot work).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.operating.certs import OPENSSL, make_pki
from tests.support.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
SETPRIV = shutil.which("setpriv")


def run_check(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "perlbal.cli", "check", *args]
    if as_nobody:
        nobody = pwd.getpwnam("nobody")
        command = [SETPRIV or "setpriv", f"--reuid={nobody.pw_uid}",
                   f"--regid={nobody.pw_gid}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60,
                          stdin=subprocess.DEVNULL)


def tls_service(port: int, cert: Path, key: Path, docroot: Path) -> str:
    return (f"CREATE SERVICE secure\n  SET role = web_server\n  SET docroot = {docroot}\n"
            f"  SET listen = 127.0.0.1:{port}\n  SET enable_ssl = on\n"
            f"  SET ssl_cert_file = {cert}\n  SET ssl_key_file = {key}\nENABLE secure\n")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can read (pytest's own tmp_path is root's 0700)."""
    where = Path(tempfile.mkdtemp(prefix="perlbal-check-here-"))
    where.chmod(0o755)
    try:
        yield where
    finally:
        shutil.rmtree(where)


def _as_nobody_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the check as another user")
    if SETPRIV is None:
        pytest.skip("setpriv (util-linux) is not installed")
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    probe = run_check("--help", as_nobody=True)
    if probe.returncode != 0:
        pytest.skip(f"perlbal cannot run as nobody here: {probe.stderr.strip()[-200:]}")


def test_a_key_that_does_not_match_its_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    conf = tmp_path / "tls.conf"
    conf.write_text(tls_service(8443, pki["server-cert"], pki["a-key"], tmp_path))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert (f"{conf}:7:22: error: key {pki['a-key']} does not match certificate "
            f"{pki['server-cert']}: the server would refuse ENABLE secure\n") in proc.stderr
    conf.write_text(tls_service(8443, pki["server-cert"], pki["server-key"], tmp_path))
    good = run_check(str(conf))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip().endswith("; 0 warning(s)")


def test_an_expired_certificate(tmp_path: Path, pki: dict[str, Path]) -> None:
    assert OPENSSL is not None  # (make_pki skipped otherwise)
    expired = tmp_path / "expired-cert.pem"
    subprocess.run([OPENSSL, "req", "-new", "-key", str(pki["server-key"]), "-subj",
                    "/CN=localhost", "-out", str(tmp_path / "e.csr")], check=True,
                   capture_output=True, timeout=30)
    subprocess.run([OPENSSL, "x509", "-req", "-in", str(tmp_path / "e.csr"), "-signkey",
                    str(pki["server-key"]), "-days", "-1", "-out", str(expired)], check=True,
                   capture_output=True, timeout=30)
    conf = tmp_path / "tls.conf"
    conf.write_text(tls_service(8443, expired, pki["server-key"], tmp_path))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    [line] = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert line.startswith(f"{conf}:6:23: error: certificate {expired} expired on ")
    assert line.endswith(" UTC: every client refuses it")


def test_an_sni_pair_is_loaded_too(tmp_path: Path, pki: dict[str, Path]) -> None:
    conf = tmp_path / "tls.conf"
    conf.write_text(tls_service(8443, pki["server-cert"], pki["server-key"], tmp_path).replace(
        "ENABLE", f"  SET ssl_sni_certs = a.test={pki['a-cert']}:{pki['b-key']}\nENABLE"))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert f"{conf}:8:23: error: key {pki['b-key']} does not match certificate " \
           f"{pki['a-cert']}" in proc.stderr


def test_an_unreadable_key(shared_dir: Path, pki: dict[str, Path]) -> None:
    _as_nobody_or_skip()
    for name in ("server-cert", "server-key"):
        shutil.copy(pki[name], shared_dir / f"{name}.pem")
        (shared_dir / f"{name}.pem").chmod(0o644)
    key = shared_dir / "server-key.pem"
    key.chmod(0o600)  # root's, as a real key is
    conf = shared_dir / "tls.conf"
    conf.write_text(tls_service(8443, shared_dir / "server-cert.pem", key, shared_dir))
    conf.chmod(0o644)
    message = (f"{conf}:7:22: {{}}: key {key} cannot be read here (Permission denied, as uid "
               f"{pwd.getpwnam('nobody').pw_uid}): the server would refuse to start the "
               "listener as this user\n")
    plain = run_check(str(conf), as_nobody=True)
    assert plain.returncode == 0, plain.stderr
    assert message.format("warning") in plain.stderr
    assert "It will NOT start on this host as it is: 1 of the warnings" in plain.stdout
    here = run_check("--here", str(conf), as_nobody=True)
    assert here.returncode == 1
    assert message.format("error") in here.stderr
    assert run_check("--here", str(conf)).returncode == 0  # root reads it


def test_a_missing_docroot(tmp_path: Path) -> None:
    conf = tmp_path / "web.conf"
    conf.write_text("CREATE SERVICE w\n  SET role = web_server\n  SET docroot = /nonexistent\n"
                    "  SET listen = 127.0.0.1:8089\nENABLE w\n")
    message = (f"{conf}:3:3: {{}}: directory '/nonexistent' does not exist here; Perl Perlbal "
               "refuses to start unless it exists on the host that runs it")
    plain = run_check(str(conf))
    assert plain.returncode == 0
    assert message.format("warning") in plain.stderr
    assert plain.stdout.strip().endswith(
        "It will NOT start on this host as it is: 1 of the warnings name something it needs "
        "that this host lacks (--here makes them errors)")
    here = run_check("--here", str(conf))
    assert here.returncode == 1
    assert message.format("error") in here.stderr
    assert here.stderr.strip().endswith("FAILED: 1 error(s), 0 warning(s) in 1 file(s)")


def _unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def test_a_privileged_port_as_an_unprivileged_user(shared_dir: Path) -> None:
    _as_nobody_or_skip()
    if _unprivileged_port_start() <= 80:
        pytest.skip("this host lets any user bind port 80 (net.ipv4.ip_unprivileged_port_"
                    "start), so there is nothing to refuse")
    conf = shared_dir / "web.conf"
    conf.write_text(f"CREATE SERVICE w\n  SET role = web_server\n  SET docroot = {shared_dir}\n"
                    "  SET listen = 127.0.0.1:80\nENABLE w\n")
    conf.chmod(0o644)
    message = (f"{conf}:4:16: {{}}: port 80 is below {_unprivileged_port_start()} "
               "(net.ipv4.ip_unprivileged_port_start) and this user (uid "
               f"{pwd.getpwnam('nobody').pw_uid}) lacks CAP_NET_BIND_SERVICE: the server could "
               "not bind it (run it as root, or give it the capability)\n")
    plain = run_check(str(conf), as_nobody=True)
    assert plain.returncode == 0
    assert message.format("warning") in plain.stderr
    here = run_check("--here", str(conf), as_nobody=True)
    assert here.returncode == 1
    assert message.format("error") in here.stderr


def test_a_port_already_taken_only_with_here(tmp_path: Path) -> None:
    port, = free_ports(1)
    conf = tmp_path / "web.conf"
    conf.write_text(f"CREATE SERVICE w\n  SET role = web_server\n  SET docroot = {tmp_path}\n"
                    f"  SET listen = 127.0.0.1:{port}\nENABLE w\n")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        plain = run_check(str(conf))  # plain check never touches the network
        assert plain.returncode == 0 and plain.stderr == ""
        here = run_check("--here", str(conf))
    assert here.returncode == 1
    assert (f"{conf}:4:16: error: 127.0.0.1:{port} is already in use on this host: the "
            "server could not bind it\n") in here.stderr
    assert run_check("--here", str(conf)).returncode == 0  # free again


def test_the_rest_of_the_tls_context(tmp_path: Path, pki: dict[str, Path]) -> None:
    """A cipher list OpenSSL takes nothing from, and a FIFO among the CA files the
    server loads one by one (OpenSSL would block reading it), at their lines."""
    conf = tmp_path / "tls.conf"
    base = tls_service(8443, pki["server-cert"], pki["server-key"], tmp_path)
    conf.write_text(base.replace("ENABLE", "  SET ssl_cipher_list = NOPE-CIPHER\nENABLE"))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert (f"{conf}:8:25: error: OpenSSL takes no cipher from ssl_cipher_list 'NOPE-CIPHER' "
            "(No cipher can be selected.): the server would refuse ENABLE secure\n"
            ) in proc.stderr
    cas = tmp_path / "cas"
    cas.mkdir()
    os.mkfifo(cas / "blocking.pem")
    conf.write_text(base.replace("ENABLE", f"  SET ssl_verify_mode = 1\n"
                                           f"  SET ssl_ca_path = {cas}\nENABLE"))
    proc = run_check(str(conf))
    assert proc.returncode == 1
    assert (f"{conf}:9:21: error: CA file {cas}/blocking.pem not read: a FIFO (named pipe), "
            "not a regular file\n") in proc.stderr


def test_an_unreadable_node_file_is_a_warning(shared_dir: Path) -> None:
    """The server starts with it (no nodes from it, as Perl, silently): a warning."""
    _as_nobody_or_skip()
    nodes = shared_dir / "nodes.txt"
    nodes.write_text("127.0.0.1:8080\n")
    nodes.chmod(0o600)
    conf = shared_dir / "pool.conf"
    conf.write_text(f"CREATE POOL p\n  SET nodefile = {nodes}\n"
                    "CREATE SERVICE rp\n  SET role = reverse_proxy\n  SET pool = p\n"
                    "  SET listen = 127.0.0.1:8089\nENABLE rp\n")
    conf.chmod(0o644)
    proc = run_check(str(conf), as_nobody=True)
    assert proc.returncode == 0, proc.stderr
    assert (f"{conf}:2:3: warning: node file {nodes} cannot be read here: Permission denied; "
            "pool p has no nodes from it until it can\n") in proc.stderr


def test_a_server_user_this_host_lacks(tmp_path: Path) -> None:
    """The server stops before it serves when it cannot become SERVER user."""
    conf = tmp_path / "user.conf"
    conf.write_text(f"SERVER user = perlbal-no-such-user\nCREATE SERVICE w\n"
                    f"  SET role = web_server\n  SET docroot = {tmp_path}\n"
                    "  SET listen = 127.0.0.1:8089\nENABLE w\n")
    message = (f"{conf}:1:15: {{}}: SERVER user: no such user 'perlbal-no-such-user': the "
               "server would stop at start-up here\n")
    plain = run_check(str(conf))
    assert plain.returncode == 0
    assert message.format("warning") in plain.stderr
    here = run_check("--here", str(conf))
    assert here.returncode == 1
    assert message.format("error") in here.stderr
