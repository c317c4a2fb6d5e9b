"""TCP ports on 127.0.0.1 for servers that cannot bind port 0 themselves.

Our server binds ``listen = 127.0.0.1:0`` and reports the port it got
(``tests.support.pyserver.PyPerlbal.port``; docs/operating.md, "Port 0"), so a
test never chooses a port for it.  Perl Perlbal (and a few third-party servers:
memcached, the interop matrix's nginx/apache) must be given a port in their
config: ``free_ports`` chooses one, and the server binds it a moment later.

That is a race: something else could take the port in between.  It is kept
narrow by choosing outside the kernel's ephemeral range
(``/proc/sys/net/ipv4/ip_local_port_range``): every port the kernel hands out
itself -- an outgoing connection's source port, any ``bind(("", 0))``, so every
port of our own servers under test -- comes from that range, so none of them can
take a chosen port.  Only another test choosing the same port at random, among
some 30,000, in the same second could; the port is also checked free (a bind
probe) when it is chosen.
"""

from __future__ import annotations

import os
import random
import socket

LOOPBACK = "127.0.0.1"

_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_LOWEST = 10000  # well above the ports system services commonly use


def _candidates() -> range:
    """Ports below the kernel's ephemeral range (or above it, if that is too small)."""
    try:
        low, high = (int(n) for n in open(_RANGE_FILE).read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    if low - _LOWEST >= 5000:
        return range(_LOWEST, low)
    return range(high + 1, 65536)


def free_port() -> int:
    """Return one TCP port on 127.0.0.1 that nothing is listening on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports, each free right now, outside the ephemeral range.

    The probe sockets stay open until every port is chosen, so one call never
    hands out the same port twice.
    """
    candidates = _candidates()
    probes: list[socket.socket] = []
    try:
        while len(probes) < count:
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((LOOPBACK, random.choice(candidates)))
            except OSError:  # taken: try another
                probe.close()
                continue
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def port_accepts(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """True if a TCP connect to host:port succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` holds (from /proc), as the
    ``/proc/net/{tcp,tcp6,udp}`` tables name them."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes
