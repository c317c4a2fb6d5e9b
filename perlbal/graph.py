"""The configuration graph: pools, services, plugin chains, vhost maps.  Pure data.

The interpreter (``interp.py``) is the only writer; the runtime and the router
read it.  Because the runtime holds references to these objects, a change the
interpreter makes (a node added, a parameter set) is seen by the next request
without any copying or restart.

Invariants:
- a name is a pool or a service, never both (Perl refuses the clash);
- ``Service.params`` only holds names declared in ``params.REGISTRY`` (or by a
  loaded plugin), with values already coerced;
- nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perlbal.params import ParamValue
from perlbal.tunables import PoolTunables, ServerTunables, ServiceTunables


@dataclass
class Node:
    ip: str
    port: int

    @property
    def ipport(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass
class Pool:
    name: str
    nodes: list[Node] = field(default_factory=list)
    balance_method: str = "random"
    nodefile: str | None = None
    nodefile_mtime: float = 0.0
    nodefile_checked: float = 0.0
    use_count: int = 0
    # requests sent to each node (ip:port -> count); Perl keeps it in the pool
    node_used: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    #: beyond Perl: pool parameters other than nodefile and balance_method
    #: (hash_key, health checks, max_fails...), coerced; unset ones take the default
    params: dict[str, ParamValue] = field(default_factory=dict)
    #: typed reads of ``params`` (``pool.tunables.hash_key``), defaults included
    tunables: PoolTunables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tunables = PoolTunables(self.params)


    def add(self, ip: str, port: int) -> None:
        self.remove(ip, port)  # no duplicates, re-added at the end as Perl does
        self.nodes.append(Node(ip, port))
        self.node_used[f"{ip}:{port}"] = 0
        self.generation += 1

    def remove(self, ip: str, port: int) -> None:
        key = f"{ip}:{port}"
        self.node_used.pop(key, None)
        self.nodes = [n for n in self.nodes if n.ipport != key]
        self.generation += 1

    def replace_nodes(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.node_used = {n.ipport: self.node_used.get(n.ipport, 0) for n in nodes}
        self.generation += 1


@dataclass
class HeaderRules:
    remove: list[str] = field(default_factory=list)
    insert: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Service:
    name: str
    role: str | None = None
    enabled: bool = False
    params: dict[str, ParamValue] = field(default_factory=dict)
    plugin_order: list[str] = field(default_factory=list)
    headers: HeaderRules = field(default_factory=HeaderRules)
    # plugin state that is configuration (vhost maps, access rules, ...)
    extra: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    #: typed reads of ``params`` (``svc.tunables.buffer_size``): a misspelt name or a
    #: value used as the wrong type is a mypy error, not a silent None
    tunables: ServiceTunables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.tunables = ServiceTunables(self.params)


    @property
    def listen(self) -> str | None:
        """Where the service listens; None: nowhere.  ``SET listen = 0`` is
        nowhere too: Perl tests the text for truth, and "0" is false there."""
        value = self.tunables.listen
        return None if value == "0" else value

    @property
    def pool_name(self) -> str | None:
        return self.tunables.pool


@dataclass
class Graph:
    pools: dict[str, Pool] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    # DEFAULT param = value, applied when a role is set
    defaults: dict[str, str] = field(default_factory=dict)
    # Perl creates NAME_pool when a pool-only parameter is set on a service,
    # until the first CREATE POOL turns that off.
    vivify_pools: bool = True
    # lower-case plugin name -> proper case, for loaded plugins
    plugins_loaded: dict[str, str] = field(default_factory=dict)
    # lower-case name -> proper case of every plugin LOADed so far; unlike
    # plugins_loaded it survives UNLOAD (Perl's %PluginCase), so error
    # messages keep naming the plugin as its file is named
    plugin_case: dict[str, str] = field(default_factory=dict)
    server: dict[str, str] = field(default_factory=dict)
    mime: dict[str, str] = field(default_factory=dict)
    service_autonumber: int = 0
    #: typed reads of ``server`` (``graph.settings.max_connections``)
    settings: ServerTunables = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.settings = ServerTunables(self.server)

    def dump(self) -> dict[str, Any]:
        """A stable, JSON-ready picture of the graph, for golden tests."""
        return {
            "pools": {
                name: {
                    "nodes": [n.ipport for n in p.nodes],
                    "balance_method": p.balance_method,
                    "nodefile": p.nodefile,
                    **({"params": dict(sorted(p.params.items()))} if p.params else {}),
                }
                for name, p in sorted(self.pools.items())
            },
            "services": {
                name: {
                    "role": s.role,
                    "enabled": s.enabled,
                    "params": {k: s.params[k] for k in sorted(s.params)},
                    "plugins": list(s.plugin_order),
                    "headers": {
                        "remove": list(s.headers.remove),
                        "insert": [list(kv) for kv in s.headers.insert],
                    },
                    "extra": _jsonable(s.extra),
                }
                for name, s in sorted(self.services.items())
            },
            "defaults": dict(sorted(self.defaults.items())),
            "plugins_loaded": sorted(self.plugins_loaded.values()),
            "server": dict(sorted(self.server.items())),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
