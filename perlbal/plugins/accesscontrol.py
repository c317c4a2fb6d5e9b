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
from typing import TYPE_CHECKING, Any, Literal

from perlbal.graph import Service
from perlbal.grammar import ast
from perlbal.grammar.parser import PluginArgs, SyntaxExtension
from perlbal.plugins import Plugin
from perlbal.plugins._common import context_service

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
    parts = value.split(".")
    if ":" in value and "/" not in value:
        value = value.replace(":", "/", 1)
    elif len(parts) <= 3 and all(p and set(p) <= _DIGITS for p in parts):
        value = ".".join(parts + ["0"] * (4 - len(parts))) + f"/{8 * len(parts)}"
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return None


_DIGITS = frozenset("0123456789")


def access_config(svc: Service) -> dict[str, Any]:
    cfg: dict[str, Any] = svc.extra.setdefault("access", {"deny_default": False, "rules": []})
    return cfg


class AccessPolicy(ast.PluginCommand):
    """``ACCESS POLICY <policy>``: what happens to a request no rule matches."""

    policy: str | None = None  # Perl's check comes after parsing: 'allow' or 'deny'


class AccessReset(ast.PluginCommand):
    """``ACCESS RESET``: no rules, policy allow (Perl ignores any arguments)."""


class AccessRule(ast.PluginCommand):
    """``ACCESS {ALLOW|DENY|QUEUE_LOW} <what> <value>``; ``what`` should be IP or
    NETMASK, which the handler checks (Perl's message names the bad word)."""

    action: Literal["allow", "deny", "queue_low"]
    what: str | None = None
    value: str | None = None


def _build(args: PluginArgs) -> ast.PluginCommand:
    verb = args.get("ACCESS_VERB")
    assert verb is not None
    arg1, arg2 = (args.every("ACCESS_ARG") + (None, None))[:2]
    if verb.text == "reset":
        return args.build(AccessReset)
    if verb.text == "policy":
        return args.build(AccessPolicy, policy=arg1)
    return args.build(AccessRule, action=verb, what=arg1, value=arg2)


class AccessControl(Plugin):
    name = "AccessControl"

    def decide(self, svc: Service, request: "Request") -> "HookDecision | None":
        """The start_http_request decision (routing.run_request_hooks; explain runs it too)."""
        return decide(svc, request)
    commands = (
        SyntaxExtension(
            keyword="access",
            plugin="AccessControl",
            # Perl: ^access\s+(policy|allow|deny|reset|queue_low)(?:\s+(\S+))?(?:\s+(\S+))?$
            rule='"access" ACCESS_VERB [ACCESS_ARG [ACCESS_ARG]]',
            terminals="ACCESS_VERB: /(?<= )(policy|allow|deny|reset|queue_low)(?![^ ])/\n"
                      "ACCESS_ARG: /(?<= )\\S+/\n",
            usage=USAGE,
            build=_build,
            mistakes=(("expected POLICY, ALLOW, DENY, QUEUE_LOW or RESET after ACCESS",
                       ("access foo", "access allowx ip 1.2.3.4")),
                      ("at most two arguments after the verb",
                       ("access deny ip 1.2.3.4 x",))),
        ),
    )

    def command(self, it: "Interpreter", node: ast.PluginCommand, call: "Call") -> bool:
        svc = context_service(it, call)
        if isinstance(svc, str):
            return call.err(svc)
        cfg = access_config(svc)
        if isinstance(node, AccessReset):
            svc.extra["access"] = {"deny_default": False, "rules": []}
            return call.ok()
        if isinstance(node, AccessPolicy):
            # Perl's /^allow|deny$/ is "starts with allow, or ends with deny"
            policy = node.policy or ""
            if not (policy.startswith("allow") or policy.endswith("deny")):
                return call.err("policy must be 'allow' or 'deny'", node.column_of("policy"))
            cfg["deny_default"] = policy == "deny"
            return call.ok()
        assert isinstance(node, AccessRule)
        what, value = node.what, node.value
        if what not in ("ip", "netmask"):
            return call.err(f"Unknown item to {node.action}: '{what or ''}'",
                            node.column_of("what"))
        if what == "netmask":
            net = parse_netmask(value or "")
            if net is None:
                return call.err("Error parsing netmask", node.column_of("value"))
            value = net
        cfg["rules"].append([node.action, what, value or ""])
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
