"""``perlbal check``'s look at this host: what would stop the server starting here.

The interpreter's dry run judges the configuration; this module judges the
files and the rights it needs where check runs (#25 item 5):

- **TLS**: each certificate/key pair an enabled TLS service names
  (``ssl_cert_file``/``ssl_key_file``, every ``ssl_sni_certs`` entry) is read
  under ``perlbal.safefile``'s rules and loaded by OpenSSL as the server
  loads it at ENABLE (``perlbal.runtime.tls.build_context``, so the cipher
  list and CA path too).  A key that does not match its certificate, a file
  that is not PEM, an expired certificate: an error at the line that set the
  file.  A file this user cannot read: a start blocker (the server may run as
  another user), an error with ``--here``.  The CA files of ``ssl_ca_path``
  the server loads one by one must be regular files too.
- **``SERVER user``**: a user or group that does not exist here, or a start
  as another user than root, stops the server before it serves: a start
  blocker (``perlbal.runtime.daemon.drop_privileges``' own dry run).
- **Ports**: a port below ``net.ipv4.ip_unprivileged_port_start`` (1024
  unless the host lowered it) without CAP_NET_BIND_SERVICE (root has it) is a
  start blocker.
- **``--here`` only**: each listening address is bound for a moment, as the
  server binds it (SO_REUSEADDR; IPv6 only for an IPv6 address): one already
  in use, or not an address of this host, is an error.  Plain check never
  touches the network, so a config can be checked anywhere (and ``perlbal
  lsp`` binds nothing).

Every finding goes through ``Checker.add`` with the node of the line that set
the value (``Checker.set_at``), or the ENABLE line when it was a default.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import errno
import os
import re
import socket
from typing import TYPE_CHECKING

from perlbal.grammar import ast
from perlbal.graph import Service
from perlbal.params import parse_sni_certs
from perlbal.safefile import FileRefused, read_bytes

if TYPE_CHECKING:
    from perlbal.check import Checker, Severity

__all__ = ["run", "certificate_validity", "privileged_port_reason"]

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
#: CAP_NET_BIND_SERVICE's bit in /proc/self/status CapEff (linux/capability.h)
_CAP_NET_BIND_SERVICE = 10


def _report(checker: "Checker", node: ast.Node, severity: "Severity", message: str,
            blocks_start: bool = False) -> None:
    """``Checker.add``, the caret on a SET / SERVER line's value (the file, port, user)."""
    column = None
    if isinstance(node, (ast.Set, ast.Server)):
        at = node.orig.rfind(node.value)
        column = node.column + at if at >= 0 else None
    checker.add(node, severity, message, column, blocks_start)


# --- certificates ----------------------------------------------------------------

def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``at``."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(der[at:at + count], "big")
        at += count
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _time(der: bytes, at: int) -> tuple[datetime.datetime, int]:
    tag, start, end = _tlv(der, at)
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime: YYMMDDHHMM[SS]Z, years 50-99 are 19xx (RFC 5280 4.1.2.5.1)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        raise ValueError("not a time")
    when = datetime.datetime.strptime(text[:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    return when.replace(tzinfo=datetime.timezone.utc), end


def certificate_validity(pem: bytes) -> tuple[datetime.datetime, datetime.datetime]:
    """notBefore and notAfter of the first certificate in ``pem`` (ValueError if none).

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter } ...
    (RFC 5280 4.1): a few DER steps, the ssl module has no public reader."""
    match = _PEM_CERT.search(pem)
    if match is None:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        _tag, cert_start, _ = _tlv(der, 0)
        _tag, at, _ = _tlv(der, cert_start)  # tbsCertificate
        if der[at] == 0xA0:  # [0] version
            at = _tlv(der, at)[2]
        for _skip in range(3):  # serialNumber, signature, issuer
            at = _tlv(der, at)[2]
        _tag, at, _ = _tlv(der, at)  # validity
        not_before, at = _time(der, at)
        not_after, _ = _time(der, at)
    except (binascii.Error, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable certificate ({exc})") from None
    return not_before, not_after


def _read(checker: "Checker", node: ast.Node, path: str, what: str) -> bytes | None:
    try:
        return read_bytes(path)
    except FileRefused as exc:
        _report(checker, node, "error", f"{what} {path} not read: {exc.strerror}")
    except PermissionError as exc:
        _report(checker, node, "warning", f"{what} {path} cannot be read here "
                f"({exc.strerror}, as uid {os.geteuid()}): the server would refuse to "
                "start the listener as this user", blocks_start=True)
    except OSError as exc:
        _report(checker, node, "warning", f"{what} {path} cannot be read here: "
                f"{exc.strerror}", blocks_start=True)
    return None


def _check_pair(checker: "Checker", svc: Service, cert: str, key: str | None,
                cert_node: ast.Node, key_node: ast.Node) -> bool:
    """One pair; True when it loads (so the whole context can be built)."""
    if not os.path.isfile(cert) or (key is not None and not os.path.isfile(key)):
        return False  # (ENABLE already warned that it is missing here)
    pem = _read(checker, cert_node, cert, "certificate")
    key_pem = _read(checker, key_node, key, "key") if key is not None else pem
    if pem is None or key_pem is None:
        return False
    try:
        not_before, not_after = certificate_validity(pem)
    except ValueError as exc:
        _report(checker, cert_node, "error",
                f"certificate {cert} is not a PEM certificate: {exc}")
        return False
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = "%Y-%m-%d %H:%M:%S UTC"
    if not_after < now:
        _report(checker, cert_node, "error", f"certificate {cert} expired on "
                f"{not_after.strftime(stamp)}: every client refuses it")
    elif not_before > now:
        _report(checker, cert_node, "warning", f"certificate {cert} is not valid before "
                f"{not_before.strftime(stamp)}: clients refuse it until then")
    import ssl  # (only for a TLS config: check's start-up imports no ssl, #16 part 6)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            _report(checker, key_node, "error", f"key {key or cert} does not match "
                    f"certificate {cert}: the server would refuse ENABLE {svc.name}")
        else:
            reason = str(exc.reason or exc).lower().replace("_", " ")
            _report(checker, key_node, "error", f"certificate {cert} or key {key or cert} "
                    f"unusable ({reason}): the server would refuse ENABLE {svc.name}")
        return False
    except OSError as exc:
        _report(checker, key_node, "warning", f"certificate {cert} or key {key or cert} "
                f"cannot be read here: {exc.strerror}", blocks_start=True)
        return False
    return True


def _check_ca_files(checker: "Checker", svc: Service, node: ast.Node) -> bool:
    """The ``*.pem`` / ``*.crt`` files of ssl_ca_path that the server loads one by one
    when it verifies clients: each must be a regular file under the cap, or OpenSSL
    would block on a FIFO there (check's and the server's start alike)."""
    ca_path = svc.tunables.ssl_ca_path
    if not svc.tunables.ssl_verify_mode & 0x01 or not ca_path or not os.path.isdir(ca_path):
        return True
    try:
        names = sorted(os.listdir(ca_path))
    except OSError as exc:
        _report(checker, node, "warning", f"CA directory {ca_path} cannot be read here: "
                f"{exc.strerror}", blocks_start=True)
        return False
    return all(_read(checker, node, os.path.join(ca_path, name), "CA file") is not None
               for name in names if name.endswith((".pem", ".crt")))


def _check_tls(checker: "Checker", svc: Service, enable: ast.Node) -> None:
    def at(key: str) -> ast.Node:
        return checker.set_at.get((svc.name, key)) or enable

    pairs: list[tuple[str, str | None, ast.Node, ast.Node]] = [
        (svc.tunables.ssl_cert_file, svc.tunables.ssl_key_file, at("ssl_cert_file"),
         at("ssl_key_file"))]
    for _host, cert, key in parse_sni_certs(svc.tunables.ssl_sni_certs):
        pairs.append((cert, key, at("ssl_sni_certs"), at("ssl_sni_certs")))
    loaded = [_check_pair(checker, svc, *pair) for pair in pairs]
    if not all(loaded) or not _check_ca_files(checker, svc, at("ssl_ca_path")):
        return
    import ssl

    ciphers = svc.tunables.ssl_cipher_list
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(ciphers)
    except ssl.SSLError as exc:  # ("No cipher can be selected.": the args, no reason)
        _report(checker, at("ssl_cipher_list"), "error", f"OpenSSL takes no cipher from "
                f"ssl_cipher_list '{ciphers}' ({exc.args[-1]}): the server would refuse "
                f"ENABLE {svc.name}")
        return
    from perlbal.runtime.tls import TLSConfigError, build_context  # (only for TLS configs)

    try:  # the server's own context, as ENABLE builds it (the CA path too)
        build_context(svc)
    except TLSConfigError as exc:
        message = str(exc)
        node = at("ssl_ca_path") if message.startswith("SSL CA path") else enable
        _report(checker, node, "error", f"{message}: the server would refuse ENABLE {svc.name}")
    except Exception as exc:  # whatever else stops it: said, never a traceback
        _report(checker, enable, "error", f"the TLS context of {svc.name} cannot be built "
                f"({type(exc).__name__}: {exc}): the server would not start it")


# --- ports -----------------------------------------------------------------------

def _unprivileged_port_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 1024


def _can_bind_privileged() -> bool:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_NET_BIND_SERVICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return hasattr(os, "geteuid") and os.geteuid() == 0


def privileged_port_reason(port: int) -> str | None:
    """Why this process could not bind ``port``, or None when it could."""
    start = _unprivileged_port_start()
    if port == 0 or port >= start or _can_bind_privileged():
        return None
    return (f"port {port} is below {start} (net.ipv4.ip_unprivileged_port_start) and this "
            f"user (uid {os.geteuid()}) lacks CAP_NET_BIND_SERVICE: the server could not "
            "bind it (run it as root, or give it the capability)")


def _split(listen: str) -> tuple[str, int]:
    if ":" not in listen:
        return "0.0.0.0", int(listen)
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _probe(listen: str) -> str | None:
    """Bind ``listen`` for a moment, as the server would; the reason it failed."""
    host, port = _split(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"{listen} is already in use on this host: the server could not bind it"
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this host: the server could not bind {listen}"
        return f"cannot bind {listen} here: {exc.strerror}"
    return None


def _check_listen(checker: "Checker", svc: Service, enable: ast.Node, here: bool) -> None:
    listen = svc.listen
    if listen is None or svc.role == "upload_tracker":  # (UDP: nothing to compete for)
        return
    node = checker.set_at.get((svc.name, "listen")) or enable
    reason = privileged_port_reason(_split(listen)[1])
    if reason is None and here:
        reason = _probe(listen)
    if reason is not None:
        _report(checker, node, "warning", reason, blocks_start=True)


def _check_user(checker: "Checker") -> None:
    """``SERVER user``: the server stops before serving when it cannot become it."""
    spec = checker.interp.graph.settings.user
    node = checker.set_at.get(("SERVER", "user"))
    if not spec or node is None:
        return
    from perlbal.runtime.daemon import drop_privileges  # (only when SERVER user is set)

    why = drop_privileges(spec, dry_run=True)  # the server's own test, before it binds
    if why is not None:
        _report(checker, node, "warning", f"SERVER user: {why}: the server would stop at "
                "start-up here", blocks_start=True)


def run(checker: "Checker", *, here: bool) -> None:
    """Every host check on the finished graph (``here``: bind-probe the listeners too)."""
    _check_user(checker)
    for name, svc in checker.interp.graph.services.items():
        enable = checker.enabled_at.get(name)
        if not svc.enabled or enable is None:
            continue
        if svc.listen is not None and svc.tunables.enable_ssl:
            _check_tls(checker, svc, enable)
        _check_listen(checker, svc, enable, here)
