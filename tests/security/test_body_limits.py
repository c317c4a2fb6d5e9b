"""Request body limits, every reader x every limit x Content-Length and chunked
(issue 24 item 4), through one real server.

Readers: a web_server PUT (``put``), a PUT whose body a plugin's put_writeout
sees (``put_hook``), the proxy streaming to a backend (``proxy``), buffered
uploads spooling to disk (``buffered``), a proxy with enable_reproxy
(``reproxy``) and a body handed to a plugin's proxy_read_request
(``proxy_hook``).  Limits: max_chunked_request_size, max_put_size (a web_server
parameter: SET refuses it on a reverse_proxy, so the proxy readers have no
such cell) and max_content_length (MaxContentLength).  Each cell is one
service with that one limit at 64 KiB, sent a 96 KiB body; what it refuses
must reach neither the disk (docroot, spool directory) nor the backend, and
the same service takes a 32 KiB body of the same framing.

What each limit means (runtime/bodylimit.py): max_chunked_request_size caps
chunked bodies only (Perl's); max_put_size and max_content_length are refused
from the Content-Length before the body is read (Perl's 400 and 413), and a
chunked body is held to them as it arrives (beyond Perl: docs/migrating.md).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.plugins.test_runtime_plugins import _dist_info
from tests.support.backend import Backend
from tests.support.configs import pool, service
from tests.support.ports import LOOPBACK, free_ports
from tests.support.pyserver import PyPerlbal

LIMIT = 65536
OVER = 96 * 1024
UNDER = 32 * 1024

PUT_READERS = ("put", "put_hook")
PROXY_READERS = ("proxy", "buffered", "reproxy", "proxy_hook")
LIMITS = {
    "max_chunked_request_size": f"SET max_chunked_request_size = {LIMIT}",
    "max_put_size": f"SET max_put_size = {LIMIT}",
    "max_content_length": f"SET max_content_length = {LIMIT}",
}
# (reader, limit, framing) -> the status a 96 KiB body gets (200: within that limit)
EXPECTED: dict[tuple[str, str, str], int] = {}
for _reader in PUT_READERS + PROXY_READERS:
    for _limit in LIMITS:
        if _limit == "max_put_size" and _reader in PROXY_READERS:
            continue  # a web_server parameter
        for _framing in ("length", "chunked"):
            status = 413
            if _limit == "max_chunked_request_size" and _framing == "length":
                status = 200  # Perl's meaning: chunked bodies only
            elif _limit == "max_put_size" and _framing == "length":
                status = 400  # Perl's "Content-length of N is invalid."
            EXPECTED[(_reader, _limit, _framing)] = status


@dataclass
class Rig:
    server: PyPerlbal
    backend: Backend
    ports: dict[tuple[str, str], int]
    docroots: dict[tuple[str, str], Path]
    spools: dict[tuple[str, str], Path]


def _config(tmp: Path, backend: Backend, site_ports: list[int]) -> tuple[str, Rig]:
    text = "LOAD MaxContentLength\nLOAD MoreHooksProbe\nLOAD HookProbe\n"
    text += pool("p", [backend])
    ports: dict[tuple[str, str], int] = {}
    docroots: dict[tuple[str, str], Path] = {}
    spools: dict[tuple[str, str], Path] = {}
    for reader in PUT_READERS + PROXY_READERS:
        for limit, line in LIMITS.items():
            if limit == "max_put_size" and reader in PROXY_READERS:
                continue
            name = f"{reader}_{limit}"
            port = ports[(reader, limit)] = site_ports.pop()
            plugins = ["MaxContentLength"] if limit == "max_content_length" else []
            if reader in PUT_READERS:
                docroot = docroots[(reader, limit)] = tmp / name
                docroot.mkdir()
                if reader == "put_hook":
                    plugins.append("MoreHooksProbe")
                extra = [f"SET docroot = {docroot}", "SET enable_put = on"]
                role, pool_name = "web_server", None
            else:
                extra = ["SET persist_backend = on"]
                if reader == "buffered":
                    spool = spools[(reader, limit)] = tmp / name
                    spool.mkdir()
                    extra += ["SET buffer_uploads = on", f"SET buffer_uploads_path = {spool}"]
                if reader == "reproxy":
                    extra.append("SET enable_reproxy = on")
                if reader == "proxy_hook":
                    plugins.append("HookProbe")
                role, pool_name = "reverse_proxy", "p"
            if plugins:
                extra.append(f"SET plugins = {', '.join(plugins)}")
            text += service(name, role, listen=port, pool=pool_name, extra=[*extra, line])
    return text, Rig(None, backend, ports, docroots, spools)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("limits")
    site = tmp / "site-packages"
    _dist_info(site, "perlbal_limitprobes",
               {"MoreHooksProbe": "tests.plugins.hook_plugin:MoreHooksProbe",
                "HookProbe": "tests.plugins.hook_plugin:HookProbe"})
    with Backend("b") as backend:
        text, rig = _config(tmp, backend, free_ports(len(EXPECTED) // 2))
        with PyPerlbal(text, extra_pythonpath=(str(site),)) as server:
            rig.server = server
            yield rig
            _, err = server.output()
    assert "Traceback" not in err


def _chunked(body: bytes, size: int = 8192) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


def _send(port: int, method: str, target: str, body: bytes, framing: str) -> tuple[int, bytes]:
    """Status and whole reply of one request (the server may answer and close
    before reading the whole body: what it sent is read all the same)."""
    head = f"{method} {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
    if framing == "chunked":
        data = head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    else:
        data = head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    reply = b""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed mid-body: the answer is read below
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    assert reply.startswith(b"HTTP/1."), reply[:200]
    return int(reply.split(b" ", 2)[1]), reply


def _target(reader: str, limit: str, framing: str, size: int) -> str:
    path = f"/{limit}-{framing}-{size}.bin"
    return "/read-answer" + path if reader == "proxy_hook" else path


def _arrived(rig: Rig, reader: str, limit: str, target: str) -> bool:
    """Did the body reach the disk or the backend?"""
    if reader in PUT_READERS:
        return (rig.docroots[(reader, limit)] / target.lstrip("/")).exists()
    return any(r.target == target for r in rig.backend.requests())


@pytest.mark.parametrize(("reader", "limit", "framing"), sorted(EXPECTED))
def test_body_over_a_limit_is_refused_before_it_lands(rig: Rig, reader: str, limit: str,
                                                      framing: str) -> None:
    port = rig.ports[(reader, limit)]
    method = "PUT" if reader in PUT_READERS else "POST"
    over = _target(reader, limit, framing, OVER)
    status, reply = _send(port, method, over, b"x" * OVER, framing)
    expected = EXPECTED[(reader, limit, framing)]
    assert status == expected, reply[:300]
    if reader == "proxy_hook" and expected == 200:
        assert reply.endswith(b"read:" + b"x" * OVER)  # the plugin had the whole body
    elif expected == 200:
        assert _arrived(rig, reader, limit, over)
    else:
        assert not _arrived(rig, reader, limit, over)
        if reader in PUT_READERS:  # not even the temporary file is left
            left = rig.docroots[(reader, limit)].iterdir()
            assert [p.name for p in left if not p.name.endswith(f"-{UNDER}.bin")] == []
        if reader == "buffered":
            assert list(rig.spools[(reader, limit)].iterdir()) == []
        if reader == "proxy_hook":
            assert b"read:" not in reply
    under = _target(reader, limit, framing, UNDER)
    status, reply = _send(port, method, under, b"y" * UNDER, framing)
    assert status == 200, reply[:300]
    if reader == "proxy_hook":
        assert reply.endswith(b"read:" + b"y" * UNDER)
    else:
        assert _arrived(rig, reader, limit, under)
