"""DNS messages (RFC 1035, RFC 2782 for SRV, RFC 3596 for AAAA), sans-IO: just
what a pool fed by DNS needs.

``query(name, qtype, ident)`` builds a recursive query; ``answers(data, ident)``
reads a reply into records: ``(owner, kind, value, ttl)`` with ``kind`` "A",
"AAAA" or "SRV" (value ``(priority, weight, port, target)``), ``owner`` the
record's name (lower case, no final dot) and the TTL in seconds.
The system resolver (getaddrinfo) hides TTLs, and a pool must be re-resolved
when its records expire, hence this small codec (the I/O is
``perlbal.runtime.dnspools``).

Invariants: a reply is only accepted for our query id, with no error code,
and every length and compression pointer is checked (a pointer may only go
backwards, so a malicious reply cannot loop); anything else raises
``DnsError``.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["A", "AAAA", "SRV", "DnsError", "Record", "query", "answers"]

A, AAAA, SRV = 1, 28, 33
_KINDS = {A: "A", AAAA: "AAAA", SRV: "SRV"}

Record = tuple[str, str, object, int]


class DnsError(ValueError):
    """A reply we cannot use (wrong id, error code, malformed)."""


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode("idna") if label else b""
        if not raw or len(raw) > 63:
            raise DnsError(f"bad DNS name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\x00"


def query(name: str, qtype: int, ident: int) -> bytes:
    """A standard query with recursion desired."""
    header = struct.pack("!HHHHHH", ident & 0xFFFF, 0x0100, 1, 0, 0, 0)
    return header + _encode_name(name) + struct.pack("!HH", qtype, 1)


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    jumps = 0
    while True:
        if offset >= len(data):
            raise DnsError("name runs past the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if target >= offset or jumps > 64:
                raise DnsError("bad compression pointer")
            if end is None:
                end = offset + 2
            offset = target
            jumps += 1
            continue
        if length & 0xC0:
            raise DnsError("bad label type")
        offset += 1
        if length == 0:
            break
        labels.append(data[offset:offset + length].decode("ascii", "replace"))
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def answers(data: bytes, ident: int) -> list[Record]:
    """The A, AAAA and SRV records of a reply (answer and additional sections)."""
    if len(data) < 12:
        raise DnsError("short DNS reply")
    rid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", data[:12])
    if rid != ident & 0xFFFF or not flags & 0x8000:
        raise DnsError("not the reply to our query")
    if flags & 0x000F:
        raise DnsError(f"DNS error code {flags & 0x000F}")
    offset = 12
    for _ in range(qd):
        _name, offset = _read_name(data, offset)
        offset += 4
    records: list[Record] = []
    for index in range(an + ns + ar):
        owner, offset = _read_name(data, offset)
        owner = owner.lower()
        if offset + 10 > len(data):
            raise DnsError("truncated record")
        rtype, _rclass, ttl, length = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        rdata = data[offset:offset + length]
        if len(rdata) != length:
            raise DnsError("truncated record data")
        if an <= index < an + ns:  # authority section: not addresses
            pass
        elif rtype == A and length == 4:
            records.append((owner, "A", str(ipaddress.IPv4Address(bytes(rdata))), ttl))
        elif rtype == AAAA and length == 16:
            records.append((owner, "AAAA", str(ipaddress.IPv6Address(bytes(rdata))), ttl))
        elif rtype == SRV and length >= 7:
            priority, weight, port = struct.unpack("!HHH", rdata[:6])
            target, _end = _read_name(data, offset + 6)
            records.append((owner, "SRV", (priority, weight, port, target.lower()), ttl))
        offset += length
    return records
