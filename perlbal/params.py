"""Every tunable, declared once.

This registry is the single source of truth for service parameters (Perl
Perlbal's ``$tunables`` in Service.pm), pool parameters, SERVER settings and the
parameters plugins add.  ``SET``, ``show service``, ``perlbal check``,
``dumpconfig`` and the generated docs all read it; nothing else keeps a list.

Invariants:
- a parameter name is registered once per scope; a duplicate registration
  raises ``DuplicateParam`` (loudly, as caddy's module registry does);
- coercion is pure: ``Param.coerce(raw, env)`` either returns the stored value
  or raises ``ParamError`` whose text is Perl Perlbal 1.80's error message, so a
  console client sees the same ``ERROR:`` line from us as from Perl;
- side effects of setting a value (re-initialising a service when its role is
  set, rebinding a listener, ...) are *named* here (``Param.effect``) and carried
  out by the interpreter, so this module stays free of graph and runtime code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

# re-exported: callers import them from perlbal.params
from perlbal.paramkinds import (
    ALL_ROLES as ALL_ROLES,
    ANY_HOST as ANY_HOST,
    CORE_ROLES as CORE_ROLES,
    CheckEnv as CheckEnv,
    DuplicateParam as DuplicateParam,
    Effect as Effect,
    Kind as Kind,
    POOL_HOSTS as POOL_HOSTS,
    Param as Param,
    ParamError as ParamError,
    ParamValue as ParamValue,
    listen_address_error as listen_address_error,
    parse_bool as parse_bool,
    parse_host_entry as parse_host_entry,
    parse_seconds as parse_seconds,
    parse_size as parse_size,
    parse_sni_certs as parse_sni_certs,
    parse_status_list as parse_status_list,
    perl_numify as perl_numify,
)


# --- the registry ---------------------------------------------------------------


@dataclass
class Registry:
    """Parameters by scope: ``service``, ``pool`` and ``server``."""

    service: dict[str, Param] = field(default_factory=dict)
    pool: dict[str, Param] = field(default_factory=dict)
    server: dict[str, Param] = field(default_factory=dict)

    def _add(self, table: dict[str, Param], param: Param) -> Param:
        if param.name in table:
            raise DuplicateParam(f"parameter '{param.name}' declared twice")
        table[param.name] = param
        return param

    def add_service(self, param: Param) -> Param:
        return self._add(self.service, param)

    def add_pool(self, param: Param) -> Param:
        return self._add(self.pool, param)

    def add_server(self, param: Param) -> Param:
        return self._add(self.server, param)

    def remove_plugin_params(self, plugin: str) -> None:
        for name in [n for n, p in self.service.items() if p.plugin == plugin]:
            del self.service[name]

    def all_names(self) -> Iterable[str]:
        yield from self.service
        yield from self.pool
        yield from self.server


REGISTRY = Registry()
_S = REGISTRY.add_service
RP = ("reverse_proxy",)
WS = ("web_server",)
SEL = ("selector",)

# Service parameters of Perl Perlbal 1.80, all of them.  Docs are our own words.
_S(Param("role", Kind.ROLE, "What the service does: reverse_proxy, web_server, management, "
         "selector or upload_tracker (plugins may add roles). Setting it resets every "
         "parameter to its default.", required=True, effect=Effect.INIT_ROLE))
_S(Param("listen", Kind.LISTEN, "Address to accept connections on: ip:port or a bare port "
         "(all interfaces). A service without one is reachable only through a selector.",
         effect=Effect.REBIND))
_S(Param("pool", Kind.POOL_REF, "The pool (created beforehand) whose nodes receive this "
         "reverse proxy's requests.", roles=RP, effect=Effect.POOL_REF))
_S(Param("allowed_hosts", Kind.LIST, "Beyond Perl: host names (besides the listener's own "
         "address) that a browser may use to reach the management web UI; an HTTP request "
         "naming another Host gets 403, so a web page that rebinds its name to this "
         "address (DNS rebinding) cannot read or drive the console.",
         roles=("management",), beyond_perl=True))
_S(Param("proxy_protocol", Kind.BOOL, "Beyond Perl: every connection starts with a PROXY "
         "protocol header (HAProxy's v1 text or v2 binary, as an L4 balancer sends with "
         "send-proxy), read before TLS and HTTP; the client address it names stands for the "
         "client everywhere (X-Forwarded-For, access log, ACCESS rules, Throttle). Only peers "
         "trusted_upstream_proxies names (or always_trusted) may connect; an untrusted peer, "
         "a missing or malformed header closes the connection with a log line.", default="0",
         beyond_perl=True))
_S(Param("proxy_protocol_timeout", Kind.SECONDS, "Beyond Perl: seconds a connection to a "
         "proxy_protocol service has to deliver its whole PROXY header, whatever idle_timeout "
         "says (0 too); then it is closed with a log line. 0: the default, 10. A v2 header "
         "longer than 16 KiB is refused.", default="10", beyond_perl=True))
_S(Param("always_trusted", Kind.BOOL, "Trust X-Forwarded-For and friends from every client "
         "(only when every client is your own proxy).", default="0"))
_S(Param("backend_response_timeout", Kind.INT, "Beyond Perl (which waits forever): seconds "
         "a backend may take to start its reply, and may stay silent within it; then the "
         "client gets 504 (or is closed, if its reply had started). 0: no limit.", roles=RP,
         default="60", beyond_perl=True))
_S(Param("allow_upgrade", Kind.BOOL, "Beyond Perl: relay protocol upgrades (WebSocket): an "
         "HTTP/1.1 request with Upgrade and Connection: upgrade goes to the backend as "
         "HTTP/1.1 with those fields, and a 101 reply turns the connection into a two-way "
         "byte tunnel until either side closes or idle_timeout passes in silence. Off: "
         "Upgrade is dropped as a hop-by-hop field and the request is an ordinary one.",
         roles=RP, default="1", beyond_perl=True))
_S(Param("upgrade_protocols", Kind.LIST, "Beyond Perl: the protocols allow_upgrade relays "
         "(Upgrade tokens, comma- or space-separated, any case; a name without /version "
         "stands for every version). A tunnel bypasses routing, ACCESS and HEADER rules and "
         "every plugin, so any other protocol the client asks for is dropped (Upgrade, "
         "HTTP2-Settings and their Connection tokens) and the request served as an ordinary "
         "one; h2c (and HTTP itself: HTTP/2.0, h2) always is, even when listed. A 101 switching to a protocol that was not "
         "offered gets the client a 502.", roles=RP, default="websocket", beyond_perl=True))
_S(Param("forwarded_headers", Kind.CHOICE, "Beyond Perl: what becomes of a client's "
         "forwarding fields. sanitize: from a client that is not a trusted upstream proxy "
         "(trusted_upstream_proxies, always_trusted), X-Forwarded-Proto, X-Forwarded-Port "
         "and Forwarded are dropped (X-Forwarded-Host and X-Host too, as in Perl) and "
         "X-Forwarded-Proto (http or https) and X-Forwarded-Port are set from the listener "
         "the client reached; a trusted proxy's are kept, the missing ones set (none under "
         "blind_proxy). perl: the client's pass unchanged, as in Perl Perlbal.",
         roles=RP, default="sanitize", choices=("sanitize", "perl"), beyond_perl=True))
_S(Param("backend_persist_cache", Kind.INT, "Idle keep-alive backend connections kept in "
         "reserve while no client waits.", roles=RP, default="2"))
_S(Param("backend_persist_linger", Kind.INT, "Beyond Perl: seconds a used backend "
         "connection beyond backend_persist_cache may stay idle before it is closed, so that "
         "a busy service does not close and reopen connections in the gaps between requests. "
         "0: close it at once, as Perl does.", roles=RP, default="1", beyond_perl=True))
_S(Param("blind_proxy", Kind.BOOL, "Leave X-Forwarded-For, X-Host and X-Forwarded-Host "
         "exactly as the client sent them.", roles=RP, default="0"))
_S(Param("buffer_backend_connect", Kind.SIZE, "Request body bytes read from the client before "
         "a backend is engaged; with buffer_uploads, the sample used to decide on spooling.",
         roles=RP, default="100k"))
_S(Param("buffer_size", Kind.SIZE, "How far the proxy reads a backend response ahead of a slow "
         "client before it pauses the backend.", roles=RP, default="256k"))
_S(Param("buffer_size_reproxy_url", Kind.SIZE, "Read-ahead limit when relaying a reproxied "
         "URL to the client.", roles=RP, default="50k"))
_S(Param("buffer_upload_threshold_rate", Kind.INT, "Spool an upload to disk when it arrives "
         "slower than this many bytes per second (0: never by rate).", roles=RP, default="0"))
_S(Param("buffer_upload_threshold_size", Kind.SIZE, "Spool an upload to disk when it is "
         "larger than this (0: never by size).", roles=RP, default="250k"))
_S(Param("buffer_upload_threshold_time", Kind.INT, "Spool an upload to disk when it would "
         "take longer than this many seconds (0: never by time).", roles=RP, default="5"))
_S(Param("buffer_uploads", Kind.BOOL, "Spool slow or large request bodies to disk before a "
         "backend sees them.", roles=RP, default="0"))
_S(Param("buffer_uploads_path", Kind.DIRECTORY, "Directory for spooled uploads.", roles=RP))
_S(Param("client_sndbuf_size", Kind.SIZE, "SO_SNDBUF for client sockets (0: the kernel's).",
         default="0"))
_S(Param("connect_ahead", Kind.INT, "Spare backend connections opened ahead of demand.",
         roles=RP, default="0", effect=Effect.SPAWN_BACKENDS))
_S(Param("default_service", Kind.SERVICE_REF, "Where a selector sends requests no rule "
         "matched.", roles=SEL))
_S(Param("dirindexing", Kind.BOOL, "Answer a directory request with a listing page.",
         roles=WS, default="0"))
_S(Param("docroot", Kind.DIRECTORY, "Directory the web server serves (and PUT writes into).",
         roles=WS))
_S(Param("enable_concatenate_get", Kind.BOOL, "Allow several files in one GET "
         "(/dir/??a.css,b.css).", roles=WS, default="0"))
_S(Param("enable_delete", Kind.BOOL, "Allow DELETE of files under docroot.", roles=WS,
         default="0"))
_S(Param("enable_error_retries", Kind.BOOL, "Retry a request on another backend when a "
         "backend fails it before answering.", roles=RP, default="0"))
_S(Param("enable_md5", Kind.BOOL, "Verify Content-MD5 on PUT uploads.", roles=WS, default="1"))
_S(Param("enable_put", Kind.BOOL, "Allow PUT uploads under docroot.", roles=WS, default="0"))
_S(Param("enable_reproxy", Kind.BOOL, "Obey X-REPROXY-URL / X-REPROXY-FILE from backends "
         "(only with backends you trust).", roles=RP, default="0"))
_S(Param("enable_ssl", Kind.BOOL, "Speak TLS to clients on this listener (the ssl_* "
         "parameters are read at ENABLE).", default="0"))
_S(Param("error_retry_schedule", Kind.RETRY_SCHEDULE, "Comma-separated delays (seconds) "
         "between error retries; its length bounds the number of retries.", roles=RP,
         default="0,.25,.50,1,1,1,1,1"))
_S(Param("high_priority_cookie", Kind.STRING, "Cookie whose presence puts a request in the "
         "high-priority queue.", roles=RP))
_S(Param("high_priority_cookie_contents", Kind.STRING, "Text that cookie must contain.",
         roles=RP))
_S(Param("idle_timeout", Kind.INT, "Seconds an idle client connection is kept.", default="30"))
_S(Param("index_files", Kind.LIST, "Files tried, in order, for a directory request.",
         roles=WS, default="index.html"))
_S(Param("latency", Kind.INT, "Milliseconds of delay a selector adds (for testing).",
         roles=SEL, default="0"))
_S(Param("max_backend_uses", Kind.LOOSE_INT, "Requests per backend connection before it is "
         "retired (0: no limit).", roles=RP, default="0"))
_S(Param("max_chunked_request_size", Kind.SIZE, "Largest chunked request body accepted "
         "(0: no limit).", default="209715200"))
_S(Param("max_request_head_size", Kind.SIZE, "Beyond Perl: largest request head (request "
         "line and fields) a client may send; past it the client gets 414 (the request line "
         "alone is too long) or 431, as soon as the limit is crossed. The default is what "
         "Node and HAProxy use; Perl's fixed limit is 100k.", default="16k", beyond_perl=True))
_S(Param("client_body_min_rate", Kind.INT, "Beyond Perl: bytes per second a request body "
         "must keep up on average. The body gets idle_timeout seconds, plus one second for "
         "every this many bytes received, so a client trickling a byte at a time is cut "
         "(408) instead of holding the connection for ever (Perl restarts its idle timer "
         "at every byte). 0: only idle_timeout between reads, as Perl.", default="500",
         beyond_perl=True))
_S(Param("max_put_size", Kind.SIZE, "Largest PUT body accepted (0: no limit).", roles=WS,
         default="0"))
_S(Param("min_put_directory", Kind.INT, "Directory levels that must already exist for a PUT.",
         roles=WS, default="0"))
_S(Param("persist_backend", Kind.BOOL, "Keep backend connections alive between requests.",
         roles=RP, default="0"))
_S(Param("persist_client", Kind.BOOL, "Keep client connections alive between requests.",
         default="0"))
_S(Param("persist_client_idle_timeout", Kind.INT, "Seconds a kept-alive client may idle "
         "between requests.", default="30"))
_S(Param("persist_client_timeout", Kind.INT, "Deprecated: sets persist_client_idle_timeout "
         "and idle_timeout together.", dump_ignore=True, effect=Effect.SET_BOTH_TIMEOUTS))
_S(Param("queue_relief_chance", Kind.PERCENT, "Percent chance a queued request skips the "
         "queue once queue_relief_size is reached.", roles=RP, default="0"))
_S(Param("queue_relief_size", Kind.INT, "Queue length past which queue relief applies "
         "(0: never).", roles=RP, default="0"))
_S(Param("reproxy_cache_maxsize", Kind.INT, "Entries kept in the X-REPROXY-CACHE-FOR cache "
         "(0: no cache).", roles=RP, default="0", effect=Effect.NOT_STORED))
_S(Param("reproxy_file_roots", Kind.DIRECTORY_LIST, "Beyond Perl (which serves any path): "
         "absolute directories an X-REPROXY-FILE must lie under once every symlink is "
         "resolved; another file gets a 502 and a log line. Empty: any file.", roles=RP,
         default="", beyond_perl=True))
_S(Param("reproxy_url_hosts", Kind.REPROXY_HOSTS, "Beyond Perl: hosts an X-REPROXY-URL may "
         "name: any (Perl's behaviour), pool (only the ip:port nodes of this service's "
         "pool) and/or host or host:port names; a reply naming any other gets a 502 and a "
         "log line.", roles=RP, default="any", beyond_perl=True))
_S(Param("server_process", Kind.EXECUTABLE, "Program speaking HTTP on stdin/stdout used as "
         "the backend (experimental in Perl too).", roles=RP))
_S(Param("server_tokens", Kind.BOOL, "Send a Server header.", default="1"))
_S(Param("ssl_ca_path", Kind.DIRECTORY_OR_NONE, "Directory of CA certificates for client "
         "verification (OpenSSL hashed names, or any *.pem / *.crt files)."))
_S(Param("ssl_cert_file", Kind.FILE_OR_DEFAULT, "PEM certificate for TLS.",
         default="certs/server-cert.pem"))
#: Mozilla's "intermediate" TLS 1.2 suites (ssl-config.mozilla.org, version 5.7):
#: ECDHE/DHE key exchange (forward secrecy) with AEAD ciphers only.  Perl's default
#: ``ALL:!LOW:!EXP`` also allows RSA key exchange and CBC-SHA1 suites (#19 item 12).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305")
PERL_CIPHERS = "ALL:!LOW:!EXP"
_S(Param("ssl_cipher_list", Kind.STRING, "OpenSSL cipher list for TLS 1.2 and older. "
         "Beyond Perl, the default is Mozilla's intermediate list (forward-secret AEAD "
         f"suites only); Perl's default is {PERL_CIPHERS}, which also allows RSA key "
         "exchange and CBC-SHA1 suites: set it to that for very old clients.",
         default=INTERMEDIATE_CIPHERS))
_S(Param("ssl_key_file", Kind.FILE_OR_DEFAULT, "PEM private key for TLS.",
         default="certs/server-key.pem"))
_S(Param("ssl_verify_mode", Kind.INT, "Client certificates, as IO::Socket::SSL's mask: 0 "
         "none, 1 ask and verify one if sent, 3 require a valid one.", default="0"))
_S(Param("ssl_sni_certs", Kind.SNI_CERTS, "Beyond Perl: more certificates chosen by the "
         "name the client asks for (TLS SNI), as comma-separated host=cert.pem:key.pem "
         "entries (host may be *.example.com; key may be omitted when the cert file holds "
         "it). Clients naming no listed host get ssl_cert_file. Read at ENABLE.", default="", beyond_perl=True))
_S(Param("access_log", Kind.STRING, "Beyond Perl: where this service logs each request: "
         "a file path (appended, buffered, reopened on SIGHUP), stderr, or syslog "
         "(empty: no access log). A selector's requests are logged by the service that "
         "answers them, or by the selector when that service has none.", default="", beyond_perl=True))
_S(Param("access_log_format", Kind.ACCESS_LOG_FORMAT, "Beyond Perl: combined (Apache/NCSA "
         "Combined Log Format) or json (one object a line).", default="combined",
         choices=("combined", "json"), beyond_perl=True))
_S(Param("trusted_upstream_proxies", Kind.NETMASK_LIST, "Comma-separated networks whose "
         "X-Forwarded-For headers are kept."))
_S(Param("upload_status_listeners", Kind.UDP_ENDPOINTS, "Comma-separated ip:port UDP "
         "listeners sent upload progress.", roles=RP, default=""))
_S(Param("verify_backend", Kind.BOOL, "Send an OPTIONS request to a new backend connection "
         "before trusting it with a client.", roles=RP, default="0"))
_S(Param("verify_backend_path", Kind.STRING, "Target of the verify_backend OPTIONS request.",
         roles=RP, default="*"))

# Pool parameters.  Perl accepts only 'random' as balance method; the other
# methods, hash_key and the health parameters are ours (docs/balancing.md).
_P = REGISTRY.add_pool
_P(Param("nodefile", Kind.NODEFILE, "File listing the pool's nodes, one "
         "ip[:port] a line; re-read when it changes. none clears it."))
_P(Param("balance_method", Kind.BALANCE_METHOD, "How a request's node is chosen: random "
         "(Perl's only method: a request takes any idle connection, new ones go to random "
         "nodes); beyond Perl, round_robin (the live nodes in turn), least_conn (fewest "
         "requests in flight in this worker), two_choices (the less busy of two random "
         "nodes) or hash (consistent hashing of hash_key: a key stays on its node, and "
         "adding or removing a node moves about 1/N of the keys). See docs/balancing.md.",
         default="random", choices=("random", "round_robin", "least_conn", "two_choices",
                                    "hash"), perl_choices=("random",)))
_P(Param("hash_key", Kind.HASH_KEY, "Beyond Perl: what balance_method hash hashes: client_ip, "
         "uri (the request target), header:<Name> or cookie:<name>. A request without the "
         "header or cookie goes to a random node.", default="client_ip", beyond_perl=True))
_P(Param("health_check_uri", Kind.URI_PATH, "Beyond Perl: path of an active health check "
         "(GET, HTTP/1.0) sent to every node each health_check_interval; 2xx and 3xx pass. "
         "Empty (none): no active checks.", default="", beyond_perl=True))
_P(Param("health_check_interval", Kind.SECONDS, "Beyond Perl: seconds between two health "
         "checks of a node (decimals allowed).", default="2", beyond_perl=True))
_P(Param("health_check_timeout", Kind.SECONDS, "Beyond Perl: seconds a health check may "
         "take (connect and reply); slower is a failure.", default="2", beyond_perl=True))
_P(Param("health_check_rise", Kind.INT, "Beyond Perl: consecutive passed checks that bring "
         "a down node back (HAProxy's rise).", default="2", beyond_perl=True))
_P(Param("health_check_fall", Kind.INT, "Beyond Perl: consecutive failed checks that take a "
         "node out (HAProxy's fall).", default="3", beyond_perl=True))
_P(Param("max_fails", Kind.INT, "Beyond Perl: consecutive failures (failed connects, or "
         "replies with a status in fail_statuses) that eject a node for fail_timeout, as "
         "nginx's max_fails. 0: never (Perl only skips a node whose connect failed for a "
         "second). The last node up is never ejected.", default="0", beyond_perl=True))
_P(Param("fail_timeout", Kind.SECONDS, "Beyond Perl: seconds an ejected node stays out "
         "(nginx's fail_timeout).", default="10", beyond_perl=True))
_P(Param("fail_statuses", Kind.STATUS_LIST, "Beyond Perl: reply statuses max_fails counts "
         "as failures: codes or classes, comma-separated (500,502,503,504 or 5xx).", default="500,502,503,504", beyond_perl=True))

_P(Param("send_proxy_protocol", Kind.CHOICE, "Beyond Perl: start every backend connection "
         "with a PROXY protocol header (v1 text or v2 binary, as HAProxy's send-proxy) naming "
         "the client, for backends behind which the client address matters. Each such "
         "connection carries one client's requests only (never reused for another), and "
         "verify_backend is skipped for it. off: none.", default="off",
         choices=("off", "v1", "v2"), beyond_perl=True))
_P(Param("dns_name", Kind.DNS_NAME, "Beyond Perl: the pool's nodes come from DNS: host:port "
         "(every A and AAAA address, on that port) or an SRV name such as "
         "_http._tcp.app.example (each target's addresses on its port), as Kubernetes "
         "headless Services and Consul publish them. Re-resolved when the records' TTL runs "
         "out (within dns_refresh_min..dns_refresh_max); nodes that vanish drain, requests "
         "in flight are kept. Empty: nodes from POOL ADD / nodefile only.", default="",
         beyond_perl=True))
_P(Param("dns_server", Kind.DNS_SERVER, "Beyond Perl: the DNS server dns_name is asked "
         "(ip:port); empty: the first nameserver of /etc/resolv.conf.", default="",
         beyond_perl=True))
_P(Param("dns_refresh_min", Kind.SECONDS, "Beyond Perl: seconds at least between two lookups "
         "of dns_name, whatever the TTL (and the wait after a failed one).", default="1",
         beyond_perl=True))
_P(Param("dns_refresh_max", Kind.SECONDS, "Beyond Perl: seconds at most between two lookups "
         "of dns_name, whatever the TTL.", default="300", beyond_perl=True))

# SERVER settings.
_SV = REGISTRY.add_server
_SV(Param("max_reproxy_connections", Kind.INT, "Reproxy connections open at once, globally "
          "or per host with max_reproxy_connections(ip:port)."))
_SV(Param("max_connections", Kind.INT, "Open file descriptor limit (RLIMIT_NOFILE), as "
          "in Perl; beyond Perl, also the most client connections open at once: a client "
          "beyond it gets a 503 page and is closed (counted in "
          "perlbal_connections_refused_total{reason=\"max_connections\"}); management "
          "connections have a budget of their own of the same size, so the console stays "
          "reachable when clients fill the server."))
_SV(Param("nice_level", Kind.INT, "Renice the process by this much."))
_SV(Param("aio_mode", Kind.STRING, "Where the web server's file system calls run: ioaio "
          "(the default when unset) in a thread pool of aio_threads, so a slow disk never "
          "stalls other clients; none on the event loop (faster for cached files, but every "
          "client waits on a slow read). linux is accepted, as Perl accepts it, and acts as "
          "ioaio.", choices=("none", "ioaio")))
_SV(Param("aio_threads", Kind.INT, "Threads the web server's disk calls run on (aio_mode "
          "ioaio), in each worker; may be changed live. Unset or 0: 4."))
_SV(Param("track_obj", Kind.STRING, "Object tracking (1 or 0), a Perl debugging aid."))
_SV(Param("pidfile", Kind.STRING, "Where to write the process id (startup only).", live=False))
_SV(Param("crash_backtrace", Kind.STRING, "Print a backtrace on crashes (1 or 0)."))
_SV(Param("workers", Kind.INT, "Beyond Perl: N worker processes under a supervisor. "
          "The supervisor binds every listener (and keeps root), serves management, runs "
          "health checks, DNS refreshes and the upload tracker once, restarts a dead "
          "worker at once (backing off on a crash loop) and shows every worker's numbers "
          "summed; the workers share each listener's accept queue and drop to SERVER "
          "user. Unset or 0: one process, as Perl; 1: a supervisor and one worker. "
          "Startup only.", live=False, beyond_perl=True))

_SV(Param("user", Kind.STRING, "Beyond Perl: drop root to this user (name or name:group) "
          "once the listeners are bound. Startup only.", live=False, beyond_perl=True))
_SV(Param("error_log", Kind.STRING, "Beyond Perl: where error and event messages go: "
          "stderr, syslog (facility daemon; syslog:local0 for another) or a file path. "
          "Default: stderr, or syslog with --daemon (Perl's choice). Startup only.",
          live=False, beyond_perl=True))
_SV(Param("log_level", Kind.STRING, "Beyond Perl: least severe message logged: debug, "
          "info (startup, reloads, shutdown), warning (default), error or critical.",
          choices=("debug", "info", "warning", "error", "critical"), beyond_perl=True))
_SV(Param("metrics", Kind.STRING, "Beyond Perl: keep per-service, per-pool and per-node "
          "counters for the management /metrics page (on, the default, or off).",
          choices=("on", "off"), beyond_perl=True))


def service_param(name: str) -> Param | None:
    return REGISTRY.service.get(name)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate, for a friendly hint on a misspelling."""
    import difflib

    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None
