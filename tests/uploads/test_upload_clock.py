"""buffer_upload_threshold_rate / _time: the upload's rate is timed from the
moment its head was read, as Perl times it (start_buffering_request runs in
the same event as the head's parse), not from when the proxy got round to
sampling the body.

A server that reaches the request late -- here a plugin that awaits 0.5 s in
start_proxy_request, on a loaded machine the first request's work -- finds the
client's paced bytes already queued; timing from the late moment took them
for a fast client and streamed a 10 KB/s upload to the backend instead of
spooling it for rate (tests/uploads/test_upload_modes_vs_perl.py::[rate]
failed that way under load).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugins.test_runtime_plugins import _dist_info
from tests.support.pyserver import PyPerlbal
from tests.uploads.rig import Mode, body_bytes, run_upload

# 10 KB/s (500 bytes every 50 ms), a 100 KB/s minimum, 2000 bytes sampled
SLOW = Mode(body_size=20000, piece=500, interval=0.05, rate=100000,
            extra="SET plugins = LateStart")


def test_a_late_proxy_still_times_the_upload_from_its_head(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERLBAL_DEBUG_BUFFERED_UPLOADS", "1")
    site = tmp_path / "site-packages"
    _dist_info(site, "perlbal_latestart", {"LateStart": "tests.uploads.late_plugin:LateStart"})
    out = run_upload(lambda c: PyPerlbal("LOAD LateStart\n" + c,
                                         extra_pythonpath=(str(site),)), SLOW, port_zero=True)
    assert out.backend_bodies == [body_bytes(SLOW.body_size)]
    (head,) = out.backend_heads
    reasons = [v for k, v in head[2] if k == "X-PERLBAL-BUFFERED-UPLOAD-REASON"]
    assert reasons == ["rate"], head
    assert out.status == 200 and out.spool_left == []
