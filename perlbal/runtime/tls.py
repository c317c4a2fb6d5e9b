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

Invariant: every error here is a ``TLSConfigError`` whose text is the reason
the interpreter prints after ``Can't start service ...:``; nothing is raised
from the handshake callback (an unknown name simply keeps the default).
"""

from __future__ import annotations

import os
import ssl

from perlbal.commands import ssl_enable_error
from perlbal.graph import Service
from perlbal.params import parse_sni_certs

__all__ = ["TLSConfigError", "build_context"]


class TLSConfigError(Exception):
    """The service's TLS settings cannot be used; the text says why."""


def _verify_mode(mode: int) -> ssl.VerifyMode:
    if not mode & 0x01:
        return ssl.CERT_NONE
    return ssl.CERT_REQUIRED if mode & 0x02 else ssl.CERT_OPTIONAL


def _load_cas(ctx: ssl.SSLContext, ca_path: str) -> None:
    try:
        ctx.load_verify_locations(capath=ca_path)
        for name in sorted(os.listdir(ca_path)):
            if name.endswith((".pem", ".crt")):
                ctx.load_verify_locations(cafile=os.path.join(ca_path, name))
    except (OSError, ssl.SSLError) as exc:
        raise TLSConfigError(f"SSL CA path ({ca_path}) unusable: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _context(svc: Service, cert_file: str, key_file: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ciphers = svc.tunables.ssl_cipher_list
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise TLSConfigError(f"SSL cipher list ({ciphers}) unusable: {_why(exc)}") from None
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
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


def build_context(svc: Service) -> ssl.SSLContext:
    """The listener's context (raises ``TLSConfigError`` with the reason)."""
    reason = ssl_enable_error(svc, os.path.isfile)
    if reason is not None:
        raise TLSConfigError(reason)
    key = svc.tunables.ssl_key_file
    default = _context(svc, svc.tunables.ssl_cert_file, key)
    entries = parse_sni_certs(svc.tunables.ssl_sni_certs)
    if not entries:
        return default
    by_host = [(host, _context(svc, cert, key)) for host, cert, key in entries]
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
