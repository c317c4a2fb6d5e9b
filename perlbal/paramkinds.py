"""How a parameter's text becomes its value: kinds, the Param record, coercers.

The machinery behind ``perlbal.params`` (which declares every parameter with
it and re-exports these names).  Coercion is pure: ``Param.coerce(raw, env)``
returns the stored value or raises ``ParamError`` whose text is Perl Perlbal
1.80's own message, so a console client sees the same ``ERROR:`` line from us
as from Perl.  ``CheckEnv`` is all a coercer may ask of the world (what exists
on disk, which pools and services exist), so a dry run coerces exactly as the
server does.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Union

ParamValue = Union[bool, int, str, list[str], None]

ALL_ROLES = "*"
CORE_ROLES = ("reverse_proxy", "web_server", "management", "selector", "upload_tracker")


class ParamError(Exception):
    """A value was refused; ``str(self)`` is the exact text after ``ERROR: ``."""


class DuplicateParam(Exception):
    """Two declarations of one parameter name in one scope: a programming error."""


class CheckEnv(Protocol):
    """What coercion may ask about the world: the graph's names and the disk."""

    def pool_exists(self, name: str) -> bool: ...

    def service_exists(self, name: str) -> bool: ...

    def plugin_role_exists(self, role: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def content_dir(self, path: str) -> bool:
        """Is ``path`` a directory the service can serve from or spool into?

        A dry run may answer True for a directory that is missing here but will
        be deployed on the target host, and report it as a warning instead.
        """
        ...

    def is_file(self, path: str) -> bool: ...

    def exists(self, path: str) -> bool: ...


class Kind(enum.Enum):
    """How a raw string becomes a stored value (and how it is documented)."""

    BOOL = "bool"
    INT = "int"
    SIZE = "size"
    STRING = "string"
    LISTEN = "ip:port"
    ROLE = "role"
    POOL_REF = "pool name"
    SERVICE_REF = "service name"
    DIRECTORY = "directory"
    FILE_OR_DEFAULT = "file (or its default)"
    DIRECTORY_OR_NONE = "directory (optional)"
    EXECUTABLE = "executable"
    PERCENT = "int 0-100"
    LIST = "list"
    NETMASK_LIST = "netmask list"
    UDP_ENDPOINTS = "ip:port list"
    RETRY_SCHEDULE = "seconds list"
    BALANCE_METHOD = "enum"
    NODEFILE = "node file"
    REGEX = "regex"
    LOOSE_INT = "number"
    SNI_CERTS = "host=cert:key list"
    ACCESS_LOG_FORMAT = "log format"
    DIRECTORY_LIST = "directory list"
    REPROXY_HOSTS = "any | pool | host[:port] list"
    HASH_KEY = "hash key"
    SECONDS = "seconds"
    STATUS_LIST = "status list"
    URI_PATH = "path (or empty)"
    CHOICE = "one of its values"
    DNS_NAME = "host:port or SRV name"
    DNS_SERVER = "ip:port (or empty)"


class Effect(enum.Enum):
    """Side effects of a successful SET, carried out by the interpreter."""

    NONE = "none"
    INIT_ROLE = "init_role"  # role: (re)apply every default for the new role
    REBIND = "rebind"  # listen: reopen the listener if the service is enabled
    SPAWN_BACKENDS = "spawn_backends"  # connect_ahead
    NOT_STORED = "not_stored"  # reproxy_cache_maxsize: Perl never stores it
    SET_BOTH_TIMEOUTS = "set_both_timeouts"  # persist_client_timeout
    POOL_REF = "pool_ref"  # pool: adjust use counts, bump generation


@dataclass(frozen=True)
class Param:
    """One tunable.  ``default`` is the raw default text, coerced like a SET."""

    name: str
    kind: Kind
    doc: str
    roles: str | tuple[str, ...] = ALL_ROLES
    default: str | None = None
    live: bool = True
    required: bool = False
    dump_ignore: bool = False
    effect: Effect = Effect.NONE
    plugin: str | None = None
    choices: tuple[str, ...] = ()
    #: ours only: Perl Perlbal 1.80 refuses the line (``perlbal check --perl`` says so)
    beyond_perl: bool = False
    #: of ``choices``, the values Perl Perlbal 1.80 accepts (empty: all of them);
    #: ``perlbal check --perl`` calls the others beyond Perl
    perl_choices: tuple[str, ...] = ()

    def applies_to(self, role: str | None) -> bool:
        if self.roles == ALL_ROLES:
            return True
        return (role or "") in self.roles

    @property
    def role_text(self) -> str:
        return self.roles if isinstance(self.roles, str) else ", ".join(self.roles)

    def coerce(self, raw: str, env: CheckEnv, owner: str = "") -> ParamValue:
        """Turn the text of a SET into the stored value, or raise ParamError."""
        return _COERCERS[self.kind](self, raw, env, owner)


# --- coercion, one function per kind, each raising Perl's own message -----------

_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})


def parse_bool(raw: str) -> bool | None:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    return None


def parse_size(raw: str) -> int | None:
    m = re.fullmatch(r"(\d+)([bkm]?)", raw, re.IGNORECASE)
    if not m:
        return None
    mult = {"": 1, "b": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]
    return int(m.group(1)) * mult


def _c_bool(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    val = parse_bool(raw)
    if val is None:
        raise ParamError(f"Expecting boolean value for parameter '{p.name}'")
    return val


def _c_int(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if not re.fullmatch(r"\d+", raw):
        raise ParamError(f"Expecting integer value for parameter '{p.name}'")
    return int(raw)


def _c_size(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    val = parse_size(raw)
    if val is None:
        raise ParamError(
            f"Expecting size unit value for parameter '{p.name}' in bytes, "
            "or suffixed with 'K' or 'M'"
        )
    return val


def perl_numify(raw: str) -> int:
    """Perl's numeric value of a string: its leading integer, else 0."""
    m = re.match(r"\s*([+-]?\d+)", raw)
    return int(m.group(1)) if m else 0


def _c_loose_int(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    # Perl declares no check for these and uses the string as a number later
    return perl_numify(raw)


def _c_string(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    return raw


_LISTEN_RE = re.compile(r"(\d+\.\d+\.\d+\.\d+:)?\d+")
# Beyond Perl: IPv6 listeners as [addr]:port.
_LISTEN6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]:\d+")


def listen_address_error(raw: str) -> str | None:
    """Why an ``ip:port`` / ``port`` / ``[ip6]:port`` that has the right shape cannot
    be bound, or None.  Perl takes any digits at SET: ``127.0.0.300:8080`` fails at
    ENABLE ("IO::Socket::INET: Bad hostname '127.0.0.300:8080'", the wording kept
    here) and a port past 65535 is silently wrapped.  We refuse both at SET, so
    check, config loading and the console all name the line."""
    import ipaddress

    host, _, port_text = raw.rpartition(":")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"Bad hostname '{raw}'"
    elif host and any(int(part) > 255 for part in host.split(".")):
        return f"Bad hostname '{raw}' (each part of an IPv4 address is 0-255)"
    if int(port_text) > 65535:
        return f"Bad port '{port_text}' in '{raw}' (a port is 0-65535)"
    return None


def _c_listen(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if not (_LISTEN_RE.fullmatch(raw) or _LISTEN6_RE.fullmatch(raw)):
        raise ParamError(
            "Listen argument must be ip:port or port. e.g. 192.168.0.1:80 or 81"
        )
    reason = listen_address_error(raw)
    if reason is not None:
        raise ParamError(reason)
    return raw


def _c_role(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw in CORE_ROLES or env.plugin_role_exists(raw):
        return raw
    raise ParamError(f"Role not valid for service {owner}")


def _c_pool_ref(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if not env.pool_exists(raw):
        raise ParamError(f"Pool '{raw}' not found")
    return raw


def _c_service_ref(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if not env.service_exists(raw):
        # Perl interpolates the (undefined) service object here, not the name.
        raise ParamError("Service '' not found")
    return raw


def _c_directory(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    # Perl declares a val_modify that strips a trailing '/', but never calls it:
    # the value is stored as written.
    val = raw
    if val and env.content_dir(val):
        return val
    if p.name == "buffer_uploads_path":
        raise ParamError(f"Directory ({val}) not found for service {owner} (buffer_uploads_path)")
    raise ParamError(f"Directory not found for service {owner}")


def _c_file_or_default(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw == p.default or env.is_file(raw):
        return raw
    raise ParamError(f"File '{raw}' not found for '{p.name}'")


def _c_dir_or_none(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if env.is_dir(raw):
        return raw
    raise ParamError(f"Directory '{raw}' not found for '{p.name}'")


def _c_executable(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw and env.is_file(raw) and os.access(raw, os.X_OK):
        return raw
    raise ParamError(f"Server process ({raw}) not executable.")


def _c_percent(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if re.fullmatch(r"\d+", raw) and 0 <= int(raw) <= 100:
        return int(raw)
    raise ParamError("Expecting integer value between 0 and 100, inclusive.")


def _c_list(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    return [item for item in re.split(r"[\s,]+", raw) if item]


def _c_netmask_list(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    import ipaddress

    items = [s for s in re.split(r"\s*,\s*", raw) if s]
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ParamError(f"Error defining trusted upstream proxies: bad netmask '{item}'")
    if not items:
        raise ParamError("Error defining trusted upstream proxies: None found")
    return items


def _c_udp_endpoints(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    items = [s for s in re.split(r"\s*,\s*", raw) if s]
    for item in items:
        if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", item):
            raise ParamError(f'Invalid UDP endpoint: "{item}".  Must be of form a.b.c.d:port')
    return ",".join(items)


def _c_retry_schedule(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    # Perl stores the text unchecked and reads it with split /\s*,\s*/.
    return raw


def _c_balance(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw not in p.choices:
        raise ParamError("Unknown balance method")
    return raw


def _c_hash_key(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw in ("client_ip", "uri"):
        return raw
    m = re.fullmatch(r"(header|cookie):([!#$%&'*+.^_`|~0-9A-Za-z-]+)", raw, re.IGNORECASE)
    if m is None:
        raise ParamError(f"Expecting client_ip, uri, header:<Name> or cookie:<name> for "
                         f"'{p.name}', got '{raw}'")
    return f"{m.group(1).lower()}:{m.group(2)}"


_DNS_LABELS = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?"


def _c_dns_name(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw in ("", "none"):
        return ""
    if raw.startswith("_"):
        if re.fullmatch(_DNS_LABELS, raw) and raw.count(".") >= 2:
            return raw
    else:
        match = re.fullmatch(f"({_DNS_LABELS}):([0-9]{{1,5}})", raw)
        if match is not None and 0 < int(match.group(2)) <= 65535:
            return raw
    raise ParamError(f"Expecting host:port or an SRV name (_service._proto.domain) for "
                     f"'{p.name}', got '{raw}'")


def _c_dns_server(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw in ("", "none"):
        return ""
    match = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})", raw)
    if match is None or not 0 < int(match.group(2)) <= 65535:
        raise ParamError(f"Expecting ip:port for '{p.name}', got '{raw}'")
    return raw


def parse_seconds(value: object) -> float:
    """A stored SECONDS value (decimal text) as a float; 0.0 for anything else."""
    try:
        return float(value) if isinstance(value, (str, int)) else 0.0
    except ValueError:
        return 0.0


def _c_seconds(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if not re.fullmatch(r"\d+(\.\d+)?|\.\d+", raw):
        raise ParamError(f"Expecting a number of seconds for parameter '{p.name}'")
    return raw


def parse_status_list(value: object) -> frozenset[int]:
    """A stored STATUS_LIST value (``500,502`` or ``5xx``) as the statuses it names."""
    out: set[int] = set()
    for item in str(value or "").split(","):
        item = item.strip().lower()
        if re.fullmatch(r"[1-5]xx", item):
            first = int(item[0]) * 100
            out.update(range(first, first + 100))
        elif item.isdigit():
            out.add(int(item))
    return frozenset(out)


def _c_status_list(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    items = [s.strip().lower() for s in re.split(r"[\s,]+", raw) if s.strip()]
    for item in items:
        if not re.fullmatch(r"[1-5](\d\d|xx)", item):
            raise ParamError(f"Expecting HTTP statuses (500, 5xx, ...) separated by commas "
                             f"for '{p.name}', got '{item}'")
    return ",".join(items)


def _c_uri_path(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if re.fullmatch(r"|none|\"\"|''", raw):
        return ""
    if not raw.startswith("/") or re.search(r"[\x00-\x20\x7f]", raw):
        raise ParamError(f"Expecting a path starting with '/' (or none) for '{p.name}'")
    return raw


def _c_nodefile(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if re.fullmatch(r"none|undef|null|\"\"|''", raw):
        return None
    if not env.exists(raw):
        raise ParamError("File not found")
    return raw


def _c_regex(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ParamError(f"invalid regular expression: '{raw}' ({exc})")
    return raw


_SNI_ENTRY = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?=[^=:\s]+(:[^=:\s]+)?")


def _c_sni_certs(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    # the files are looked for at ENABLE, as Perl looks for ssl_key_file there
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    for item in items:
        if not _SNI_ENTRY.fullmatch(item):
            raise ParamError(f"Expecting host=cert_file[:key_file] in ssl_sni_certs, got '{item}'")
    return ",".join(items)


def parse_sni_certs(value: object) -> list[tuple[str, str, str | None]]:
    """A stored ssl_sni_certs value -> (host in lower case, cert file, key file or None)."""
    if not isinstance(value, str) or not value:
        return []
    out: list[tuple[str, str, str | None]] = []
    for item in value.split(","):
        host, _, files = item.strip().partition("=")
        cert, _, key = files.partition(":")
        out.append((host.lower(), cert, key or None))
    return out


def _c_access_log_format(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    if raw.lower() not in p.choices:
        raise ParamError(f"Expecting one of {', '.join(p.choices)} for parameter '{p.name}'")
    return raw.lower()


def _c_directory_list(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    for item in items:
        if not os.path.isabs(item):
            raise ParamError(f"Directory '{item}' for '{p.name}' must be an absolute path")
        if not env.is_dir(item):
            raise ParamError(f"Directory '{item}' not found for '{p.name}'")
    return items


ANY_HOST = "any"
POOL_HOSTS = "pool"
_HOST_ENTRY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def parse_host_entry(entry: str) -> tuple[str, int | None] | None:
    """``host`` or ``host:port`` of reproxy_url_hosts -> (lower-cased host, port or None)."""
    host, port = entry, None
    match = re.fullmatch(r"(.+):(\d{1,5})", entry)
    if match:
        host, port = match.group(1), int(match.group(2))
        if not 1 <= port <= 65535:
            return None
    if not _HOST_ENTRY.fullmatch(host):
        return None
    return host.lower(), port


def _c_reproxy_hosts(p: Param, raw: str, env: CheckEnv, owner: str) -> ParamValue:
    items = [item for item in re.split(r"[\s,]+", raw) if item]
    lowered = [item.lower() for item in items]
    if not items or (ANY_HOST in lowered and len(items) > 1):
        raise ParamError(f"Expecting 'any', 'pool' or host[:port] names for '{p.name}' "
                         "('any' stands alone)")
    for item in items:
        if item.lower() not in (ANY_HOST, POOL_HOSTS) and parse_host_entry(item) is None:
            raise ParamError(f"Expecting host or host:port in '{p.name}', got '{item}'")
    return [item.lower() if item.lower() in (ANY_HOST, POOL_HOSTS) else item for item in items]


_COERCERS: dict[Kind, Callable[[Param, str, CheckEnv, str], ParamValue]] = {
    Kind.BOOL: _c_bool,
    Kind.INT: _c_int,
    Kind.SIZE: _c_size,
    Kind.STRING: _c_string,
    Kind.LISTEN: _c_listen,
    Kind.ROLE: _c_role,
    Kind.HASH_KEY: _c_hash_key,
    Kind.SECONDS: _c_seconds,
    Kind.STATUS_LIST: _c_status_list,
    Kind.URI_PATH: _c_uri_path,
    Kind.POOL_REF: _c_pool_ref,
    Kind.SERVICE_REF: _c_service_ref,
    Kind.DIRECTORY: _c_directory,
    Kind.FILE_OR_DEFAULT: _c_file_or_default,
    Kind.DIRECTORY_OR_NONE: _c_dir_or_none,
    Kind.EXECUTABLE: _c_executable,
    Kind.PERCENT: _c_percent,
    Kind.LIST: _c_list,
    Kind.NETMASK_LIST: _c_netmask_list,
    Kind.UDP_ENDPOINTS: _c_udp_endpoints,
    Kind.RETRY_SCHEDULE: _c_retry_schedule,
    Kind.BALANCE_METHOD: _c_balance,
    Kind.NODEFILE: _c_nodefile,
    Kind.REGEX: _c_regex,
    Kind.LOOSE_INT: _c_loose_int,
    Kind.SNI_CERTS: _c_sni_certs,
    Kind.ACCESS_LOG_FORMAT: _c_access_log_format,
    Kind.CHOICE: _c_access_log_format,  # (the same rule: one of p.choices, any case)
    Kind.DNS_NAME: _c_dns_name,
    Kind.DNS_SERVER: _c_dns_server,
    Kind.DIRECTORY_LIST: _c_directory_list,
    Kind.REPROXY_HOSTS: _c_reproxy_hosts,
}
