"""Console language, generated: live Perl Perlbal 1.80 vs our server, byte for byte.

One Perl server and one of ours are started per module with the same config
(a management service, a pool ``p0`` with one node, a reverse proxy ``rp0``).
Hypothesis generates SEQUENCES of console lines (CREATE, SET with good and
bad values, POOL ADD/REMOVE, ENABLE/DISABLE, SHOW, the listing queries,
LOAD/UNLOAD/RELOAD of stock plugins, HEADER, MIME, SERVER, DEFAULT, VHOST,
unknown words, comments, blank lines, odd case and spacing); each sequence is
sent line by line on a fresh console connection to both servers and every
reply must be identical after ``_normalize``.

Names in a sequence are placeholders (``@S1 @S2 @P1 @P2``) replaced by names
unique to the example, so examples do not see each other's objects except
through global listings (``show service``, ``dumpconfig``...), which both
servers accumulate identically.  ``{L}`` is a listen port: each server gets
its own free port, mapped back before comparing.

``FOUND`` holds the sequences that once differed and were fixed in
perlbal/; they run as explicit examples on every run.  Intended differences
(docs/migrating.md) are either not generated or normalised away, each one
commented where it is handled.

60 examples take about 15 s; PERLBAL_FUZZ_EXAMPLES=N runs N (same seed).
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.perl_perlbal import Console, PerlPerlbal, console, requires_perl_perlbal
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal

pytestmark = requires_perl_perlbal


def _config(mgmt: int) -> str:
    return (
        "CREATE POOL p0\n"
        "  POOL p0 ADD 127.0.0.1:9\n"
        "CREATE SERVICE rp0\n"
        "  SET role = reverse_proxy\n"
        "  SET pool = p0\n"
        "CREATE SERVICE mgmt\n"
        "  SET role = management\n"
        f"  SET listen = {LOOPBACK}:{mgmt}\n"
        "ENABLE mgmt\n"
    )


class Side:
    """One server: its console port and the listen ports it was handed."""

    def __init__(self, name: str, mgmt: int) -> None:
        self.name = name
        self.mgmt = mgmt
        #: every listen port handed to this side so far -> its placeholder; a
        #: service keeps its port in later listings, enabled or not
        self.listens: dict[int, str] = {}

    def __repr__(self) -> str:  # short: hypothesis prints it with every failure
        return f"Side({self.name!r}, mgmt={self.mgmt})"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Side, Side]]:
    perl_port, our_port = free_ports(2)
    with PerlPerlbal(_config(perl_port), extra_wait_ports=(perl_port,)), PyPerlbal(_config(our_port)):
        yield Side("perl", perl_port), Side("ours", our_port)


# --- generated lines ----------------------------------------------------------

SERVICES = ("@S1", "@S2", "rp0", "nosuch")
POOLS = ("@P1", "@P2", "p0", "nosuch")
# Stock plugins, as LOAD would be typed.  Their case is varied below.
PLUGINS = ("Stats", "Vhosts", "MaxContentLength", "NotModified", "XFFExtras", "Vpaths",
           "Highpri", "AccessControl", "Redirect", "AutoRemoveLeadingDir", "Throttle",
           "Queues", "Cgilike", "EchoService", "FlvStreaming", "Include", "LazyCDN",
           "Palimg", "NoSuchPlugin")

BOOLS = ("on", "off", "1", "0", "yes", "no", "true", "false", "On", "TRUE", "2", "y", "garbage", "")
# Not "007": Perl keeps an integer's text, so its dumpconfig prints
# "SET idle_timeout = 007" (and "030" for the default 30) where ours prints
# the number, or nothing for the default.  Known and not fixed yet: ours
# would have to keep the text of every integer parameter, defaults included.
INTS = ("0", "5", "10", "-1", "1.5", "abc", "1e3", " 4")
SIZES = ("10k", "10K", "1M", "1m", "100b", "100", "1g", "1.5m", "10 k", "-5", "k", "0")
PATHS = ("/tmp", "/tmp/", "/nonexistent/dir", "/etc/passwd", "relative/dir")
ROLES = ("web_server", "reverse_proxy", "selector", "management", "upload_tracker", "bogus",
         "Web_Server")
# Service parameters and the values tried on them.  Left out on purpose, as
# intended differences (docs/migrating.md): trusted_upstream_proxies (works
# without Net::Netmask here), IPv6 / >255 / >65535 listen values, and
# ssl_cipher_list (a different default).
SERVICE_PARAMS: dict[str, tuple[str, ...]] = {
    "role": ROLES,
    "listen": ("127.0.0.1:{L}", "{L}", "80a", ":80", "127.0.0.1:", "localhost:8080"),
    "pool": ("@P1", "p0", "nosuch"),
    "persist_client": BOOLS,
    "persist_backend": BOOLS,
    "enable_put": BOOLS,
    "enable_delete": BOOLS,
    "dirindexing": BOOLS,
    "enable_reproxy": BOOLS,
    "verify_backend": BOOLS,
    "buffer_uploads": BOOLS,
    "server_tokens": BOOLS,
    "enable_concatenate_get": BOOLS,
    "buffer_size": SIZES,
    "buffer_size_reproxy_url": SIZES,
    "max_put_size": SIZES,
    "max_chunked_request_size": SIZES,
    "buffer_uploads_threshold_size": SIZES,
    "idle_timeout": INTS,
    "persist_client_timeout": INTS,
    "max_backend_uses": INTS,
    "connect_ahead": INTS,
    "backend_persist_cache": INTS,
    "queue_relief_chance": ("0", "50", "100", "101", "-3", "x"),
    "queue_relief_size": INTS,
    "min_put_directory": INTS,
    "reproxy_cache_maxsize": INTS,
    "client_sndbuf_size": SIZES,
    "docroot": PATHS,
    "dirindexing_default": BOOLS,
    "index_files": ("index.html", "a.html, b.html", ""),
    "default_service": ("@S1", "rp0", "nosuch"),
    "latency": INTS,
    "verify_backend_path": ("/status", "x", ""),
    "error_retry_schedule": ("0,1,2", "1", "a,b"),
    "upload_status_listeners": ("127.0.0.1:9000", "127.0.0.1:9000, 10.0.0.1:9001", "bad"),
    "buffer_uploads_path": PATHS,
    "plugins": ("none", "stats", "Stats, vhosts", "vhosts", "nosuch", "stats nosuch", ""),
    "balance_method": ("random", "sendstats", "RANDOM", "bogus"),
    "nodefile": ("none", "/nonexistent/nodes.txt"),
    "ssl_key_file": ("/nonexistent.pem", "/etc/passwd"),
    "enable_ssl": BOOLS,
    "always_trusted": BOOLS,
    "blind_proxy": BOOLS,
    "extra.note": ("hello world", "a#b", ""),
    "max_content_length": INTS,
    "nonsense_param": ("1",),
}
POOL_PARAMS: dict[str, tuple[str, ...]] = {
    "balance_method": ("random", "sendstats", "RANDOM", "bogus", ""),
    "nodefile": ("none", "/nonexistent/nodes.txt", "/etc/passwd"),
    "no_such_key": ("1",),
}
NODES = ("127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1", "localhost:80", "127.0.0.1:abc",
         "1x2x3x4:80", "10.0.0.1:1 extra", "127.0.0.1:0")
# Queries whose reply does not depend on the machine.  Left out: socks, fd
# numbers and proc figures are per process (see _QUERY_NORMALISE for proc);
# the Perl debugging commands (gladiator, varsize, leaks, prof, track, state,
# crash) are answered with an explanation here (docs/migrating.md).
QUERIES = ("show service", "show pool", "show service {S}", "show pool {P}", "SHOW SERVICE {S}",
           "show services", "show", "uptime", "version", "help", "plugins", "dumpconfig",
           "nodes", "nodes 127.0.0.1:9", "backends", "noverify", "pending", "states",
           "queues", "queues {S}", "reproxy_state", "aio", "obj", "proc", "mime", "mime list",
           "xs", "xs enable nosuch", "uptime now", "help me", "plugins extra")
SERVER_LINES = ("SERVER max_reproxy_connections = 5", "SERVER max_reproxy_connections(10.0.0.1) = 3",
                "SERVER max_reproxy_connections = many", "SERVER max_connections = abc",
                "SERVER nice_level = x", "SERVER aio_mode = none", "SERVER aio_mode = bogus",
                "SERVER aio_mode = linux", "SERVER aio_threads = x", "SERVER aio_threads = 2",
                "SERVER track_obj = 1", "SERVER track_obj = 0", "SERVER track_obj = yes",
                "SERVER crash_backtrace = 0", "SERVER no_such_option = 7", "SERVER nice_level",
                "SERVER", "server aio_mode=none", "SERVER pidfile = /tmp/never.pid")
PLUGIN_LINES = ("stats", "recent", "patterns", "stats extra",
                "SET {S}.highpri.uri_pattern = ^/api", "SET {S}.highpri.host_pattern = (",
                "SET {S}.highpri.other = x", "SET {S}.notmodified.host_pattern = ^www",
                "SET {S}.accesscontrol.use_observed_ip = yes",
                "ACCESS policy deny", "ACCESS policy bogus", "ACCESS allow ip 127.0.0.1",
                "ACCESS deny thing x", "ACCESS reset", "ACCESS", "access queue_low ip 10.0.0.1",
                "VPATH {S} ^/static/ = rp0", "VPATH ^/x = rp0", "VPATH {S} bad",
                "REDIRECT HOST example.com www.example.net", "REDIRECT", "redirect host a",
                "SET {S}.max_content_length = 100", "SET {S}.max_content_length = abc",
                "SET {S}.default_action = throttle", "SET {S}.max_delay = 5",
                "SET {S}.log_events = nonsense", "SET {S}.initial_delay = x")
ODD_LINES = ("", "   ", "\t", "# a comment", "   # indented comment", "frobnicate",
             "FROBNICATE now", "!!!", "-x", "123abc", "create-service foo", "set.web = 1",
             "CREATE", "CREATE THING x", "SET", "SET = 5", "USE", "USE nosuch", "ENABLE",
             "POOL ADD", "POOL FOO p0 127.0.0.1:1", "HEADER", "VHOST", "LOAD", "LOAD a b",
             "verbose maybe", "verbose", "DEFAULT", "DEFAULT nonsense = 1", "MIME bogus",
             "mime remove", "mime set a b c", "UNLOAD", "RELOAD")


def _case(draw: st.DrawFn, word: str) -> str:
    return draw(st.sampled_from((word, word.upper(), word.lower(), word.capitalize())))


@st.composite
def _line(draw: st.DrawFn) -> str:
    svc = draw(st.sampled_from(SERVICES))
    pool = draw(st.sampled_from(POOLS))
    kind = draw(st.integers(0, 16))
    if kind == 0:
        what = draw(st.sampled_from(("SERVICE", "POOL")))
        name = svc if what == "SERVICE" else pool
        return f"{_case(draw, 'create')} {_case(draw, what)} {name}"
    if kind in (1, 2, 3):
        key = draw(st.sampled_from(sorted(SERVICE_PARAMS)))
        value = draw(st.sampled_from(SERVICE_PARAMS[key]))
        target = draw(st.sampled_from((f"{svc}.", f"{svc} ", "")))
        eq = draw(st.sampled_from((" = ", "=", "   =   ", " =")))
        return f"{_case(draw, 'set')} {target}{key}{eq}{value}"
    if kind == 4:
        key = draw(st.sampled_from(sorted(POOL_PARAMS)))
        value = draw(st.sampled_from(POOL_PARAMS[key]))
        return f"SET {pool}.{key} = {value}"
    if kind == 5:
        verb = _case(draw, draw(st.sampled_from(("add", "remove"))))
        node = draw(st.sampled_from(NODES))
        if draw(st.booleans()):
            return f"POOL {verb} {pool} {node}"
        return f"{_case(draw, 'pool')} {pool} {verb} {node}"
    if kind == 6:
        verb = _case(draw, draw(st.sampled_from(("enable", "disable"))))
        return f"{verb} {draw(st.sampled_from((svc, pool, 'mgmt' if verb.lower() == 'enable' else svc)))}"
    if kind == 7:
        return draw(st.sampled_from(QUERIES)).format(S=svc, P=pool)
    if kind == 8:
        verb = draw(st.sampled_from(("LOAD", "load", "UNLOAD", "unload", "RELOAD")))
        name = draw(st.sampled_from(PLUGINS))
        if verb.lower() == "unload" and name in ("Redirect", "Cgilike"):
            # Intended (docs/migrating.md): Perl's Redirect and Cgilike leave
            # their REDIRECT / PERLREQUIRE / PERLHANDLER commands behind on
            # UNLOAD; ours remove them.  Global, so never generated.
            verb = "LOAD"
        return f"{verb} {_case(draw, name)}"
    if kind == 9:
        # Only RFC 9110 token names and plain values: HEADER INSERT refusing
        # others is an intended difference (docs/migrating.md).
        verb = _case(draw, draw(st.sampled_from(("insert", "remove", "append"))))
        rest = draw(st.sampled_from(("X-Foo: bar", "X-Bar:baz", "X-Foo", "X-Foo:", "X-Foo: a=B",
                                     "Cookie: ignored")))
        if draw(st.booleans()):
            return f"HEADER {svc} {verb} {rest}"
        return f"HEADER {verb} {svc} {rest}"
    if kind == 10:
        ext = draw(st.sampled_from(("@X", "foo", "Bar")))
        return draw(st.sampled_from((f"mime set {ext} text/x-{ext}", f"mime remove {ext}",
                                     f"MIME SET {ext} Text/Bar", "mime list")))
    if kind == 11:
        return draw(st.sampled_from(SERVER_LINES))
    if kind == 12:
        # Only values the parameter takes: DEFAULT stores any text, and Perl
        # answers every later SET role with a stack trace when it does not fit
        # (docs/migrating.md; ours answers one ERROR line).  DEFAULT is global, so
        # one bad value would spoil every later example.
        key, value = draw(st.sampled_from((("persist_client", "on"), ("idle_timeout", "99"),
                                           ("buffer_size", "10k"), ("nonsense", "x"),
                                           ("persist_backend", "yes"))))
        return draw(st.sampled_from((f"DEFAULT {key} = {value}", f"default {key}={value}",
                                     f"DEFAULT {key}")))
    if kind == 13:
        host = draw(st.sampled_from(("*.example.com", "www.Example.com", "a/b", "x.com")))
        return draw(st.sampled_from((f"VHOST {svc} {host} = {draw(st.sampled_from(SERVICES))}",
                                     f"VHOST {host} = {svc}", f"VHOST {svc} {host} web")))
    if kind == 15:
        # Commands and parameters that exist only while a plugin is LOADed or
        # on a service using it (SET plugins = ...).
        plugin = draw(st.sampled_from(("stats", "vhosts", "highpri", "notmodified",
                                       "accesscontrol", "vpaths", "redirect", "throttle",
                                       "maxcontentlength")))
        # Intended (docs/migrating.md): Perl cannot change the plugins of a
        # service using a plugin without an unregister method (Throttle,
        # EchoService, FlvStreaming, Include, XFFExtras): every later SET
        # plugins there answers "Can't locate object method "unregister"...".
        # So those never go into SET plugins (rp0 is shared by all examples).
        pre = draw(st.sampled_from((f"LOAD {plugin}", None) if plugin == "throttle" else
                                   (f"SET {svc}.plugins = {plugin}", f"LOAD {plugin}", None)))
        cmd = draw(st.sampled_from(PLUGIN_LINES)).format(S=svc)
        return cmd if pre is None or draw(st.booleans()) else pre
    if kind == 14:
        return draw(st.sampled_from((f"USE {svc}", f"USE {pool}", "verbose off", "verbose on",
                                     "VERBOSE ON", f"use {svc} extra")))
    return draw(st.sampled_from(ODD_LINES))


@st.composite
def _spaced(draw: st.DrawFn) -> str:
    """A line, sometimes with odd spacing, case or a trailing comment."""
    line = draw(_line())
    how = draw(st.integers(0, 9))
    if how == 0:
        line = "  " + line + "  "
    elif how == 1:
        line = re.sub(" ", "  ", line)
    elif how == 2 and line:
        line = line + " # trailing comment"
    elif how == 3:
        line = line.upper()
    elif how == 4:
        line = "\t" + line
    return line


@st.composite
def _sequence(draw: st.DrawFn) -> list[str]:
    """Usually create the example's own service and pool first, so that the
    lines after them reach the parameter checks rather than 'no such service'."""
    head: list[str] = []
    if draw(st.integers(0, 4)):
        head.append("CREATE SERVICE @S1")
        role = draw(st.sampled_from((*ROLES[:4], None)))
        if role is not None:
            head.append(f"SET role = {role}")
    if draw(st.booleans()):
        head.append("CREATE POOL @P1")
    return head + draw(st.lists(_spaced(), min_size=1, max_size=8 - len(head) // 2))


SEQUENCES = _sequence()


# --- running and comparing -----------------------------------------------------

_counter = itertools.count(1)
_PROC_RE = re.compile(r"^(time|pid|utime|stime): .*$")
_UPTIME_RE = re.compile(r"^(starttime|uptime) \d+$")
_INC_RE = re.compile(r"^(ERROR: Can't locate \S+ in @INC).*$", re.S)
# Replies whose lines come from a Perl hash walk: compared as sorted lists.
_HASH_ORDERED = re.compile(r"^\s*(show\s+(service|pool)\s*$|plugins|queues|nodes|states|"
                           r"backends|pending|mime(\s+list)?\s*$|patterns|stats|recent)", re.I)
_DUMPCONFIG = re.compile(r"^\s*dumpconfig\b", re.I)


def _uniquify(line: str, n: int) -> str:
    for token, name in (("@S1", f"s{n}a"), ("@S2", f"s{n}b"), ("@P1", f"p{n}a"),
                        ("@P2", f"p{n}b"), ("@X", f"x{n}")):
        line = line.replace(token, name)
    return line


def _normalize(line: str, reply: list[str], side: Side) -> list[str]:
    out = []
    ports = re.compile(r"\b\d{4,5}\b")
    names = {**side.listens, side.mgmt: "{MGMT}"}
    for text in reply:
        text = ports.sub(lambda m: names.get(int(m.group()), m.group()), text)
        text = _PROC_RE.sub(r"\1: <N>", text)
        text = _UPTIME_RE.sub(r"\1 <N>", text)
        # LOAD of an unknown plugin: Perl's @INC list is not ours (migrating.md)
        text = _INC_RE.sub(r"\1 ...", text)
        out.append(text)
    bare = line.split("#", 1)[0]
    if _DUMPCONFIG.match(bare):
        # Intended (docs/migrating.md): our dumpconfig adds LOAD, SET plugins
        # and HEADER lines and omits DISABLE, so that it round-trips.  Blocks
        # come in hash order.
        kept = [t for t in out if not re.fullmatch(r"DISABLE \w+|LOAD \w+|\s*SET plugins = .*|"
                                                   r"\s*HEADER .*", t)]
        blocks = "\n".join(kept).split("\n\n")
        return sorted(b.strip("\n") for b in blocks if b.strip("\n"))
    if _HASH_ORDERED.match(bare):
        return sorted(out)
    return out


def _run(perl: Side, ours: Side, lines: list[str]) -> list[str]:
    n = next(_counter)
    # A port is never handed out twice: services keep theirs unbound while
    # disabled, and later listings must still map it to its own placeholder.
    perl_listen, our_listen = free_ports(2)
    while perl_listen in perl.listens or our_listen in ours.listens:
        perl_listen, our_listen = free_ports(2)
    perl.listens[perl_listen] = ours.listens[our_listen] = f"{{L{n}}}"
    mismatches: list[str] = []
    cons: dict[str, Console] = {}
    try:
        for side in (perl, ours):
            cons[side.name] = console(LOOPBACK, side.mgmt)
        for raw in lines:
            line = _uniquify(raw, n)
            perl_reply = cons["perl"].command(line.replace("{L}", str(perl_listen)))
            our_reply = cons["ours"].command(line.replace("{L}", str(our_listen)))
            want = _normalize(line, perl_reply, perl)
            got = _normalize(line, our_reply, ours)
            if want != got:
                if len(perl_reply) + len(our_reply) > 12:
                    diff = difflib.unified_diff(want, got, "perl", "ours", lineterm="", n=1)
                    shown = "\n      ".join(itertools.islice(diff, 60))
                    mismatches.append(f"{line!r} (normalised)\n      {shown}")
                else:
                    mismatches.append(f"{line!r}\n    perl: {perl_reply!r}\n    ours: {our_reply!r}")
    finally:
        for con in cons.values():
            con.close()
    return mismatches


# Sequences that once differed; fixed in perlbal/ and replayed on every run.
FOUND: list[list[str]] = [
    # Perl keeps a plugin's proper case (%PluginCase) after UNLOAD: both
    # replies said "Plugin Vhosts ..." there, ours "Plugin vhosts ..." /
    # "Unknown/unloaded plugin 'vhosts'".
    ["LOAD vhosts", "UNLOAD vhosts", "SET rp0.plugins = vhosts", "RELOAD VHOSTS"],
    # 'state' other than 'state changes' (which is ours to explain, see
    # docs/migrating.md): Perl's "Invalid syntax to 'state' command"; ours had
    # answered the explanation to every form.
    ["state", "STATE foo", "state changes x"],
]


def _with_found(f: Callable[..., None]) -> Callable[..., None]:
    for case in reversed(FOUND):
        f = example(lines=case)(f)
    return f


# PERLBAL_FUZZ_EXAMPLES=500 explores further (same seed, longer run).
@settings(max_examples=int(os.environ.get("PERLBAL_FUZZ_EXAMPLES", "60")), derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@_with_found
@given(lines=SEQUENCES)
def test_console_sequences_match_perl(servers: tuple[Side, Side], lines: list[str]) -> None:
    perl, ours = servers
    mismatches = _run(perl, ours, lines)
    assert not mismatches, "replies differ:\n  " + "\n  ".join(mismatches)
