"""Certificates for the TLS tests, made with the ``openssl`` command (skipped without it).

``make_pki(dir)`` writes a CA, three server certificates (CN localhost,
a.test, b.test; each with a subjectAltName) and a client certificate signed by
the CA, each with its key, and returns their paths.  EC P-256 keys keep it fast.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")


def _run(*args: str, cwd: Path) -> None:
    subprocess.run([OPENSSL or "openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)


def _key(name: str, cwd: Path) -> None:
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}-key.pem",
         cwd=cwd)


def _signed(name: str, cn: str, cwd: Path, *, client: bool = False) -> None:
    _key(name, cwd)
    _run("req", "-new", "-key", f"{name}-key.pem", "-subj", f"/CN={cn}", "-out", f"{name}.csr",
         cwd=cwd)
    ext = cwd / f"{name}.ext"
    ext.write_text("extendedKeyUsage=clientAuth\n" if client
                   else f"subjectAltName=DNS:{cn}\nextendedKeyUsage=serverAuth\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca-cert.pem", "-CAkey", "ca-key.pem",
         "-CAcreateserial", "-days", "2", "-extfile", ext.name, "-out", f"{name}-cert.pem",
         cwd=cwd)


def make_pki(where: Path) -> dict[str, Path]:
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    where.mkdir(parents=True, exist_ok=True)
    _key("ca", where)
    _run("req", "-x509", "-new", "-key", "ca-key.pem", "-subj", "/CN=perlbal test CA",
         "-days", "2", "-out", "ca-cert.pem", cwd=where)
    for name, cn in (("server", "localhost"), ("a", "a.test"), ("b", "b.test")):
        _signed(name, cn, where)
    _signed("client", "test client", where, client=True)
    cadir = where / "cas"
    cadir.mkdir(exist_ok=True)
    shutil.copy(where / "ca-cert.pem", cadir / "ca.pem")
    return {p.stem: p for p in where.glob("*.pem")} | {"cadir": cadir}
