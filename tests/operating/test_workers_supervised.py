"""SERVER workers: a supervisor and N equal workers, through real processes and signals.

- kill -9 of a worker under load: no client of another worker sees an error
  (the only failures allowed are the connections the victim held, read
  from /proc while it was stopped), a replacement serves within 1 s, and the
  error log says so at ERROR;
- a slot that keeps dying backs off (0, 0.5, 1, 2 s), logged with the delay;
- a health flip is the supervisor's alone and is seen by every worker: each
  worker, served alone (the others SIGSTOPped), sends nothing to a node the
  console shows down, and everything to both once it is up again; the
  backend gets one checker's checks, not one per worker;
- a passive ejection (max_fails) one worker decides is every worker's;
- the console's numbers are the sum over the workers;
- SERVER user: the supervisor keeps root, every worker (a replacement too)
  runs as the user.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.backend import Backend, BackendReply, ReceivedRequest
from tests.support.configs import proxy_config
from tests.support.perl_perlbal import console
from tests.support.ports import LOOPBACK, free_ports, socket_inodes
from tests.support.pyserver import PyPerlbal
from tests.support.rawhttp import request


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until it is stopped (it accepts nothing more)."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(pid) in ("T", "t"), what=f"{pid} to stop")


@contextmanager
def alone(workers: list[int], serving: int) -> Iterator[None]:
    """Every worker but ``serving`` stopped: the shared listener is its alone."""
    others = [pid for pid in workers if pid != serving]
    for pid in others:
        stop(pid)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def held_client_ports(pid: int, listen_port: int) -> set[int]:
    """The client ports of the connections ``pid`` accepted on ``listen_port`` (from /proc)."""
    inodes = socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(local.rsplit(":", 1)[1], 16) == listen_port:
                    remote_port = int(remote.rsplit(":", 1)[1], 16)
                    if remote_port:
                        ports.add(remote_port)
    return ports


def error_log(server: PyPerlbal) -> str:
    path = server.workdir / "errors.log"
    return path.read_text() if path.exists() else ""


@contextmanager
def supervised(backends: list[Backend], workers: int = 2, extra: tuple[str, ...] = (),
               pool_extra: tuple[str, ...] = (), server_lines: tuple[str, ...] = (),
               ) -> Iterator[tuple[PyPerlbal, int, int]]:
    """(server, proxy port, console port) once every worker runs."""
    mgmt, proxy = free_ports(2)
    conf = proxy_config(proxy, backends, mgmt_port=mgmt, extra=extra, pool_extra=pool_extra,
                        server=[f"workers = {workers}", "error_log = errors.log",
                                "log_level = info", *server_lines])
    with PyPerlbal(conf) as server:
        assert server.proc is not None
        pid = server.proc.pid
        wait_for(lambda: len(children(pid)) == workers, what="the workers")
        yield server, proxy, mgmt


def get(port: int) -> tuple[int, bytes]:
    """One request on a fresh connection: (the client's port, the reply's first bytes)."""
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        out = b""
        try:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
            while chunk := sock.recv(65536):
                out += chunk
        except OSError as exc:
            out += f"<{exc}>".encode()
    return client_port, out


def test_kill_9_of_a_worker_under_load_loses_no_other_client(tmp_path: Path) -> None:
    with Backend("b1") as b1, supervised([b1], extra=("SET persist_client = off",)) \
            as (server, proxy, _mgmt):
        assert server.proc is not None
        supervisor = server.proc.pid
        results: list[tuple[int, bytes]] = []
        done = threading.Event()

        def client() -> None:
            for _ in range(3000):  # bounded
                if done.is_set():
                    return
                try:
                    results.append(get(proxy))
                except OSError as exc:  # refused: never acceptable
                    results.append((0, f"<{exc}>".encode()))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: len(results) >= 100, what="load")
            victim, survivor = children(supervisor)
            stop(victim)  # frozen: the connections it holds are known and fixed
            held = held_client_ports(victim, proxy)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: len(set(children(supervisor)) - {victim, survivor}) == 1,
                     what="a replacement")
            replacement, = set(children(supervisor)) - {victim, survivor}
            with alone([replacement, survivor], replacement):
                _port, reply = get(proxy)  # only the replacement accepts now
                served_at = time.monotonic()
            assert reply.startswith(b"HTTP/1.0 200"), reply[:200]
            assert served_at - killed_at < 1.0
            count = len(results)
            wait_for(lambda: len(results) >= count + 100, what="load after the kill")
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
        failed = [(port, reply[:80]) for port, reply in results
                  if not reply.startswith(b"HTTP/1.0 200")]
        assert [f for f in failed if f[0] not in held] == [], (held, failed)
        assert len(results) > 200
        log = error_log(server)
        assert re.search(rf"ERROR worker [12] \(pid {victim}\) was killed by signal 9 "
                         r"\(SIGKILL\) after [\d.]+s; restarting it now", log), log[-2000:]
        assert str(survivor) in " ".join(map(str, children(supervisor)))


def test_one_worker_is_supervised_and_its_queue_kept() -> None:
    """workers = 1: a supervisor and one worker.  While the worker is dead the
    supervisor keeps the listening socket, so a client that connects then waits
    in its queue and is served by the replacement: it is never refused."""
    with Backend("b1") as b1, supervised([b1], workers=1) as (server, proxy, _mgmt):
        assert server.proc is not None
        worker, = children(server.proc.pid)
        stop(worker)  # it accepts nothing more; the client below waits in the queue
        with socket.create_connection((LOOPBACK, proxy), timeout=10) as sock:
            os.kill(worker, signal.SIGKILL)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.0 200"), reply[:200]
        assert worker not in children(server.proc.pid)
        assert "restarting it now" in error_log(server)


def test_a_crash_loop_backs_off() -> None:
    with Backend("b1") as b1, supervised([b1]) as (server, proxy, _mgmt):
        assert server.proc is not None
        supervisor = server.proc.pid
        victim, other = children(supervisor)
        gaps = []
        for _ in range(4):
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda: len(set(children(supervisor)) - {victim, other}) == 1,
                     what="a replacement")
            gaps.append(time.monotonic() - killed_at)
            victim, = set(children(supervisor)) - {victim, other}
        assert other in children(supervisor)  # the other slot was never touched
        assert gaps[1] >= 0.5 and gaps[2] >= 1.0 and gaps[3] >= 2.0, gaps
        log = error_log(server)
        assert "restarting it now" in log
        for delay, exits in (("0.5", 2), ("1", 3), ("2", 4)):
            assert (f"restarting it in {delay}s (crash loop: {exits} exits in a row within "
                    "10s of starting)") in log, log[-2000:]
        assert request(proxy, "GET", "/").status == 200


def _healthz(state: dict[str, int]) -> Callable[[ReceivedRequest], BackendReply | None]:
    def handler(req: ReceivedRequest) -> BackendReply | None:
        if req.target == "/healthz":
            return BackendReply(status=state["status"], reason="X", body=b"x")
        return None
    return handler


def _checks(backend: Backend) -> int:
    return len([r for r in backend.requests() if r.target == "/healthz"])


def test_a_health_flip_is_seen_by_every_worker_at_once() -> None:
    state = {"status": 200}
    with Backend("a") as a, Backend("b") as b:
        a.handler = _healthz(state)
        b.handler = _healthz({"status": 200})
        with supervised([a, b], workers=3, extra=("SET persist_client = off",), pool_extra=(
                "SET balance_method = round_robin", "SET health_check_uri = /healthz",
                "SET health_check_interval = 0.3", "SET health_check_fall = 1",
                "SET health_check_rise = 1")) as (server, proxy, mgmt), \
                console(LOOPBACK, mgmt) as con:
            assert server.proc is not None
            workers = children(server.proc.pid)

            def checks_shown() -> int:
                line = next(ln for ln in con.command("show pool p")
                            if ln.startswith(f"# {a.address}"))
                found = re.search(r"checks (\d+)", line)
                return int(found.group(1)) if found else 0

            wait_for(lambda: checks_shown() >= 5, what="five checks")
            before = _checks(a)  # one checker: at most one check in flight
            shown = checks_shown()
            after = _checks(a)
            assert before - 1 <= shown <= after, (before, shown, after)

            state["status"] = 503
            wait_for(lambda: any(ln.startswith(f"# {a.address} down since")
                                 for ln in con.command("show pool p")), what="down")
            for worker in workers:
                with alone(workers, worker):
                    names = {request(proxy, "GET", "/").header("X-Backend-Name")
                             for _ in range(4)}
                assert names == {"b"}, (worker, names)
            state["status"] = 200
            wait_for(lambda: any(ln.startswith(f"# {a.address} up")
                                 for ln in con.command("show pool p")), what="up")
            for worker in workers:
                with alone(workers, worker):
                    names = {request(proxy, "GET", "/").header("X-Backend-Name")
                             for _ in range(4)}
                assert names == {"a", "b"}, (worker, names)


def test_a_passive_ejection_in_one_worker_is_every_workers() -> None:
    """max_fails: the worker whose traffic failed ejects the node and tells the
    supervisor, which tells every worker: the other worker, which saw no failure,
    sends it nothing either; the console shows the ejection once."""
    with Backend("bad", status=500) as bad, Backend("good") as good:
        with supervised([bad, good], extra=("SET persist_client = off",), pool_extra=(
                "SET balance_method = round_robin", "SET max_fails = 2",
                "SET fail_timeout = 60")) as (server, proxy, mgmt), \
                console(LOOPBACK, mgmt) as con:
            assert server.proc is not None
            first, second = workers = children(server.proc.pid)
            with alone(workers, first):
                statuses = [request(proxy, "GET", "/").status for _ in range(4)]
            assert sorted(statuses) == [200, 200, 500, 500]  # two failures: ejected
            with alone(workers, second):
                names = [request(proxy, "GET", "/").header("X-Backend-Name") for _ in range(6)]
            assert names == ["good"] * 6
            shown = con.command("show pool p")
            assert any(ln.startswith(f"# {bad.address} ejected since") and
                       "2 failures, the last status 500" in ln and "ejected 1 times" in ln
                       for ln in shown), shown
            page = request(mgmt, "GET", "/metrics").body.decode()
            assert f'perlbal_node_ejections_total{{pool="p",node="{bad.address}"}} 1' in page
            assert f'perlbal_node_up{{pool="p",node="{bad.address}"}} 0' in page


def test_the_console_adds_up_every_worker() -> None:
    with Backend("b1") as b1, supervised([b1], extra=("SET persist_client = off",)) \
            as (server, proxy, mgmt), console(LOOPBACK, mgmt) as con:
        assert server.proc is not None
        workers = children(server.proc.pid)
        for count, worker in zip((7, 5), workers):
            with alone(workers, worker):
                for _ in range(count):
                    assert request(proxy, "GET", "/").status == 200
        assert f"{b1.address} requests 12" in con.command("nodes")
        assert f"{b1.address} 12" in con.command("show pool p")
        shown = con.command("show service proxy")
        assert any(re.fullmatch(rf"\s+{re.escape(b1.address)}\s+12", ln) for ln in shown), shown
        page = request(mgmt, "GET", "/metrics").body.decode()
        assert 'perlbal_service_requests_total{service="proxy"} 12' in page
        assert "perlbal_workers 2" in page

        def graphed() -> int:  # the web UI's per-second samples, every worker's added
            samples = json.loads(request(mgmt, "GET", "/timeline").body)["samples"]
            return sum(s["services"]["proxy"]["requests"] for s in samples)

        wait_for(lambda: graphed() == 12, what="the graphs to count every request")
        # a worker that ends keeps counting: kill one, the totals stay
        os.kill(workers[0], signal.SIGKILL)
        wait_for(lambda: len(set(children(server.proc.pid)) - set(workers)) == 1
                 if server.proc else False, what="a replacement")
        assert f"{b1.address} requests 12" in con.command("nodes")


def test_a_listener_change_starts_a_new_generation() -> None:
    """SET listen on the console: N new workers forked with the new socket, the old
    ones drain and exit; the old port is closed, the new one served by each."""
    with Backend("b1") as b1, supervised([b1], extra=("SET persist_client = off",)) \
            as (server, proxy, mgmt), console(LOOPBACK, mgmt) as con:
        assert server.proc is not None
        pid = server.proc.pid
        old = children(pid)
        moved, = free_ports(1)
        assert con.command(f"SET proxy.listen = {LOOPBACK}:{moved}") == ["OK"]
        wait_for(lambda: len(children(pid)) == 2 and not set(children(pid)) & set(old),
                 what="the new generation")
        new = children(pid)
        for worker in new:
            with alone(new, worker):
                assert request(moved, "GET", "/").status == 200
        with pytest.raises(OSError):
            socket.create_connection((LOOPBACK, proxy), timeout=2).close()
        log = error_log(server)
        assert ("new generation 1 of 2 worker(s): a client listener changed "
                f"(SET proxy.listen = {LOOPBACK}:{moved})") in log, log[-2000:]
        assert "ERROR" not in log, log[-2000:]
        # a console line that changes no listener reaches the new workers as a line
        assert con.command(f"POOL p REMOVE {b1.address}") == ["OK"]
        wait_for(lambda: all(request(moved, "GET", "/").status == 503 for _ in range(4)),
                 what="the pool to be empty everywhere")


def test_a_worker_ignores_hup_and_logs_a_stray_signal() -> None:
    """HUP is the supervisor's (a reload), USR2 means nothing: a worker that gets
    either keeps serving, and the stray one is logged at ERROR."""
    with Backend("b1") as b1, supervised([b1], extra=("SET persist_client = off",)) \
            as (server, proxy, _mgmt):
        assert server.proc is not None
        workers = children(server.proc.pid)
        worker = workers[0]
        os.kill(worker, signal.SIGHUP)
        os.kill(worker, signal.SIGUSR2)
        wait_for(lambda: "signal SIGUSR2 ignored" in error_log(server), what="the log line")
        with alone(workers, worker):
            assert request(proxy, "GET", "/").status == 200
        assert children(server.proc.pid) == workers
        assert re.search(r"ERROR worker [12]: signal SIGUSR2 ignored \(send it to the "
                         rf"supervisor, pid {server.proc.pid}\)", error_log(server))


def _privileged_port() -> int:
    for port in range(900, 1000):
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_workers_drop_privileges_the_supervisor_keeps_them() -> None:
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no 'nobody' user")
    port = _privileged_port()
    with Backend("b1") as b1:
        conf = proxy_config(port, [b1], server=["workers = 2", "user = nobody"])
        with PyPerlbal(conf) as server:
            assert server.proc is not None
            supervisor = server.proc.pid
            wait_for(lambda: len(children(supervisor)) == 2, what="the workers")
            assert request(port, "GET", "/").status == 200
            assert _uid(supervisor) == 0
            first = children(supervisor)
            wait_for(lambda: [_uid(pid) for pid in first] == [nobody, nobody],
                     what="the workers' drop")  # each drops right after its fork
            os.kill(first[0], signal.SIGKILL)
            wait_for(lambda: len(set(children(supervisor)) - set(first)) == 1,
                     what="a replacement")
            replacement, = set(children(supervisor)) - set(first)
            wait_for(lambda: _uid(replacement) == nobody, what="the replacement's drop")
            assert request(port, "GET", "/").status == 200
