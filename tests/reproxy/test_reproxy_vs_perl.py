"""Differential: backends answering with each X-REPROXY-* header, through Perl Perlbal 1.80 and ours.

The client-visible exchange (status line, headers in order, body, whether the
connection stayed open) and what the reproxy target was asked must match.
One documented difference is normalised away: on X-REPROXY-FILE replies Perl
leaks X-REPROXY-EXPECTED-SIZE / -CACHE-FOR to the client; we strip every
X-REPROXY-* header, so those are dropped from Perl's side before comparing.
"""

from __future__ import annotations

import re

import pytest

from tests.reproxy.harness import Seen, run_scenario
from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal

REQUESTS = [
    ("GET", "/a", []),
    ("HEAD", "/a", []),
    ("GET", "/a", [("Range", "bytes=5-9")]),
    ("GET", "/a", [("Range", "bytes=900-")]),
    ("GET", "/a", [("Connection", "close")]),
]

SCENARIOS = {
    "url": lambda t: [("X-REPROXY-URL", f"http://{t}/file.txt")],
    "first_url_dead": lambda t: [("X-REPROXY-URL", f"http://127.0.0.1:1/x http://{t}/file.txt")],
    "every_url_fails": lambda t: [("X-REPROXY-URL", f"http://127.0.0.1:1/x http://{t}/missing")],
    "no_usable_url": lambda t: [("X-REPROXY-URL", "ftp://example.com/x")],
    "expected_size_wrong": lambda t: [("X-REPROXY-URL", f"http://{t}/file.txt"),
                                      ("X-REPROXY-EXPECTED-SIZE", "5")],
    "expected_size_right": lambda t: [("X-REPROXY-URL", f"http://{t}/file.txt"),
                                      ("X-REPROXY-EXPECTED-SIZE", "360")],
    "file": lambda t: [("X-REPROXY-FILE", "{file}"), ("X-REPROXY-EXPECTED-SIZE", "0")],
    "file_wrong_size": lambda t: [("X-REPROXY-FILE", "{file}"), ("X-REPROXY-EXPECTED-SIZE", "9")],
    "file_missing": lambda t: [("X-REPROXY-FILE", "/nonexistent/reproxy/file")],
}


def _without_leaks(seen: Seen) -> Seen:
    out = []
    for resp in seen.responses:
        if isinstance(resp, tuple):
            version, status, reason, headers, body = resp
            headers = [(k, v) for k, v in headers if not k.upper().startswith("X-REPROXY-")]
            resp = (version, status, reason, headers, body)
        out.append(resp)
    return Seen(out, seen.primary_requests, seen.target_requests)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_reproxy_header_like_perl(need_perl_perlbal: None, name: str, tmp_path: object) -> None:
    import pathlib
    assert isinstance(tmp_path, pathlib.Path)
    served = tmp_path / "served.txt"
    served.write_bytes(b"reproxied file body\n" * 3)  # 60 bytes

    def headers(target: str) -> list[tuple[str, str]]:
        return [(k, v.replace("{file}", str(served))) for k, v in SCENARIOS[name](target)]

    perl = _without_leaks(run_scenario(lambda conf: PerlPerlbal(conf), headers, REQUESTS))
    ours = run_scenario(lambda conf: PyPerlbal(conf), headers, REQUESTS)
    assert ours.responses == perl.responses
    assert ours.target_requests == perl.target_requests
    assert ours.primary_requests == perl.primary_requests


def test_reproxy_off_passes_headers_through(need_perl_perlbal: None) -> None:
    def headers(target: str) -> list[tuple[str, str]]:
        return [("X-REPROXY-URL", f"http://{target}/file.txt"), ("X-REPROXY-CACHE-FOR", "60")]

    requests = REQUESTS[:2]
    perl = run_scenario(lambda conf: PerlPerlbal(conf), headers, requests, enable="off")
    ours = run_scenario(lambda conf: PyPerlbal(conf), headers, requests, enable="off")

    def unport(seen: Seen) -> str:  # the target listens on a different port each run
        return re.sub(r"127\.0\.0\.1:\d+", "TARGET", repr(seen.responses))

    assert unport(ours) == unport(perl)
    assert "X-REPROXY-URL" in unport(ours)
    assert ours.target_requests == perl.target_requests == []


def _sorted_headers(seen: Seen) -> list[object]:
    # a cache hit replays its headers in Perl hash order, which varies per process
    return [(r[0], r[1], r[2], sorted(r[3]), r[4]) if isinstance(r, tuple) else r
            for r in seen.responses]


def test_reproxy_cache_like_perl(need_perl_perlbal: None) -> None:
    lastmod = "Sat, 01 Jan 2000 00:00:00 GMT"

    def headers(target: str) -> list[tuple[str, str]]:
        return [("X-REPROXY-URL", f"http://127.0.0.1:1/dead http://{target}/file.txt"),
                ("X-REPROXY-CACHE-FOR", "60; Content-Type Last-Modified X-Absent"),
                ("Last-Modified", lastmod)]

    requests = [("GET", "/a", []), ("GET", "/a", []), ("HEAD", "/a", []),
                ("GET", "/a", [("If-Modified-Since", lastmod)]),
                ("GET", "/a", [("Range", "bytes=1-3")]), ("GET", "/b", [])]
    perl = run_scenario(lambda conf: PerlPerlbal(conf), headers, requests, cache=10)
    ours = run_scenario(lambda conf: PyPerlbal(conf), headers, requests, cache=10)
    assert _sorted_headers(ours) == _sorted_headers(perl)
    assert ours.target_requests == perl.target_requests
    assert ours.primary_requests == perl.primary_requests == 2  # /a once, /b once
