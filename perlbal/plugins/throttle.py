"""Throttle: slow down or refuse clients that connect too often.

Config: the service parameters below (declared once here, set with
``SET <svc>.<name> = value`` once the plugin is LOADed, on any role), and the
console command ``THROTTLE RELOAD {CONFIG|WHITELIST|BLACKLIST}`` acting on the
context's service.  ``SET plugins = Throttle`` reads the white/black lists at
once; a missing or empty list refuses the registration, as Perl's register
dies.  Parsed lists are kept in ``svc.extra["throttle_lists"]`` as strings of
networks ("10.0.0.0/8").

Runtime, the start_proxy_request / end_proxy_request hooks (Perl's
Throttle.pm; when each IP was last seen and its violations are kept under the
key ``<instance_name><ip>``, in memory (shared by services with the same
instance_name, as Perl's local store) or, with memcached_servers, in memcached
as Perl keeps them (see ``_MemcachedStore``), so several perlbals share
them; bans and concurrent counts stay per process, as in Perl): a client
on the blacklist is refused (blacklist_action deny: 403) or throttled; on the
whitelist it passes; others follow default_action.  Throttling: a client that
connects again within throttle_threshold_seconds waits initial_delay seconds,
doubled per violation up to max_delay; more than max_concurrent connections at
once from one IP are refused (403 "Forbidden."), as are banned and
blacklisted-with-deny clients; after ban_threshold violations the IP
is banned for ban_expiration seconds.  log_only computes but never delays or
refuses; path_regex / method_regex limit which requests count.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import anyio

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.params import Kind, Param
from perlbal.plugins import Plugin, PluginError
from perlbal.plugins._common import EnumParam, PatternParam, context_service
from perlbal.plugins._memcached import MemcachedClient, MemcachedError, parse_servers
from perlbal.safefile import read_text
from perlbal.tunables import ThrottleTunables

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.plugins.hooks import EndProxyRequest, StartProxyRequest

log = logging.getLogger("perlbal.plugins.throttle")

USAGE = "usage: throttle reload <config|whitelist|blacklist>"
_P = "Throttle"

PARAMS: tuple[Param, ...] = (
    Param("whitelist_file", Kind.FILE_OR_DEFAULT, "File of networks (CIDR or single IP, one a "
          "line, # comments) that are never throttled.", plugin=_P),
    Param("blacklist_file", Kind.FILE_OR_DEFAULT, "File of networks that are always refused "
          "(or throttled, see blacklist_action).", plugin=_P),
    EnumParam("default_action", Kind.STRING, "What to do with clients on neither list: allow "
              "or throttle.", default="throttle", choices=("allow", "throttle"), plugin=_P),
    EnumParam("blacklist_action", Kind.STRING, "What to do with blacklisted clients: deny or "
              "throttle.", default="deny", choices=("deny", "throttle"), plugin=_P),
    Param("path_regex", Kind.STRING, "Only requests whose path matches this regex are "
          "throttled.", plugin=_P),
    Param("method_regex", Kind.STRING, "Only requests whose method matches this regex are "
          "throttled.", plugin=_P),
    PatternParam("log_events", Kind.STRING, "Comma-separated events to log: ban, unban, "
                 "whitelisted, blacklisted, concurrent, throttled, banned, all or none "
                 "(THROTTLE RELOAD CONFIG after a change).", default="all", plugin=_P,
                 pattern=r"^(ban|unban|whitelisted|blacklisted|concurrent|throttled|banned"
                         r"|all|none| |,)+$",
                 message="log_events is a comma-separated list of loggable events"),
    Param("log_only", Kind.BOOL, "Compute everything but never delay or refuse.",
          default="0", plugin=_P),
    Param("throttle_threshold_seconds", Kind.INT, "A client connecting again sooner than "
          "this is throttled.", default="60", plugin=_P),
    Param("initial_delay", Kind.INT, "Seconds of the first throttling delay.", default="3",
          plugin=_P),
    Param("max_delay", Kind.INT, "Upper bound of the doubling delay, in seconds.",
          default="300", plugin=_P),
    Param("max_concurrent", Kind.INT, "Connections accepted at once from one IP.",
          default="2", plugin=_P),
    Param("ban_threshold", Kind.INT, "Violations that ban an IP (0: never).", default="0",
          plugin=_P),
    Param("ban_expiration", Kind.INT, "Seconds a ban lasts.", default="60", plugin=_P),
    Param("memcached_servers", Kind.STRING, "memcached servers (host:port, comma or space "
          "separated) through which several perlbals share when each IP was last seen and its "
          "violations; a server that is down or slower than 0.3 s is skipped for 5 s and this "
          "process's own state is used meanwhile.", plugin=_P),
    Param("memcached_async_clients", Kind.INT, "Connections to each memcached server, at most.",
          default="10", plugin=_P),
    Param("instance_name", Kind.STRING, "Throttlers with the same name share what they know "
          "about IPs.", default="Throttle", plugin=_P),
)


def load_cidr_list(path: str) -> list[str]:
    """Perl's load_cidr_list: the first run of [0-9/.] on each line is a network."""
    try:  # a regular file under the cap, as every file a config names (#24 item 8)
        lines = read_text(path).split("\n")
    except OSError as exc:
        raise PluginError(f"Unable to open file {path}: {exc.strerror}") from None
    nets: list[str] = []
    for line in lines:
        m = re.search(r"[0-9/.]+", line.split("#", 1)[0])
        if m is None:
            continue
        try:
            nets.append(str(ipaddress.ip_network(m.group(0), strict=False)))
        except ValueError:
            raise PluginError(f"{path}: bad network '{m.group(0)}'") from None
    if not nets:
        raise PluginError(f"{path} contains no recognizable CIDRs")
    return nets


class ThrottleReload(ast.PluginCommand):
    """``THROTTLE RELOAD {CONFIG|WHITELIST|BLACKLIST}`` on the context's service."""

    what: Literal["config", "whitelist", "blacklist"]


def _build(args: PluginArgs) -> ThrottleReload:
    return args.build(ThrottleReload, what=args.get("THROTTLE_WHAT"))


def _list_file(svc: Service, which: str) -> str | None:
    """The whitelist_file or blacklist_file set on ``svc``, if any."""
    tunables = ThrottleTunables(svc.params)
    path = tunables.whitelist_file if which == "whitelist" else tunables.blacklist_file
    return path or None


class Throttle(Plugin):
    name = "Throttle"
    params = PARAMS
    commands = (
        SyntaxExtension(
            keyword="throttle",
            plugin="Throttle",
            # Perl: ^throttle\s+(reload)\s+(whitelist|blacklist|config)$ (case-insensitive,
            # but the line is lower-case: it cannot hold the '=' that keeps case)
            rule='"throttle" THROTTLE_RELOAD THROTTLE_WHAT',
            terminals="THROTTLE_RELOAD: /(?<= )reload(?= )/\n"
                      "THROTTLE_WHAT: /(?<= )(whitelist|blacklist|config)/\n",
            usage=USAGE,
            build=_build,
        ),
    )

    def register(self, it: "Interpreter", svc: Service) -> None:
        lists: dict[str, list[str]] = {}
        for which in ("whitelist", "blacklist"):
            path = _list_file(svc, which)
            if path is not None:
                lists[which] = load_cidr_list(path)
        svc.extra["throttle_lists"] = lists

    def unregister(self, it: "Interpreter", svc: Service) -> None:
        svc.extra.pop("throttle_lists", None)

    def reload_lines(self, svc: Service, running: Service) -> list[str]:
        """A white/black list whose file now says otherwise: Perl's own reload command."""
        lines: list[str] = []
        held = running.extra.get("throttle_lists", {})
        for which in ("whitelist", "blacklist"):
            path = _list_file(svc, which)
            if path is None:
                continue
            try:
                changed = load_cidr_list(path) != held.get(which)
            except PluginError:
                changed = True  # the reload's rehearsal reports why it cannot be read
            if changed:
                lines.append(f"throttle reload {which}")
        return lines

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        assert isinstance(node, ThrottleReload)
        svc = context_service(it, call, "No service name set. This command must be used "
                              "after CREATE SERVICE <name> or USE <service_name>")
        if isinstance(svc, str):
            return call.err(svc)
        what = node.what
        if what in ("whitelist", "blacklist"):
            path = _list_file(svc, what)
            if path is None:
                return call.err(f"no {what} file configured")
            try:
                nets = load_cidr_list(path)
            except PluginError as exc:
                return call.err(f"Couldn't load {path}: {exc}")
            svc.extra.setdefault("throttle_lists", {})[what] = nets
        elif "Throttle" not in svc.plugin_order:
            # Perl dies calling a reloader that only registration creates
            return call.err(f"Throttle is not registered on service '{svc.name}'")
        # "config": the runtime reads the parameters afresh on every request
        return call.ok()

    # --- runtime -----------------------------------------------------------------

    async def start_proxy_request(self, hook: "StartProxyRequest") -> bool:
        ctx = hook.ctx
        svc = ctx.service
        ip = ctx.observed_ip() or ctx.peer_ip
        state = _state(svc)
        state.concurrent[ip] = state.concurrent.get(ip, 0) + 1
        ctx.scratch["throttle_ip"] = ip
        now = time.time()
        action = _classify(svc, state, ip, ctx.head.target, ctx.head.method)
        log_only = ThrottleTunables(svc.params).log_only
        if action == "deny":
            if log_only:
                return False
            await ctx.send_simple(403, "Forbidden.\n")
            return True
        if action == "allow":
            return False
        key = f"{ThrottleTunables(svc.params).instance_name or 'Throttle'}{ip}"
        store = _store_for(svc)
        last, violations = await store.get(key, now)
        threshold = ThrottleTunables(svc.params).throttle_threshold_seconds
        # the early set, as Perl's: the last request time moves on even if we stop here
        await store.set(key, now, violations, threshold)
        if last is None or now - last >= threshold:
            return False  # unseen or reformed: through at once
        delay = min(ThrottleTunables(svc.params).initial_delay * 2 ** violations, ThrottleTunables(svc.params).max_delay)
        violations += 1
        ban_threshold = ThrottleTunables(svc.params).ban_threshold
        if ban_threshold and violations >= ban_threshold:
            log.info("Banning %s for %ss: %s", ip, ThrottleTunables(svc.params).ban_expiration,
                     ctx.head.target)
            if not log_only:
                state.banned[ip] = now + ThrottleTunables(svc.params).ban_expiration
            ctx.last_keep_alive = False  # Perl closes the connection without an answer
            return True
        await store.set(key, now, violations, delay)
        log.info("Throttling %s for %s: %s", ip, delay, ctx.head.target)
        if not log_only:
            await anyio.sleep(delay)
        return False

    def end_proxy_request(self, hook: "EndProxyRequest") -> bool:
        ip = hook.ctx.scratch.get("throttle_ip")
        if isinstance(ip, str):
            concurrent = _state(hook.ctx.service).concurrent
            left = concurrent.get(ip, 0) - 1
            if left > 0:
                concurrent[ip] = left
            else:
                concurrent.pop(ip, None)
        return False


@dataclass
class _ServiceState:
    """Perl's per-registration %throttled (requests in flight) and %banned."""

    concurrent: dict[str, int] = field(default_factory=dict)
    banned: dict[str, float] = field(default_factory=dict)  # ip -> end of ban (time.time)


class _Store:
    """Perl's local Throttle::Store: key -> (expiry, last request start, violations)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, float, int]] = {}

    def get(self, key: str, now: float) -> tuple[float | None, int]:
        entry = self.entries.get(key)
        if entry is None or now >= entry[0]:
            self.entries.pop(key, None)
            return None, 0
        return entry[1], entry[2]

    def set(self, key: str, start: float, count: int, exptime: float) -> None:
        if len(self.entries) > 100_000:  # forget the expired before growing further
            now = time.time()
            self.entries = {k: v for k, v in self.entries.items() if v[0] > now}
        self.entries[key] = (time.time() + exptime, start, count)


class _MemcachedStore:
    """Perl's Throttle::Store::Memcached: the same keys (``<instance_name><ip>``),
    the same value (``pack('FS', start, count)``: a native double and a native
    unsigned 16-bit count, 10 bytes; little-endian on x86), flags 0 and the same
    expiry (seconds), so Perl and Python perlbals can share one memcached.

    Every set also goes to the local store, and a get falls back to it when
    memcached fails (down, slow, refusing the key): requests are never held
    longer than the client's timeout nor failed because of memcached; Perl
    waits up to initial_delay seconds and then treats the IP as unseen."""

    def __init__(self, client: MemcachedClient) -> None:
        self.client = client

    async def get(self, key: str, now: float) -> tuple[float | None, int]:
        try:
            raw = await self.client.get(key)
        except MemcachedError:
            return _STORE.get(key, now)
        if raw is None or len(raw) != _VALUE.size:
            return None, 0  # unseen (or not a Throttle value: treated as Perl's false value)
        start, count = _VALUE.unpack(raw)
        return float(start), int(count)

    async def set(self, key: str, start: float, count: int, exptime: float) -> None:
        _STORE.set(key, start, count, exptime)
        value = _VALUE.pack(start, min(max(count, 0), 0xFFFF))  # 'S' wraps in Perl; we cap
        # memcached reads exptime 0 as "never": the shortest real expiry instead
        try:
            await self.client.set(key, value, max(int(exptime), 1))
        except MemcachedError:
            pass  # logged by the client, once per outage


class _LocalStore:
    async def get(self, key: str, now: float) -> tuple[float | None, int]:
        return _STORE.get(key, now)

    async def set(self, key: str, start: float, count: int, exptime: float) -> None:
        _STORE.set(key, start, count, exptime)


_VALUE = struct.Struct("=dH")  # Perl's pack('FS'): native order, no padding
_STORE = _Store()
_LOCAL = _LocalStore()
_STATES: dict[int, _ServiceState] = {}
_STORES: dict[tuple[str, int], "_MemcachedStore | _LocalStore"] = {}


def _store_for(svc: Service) -> "_MemcachedStore | _LocalStore":
    """The store of ``svc``'s memcached_servers (one client per server list and
    connection count, shared by the services naming them), else the local one."""
    servers = ThrottleTunables(svc.params).memcached_servers
    if servers is None or not servers.strip():
        return _LOCAL
    connections = ThrottleTunables(svc.params).memcached_async_clients
    store = _STORES.get((servers, connections))
    if store is None:
        try:
            parsed = parse_servers(servers)
        except ValueError as exc:
            parsed = []
            log.warning("Throttle on %s: %s; using this process's own state", svc.name, exc)
        store = _MemcachedStore(MemcachedClient(parsed, connections)) if parsed else _LOCAL
        _STORES[(servers, connections)] = store
    return store


def _state(svc: Service) -> _ServiceState:
    state = _STATES.get(id(svc))
    if state is None:
        state = _STATES[id(svc)] = _ServiceState()
    return state


def _listed(svc: Service, which: str, ip: str) -> bool:
    nets = (svc.extra.get("throttle_lists") or {}).get(which) or []
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(net, strict=False) for net in nets)


def _classify(svc: Service, state: _ServiceState, ip: str, uri: str, method: str) -> str:
    """Perl's decision, in its order: allow, deny or throttle."""
    if _listed(svc, "whitelist", ip):
        return "allow"
    ban = state.banned.get(ip)
    if ban is not None:
        if ban > time.time():
            return "deny"
        del state.banned[ip]
        log.info("Unbanning %s", ip)
    if _listed(svc, "blacklist", ip):
        return "deny" if ThrottleTunables(svc.params).blacklist_action == "deny" else "throttle"
    if state.concurrent.get(ip, 0) > ThrottleTunables(svc.params).max_concurrent:
        return "deny"
    tunables = ThrottleTunables(svc.params)
    path_regex, method_regex = tunables.path_regex, tunables.method_regex
    if path_regex and not re.search(path_regex, uri):
        return "allow"
    if method_regex and not re.search(method_regex, method):
        return "allow"
    return "allow" if tunables.default_action == "allow" else "throttle"


PLUGIN = Throttle()
