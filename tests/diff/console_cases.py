"""Differential corpus: management-console lines and Perl Perlbal 1.80's replies.

Each ``Sequence`` runs in a fresh Perl process (and, for our side, a fresh
``Interpreter``).  Before the steps run, the ``PREAMBLE`` config creates and
enables the management service ``mgmt`` on ``{MGMT}``; that service therefore
shows up in ``show service`` and ``dumpconfig`` replies.

A step is a line sent on console connection ``conn`` (0 unless stated); each
connection has its own context (verbose on, last CREATE/USE name), as in
Perlbal/ClientManage.pm.  Lines may contain placeholders ``{MGMT}``,
``{PORT1}``, ``{PORT2}``: the recorder fills them with free ports and
``normalize`` maps those numbers back, so both sides compare as placeholders.

``compare`` says how a reply is compared after ``normalize``:

* ``exact``: line by line;
* ``sorted``: as a sorted list (Perl iterates a hash: ``plugins``);
* ``blocks``: blank-line separated blocks compared as a sorted list of blocks
  (``dumpconfig`` walks %pool and %service in hash order);
* ``skip``: sent (it may change state) but never compared, because the reply
  depends on the machine (XS modules installed, BSD::Resource, Net::Netmask).

Config-file context (verbose off, stop at the first failing line) is covered
by ``CONFIG_CASES`` at the bottom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PREAMBLE = (
    "CREATE SERVICE mgmt\n"
    "  SET role = management\n"
    "  SET listen = 127.0.0.1:{MGMT}\n"
    "ENABLE mgmt\n"
)

PLACEHOLDERS = ("MGMT", "PORT1", "PORT2")


@dataclass(frozen=True)
class Step:
    line: str
    conn: int = 0
    compare: str = "exact"  # exact | sorted | blocks | skip


@dataclass(frozen=True)
class Sequence:
    name: str
    steps: tuple[Step, ...]
    note: str = ""


@dataclass(frozen=True)
class ConfigCase:
    """A whole config file run by ``perlbal --config``; stdout is recorded."""

    name: str
    text: str
    note: str = ""


def seq(name: str, *lines: str | Step, note: str = "") -> Sequence:
    return Sequence(name, tuple(s if isinstance(s, Step) else Step(s) for s in lines), note)


def on(conn: int, line: str) -> Step:
    return Step(line, conn=conn)


SEQUENCES: list[Sequence] = [
    seq(
        "create",
        "CREATE POOL p1",
        "CREATE POOL p1",
        "CREATE SERVICE p1",
        "CREATE SERVICE web",
        "CREATE SERVICE web",
        "CREATE POOL web",
        "create service Mixed_Case",
        "CREATE SERVICE bad-name",
        "CREATE SERVICE",
        "CREATE SERVICE a b",
        "CREATE THING x",
        "CREATE",
        "show service",
        "show pool",
        note="names are lowercased (everything up to the first '=' is)",
    ),
    seq(
        "pool_nodes",
        "CREATE POOL p",
        "POOL ADD p 127.0.0.1:8080",
        "POOL p ADD 127.0.0.1:8081",
        "pool add p 127.0.0.1",
        "POOL ADD p 127.0.0.1:8080",
        "show pool p",
        "POOL REMOVE p 127.0.0.1:8081",
        "POOL p remove 127.0.0.1:9999",
        "POOL ADD p localhost:80",
        "POOL ADD p 127.0.0.1:abc",
        "POOL ADD p 1x2x3x4:80",
        "POOL ADD p 127.0.0.1:80 extra",
        "POOL ADD nosuch 127.0.0.1:80",
        "POOL FOO p 127.0.0.1:80",
        "POOL ADD ADD 127.0.0.1:1",
        "POOL ADD",
        "show pool p",
        "show pool",
        "show pool nosuch",
        note="'.' in Perl's IP regexp matches any character, so 1x2x3x4 is accepted",
    ),
    seq(
        "pool_set",
        "CREATE POOL p",
        "SET p.balance_method = random",
        "SET p.balance_method = fastest",  # round_robin & co. are ours (docs/balancing.md)
        "SET p.balance_method = RANDOM",
        "SET p.nodefile = none",
        "SET p.nodefile = /nonexistent/nodes.txt",
        "SET p.no_such_key = 1",
        "SET balance_method = random",
        "SET p balance_method = random",
        note="an unknown pool key prints nothing at all (not even OK)",
    ),
    seq(
        "set_forms_and_context",
        "SET listen = 8080",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET listen = 8080",
        "SET web.listen = 8081",
        "SET web listen = 8082",
        "SET web.listen=8083",
        "set   web.listen   =   8084",
        "SET WEB.LISTEN = 8085",
        "SET web.listen 8086",
        "SET web.listen =",
        "SET = 5",
        "SET",
        "SET nosuch.listen = 80",
        "SET a.b.c = 1",
        "SET web.extra.note = Hello World",
        "SET extra.note = implied",
        "SET web.listen = 8087 # trailing comment",
        "show service web",
        note="SET's regexp: set (?:(\\w+)[. ])?([\\w.]+) ?= ?(.+)$",
    ),
    seq(
        "context_per_connection",
        "CREATE SERVICE web",
        on(1, "SET role = web_server"),
        "SET role = web_server",
        on(1, "CREATE POOL p"),
        on(1, "SET balance_method = random"),
        "SET persist_client = on",
        on(1, "USE web"),
        on(1, "SET persist_client = off"),
        "USE p",
        "SET balance_method = random",
        "USE nosuch",
        "USE",
        "USE web extra",
        on(1, "verbose off"),
        on(1, "SET persist_client = on"),
        "SET web.persist_client = on",
        on(1, "SET persist_client = bogus"),
        note="each console connection has its own last-created name and verbose flag",
    ),
    seq(
        "bool_values",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET persist_client = 1",
        "SET persist_client = true",
        "SET persist_client = yes",
        "SET persist_client = on",
        "SET persist_client = 0",
        "SET persist_client = false",
        "SET persist_client = off",
        "SET persist_client = no",
        "SET persist_client = TRUE",
        "SET persist_client = On",
        "SET persist_client = 2",
        "SET persist_client = garbage",
        "SET persist_client = y",
        "SET enable_put = yes",
        "SET dirindexing = off",
        "SET server_tokens = nope",
    ),
    seq(
        "int_and_size_values",
        "CREATE POOL p",
        "CREATE SERVICE rp",
        "SET role = reverse_proxy",
        "SET backend_persist_cache = 5",
        "SET backend_persist_cache = -1",
        "SET backend_persist_cache = 1.5",
        "SET backend_persist_cache = abc",
        "SET connect_ahead = 0",
        "SET max_backend_uses = whatever",
        "SET queue_relief_chance = 50",
        "SET queue_relief_chance = 101",
        "SET queue_relief_chance = -3",
        "SET buffer_size = 256k",
        "SET buffer_size = 1M",
        "SET buffer_size = 100b",
        "SET buffer_size = 100",
        "SET buffer_size = 10K",
        "SET buffer_size = 10 k",
        "SET buffer_size = 1g",
        "SET buffer_size = 1.5m",
        "SET buffer_size = -5",
        "SET buffer_backend_connect = 0",
        "SET reproxy_cache_maxsize = 10",
        "SET reproxy_cache_maxsize = ten",
        "SET pool = p",
        "SET pool = nosuch",
        "SET persist_client_timeout = 10",
        "SET persist_client_timeout = x",
        "SET idle_timeout = 45",
        "SET verify_backend_path = /status",
        "SET error_retry_schedule = 0,1,2",
        "SET upload_status_listeners = 127.0.0.1:9000, 10.0.0.1:9001",
        "SET upload_status_listeners = bad",
        "SET server_process = /bin/true",
        "SET server_process = /etc/passwd",
        "SET buffer_uploads_path = /tmp",
        "SET buffer_uploads_path = /nonexistent/dir",
        "show service rp",
    ),
    seq(
        "listen_and_role_values",
        "CREATE SERVICE s",
        "SET s.listen = 8080",
        "SET s.listen = 127.0.0.1:8080",
        "SET s.listen = 0.0.0.0:80",
        "SET s.listen = localhost:8080",
        "SET s.listen = :80",
        "SET s.listen = 127.0.0.1:",
        "SET s.listen = 80a",
        "SET s.role = bogus",
        "SET s.role = Web_Server",
        "SET s.role = upload_tracker",
        "SET s.role = selector",
        "SET s.role = management",
        "SET s.role = reverse_proxy",
        "SET s.role = web_server",
        "show service s",
    ),
    seq(
        "role_restricted",
        "CREATE SERVICE norole",
        "SET norole.persist_client = on",
        "SET norole.docroot = /tmp",
        "SET norole.pool = p",
        "show service",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET pool = p",
        "SET persist_backend = on",
        "SET latency = 5",
        "SET default_service = web",
        "SET docroot = /tmp/",
        "SET docroot = /nonexistent/dir",
        "SET index_files = a.html, b.html",
        "SET max_put_size = 1m",
        "SET min_put_directory = 2",
        "CREATE SERVICE sel",
        "SET role = selector",
        "SET latency = 5",
        "SET default_service = web",
        "SET default_service = nosuch",
        "SET docroot = /tmp",
        "CREATE SERVICE rp",
        "SET role = reverse_proxy",
        "SET docroot = /tmp",
        "SET enable_reproxy = on",
        "show service web",
    ),
    seq(
        "file_params",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET ssl_key_file = /nonexistent.pem",
        "SET ssl_key_file = certs/server-key.pem",
        "SET ssl_key_file = /etc/passwd",
        "SET ssl_cert_file = /nonexistent.pem",
        "SET ssl_ca_path = /tmp",
        "SET ssl_ca_path = /nonexistent/dir",
        "SET ssl_verify_mode = 1",
        "SET ssl_cipher_list = HIGH",
        "SET enable_ssl = on",
        Step("SET trusted_upstream_proxies = 10.0.0.0/8", compare="skip"),
        "SET always_trusted = yes",
        "SET nonsense_param = 1",
        "SET web.plugin.x = 1",
    ),
    seq(
        "vivify_pools",
        "CREATE SERVICE rp",
        "SET role = reverse_proxy",
        "SET rp.balance_method = random",
        "show pool",
        "show service rp",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET web.balance_method = random",
        "CREATE POOL manual",
        "CREATE SERVICE rp2",
        "SET role = reverse_proxy",
        "SET rp2.balance_method = random",
        "SET rp2.nodefile = none",
        note="balance_method/nodefile on a service are passed to its pool, "
        "auto-creating <svc>_pool until any pool was created by hand",
    ),
    seq(
        "enable_disable",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET listen = 127.0.0.1:{PORT1}",
        "SET docroot = /tmp",
        "ENABLE web",
        "ENABLE web",
        "show service",
        "SET web.listen = 127.0.0.1:{PORT2}",
        "show service",
        "DISABLE web",
        "DISABLE web",
        "DISABLE mgmt",
        "ENABLE nosuch",
        "DISABLE nosuch",
        "ENABLE",
        "ENABLE web extra",
        "enable WEB",
        "CREATE SERVICE norole",
        "ENABLE norole",
        "show service",
    ),
    seq(
        "header",
        "CREATE SERVICE web",
        "SET role = web_server",
        "HEADER web INSERT X-Foo: bar",
        "HEADER web insert X-Bar:baz",
        "HEADER web REMOVE X-Foo",
        "HEADER web remove Cookie: ignored",
        "HEADER web insert X-Foo",
        "HEADER web insert X-Foo:",
        "HEADER web insert X-Foo: a=B",
        "HEADER insert web X-Foo: bar",
        "HEADER nosuch insert X-Foo: bar",
        "HEADER web append X-Foo: bar",
        "HEADER web",
        "HEADER",
    ),
    seq(
        "default",
        "DEFAULT persist_client = on",
        "DEFAULT nonsense = 1",
        "DEFAULT idle_timeout=99",
        "DEFAULT persist_client",
        "DEFAULT",
        "CREATE SERVICE web",
        "SET role = web_server",
        Step("dumpconfig", compare="blocks"),
    ),
    seq(
        "load_and_plugins",
        "CREATE SERVICE web",
        "SET role = web_server",
        "SET plugins = stats",
        "LOAD stats",
        "LOAD Stats",
        "LOAD STATS",
        "SET plugins = Stats",
        Step("plugins", compare="sorted"),
        "SET web.plugins = none",
        "plugins",
        "LOAD nosuchplugin",
        "LOAD NoSuch",
        "LOAD",
        "LOAD a b",
        "LOAD maxcontentlength",
        "SET web.max_content_length = 100",
        "SET web.plugins = maxcontentlength, stats",
        "SET web.plugins = stats nosuch",
        "LOAD vhosts",
        "SET web.plugins = vhosts",
        "LOAD notmodified",
        "LOAD xffextras",
        "LOAD vpaths",
        "LOAD highpri",
        "LOAD accesscontrol",
        "LOAD redirect",
        "LOAD autoremoveleadingdir",
        "plugins extra",
        note="LOAD tries the name as typed, then lowercase, then ucfirst-lowercase",
    ),
    seq(
        "vhost",
        "VHOST sel *.example.com = web",
        "CREATE SERVICE web",
        "SET role = web_server",
        "CREATE SERVICE sel",
        "SET role = selector",
        "LOAD vhosts",
        "VHOST sel *.Example.com = web",
        "VHOST www.example.com = web",
        "VHOST web x.com = web",
        "VHOST nosuch x.com = web",
        "VHOST sel a/b = web",
        "VHOST sel x.com web",
        "VHOST sel x.com = not-a-word",
        "VHOST",
        "SET sel.plugins = vhosts",
        "SET sel.default_service = web",
        Step("plugins", compare="sorted"),
        "USE web",
        "VHOST foo.com = sel",
    ),
    seq(
        "server",
        "SERVER max_reproxy_connections = 5",
        "SERVER max_reproxy_connections(10.0.0.1) = 3",
        "SERVER max_reproxy_connections = many",
        "SERVER max_connections = abc",
        "SERVER nice_level = 0",
        "SERVER nice_level = x",
        "SERVER aio_mode = none",
        "SERVER aio_mode = linux",
        "SERVER aio_mode = bogus",
        "SERVER aio_mode = nonesuch",
        Step("SERVER aio_mode = ioaio", compare="skip"),
        "SERVER aio_threads = 4",
        "SERVER aio_threads = x",
        "SERVER track_obj = 1",
        "SERVER track_obj = 0",
        "SERVER track_obj = yes",
        "SERVER pidfile = /tmp/perlbal-test.pid",
        "SERVER crash_backtrace = 0",
        "SERVER crash_backtrace = 2",
        "SERVER no_such_option = 7",
        "SERVER nice_level",
        "SERVER",
        "server aio_mode=none",
        note="an unknown server option's error quotes the VALUE, not the key; "
        "aio_mode is checked with /^none|linux|ioaio$/ so 'nonesuch' passes; "
        "pidfile is refused once the event loop runs (i.e. always on the console)",
    ),
    seq(
        "mime_and_xs",
        "mime",
        "mime list",
        "mime set foo text/x-foo",
        "mime set Bar Text/Bar",
        "mime list",
        "mime remove foo",
        "mime remove foo",
        "mime remove",
        "mime set foo",
        "mime bogus",
        "mime set a b c",
        "xs",
        "xs enable nosuch",
        "xs frob headers",
        "xs enable",
        note="mime set/remove print one bare line with no '.' and no OK",
    ),
    seq(
        "show_and_info",
        "CREATE POOL p",
        "POOL ADD p 127.0.0.1:8080",
        "CREATE SERVICE rp",
        "SET role = reverse_proxy",
        "SET pool = p",
        "show service rp",
        "show service",
        "SHOW SERVICE RP",
        "show service nosuch",
        "show service rp extra",
        "show services",
        "show",
        "show pool p",
        "show pool",
        "uptime",
        "version",
        "uptime now",
        "help",
        "help me",
        Step("plugins", compare="sorted"),
        Step("dumpconfig", compare="blocks"),
    ),
    seq(
        "verbose_comments_garbage",
        "verbose off",
        "CREATE SERVICE quiet",
        "CREATE SERVICE quiet",
        "verbose on",
        "VERBOSE ON",
        "verbose maybe",
        "verbose",
        "# a comment line",
        "   # indented comment",
        "   ",
        "\t",
        "CREATE SERVICE loud # with a comment",
        "SET loud.extra.x = a#b",
        "SET loud.extra.y = a$NO_SUCH_PERLBAL_TEST_VAR",
        "frobnicate",
        "FROBNICATE now",
        "!!!",
        "-x",
        "123abc",
        "create-service foo",
        "set.web = 1",
        "show service",
        note="'#' starts a comment anywhere; $NAME expands from the environment (unset: empty)",
    ),
]


CONFIG_CASES: list[ConfigCase] = [
    ConfigCase(
        "config_quiet_success_then_error",
        "CREATE POOL p\n"
        "POOL ADD p 127.0.0.1:8080\n"
        "show pool\n"
        "CREATE SERVICE web\n"
        "SET role = web_server\n"
        "SET web.persist_client = sure\n"
        "SET web.persist_client = on\n",
        note="verbose is off: success prints nothing; listings still print; "
        "loading stops at the first failure",
    ),
    ConfigCase(
        "config_verbose_on",
        "VERBOSE ON\nCREATE SERVICE web\nSET role = web_server\nVERBOSE OFF\nCREATE POOL p\nUSE nosuch\n",
        note="VERBOSE ON inside a config file makes later successes print OK",
    ),
    ConfigCase(
        "config_pool_unknown_key_fails_silently",
        "CREATE POOL p\nSET p.bogus = 1\nCREATE POOL never\nshow pool\n",
        note="Pool::set returns false without output for an unknown key, so the "
        "config stops with no message on stdout",
    ),
    ConfigCase(
        "config_no_context",
        "SET listen = 80\n",
    ),
    ConfigCase(
        "config_pidfile_and_blank_lines",
        "\n# comment\n\nSERVER pidfile = /tmp/perlbal-test-never-written.pid\nshow service\nfrobnicate\n",
        note="pidfile is accepted before the event loop starts",
    ),
]


# --- normalisation ---------------------------------------------------------

_INC_RE = re.compile(r"^(ERROR: Can't locate \S+ in @INC).*$", re.S)
_UPTIME_RE = re.compile(r"^(starttime|uptime) \d+$")


def substitute(line: str, ports: dict[str, int]) -> str:
    """Fill {MGMT}/{PORT1}/{PORT2} in a command line."""
    for name, port in ports.items():
        line = line.replace("{" + name + "}", str(port))
    return line


def normalize(lines: list[str], ports: dict[str, int], compare: str) -> list[str]:
    """Make a reply comparable; applied identically to Perl's and ours.

    * port numbers chosen at run time go back to their placeholders;
    * ``starttime N`` / ``uptime N`` lose their numbers;
    * a failed LOAD keeps only "Can't locate <file> in @INC" (the rest is
      Perl's @INC path list and an eval counter);
    * hash-ordered replies are sorted (``sorted``) or block-sorted (``blocks``);
    * in ``blocks`` (dumpconfig) replies, ``DISABLE name`` lines are dropped: we
      deliberately leave them out so that dumpconfig output round-trips on a
      fresh server (Perl's own ``DISABLE`` there fails: "already disabled").
    """
    out: list[str] = []
    if compare == "blocks":
        lines = [ln for ln in lines if not re.fullmatch(r"DISABLE \w+", ln)]
    for line in lines:
        for name, port in ports.items():
            line = re.sub(rf"(?<=:){port}\b", "{" + name + "}", line)
        line = _INC_RE.sub(r"\1 ...", line)
        line = _UPTIME_RE.sub(r"\1 <N>", line)
        out.append(line)
    if compare == "sorted":
        out.sort()
    elif compare == "blocks":
        blocks: list[str] = []
        current: list[str] = []
        for line in out:
            if line == "":
                blocks.append("\n".join(current))
                current = []
            else:
                current.append(line)
        if current:
            blocks.append("\n".join(current))
        out = ["\n\n".join(sorted(blocks))]
    return out


def count_lines() -> int:
    return sum(len(s.steps) for s in SEQUENCES) + sum(
        len(c.text.splitlines()) for c in CONFIG_CASES
    )
