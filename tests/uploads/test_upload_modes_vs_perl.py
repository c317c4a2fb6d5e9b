"""Differential: each buffered-upload mode through Perl Perlbal 1.80 and ours.

PERLBAL_DEBUG_BUFFERED_UPLOADS makes both tell the backend why a body was
spooled (X-PERLBAL-BUFFERED-UPLOAD-REASON), so the decision itself is compared,
together with the request head and body the backend got, the client's status
and headers, and that the spool directory is empty afterwards.
"""

from __future__ import annotations

import pytest

from tests.support.configs import perl_forwarding
from tests.support.pyserver import PyPerlbal
from tests.support.perl_perlbal import PerlPerlbal
from tests.uploads.rig import Mode, body_bytes, both, run_upload

MODES = {
    # Content-Length over buffer_upload_threshold_size: spooled at once
    "size": Mode(body_size=300000, size=250000, time=5),
    # 10 KB/s with the rest estimated at > 1 s: spooled for time.  The sample
    # (early) spans 0.6 s of pacing and the rest 3.4 s, so a server that gets to
    # the request late on a loaded machine (its sample already queued, so read
    # fast) still estimates well over 1 s, as an unloaded one does
    "time": Mode(body_size=40000, piece=500, interval=0.05, time=1, early=6000),
    # 10 KB/s under a 100 KB/s minimum rate: spooled for rate.  Both servers time
    # the sample from the head (tests/uploads/test_upload_clock.py); it spans 0.6 s
    # of pacing, so one that reads the head late on a loaded machine (the pieces
    # sent meanwhile queued, so read at once) still measures under 100 KB/s
    "rate": Mode(body_size=20000, piece=500, interval=0.05, rate=100000, early=6000),
    # all at once, thresholds not met: streamed, never spooled
    "fast": Mode(body_size=60000, time=5, rate=1000),
    # Transfer-Encoding: chunked: always spooled, sent with a Content-Length
    "chunked": Mode(body_size=50000, chunked=True, time=5),
    # chunked and paced
    "chunked_slow": Mode(body_size=12000, chunked=True, piece=1500, interval=0.03, time=5),
    # paced, no threshold met, with a plugin on the service (Stats: its
    # backend_client_assigned hook rewrites the backend head): the
    # buffer_backend_connect bytes read before a backend was asked for go on
    # after the head (ours dropped them, and the backend waited for a body)
    "hooked": Mode(body_size=12000, piece=1500, interval=0.03, extra="SET plugins = Stats"),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_upload_mode_like_perl(need_perl_perlbal: None, monkeypatch: pytest.MonkeyPatch,
                               name: str) -> None:
    monkeypatch.setenv("PERLBAL_DEBUG_BUFFERED_UPLOADS", "1")
    mode = MODES[name]
    # (ours with forwarded_headers = perl: the default adds X-Forwarded-Proto /
    # -Port to the backend's head; a documented difference, docs/migrating.md)
    load = "LOAD Stats\n" if "Stats" in mode.extra else ""
    perl, ours = both(lambda: run_upload(lambda c: PerlPerlbal(load + c), mode),
                      lambda: run_upload(lambda c: PyPerlbal(perl_forwarding(load + c)), mode,
                                         port_zero=True))
    assert ours.backend_bodies == perl.backend_bodies == [body_bytes(mode.body_size)]
    assert ours.backend_heads == perl.backend_heads
    assert (ours.status, ours.client_headers) == (perl.status, perl.client_headers)
    assert ours.spool_left == perl.spool_left == []
