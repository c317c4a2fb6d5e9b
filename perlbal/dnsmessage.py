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

Decoding a message has a budget (issue 24 item 5): a name is 255 octets at
most (RFC 1035 section 3.1), and one message may make the decoder follow
``MAX_JUMPS`` compression pointers and read ``MAX_LABEL_OCTETS`` octets of
labels in all.  Without it, every record's owner can be a 2-byte pointer back
to one long name of 1-byte labels: no loop, yet a 64 KB reply cost seven
seconds of CPU on the event loop.  A reply over the budget raises
``DnsError`` saying so.  A real reply is far inside it: its names are
decoded about once per record (a 4 KB EDNS reply holds some hundred
records).
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["A", "AAAA", "SRV", "DnsError", "Record", "query", "answers", "MAX_JUMPS",
           "MAX_LABEL_OCTETS", "MAX_NAME"]

A, AAAA, SRV = 1, 28, 33
_KINDS = {A: "A", AAAA: "AAAA", SRV: "SRV"}

Record = tuple[str, str, object, int]

#: the longest name on the wire, length octets included (RFC 1035 section 3.1)
MAX_NAME = 255
#: compression pointers one message may make the decoder follow, in all its names
MAX_JUMPS = 2048
#: label octets (length octets included) one message may make the decoder read
MAX_LABEL_OCTETS = 65536


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


class _Budget:
    """What is left of one message's decoding budget (see the module docstring)."""

    def __init__(self) -> None:
        self.jumps = MAX_JUMPS
        self.octets = MAX_LABEL_OCTETS

    def spend(self, jumps: int, octets: int) -> None:
        self.jumps -= jumps
        self.octets -= octets
        if self.jumps < 0:
            raise DnsError(f"DNS reply refused: its names follow more than {MAX_JUMPS} "
                           f"compression pointers")
        if self.octets < 0:
            raise DnsError(f"DNS reply refused: its names spell more than "
                           f"{MAX_LABEL_OCTETS} octets of labels")


def _read_name(data: bytes, offset: int, budget: _Budget) -> tuple[str, int]:
    labels: list[str] = []
    end = None
    jumps = 0
    octets = 1  # the final zero octet
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
            budget.spend(1, 0)
            continue
        if length & 0xC0:
            raise DnsError("bad label type")
        offset += 1
        if length == 0:
            break
        octets += 1 + length
        if octets > MAX_NAME:
            raise DnsError(f"DNS name longer than {MAX_NAME} octets")
        budget.spend(0, 1 + length)
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
    budget = _Budget()
    for _ in range(qd):
        _name, offset = _read_name(data, offset, budget)
        offset += 4
    records: list[Record] = []
    for index in range(an + ns + ar):
        owner, offset = _read_name(data, offset, budget)
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
            target, _end = _read_name(data, offset + 6, budget)
            records.append((owner, "SRV", (priority, weight, port, target.lower()), ttl))
        offset += length
    return records
