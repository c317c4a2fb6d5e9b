"""The PROXY protocol (HAProxy's, versions 1 and 2): who the client really is.

An L4 balancer in front of several Perlbals (HAProxy in TCP mode with
``send-proxy``, an AWS NLB, ...) starts each connection with one header
naming the client's address, then relays the client's bytes unchanged.
``parse(data)`` reads that header from the first bytes of a connection:

* ``None``: not enough bytes yet (call again with more);
* ``ProxyHeader(client, consumed)``: ``client`` is ``(ip, port)`` (an
  IPv4-mapped IPv6 address unmapped, as at accept: ``perlbal.http.peer``), or None for
  ``PROXY UNKNOWN`` / a v2 ``LOCAL`` command / an address family other than
  TCP over IPv4 or IPv6 (then the peer's own address stands); ``consumed`` is
  the header's length, the client's bytes start after it;
* ``ProxyProtocolError``: not a PROXY header, or a malformed one.

``HeaderReader`` reads one header off a connection without taking a byte past
it: ``window()`` says how many bytes to look at (MSG_PEEK), ``take(peeked)``
how many of them belong to the header (consume exactly those); as every byte
looked at that belongs to the header is consumed, a half-sent header leaves
nothing unread, so the caller can wait for readability instead of polling.

A v2 header may announce up to 16 + 65,535 bytes; more than ``V2_MAX``
(16 KiB, HAProxy's default buffer, far beyond the addresses and the TLVs
balancers send: AWS's VPC endpoint ID, Azure's link ID, TLS details) is
refused as soon as its length field arrives.

Both sending sides are covered by ``encode_v1`` / ``encode_v2``.  The formats
are those of HAProxy's proxy-protocol.txt: v1 is one text line of at most 107
bytes, v2 a 16-byte binary header (12-byte signature, version/command,
family/protocol, length) followed by the addresses and optional TLVs.
Invariant: nothing past ``consumed`` is read or changed.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from perlbal.http.peer import unmapped_ip

__all__ = ["ProxyHeader", "ProxyProtocolError", "HeaderReader", "parse", "encode_v1",
           "encode_v2", "V1_MAX", "V2_MAX", "V2_SIGNATURE"]

V1_MAX = 107
#: the longest v2 header accepted, its 16-byte fixed part included (see the docstring)
V2_MAX = 16384
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1 = re.compile(rb"PROXY (?:UNKNOWN[^\r\n]*|(TCP4|TCP6) ([0-9A-Fa-f.:]+) ([0-9A-Fa-f.:]+) "
                 rb"([0-9]{1,5}) ([0-9]{1,5}))\r\n")


class ProxyProtocolError(ValueError):
    """The connection did not start with a well-formed PROXY header."""


@dataclass(frozen=True)
class ProxyHeader:
    client: tuple[str, int] | None
    consumed: int


def _address(text: str, family: bytes) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyProtocolError("bad address in PROXY header") from None
    if (address.version == 4) != (family == b"TCP4"):
        raise ProxyProtocolError("address does not match the PROXY family")
    return unmapped_ip(str(address))


def _port(text: bytes) -> int:
    port = int(text)
    if not 0 <= port <= 65535 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyProtocolError("bad port in PROXY header")
    return port


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line too long")
        return None
    match = _V1.fullmatch(data[:end + 2])
    if match is None:
        raise ProxyProtocolError("malformed PROXY v1 line")
    if match.group(1) is None:
        return ProxyHeader(None, end + 2)
    family = match.group(1)
    source = _address(match.group(2).decode("ascii"), family)
    _address(match.group(3).decode("ascii"), family)
    return ProxyHeader((source, _port(match.group(4))), end + 2)


def _v2_length(data: bytes, max_length: int) -> int | None:
    """The whole v2 header's length (None: its fixed part is not all here)."""
    if len(data) < 16:
        return None
    version_command, length = data[12], int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2:
        raise ProxyProtocolError("unknown PROXY protocol version")
    if version_command & 0x0F not in (0, 1):
        raise ProxyProtocolError("unknown PROXY v2 command")
    if 16 + length > max_length:
        raise ProxyProtocolError(f"PROXY v2 header of {16 + length} bytes is over the "
                                 f"{max_length}-byte limit")
    return 16 + length


def _parse_v2(data: bytes, max_length: int = V2_MAX) -> ProxyHeader | None:
    total = _v2_length(data, max_length)
    if total is None:
        return None
    version_command, family_protocol, length = data[12], data[13], total - 16
    command = version_command & 0x0F
    if len(data) < 16 + length:
        return None
    consumed = 16 + length
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return ProxyHeader(None, consumed)
    body = data[16:consumed]
    if family_protocol == 0x11:  # TCP over IPv4
        if length < 12:
            raise ProxyProtocolError("short PROXY v2 IPv4 addresses")
        source = str(ipaddress.IPv4Address(body[0:4]))
        return ProxyHeader((source, struct.unpack("!H", body[8:10])[0]), consumed)
    if family_protocol == 0x21:  # TCP over IPv6
        if length < 36:
            raise ProxyProtocolError("short PROXY v2 IPv6 addresses")
        source = unmapped_ip(str(ipaddress.IPv6Address(body[0:16])))
        return ProxyHeader((source, struct.unpack("!H", body[32:34])[0]), consumed)
    return ProxyHeader(None, consumed)  # UNSPEC, UDP, unix: keep the peer's address


def parse(data: bytes, max_length: int = V2_MAX) -> ProxyHeader | None:
    """The PROXY header at the start of ``data`` (see the module docstring)."""
    if data[:1] == b"P":
        if not (data.startswith(b"PROXY ") or b"PROXY ".startswith(data)):
            raise ProxyProtocolError("connection did not start with a PROXY header")
        return _parse_v1(data) if len(data) >= 6 else None
    if data[:1] == b"\r":
        if not (data.startswith(V2_SIGNATURE) or V2_SIGNATURE.startswith(data)):
            raise ProxyProtocolError("connection did not start with a PROXY header")
        return _parse_v2(data, max_length) if len(data) >= 12 else None
    if not data:
        return None
    raise ProxyProtocolError("connection did not start with a PROXY header")


class HeaderReader:
    """One PROXY header, read in pieces without taking a byte past it.

    ``window()`` bytes are looked at (peeked); ``take(peeked)`` keeps those
    of them that belong to the header and says how many (the caller consumes
    exactly that many); ``header`` is set once the header is whole.  Raises
    ``ProxyProtocolError`` as soon as the bytes cannot begin a header.
    Invariant: what was taken is all header, so when ``header`` is None the
    caller has nothing left unread that belongs to it.
    """

    def __init__(self, max_length: int = V2_MAX) -> None:
        self.max_length = max_length
        self._data = bytearray()  # taken so far (appended to: a trickled header costs O(n))
        self.header: ProxyHeader | None = None

    def _v2_total(self) -> int | None:
        """A v2 header's whole length, once its fixed part is here."""
        data = self._data
        if data[:1] != b"\r" or len(data) < 16:
            return None
        return _v2_length(bytes(data[:16]), self.max_length)

    def window(self) -> int:
        """How many bytes to look at next (some past a v1 line may come with them)."""
        have = len(self._data)
        if self._data[:1] == b"\r":  # v2: exactly what is still missing
            total = self._v2_total()
            return (16 if total is None else total) - have
        return V1_MAX - have  # v1, or nothing yet (a v1 line's longest)

    def take(self, peeked: bytes) -> int:
        """Keep the leading bytes of ``peeked`` that belong to the header; how many."""
        assert self.header is None
        have = len(self._data)
        total = self._v2_total()
        if total is not None:  # a v2 header of known length: the bytes still missing
            count = min(len(peeked), total - have)
            self._data += peeked[:count]
            if len(self._data) == total:
                self.header = parse(bytes(self._data), self.max_length)
            return count
        # the first bytes, or a v1 line: at most V1_MAX bytes to look through
        header = parse(bytes(self._data) + peeked, self.max_length)
        count = len(peeked) if header is None else header.consumed - have
        self._data += peeked[:count]
        self.header = header
        return count


def encode_v1(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    family = "TCP6" if ":" in client[0] else "TCP4"
    return f"PROXY {family} {client[0]} {server[0]} {client[1]} {server[1]}\r\n".encode("ascii")


def encode_v2(client: tuple[str, int], server: tuple[str, int]) -> bytes:
    source, destination = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
    if source.version == 4 and destination.version == 4:
        body = source.packed + destination.packed + struct.pack("!HH", client[1], server[1])
        family = 0x11
    else:
        def six(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
            if address.version == 4:
                return ipaddress.IPv6Address(f"::ffff:{address}").packed
            return address.packed
        body = six(source) + six(destination) + struct.pack("!HH", client[1], server[1])
        family = 0x21
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body
