"""Under load the error log stays clean (#15 defect 10).

wrk opens 500 connections to a reverse proxy whose only backend answers
slowly, so most clients wait in the service's queue; when wrk stops, they
all leave while they wait.  A client that leaves is normal: nothing may be
logged about it (before the fix, each one logged ``Future exception was
never retrieved ... PeerGone``).  The load is short (3 s) and bounded.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from tests.support.pyserver import PyPerlbal
from tests.support.backend import Backend
from tests.support.configs import PERSIST, proxy_config
from tests.support.ports import LOOPBACK, free_ports

EXTRA = (*PERSIST, "SET backend_persist_cache = 50")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install -y wrk)")
def test_clients_leaving_a_queue_under_load_log_nothing() -> None:
    (port,) = free_ports(1)
    with Backend("slow", delay=0.05) as backend:
        with PyPerlbal(proxy_config(port, [backend], extra=EXTRA)) as server:
            done = subprocess.run(
                ["wrk", "-t2", "-c500", "-d3s", "--timeout", "2s", f"http://{LOOPBACK}:{port}/"],
                capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            assert "requests in" in done.stdout  # the load ran
            time.sleep(1.0)  # the queue empties; collected futures would log now
            _, err = server.output()
            assert backend.requests(), "no request reached the backend"
    assert "never retrieved" not in err, err[:2000]
    assert "PeerGone" not in err and "Traceback" not in err, err[:2000]
