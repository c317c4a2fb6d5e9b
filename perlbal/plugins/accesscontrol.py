"""AccessControl: per-service allow/deny rules on the client's IP address.

Config (acts on the service of the context, CREATE SERVICE or USE):
  ``ACCESS POLICY {ALLOW|DENY}``        what to do when no rule matches
  ``ACCESS {ALLOW|DENY|QUEUE_LOW} IP <ip>``
  ``ACCESS {ALLOW|DENY|QUEUE_LOW} NETMASK <net>``   (parsed by ``ipaddress``)
  ``ACCESS RESET``                      no rules, policy allow
  ``SET <svc>.accesscontrol.use_observed_ip = 1``   match on the observed IP
                                         (X-Forwarded-For) instead of the peer
State lives in ``svc.extra["access"]``: ``{"deny_default": bool, "rules":
[[action, "ip"|"netmask", value], ...]}``; netmasks are stored normalised
("10.0.0.0/8"), which is also how Perl's Net::Netmask prints them in dumpconfig.

Runtime: ``decide`` below is the start_http_request decision (explain calls it;
the server does, through ``perlbal.routing.run_request_hooks``): rules are tried
in order and the first match decides: deny answers 403 "Access denied.", allow lets the request
through, queue_low puts a proxied request in the low-priority queue and lets it
through.  No match: 403 when the policy is deny, otherwise allowed.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.plugins._common import context_service, perl_match

if TYPE_CHECKING:
    from perlbal.interp import Call, Interpreter
    from perlbal.routing import HookDecision, Request

USAGE = "usage: ACCESS <cmd> <arg1> [<arg2>]"


def parse_netmask(text: str) -> str | None:
    """Net::Netmask->new2's forms that fit one word of a console line:
    a.b.c.d/bits, a.b.c.d, a.b.c.d:mask and the short a.b.c / a.b / a forms
    (a /24, /16 or /8 network).  (Its a.b.c.d#hostmask form cannot be typed:
    the console drops everything from '#'.)"""
    value = text
    if ":" in value and "/" not in value:
        value = value.replace(":", "/", 1)
    elif re.fullmatch(r"\d+(\.\d+){0,2}", value):
        parts = value.split(".")
        value = ".".join(parts + ["0"] * (4 - len(parts))) + f"/{8 * len(parts)}"
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None


def access_config(svc: Service) -> dict[str, Any]:
    cfg: dict[str, Any] = svc.extra.setdefault("access", {"deny_default": False, "rules": []})
    return cfg


class AccessControl(Plugin):
    name = "AccessControl"
    commands = (
        SyntaxExtension(
            keyword="access",
            plugin="AccessControl",
            # Perl: ^access\s+(policy|allow|deny|reset|queue_low)(?:\s+(\S+))?(?:\s+(\S+))?$
            rule='"access" ACCESS_ARG [ACCESS_ARG [ACCESS_ARG]]',
            terminals="ACCESS_ARG: /\\S+/",
            usage=USAGE,
        ),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        m = perl_match(r"access\s+(policy|allow|deny|reset|queue_low)"
                       r"(?:\s+(\S+))?(?:\s+(\S+))?", node)
        if m is None:
            return call.err(USAGE)
        cmd, arg1, arg2 = m.group(1), m.group(2), m.group(3)
        svc = context_service(it, call)
        if isinstance(svc, str):
            return call.err(svc)
        cfg = access_config(svc)
        if cmd == "reset":
            svc.extra["access"] = {"deny_default": False, "rules": []}
            return call.ok()
        if cmd == "policy":
            # Perl's /^allow|deny$/ is "starts with allow, or ends with deny"
            if arg1 is None or not re.search(r"^allow|deny$", arg1):
                return call.err("policy must be 'allow' or 'deny'")
            cfg["deny_default"] = arg1 == "deny"
            return call.ok()
        what, value = arg1, arg2
        if what not in ("ip", "netmask"):
            return call.err(f"Unknown item to {cmd}: '{what or ''}'")
        if what == "netmask":
            net = parse_netmask(value or "")
            if net is None:
                return call.err("Error parsing netmask")
            value = net
        cfg["rules"].append([cmd, what, value or ""])
        return call.ok()

    def setter(self, it: "Interpreter", svc: Service, key: str, value: str,
               call: "Call") -> bool | None:
        if key != "use_observed_ip":
            return None
        # Perl stores the raw value and tests its truth; its setter prints OK
        # whatever the context's verbosity.
        svc.extra["access_use_observed_ip"] = value not in ("", "0")
        return call.out("OK")

    def dumpconfig(self, it: "Interpreter", svc: Service) -> list[str] | None:
        cfg = access_config(svc)
        lines = [f"ACCESS {action.upper()} {what.upper()} {value}"
                 for action, what, value in cfg["rules"]]
        lines.append("ACCESS POLICY " + ("DENY" if cfg["deny_default"] else "ALLOW"))
        return lines


PLUGIN = AccessControl()


def decide(svc: Service, request: "Request") -> "HookDecision":
    """The start_http_request decision (Perl's AccessControl hook), the one place it is made.

    Rules in order, the first match decides: deny -> 403 "Access denied.",
    allow -> through, queue_low -> through in the low-priority queue.  No match:
    the policy.  With ``use_observed_ip`` the observed IP is matched when known,
    else the peer IP (Perl: ``observed_ip_string || peer_ip_string``)."""
    from perlbal.routing import HookDecision

    cfg = svc.extra.get("access") or {"deny_default": False, "rules": []}
    ip = request.peer_ip
    if svc.extra.get("access_use_observed_ip") and request.observed_ip:
        ip = request.observed_ip
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(ip)
    except ValueError:
        addr = None
    for action, what, value in cfg["rules"]:
        if what == "ip":
            matched = ip == value
        else:
            try:
                matched = addr is not None and addr in ipaddress.ip_network(value, strict=False)
            except ValueError:
                matched = False
        if not matched:
            continue
        rule = f"access {svc.name} {action} {what} {value}"
        why = f"{ip or '(no peer IP)'} matches ACCESS {action.upper()} {what.upper()} {value}"
        if action == "deny":
            return HookDecision("AccessControl", True, why, 403, "Access denied.", rule=rule)
        return HookDecision("AccessControl", False, why, rule=rule,
                            queue_low=action == "queue_low")
    rule = f"access {svc.name} policy"
    if cfg["deny_default"]:
        return HookDecision("AccessControl", True, f"{ip or '(no peer IP)'} matches no rule; "
                            "ACCESS POLICY DENY", 403, "Access denied.", rule=rule)
    return HookDecision("AccessControl", False, f"{ip or '(no peer IP)'} matches no rule; "
                        "ACCESS POLICY ALLOW", rule=rule)
