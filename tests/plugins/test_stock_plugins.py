"""Stock plugins' configuration side: LOAD, commands, SET plugins, errors.

Each case is a console session (verbose, as on a management connection) with
the replies Perl Perlbal 1.80 gives; ``test_same_replies_as_perl`` re-runs the
Perl-comparable sessions live against /usr/bin/perlbal.
"""

from __future__ import annotations

import pytest

from perlbal.interp import CommandContext, Interpreter
from tests.support.perl_perlbal import PerlPerlbal, requires_perl_perlbal
from tests.support.ports import free_port

Session = list[tuple[str, list[str]]]

LOAD_ALL = [(f"load {name}", ["OK"]) for name in (
    "AccessControl", "Vpaths", "Include", "Redirect", "Highpri", "Stats", "Queues", "Palimg",
    "Throttle", "XFFExtras", "NotModified", "MaxContentLength", "AutoRemoveLeadingDir",
    "EchoService", "LazyCDN", "FlvStreaming", "Cgilike")]

# Sessions whose every reply was checked against Perl Perlbal 1.80.
PERL_SESSIONS: dict[str, Session] = {
    "load_case_rules": [
        ("load vpaths", ["OK"]),
        ("load Highpri", ["OK"]),
        ("load accesscontrol", None),  # type: ignore[list-item]  # text differs: @INC
    ],
    "access": [
        ("load AccessControl", ["OK"]),
        ("access policy deny", ["ERROR: No service name in context from CREATE SERVICE "
                                "<name> or USE <service_name>"]),
        ("create service s", ["OK"]),
        ("access policy xdeny", ["OK"]),
        ("access allowx", ["ERROR: usage: ACCESS <cmd> <arg1> [<arg2>]"]),
        ("access policy", ["ERROR: policy must be 'allow' or 'deny'"]),
        ("access deny", ["ERROR: Unknown item to deny: ''"]),
        ("access deny foo 1", ["ERROR: Unknown item to deny: 'foo'"]),
        ("access queue_low ip 1.2.3.4", ["OK"]),
        ("access deny ip 5.6.7.8", ["OK"]),
        ("access policy deny", ["OK"]),
        ("set role = web_server", ["OK"]),
        ("set plugins = accesscontrol", ["OK"]),
        ("set s.accesscontrol.use_observed_ip = 1", ["OK"]),
        ("dumpconfig", None),  # type: ignore[list-item]  # Perl lists its mgmt service too
    ],
    "vpaths": [
        ("load Vpaths", ["OK"]),
        ("create service s", ["OK"]),
        ("set role = reverse_proxy", ["OK"]),
        ("set plugins = vpaths", ["ERROR: You can't load the vpath plugin on a service not of "
                                  "role selector."]),
        ("vpath ^/a = b", ["ERROR: Service 's' is not a selector service"]),
        ("set role = selector", ["OK"]),
        ("set plugins = vpaths", ["OK"]),
        ("vpath ^/foo = bar", ["OK"]),
        ("vpath s ^/x = bar", ["OK"]),
        ("vpath", ["ERROR: usage: VPATH [<service>] <path regex> = <dest_service>"]),
        ("vpath nosuch ^/x = bar", ["ERROR: Service 'nosuch' is not a selector service"]),
    ],
    "highpri_and_stats": [
        ("load Highpri", ["OK"]),
        ("load Stats", ["OK"]),
        ("create service p", ["OK"]),
        ("set role = reverse_proxy", ["OK"]),
        ("set plugins = highpri, stats", ["OK"]),
        ("set p.highpri.uri_pattern = ^/x", []),
        ("set p.highpri.uri_pattern = (", ["ERROR: Invalid regular expression"]),
        ("set p.highpri.host_pattern = 0", []),
        ("set p.highpri.foo = 1", ["ERROR: Unknown service parameter 'highpri.foo'"]),
        ("patterns x", ["High priority pattern buffer:", "SET p.highpri.uri_pattern = ^/x",
                        "SET p.highpri.host_pattern = undef", "."]),
        ("stats", [f"{w:<15} {k:<25} {0:>12}" for w in ("p", "total") for k in (
            "files_reproxied", "files_sent", "proxy_requests", "proxy_requests_highpri",
            "web_requests")] + ["."]),
        ("recent", ["."]),
        ("unload highpri", ["OK"]),
        ("patterns", ["ERROR: unknown command: patterns"]),
    ],
    "redirect_include_cgilike": [
        ("load Redirect", ["OK"]),
        ("load Include", ["OK"]),
        ("load Cgilike", ["OK"]),
        ("redirect host a b", ["ERROR: No service name in context from CREATE SERVICE <name> "
                               "or USE <service_name>"]),
        ("create service w", ["OK"]),
        ("redirect host A.com B.com", []),
        ("redirect x", ["ERROR: usage: REDIRECT HOST <match_host> <target_host>"]),
        ("include =/x", ["ERROR: usage: INCLUDE = <config files>"]),
        ("include = /nonexist/*.conf", ["OK"]),
        ("include = /nonexist/a.conf", ["ERROR: Error opening config file (/nonexist/a.conf): "
                                        "No such file or directory"]),
        ("perlrequire foo", ["ERROR: usage: PERLREQUIRE=<module>"]),
        ("perlhandler x", ["ERROR: usage: PERLHANDLER=<package::subroutine>"]),
        ("perlhandler = A::b", []),
    ],
    "tunables": [
        ("load Throttle", ["OK"]),
        ("load EchoService", ["OK"]),
        ("load LazyCDN", ["OK"]),
        ("load XFFExtras", ["OK"]),
        ("load MaxContentLength", ["OK"]),
        ("load FlvStreaming", ["OK"]),
        ("load NotModified", ["OK"]),
        ("create service p", ["OK"]),
        ("set role = reverse_proxy", ["OK"]),
        ("set default_action = foo", ["ERROR: Value of 'default_action' must be one of: "
                                      "allow, throttle"]),
        ("set blacklist_action = throttle", ["OK"]),
        ("set log_events = x", ["ERROR: log_events is a comma-separated list of loggable "
                                "events"]),
        ("set log_events = ban, unban", ["OK"]),
        ("set whitelist_file = /nonexist", ["ERROR: File '/nonexist' not found for "
                                            "'whitelist_file'"]),
        ("set max_delay = x", ["ERROR: Expecting integer value for parameter 'max_delay'"]),
        ("set log_only = maybe", ["ERROR: Expecting boolean value for parameter 'log_only'"]),
        ("throttle reload whitelist", ["ERROR: no whitelist file configured"]),
        ("throttle reload foo", ["ERROR: usage: throttle reload <config|whitelist|blacklist>"]),
        ("set send_backend_port = yes", ["OK"]),
        ("set plugins = flvstreaming, xffextras, throttle, maxcontentlength", ["OK"]),
        ("set max_content_length = x", ["ERROR: Expecting integer value for parameter "
                                        "'max_content_length'"]),
        ("set max_content_length = 100", ["OK"]),
        ("set fallback_service = x", ["ERROR: The 'fallback_service' option can only be set "
                                      "on a 'web_server' service"]),
        ("create service e", ["OK"]),
        ("set role = echo", ["OK"]),
        ("set echo_delay = x", ["ERROR: Expecting integer value for parameter 'echo_delay'"]),
        ("set echo_delay = 2", ["OK"]),
        ("set p.echo_delay = 1", ["ERROR: The 'echo_delay' option can only be set on a 'echo' "
                                  "service"]),
        ("set send_backend_port = 1", ["ERROR: The 'send_backend_port' option can only be set "
                                       "on a 'reverse_proxy' service"]),
        ("set plugins = flvstreaming", ["ERROR: You can't load the flvstreaming plugin on a "
                                        "service not of role reverse_proxy."]),
        ("set plugins = notmodified", ["OK"]),
        ("set e.notmodified.host_pattern = ^a", []),
        ("create service w", ["OK"]),
        ("set role = web_server", ["OK"]),
        ("set fallback_udp_ping_addr = 1.2", ["ERROR: Expecting IP:port of form a.b.c.d:port."]),
        ("set fallback_udp_ping_addr = 1.2.3.4:5", ["OK"]),
        ("set fallback_service = p", ["OK"]),
        ("unload echoservice", ["OK"]),
        ("set e.echo_delay = 3", ["ERROR: Unknown service parameter 'echo_delay'"]),
        ("set e.role = echo", ["ERROR: Role not valid for service e"]),
        ("set w.plugins = queues, palimg, autoremoveleadingdir, cgilike", [
            "ERROR: Plugin queues not loaded; not registered for w.",
            "ERROR: Plugin palimg not loaded; not registered for w.",
            "ERROR: Plugin autoremoveleadingdir not loaded; not registered for w.",
            "ERROR: Plugin cgilike not loaded; not registered for w.", "OK"]),
    ],
}


def run_ours(session: Session) -> list[list[str]]:
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    return [it.run_line(line, ctx) for line, _ in session]


@pytest.mark.parametrize("name", sorted(PERL_SESSIONS))
def test_session_replies(name: str) -> None:
    session = PERL_SESSIONS[name]
    for (line, expected), got in zip(session, run_ours(session)):
        if expected is not None:
            assert got == expected, line


@requires_perl_perlbal
@pytest.mark.parametrize("name", sorted(PERL_SESSIONS))
def test_same_replies_as_perl(name: str) -> None:
    session = PERL_SESSIONS[name]
    with PerlPerlbal("", mgmt_port=free_port()) as perl, perl.console() as con:
        perl_replies = [con.command(line) for line, _ in session]
    for (line, expected), ours, theirs in zip(session, run_ours(session), perl_replies):
        if expected is not None:
            assert theirs == expected, f"Perl changed its reply to {line!r}"
            assert ours == theirs, line


def test_all_stock_plugins_load_and_register() -> None:
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    for line, expected in LOAD_ALL:
        assert it.run_line(line, ctx) == expected
    assert it.run_line("create service p", ctx) == ["OK"]
    assert it.run_line("set role = reverse_proxy", ctx) == ["OK"]
    names = ",".join(name for name in it.graph.plugins_loaded.values() if name != "Vpaths")
    assert it.run_line(f"set plugins = {names}", ctx) == ["OK"]
    assert len(it.graph.services["p"].plugin_order) == 16


def test_access_rules_and_dumpconfig() -> None:
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    for line in ("load AccessControl", "create service s", "set role = web_server",
                 "access allow netmask 10.1.2.3/8", "access deny netmask 192.168.1",
                 "access queue_low netmask 172.16.0.0:255.240.0.0",
                 "access allow netmask 10.0.0.0#a comment", "access deny ip 1.2.3.4",
                 "access policy deny", "set plugins = accesscontrol"):
        assert it.run_line(line, ctx) == ["OK"], line
    assert it.run_line("access allow netmask bad", ctx) == ["ERROR: Error parsing netmask"]
    svc = it.graph.services["s"]
    assert svc.extra["access"] == {"deny_default": True, "rules": [
        ["allow", "netmask", "10.0.0.0/8"], ["deny", "netmask", "192.168.1.0/24"],
        ["queue_low", "netmask", "172.16.0.0/12"], ["allow", "netmask", "10.0.0.0/32"],
        ["deny", "ip", "1.2.3.4"]]}
    dump = it.run_line("dumpconfig", ctx)
    assert dump[dump.index("  ACCESS ALLOW NETMASK 10.0.0.0/8"):][:6] == [
        "  ACCESS ALLOW NETMASK 10.0.0.0/8", "  ACCESS DENY NETMASK 192.168.1.0/24",
        "  ACCESS QUEUE_LOW NETMASK 172.16.0.0/12", "  ACCESS ALLOW NETMASK 10.0.0.0/32",
        "  ACCESS DENY IP 1.2.3.4", "  ACCESS POLICY DENY"]
    assert it.run_line("access reset", ctx) == ["OK"]
    assert svc.extra["access"] == {"deny_default": False, "rules": []}


def test_vpaths_rules_and_bad_regex() -> None:
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    for line in ("load Vpaths", "create service s", "set role = selector",
                 "set plugins = vpaths", "vpath ^/foo = Bar", "vpath s \\.gif$ = img"):
        assert it.run_line(line, ctx) == ["OK"], line
    # Perl prints its regex engine's die text here; ours names the regex
    assert it.run_line("vpath (x = b", ctx) == ["ERROR: invalid regular expression: '(x'"]
    assert it.graph.services["s"].extra["vpaths"] == [["^/foo", "Bar"], ["\\.gif$", "img"]]


def test_include_runs_files_in_order(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    (base / "a.conf").write_text("CREATE SERVICE one\nSET role = web_server\n")
    (base / "b.conf").write_text("CREATE SERVICE two\nSET bogus = 1\nCREATE SERVICE never\n")
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    assert it.run_line("load include", ctx) == ["OK"]
    reply = it.run(f"INCLUDE = {base}/*.conf {base}/none*.conf", ctx)
    assert reply.lines == ["OK"] and reply.ok
    assert set(it.graph.services) == {"one", "two"}
    assert it.graph.services["one"].role == "web_server"
    # the included file's context does not leak into the console's
    assert ctx.last_created is None


def test_include_loop_is_refused(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    conf = Path(str(tmp_path)) / "loop.conf"
    conf.write_text(f"INCLUDE = {conf}\n")
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    it.run_line("load include", ctx)
    assert it.run_line(f"include = {conf}", ctx) == ["OK"]


def test_throttle_lists(tmp_path: pytest.TempPathFactory) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    (base / "white").write_text("# ours\n10.0.0.0/8\n192.168.1.5 # one host\n")
    (base / "empty").write_text("# nothing\n")
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    for line in ("load Throttle", "create service p", "set role = reverse_proxy",
                 f"set whitelist_file = {base}/white", f"set blacklist_file = {base}/empty"):
        assert it.run_line(line, ctx) == ["OK"], line
    assert it.run_line("throttle reload config", ctx) == [
        "ERROR: Throttle is not registered on service 'p'"]
    assert it.run_line("set plugins = throttle", ctx) == [
        f"ERROR: {base}/empty contains no recognizable CIDRs"]
    assert it.run_line(f"set blacklist_file = {base}/white", ctx) == ["OK"]
    assert it.run_line("set plugins = throttle", ctx) == ["OK"]
    assert it.graph.services["p"].extra["throttle_lists"]["whitelist"] == [
        "10.0.0.0/8", "192.168.1.5/32"]
    assert it.run_line("THROTTLE RELOAD WHITELIST", ctx) == ["OK"]
    assert it.run_line("throttle reload config", ctx) == ["OK"]
    assert it.graph.services["p"].params["max_delay"] == 300  # Perl's default


def test_cgilike_python_modules() -> None:
    it = Interpreter()
    ctx = CommandContext(verbose=True)
    it.run_line("load cgilike", ctx)
    assert it.run_line("perlrequire = json", ctx) == []
    assert it.run_line("perlrequire = no_such_module_x", ctx) == [
        "ERROR: Failed to load no_such_module_x: ModuleNotFoundError: "
        "No module named 'no_such_module_x'"]
    assert it.run_line("PERLHANDLER = json:dumps", ctx) == [
        "ERROR: No service name in context from CREATE SERVICE <name> or USE <service_name>"]
    it.run_line("create service w", ctx)
    assert it.run_line("PERLHANDLER = myapp.handlers:Hello", ctx) == []
    assert it.graph.services["w"].extra["cgilike_handler"] == "myapp.handlers:Hello"


def test_stats_counters_feed_the_console() -> None:
    from perlbal.plugins.stats import StatsCounters

    it = Interpreter()
    ctx = CommandContext(verbose=True)
    for line in ("load stats", "create service p", "set role = reverse_proxy",
                 "set plugins = stats"):
        it.run_line(line, ctx)
    counters = it.graph.services["p"].extra["stats"]
    assert isinstance(counters, StatsCounters)
    counters.web_requests += 3
    counters.backend_assigned(1, high_priority=True)
    counters.backend_response(1, "example.com", "/x")
    out = it.run_line("stats", ctx)
    assert f"{'p':<15} {'web_requests':<25} {3:>12}" in out
    assert f"{'total':<15} {'proxy_requests_highpri':<25} {1:>12}" in out
    recent = it.run_line("recent", ctx)
    assert recent[0].startswith("p ") and recent[0].endswith(" http://example.com/x")
    assert it.run_line("set plugins = none", ctx) == ["OK"]
    assert "stats" not in it.graph.services["p"].extra
