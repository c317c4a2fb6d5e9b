"""The X-REPROXY-* response headers a backend uses to hand work back to Perlbal.

With ``enable_reproxy`` on, Perlbal tells backends ``X-Proxy-Capabilities:
reproxy-file`` and honours these reply headers (BackendHTTP::handle_response,
ClientProxy::start_reproxy_uri / start_reproxy_file, Service::
add_to_reproxy_url_cache):

* ``X-REPROXY-URL``: whitespace-separated ``http://host[:port][/path]`` URLs,
  tried in order; Perl silently skips members that do not match, and answers
  503 when none is usable.  We also skip hosts that are not a hostname or an
  IPv4/bracketed IPv6 literal and ports outside 1..65535 (Perl's lazy regex
  would have taken ``host:abc`` as a host name);
* ``X-REPROXY-FILE``: a local path to send instead (Perl stats it as given;
  we insist on an absolute path without NUL);
* ``X-REPROXY-EXPECTED-SIZE``: the size the target must have, else the next
  URL is tried (URLs) or 404 is sent (file).  Perl ignores a false value
  ("", "0"); a non-numeric one can never match, so we report it as an error;
* ``X-REPROXY-CACHE-FOR``: ``SECONDS[; Header-Name Header-Name ...]`` -- cache
  the URL list for this Host + URI for SECONDS, replaying the named response
  headers on a hit.  Perl treats 0 (or a non-number) as "do not cache".

The request Perlbal sends to a reproxy target is fixed by Perl:
``GET|HEAD <path> HTTP/1.0``, ``Connection: keep-alive``, then the client's
Range and Host when present (see :func:`reproxy_request_head`).

Public API::

    parse_reproxy_urls(value) -> list[ReproxyTarget]
    parse_reproxy_file(value) -> str
    parse_reproxy_expected_size(value) -> int | None
    parse_reproxy_cache_for(value) -> ReproxyCacheFor | None
    reproxy_request_head(request_method, path, *, range_header=None, host=None) -> bytes
    REPROXY_RESPONSE_HEADERS  # names never relayed to the client

Invariants: parse functions never raise for absent values (None or "" mean
"header absent"); malformed values raise :class:`BackendProtocolError`
except for URL members, which are skipped as Perl skips them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from perlbal.http.digits import decimal_value
from perlbal.http.errors import BackendProtocolError

__all__ = [
    "REPROXY_RESPONSE_HEADERS",
    "ReproxyTarget",
    "ReproxyCacheFor",
    "parse_reproxy_urls",
    "parse_reproxy_file",
    "parse_reproxy_expected_size",
    "parse_reproxy_cache_for",
    "reproxy_request_head",
]

#: Internal headers Perl strips before a reproxied response reaches the client.
REPROXY_RESPONSE_HEADERS = (
    "X-REPROXY-FILE",
    "X-REPROXY-URL",
    "X-REPROXY-EXPECTED-SIZE",
    "X-REPROXY-CACHE-FOR",
)

_URL = re.compile(r"http://([^/]+?)(?::([0-9]+))?(/\S*)?")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])")
_IPV6_LITERAL = re.compile(r"\[[0-9A-Fa-f:.]{2,45}\]")
_DECIMAL = re.compile(r"[0-9]{1,18}")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class ReproxyTarget:
    """One usable X-REPROXY-URL member; ``port`` defaults to 80, ``path`` to "/"."""

    host: str
    port: int
    path: str


@dataclass(frozen=True, slots=True)
class ReproxyCacheFor:
    """A parsed X-REPROXY-CACHE-FOR: cache lifetime and response headers to replay."""

    seconds: int
    header_names: tuple[str, ...]


def _valid_host(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host) and not _IPV4.fullmatch(host):
        return False  # looks like an address but is not one
    return bool(_IPV4.fullmatch(host) or _IPV6_LITERAL.fullmatch(host) or _HOSTNAME.fullmatch(host))


def parse_reproxy_urls(value: str | None) -> list[ReproxyTarget]:
    """Usable URLs of an X-REPROXY-URL value, in order; unusable members are skipped."""
    targets: list[ReproxyTarget] = []
    for member in (value or "").split():
        match = _URL.fullmatch(member)
        if match is None:
            continue
        host, port_text, path = match.groups()
        port = decimal_value(port_text, 5) if port_text else 80  # bounded: http/digits.py
        if not _valid_host(host) or port is None or not 1 <= port <= 65535:
            continue
        if any(ord(char) > 0x7E for char in path or ""):
            continue
        targets.append(ReproxyTarget(host, port, path or "/"))
    return targets


def parse_reproxy_file(value: str) -> str:
    """The path of an X-REPROXY-FILE value; it must be absolute and free of NUL."""
    path = value.strip(" \t")
    if not path.startswith("/") or "\x00" in path:
        raise BackendProtocolError("X-REPROXY-FILE must be an absolute path")
    return path


def parse_reproxy_expected_size(value: str | None) -> int | None:
    """The expected size, or None when Perl would ignore the header ("" or 0)."""
    text = (value or "").strip(" \t")
    if not text:
        return None
    if not _DECIMAL.fullmatch(text):
        raise BackendProtocolError("malformed X-REPROXY-EXPECTED-SIZE")
    size = int(text)
    return size or None


def parse_reproxy_cache_for(value: str | None) -> ReproxyCacheFor | None:
    """``SECONDS[; Name Name ...]``; None when caching is off (absent, 0)."""
    text = (value or "").strip(" \t")
    if not text:
        return None
    seconds_text, _semicolon, names_text = text.partition(";")
    seconds_text = seconds_text.strip(" \t")
    if not _DECIMAL.fullmatch(seconds_text):
        raise BackendProtocolError("malformed X-REPROXY-CACHE-FOR")
    seconds = int(seconds_text)
    if seconds == 0:
        return None
    names = tuple(names_text.split())
    if not all(_TOKEN.fullmatch(name) for name in names):
        raise BackendProtocolError("malformed header name in X-REPROXY-CACHE-FOR")
    return ReproxyCacheFor(seconds, names)


def reproxy_request_head(
    request_method: str, path: str, *, range_header: str | None = None, host: str | None = None
) -> bytes:
    """The request head Perl sends to a reproxy target (ClientProxy::use_reproxy_backend).

    HEAD stays HEAD, every other method becomes GET.
    """
    method = "HEAD" if request_method == "HEAD" else "GET"
    lines = [f"{method} {path} HTTP/1.0", "Connection: keep-alive"]
    if range_header:
        lines.append(f"Range: {range_header}")
    if host:
        lines.append(f"Host: {host}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
