"""TLS for listeners: an ``ssl.SSLContext`` built from a service's ssl_* parameters.

Perl Perlbal hands ``enable_ssl``'s options to IO::Socket::SSL when the
listener is created (Service.pm ``enable``, TCPListener.pm); we build one
``SSLContext`` per listener at the same moment and asyncio performs the
handshake on every accepted socket before the connection loop sees a byte.

Parameters, as Perl reads them:

- ``ssl_cert_file`` / ``ssl_key_file``: the PEM certificate (chain) and key;
- ``ssl_cipher_list``: an OpenSSL cipher string (TLS 1.2 and older; TLS 1.3
  suites are OpenSSL's own).  Beyond Perl, its default is Mozilla's
  "intermediate" list (``params.INTERMEDIATE_CIPHERS``), not Perl's
  ``ALL:!LOW:!EXP`` (RSA key exchange, CBC-SHA1), which remains settable;
- ``ssl_ca_path``: a directory of CA certificates trusted for client
  certificates (OpenSSL's hashed names, and, beyond Perl, any ``*.pem`` /
  ``*.crt`` in it, so ``c_rehash`` is not needed);
- ``ssl_verify_mode``: IO::Socket::SSL's bit mask: 0x01 asks for a client
  certificate and verifies it if sent, 0x02 (with 0x01) also refuses clients
  without one; 0x04 (verify once) is implied, TLS sessions keep their peer.

Beyond Perl: ``ssl_sni_certs`` (``host=cert[:key]`` entries) selects a
certificate by the server name the client sends; other names get the default.

Files and renewal: a context is built from the files' bytes (``material``:
path -> content), never from the paths themselves: OpenSSL reads each PEM from
an anonymous memory file (``memfd``) this process wrote.  So the process that
may read a root-only key (the one that kept root's rights) reads it, and any
process given the bytes builds the same context; ``digest`` names a context's
inputs (the ssl_* values and every file's content), so a SIGHUP reload sees a
renewed certificate even when no line of the config changed (``reload.py``).

Invariant: every error here is a ``TLSConfigError`` whose text is the reason
the interpreter prints after ``Can't start service ...:``; nothing is raised
from the handshake callback (an unknown name simply keeps the default).
"""

from __future__ import annotations

import errno
import hashlib
import os
import ssl
from contextlib import contextmanager
from typing import Iterator, Mapping

from perlbal.commands import ssl_enable_error
from perlbal.graph import Service
from perlbal.params import parse_sni_certs
from perlbal.safefile import read_text

__all__ = ["TLSConfigError", "build_context", "digest", "material_paths", "read_material"]

#: path -> the file's bytes, as read by the process allowed to read it
Material = Mapping[str, bytes]


class TLSConfigError(Exception):
    """The service's TLS settings cannot be used; the text says why."""

    #: a file this process is not allowed to read (after ``SERVER user``)
    denied = False


#: the parameters a context is built from, besides the files' content
SETTINGS = ("ssl_cert_file", "ssl_key_file", "ssl_sni_certs", "ssl_cipher_list",
            "ssl_verify_mode", "ssl_ca_path")


def settings(svc: Service) -> tuple[object, ...]:
    """The ssl_* values of ``svc`` (equal settings name the same files)."""
    return tuple(svc.params.get(name) for name in SETTINGS)


def _verify_mode(mode: int) -> ssl.VerifyMode:
    if not mode & 0x01:
        return ssl.CERT_NONE
    return ssl.CERT_REQUIRED if mode & 0x02 else ssl.CERT_OPTIONAL


def _load_cas(ctx: ssl.SSLContext, ca_path: str) -> None:
    try:
        ctx.load_verify_locations(capath=ca_path)
        for name in sorted(os.listdir(ca_path)):
            if name.endswith((".pem", ".crt")):
                # through safefile: a FIFO named *.pem blocked the server at its open
                pem = read_text(os.path.join(ca_path, name), errors="strict")
                ctx.load_verify_locations(cadata=pem)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TLSConfigError(f"SSL CA path ({ca_path}) unusable: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    # not every SSLError has a reason: set_ciphers raises one without it
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    if reason:
        return str(reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, KeyError):
        return f"{exc.args[0]} was not read"
    if len(exc.args) == 1:  # str() of a one-argument OSError shows the tuple
        return str(exc.args[0])
    return str(exc)


def material_paths(svc: Service) -> list[str]:
    """Every file a TLS listener of ``svc`` reads: the certificate, the key, the SNI pairs."""
    paths = [svc.tunables.ssl_cert_file, svc.tunables.ssl_key_file]
    for _host, cert, key in parse_sni_certs(svc.tunables.ssl_sni_certs):
        paths += [cert] + ([key] if key else [])
    return list(dict.fromkeys(paths))


def read_material(svc: Service) -> dict[str, bytes]:
    """Read ``material_paths(svc)`` now (raises ``TLSConfigError`` naming the file)."""
    out: dict[str, bytes] = {}
    for path in material_paths(svc):
        try:
            with open(path, "rb") as fh:
                out[path] = fh.read()
        except OSError as exc:
            why = exc.strerror or str(exc)
            denied = exc.errno in (errno.EACCES, errno.EPERM)
            if denied and os.geteuid() != 0:
                why += (f" (this process runs as uid {os.geteuid()}, not root: with "
                        "SERVER user, SERVER workers = 1 keeps a supervisor that can read "
                        "it; see 'Certificate renewal' in docs/operating.md)")
            error = TLSConfigError(f"can't read {path}: {why}")
            error.denied = denied
            raise error from None
    return out


def digest(svc: Service, material: Material) -> str:
    """What a context is built from: the ssl_* values and every file's content."""
    h = hashlib.sha256()
    for name, value in zip(SETTINGS, settings(svc)):
        h.update(f"{name}={value!r}\0".encode("utf-8", "replace"))
    for path in material_paths(svc):
        h.update(path.encode("utf-8", "replace") + b"\0" + material.get(path, b"") + b"\0")
    return h.hexdigest()


@contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open that holds ``data`` (this process's own memfd)."""
    fd = os.memfd_create("perlbal-tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _context(svc: Service, cert_file: str, key_file: str | None,
             material: Material) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ciphers = svc.tunables.ssl_cipher_list
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"SSL cipher list ({ciphers}) unusable: {_why(exc)}") from None
    try:
        with _memory_file(material[cert_file]) as cert_path, \
                _memory_file(material[key_file or cert_file]) as key_path:
            ctx.load_cert_chain(cert_path, key_path)
    except (OSError, ssl.SSLError, KeyError) as exc:
        raise TLSConfigError(f"SSL certificate ({cert_file}) or key ({key_file or cert_file}) "
                             f"unusable: {_why(exc)}") from None
    mode = _verify_mode(svc.tunables.ssl_verify_mode)
    if mode is not ssl.CERT_NONE:
        ctx.verify_mode = mode
        ca_path = svc.tunables.ssl_ca_path
        if ca_path:
            _load_cas(ctx, ca_path)
        else:
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    # a long-lived proxy: resume sessions by ticket, no per-connection renegotiation
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def build_context(svc: Service, material: Material | None = None) -> ssl.SSLContext:
    """The listener's context (raises ``TLSConfigError`` with the reason).

    ``material`` is what ``read_material(svc)`` returned (perhaps in another
    process); without it the files are read now."""
    if material is None:
        reason = ssl_enable_error(svc, os.path.isfile)
        if reason is not None:
            raise TLSConfigError(reason)
        material = read_material(svc)
    key = svc.tunables.ssl_key_file
    default = _context(svc, svc.tunables.ssl_cert_file, key, material)
    entries = parse_sni_certs(svc.tunables.ssl_sni_certs)
    if not entries:
        return default
    by_host = [(host, _context(svc, cert, key, material)) for host, cert, key in entries]
    exact = {host: ctx for host, ctx in by_host if not host.startswith("*.")}
    wild = [(host, ctx) for host, ctx in by_host if host.startswith("*.")]

    def choose(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return None
        name = server_name.lower().rstrip(".")
        chosen = exact.get(name)
        if chosen is None:
            chosen = next((ctx for host, ctx in wild if _matches(host, name)), None)
        if chosen is not None:
            sslobj.context = chosen
        return None

    default.sni_callback = choose
    return default
