"""Config text builders: the CREATE POOL / CREATE SERVICE scaffolding tests share.

A test says what is particular to it (the backends, the extra ``SET`` lines)
and these write the rest the way Perl Perlbal's own configs do, so the text
is valid for ``/usr/bin/perlbal`` as much as for our server::

    proxy_config(port, [backend], extra=PERSIST)
    # CREATE POOL p
    #   POOL p ADD 127.0.0.1:40001
    # CREATE SERVICE proxy
    #   SET role = reverse_proxy
    #   SET listen = 127.0.0.1:40002
    #   SET pool = p
    #   SET persist_client = on
    #   SET persist_backend = on
    # ENABLE proxy

The smaller pieces (``pool``, ``service``, ``proxy_service``, ``vhost_selector``,
``management``) compose into configs with several services; ``serve_proxy``
starts a proxy on free ports in front of some backends and hands back its ports.

A node is an ``int`` (a port on 127.0.0.1), an ``"ip:port"`` string, or
anything with an ``address`` (``tests.support.backend.Backend``); a listen is
an ``int`` port on 127.0.0.1 or an ``"[ip:]port"`` string.  Extra lines are
written as given, indented; ``SET`` lines without a service name apply to the
block just created, as in Perl.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping, Protocol, Union

from tests.support.perl_perlbal import management_config
from tests.support.ports import LOOPBACK, free_ports

__all__ = ["PERSIST", "Node", "perl_forwarding", "ServedProxy", "address", "listen_address", "management", "pool",
           "proxy_config", "proxy_service", "serve_proxy", "service", "vhost_selector",
           "web_config"]


class _HasAddress(Protocol):
    @property
    def address(self) -> str: ...


Node = Union[int, str, _HasAddress]
Listen = Union[int, str]

#: keep-alive on both sides, the commonest pair of proxy settings in the tests
PERSIST = ("SET persist_client = on", "SET persist_backend = on")

_PROXY_BLOCK = re.compile(r"^CREATE SERVICE (\S+)\s*\n\s*SET role = reverse_proxy\s*$",
                          re.IGNORECASE | re.MULTILINE)


def perl_forwarding(config: str) -> str:
    """``config`` (a text ``/usr/bin/perlbal`` reads too) for our server with every
    reverse_proxy passing the client's forwarding fields as Perl does
    (``forwarded_headers = perl``).  Our default also drops an untrusted
    client's X-Forwarded-Proto / -Port / Forwarded and sets X-Forwarded-Proto
    and X-Forwarded-Port from the listener (docs/migrating.md; tested in
    tests/security/test_forwarded_headers.py): a differential test that shows
    Perl and ours the same backend view byte for byte starts ours with this."""
    names = _PROXY_BLOCK.findall(config)
    return config + "".join(f"SET {name}.forwarded_headers = perl\n" for name in names)


def address(node: Node) -> str:
    """``ip:port`` of a pool node."""
    if isinstance(node, int):
        return f"{LOOPBACK}:{node}"
    if isinstance(node, str):
        return node
    return node.address


def listen_address(listen: Listen) -> str:
    """The value of ``SET listen``: an int is a port on 127.0.0.1."""
    return f"{LOOPBACK}:{listen}" if isinstance(listen, int) else listen


def _block(head: str, lines: Iterable[str], tail: str | None) -> str:
    body = [f"  {line}" if line else "" for line in lines]
    return "\n".join([head, *body, *([tail] if tail else [])]) + "\n"


def pool(name: str, nodes: Iterable[Node] = (), *, extra: Iterable[str] = ()) -> str:
    """``CREATE POOL name``, one ``POOL name ADD`` per node, then ``extra`` lines."""
    return _block(f"CREATE POOL {name}",
                  [*(f"POOL {name} ADD {address(node)}" for node in nodes), *extra], None)


def service(name: str, role: str, *, listen: Listen | None = None, pool: str | None = None,
            extra: Iterable[str] = (), enable: bool = True) -> str:
    """``CREATE SERVICE name`` with its role, listen and pool, ``extra`` lines, ``ENABLE``."""
    lines = [f"SET role = {role}"]
    if listen is not None:
        lines.append(f"SET listen = {listen_address(listen)}")
    if pool is not None:
        lines.append(f"SET pool = {pool}")
    return _block(f"CREATE SERVICE {name}", [*lines, *extra], f"ENABLE {name}" if enable else None)


def proxy_service(name: str, listen: Listen | None, pool: str, *,
                  extra: Iterable[str] = ()) -> str:
    """A reverse_proxy service; ``listen=None`` for one only a selector reaches."""
    return service(name, "reverse_proxy", listen=listen, pool=pool, extra=extra)


def vhost_selector(name: str, listen: Listen, vhosts: Mapping[str, str], *,
                   extra: Iterable[str] = ()) -> str:
    """A selector with the vhosts plugin: ``extra`` lines, then ``VHOST name host = service``
    for each entry of ``vhosts`` (in order; ``*`` is the default)."""
    return service(name, "selector", listen=listen, extra=[
        "SET plugins = vhosts", *extra,
        *(f"VHOST {name} {host} = {target}" for host, target in vhosts.items())])


_pool, _service = pool, service  # proxy_config's and web_config's arguments shadow them


def management(listen: Listen, name: str = "mgmt") -> str:
    """A management service on ``listen`` (an int: a port on 127.0.0.1)."""
    if isinstance(listen, int):
        return management_config(listen, name)
    return _service(name, "management", listen=listen)


def _preamble(load: Iterable[str], server: Iterable[str]) -> str:
    lines = [*(f"SERVER {line}" for line in server), *(f"LOAD {name}" for name in load)]
    return "".join(f"{line}\n" for line in lines)


def proxy_config(listen: Listen, backends: Iterable[Node], *, pool: str = "p",
                 service: str = "proxy", extra: Iterable[str] = (),
                 pool_extra: Iterable[str] = (), mgmt_port: Listen | None = None,
                 load: Iterable[str] = (), server: Iterable[str] = ()) -> str:
    """One pool of ``backends`` and one reverse_proxy service on ``listen`` in front of it.

    ``server`` lines become ``SERVER <line>``, ``load`` names ``LOAD <name>``
    (both first); ``pool_extra`` follows the pool's nodes, ``extra`` the
    service's role/listen/pool; ``mgmt_port`` adds a management service."""
    text = _preamble(load, server)
    text += _pool(pool, backends, extra=pool_extra)
    text += proxy_service(service, listen, pool, extra=extra)
    if mgmt_port is not None:
        text += management(mgmt_port)
    return text


def web_config(listen: Listen, docroot: object, *, service: str = "web",
               extra: Iterable[str] = (), mgmt_port: Listen | None = None,
               load: Iterable[str] = (), server: Iterable[str] = ()) -> str:
    """One web_server service on ``listen`` serving ``docroot``."""
    text = _preamble(load, server)
    text += _service(service, "web_server", listen=listen,
                     extra=[f"SET docroot = {docroot}", *extra])
    if mgmt_port is not None:
        text += management(mgmt_port)
    return text


@dataclass
class ServedProxy:
    """What ``serve_proxy`` hands back: the running server and where it listens."""

    server: Any
    port: int
    mgmt_port: int | None
    config: str


@contextmanager
def serve_proxy(backends: Iterable[Node], *, extra: Iterable[str] = (), mgmt: bool = False,
                start: Callable[[str], ContextManager[Any]] | None = None,
                **config: Any) -> Iterator[ServedProxy]:
    """Start a proxy (our server unless ``start`` says otherwise, e.g.
    ``PerlPerlbal``) in front of ``backends``; stop it on exit.
    ``config`` goes to ``proxy_config`` (pool, service, pool_extra, load, server).

    Our server binds port 0 and reports the ports it got (``PyPerlbal.port``);
    Perl Perlbal cannot, so for it free ports are chosen first
    (``tests.support.ports``)."""
    if start is None:
        from tests.support.pyserver import ANY_PORT, PyPerlbal

        service = str(config.get("service", "proxy"))
        text = proxy_config(ANY_PORT, backends, extra=extra,
                            mgmt_port=ANY_PORT if mgmt else None, **config)
        with PyPerlbal(text) as ours:
            yield ServedProxy(ours, ours.port(service), ours.port("mgmt") if mgmt else None,
                              text)
        return
    port, mgmt_port = free_ports(2)
    text = proxy_config(port, backends, extra=extra, mgmt_port=mgmt_port if mgmt else None,
                        **config)
    with start(text) as server:
        yield ServedProxy(server, port, mgmt_port if mgmt else None, text)
