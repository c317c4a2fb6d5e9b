"""The disk pool's batching (perlbal/runtime/diskio.py): calls made in one
event-loop turn share pool jobs, results and errors reach the right caller,
and a cancelled caller's opened file is closed rather than leaked."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import BinaryIO

import pytest

from perlbal.runtime import diskio


def _thread_name(tag: int) -> tuple[int, str]:
    return tag, threading.current_thread().name


def test_one_turn_of_calls_shares_pool_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    submitted: list[int] = []
    real = diskio._Batcher._run

    def counting(self: diskio._Batcher, batch: list[diskio._Call]) -> None:
        submitted.append(len(batch))
        real(self, batch)

    monkeypatch.setattr(diskio._Batcher, "_run", counting)

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(diskio.run_disk(False, _thread_name, n) for n in range(20)))

    results = asyncio.run(main())
    assert [tag for tag, _ in results] == list(range(20))  # each caller its own answer
    assert all(name.startswith("perlbal-disk") for _, name in results)  # off the loop
    assert submitted == [8, 8, 4]  # 20 calls in one turn: three jobs, not twenty


def test_inline_runs_on_the_loop_thread() -> None:
    async def main() -> tuple[int, str]:
        return await diskio.run_disk(True, _thread_name, 1)

    assert asyncio.run(main()) == (1, threading.main_thread().name)


def test_errors_reach_their_own_caller(tmp_path: Path) -> None:
    present = tmp_path / "here"
    present.write_bytes(b"x" * 5)

    async def main() -> list[object]:
        return await asyncio.gather(
            diskio.run_disk(False, os.stat, str(tmp_path / "missing")),
            diskio.run_disk(False, os.stat, str(present)),
            return_exceptions=True)

    missing, found = asyncio.run(main())
    assert isinstance(missing, FileNotFoundError)
    assert isinstance(found, os.stat_result) and found.st_size == 5


def test_cancelled_caller_does_not_leak_the_opened_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"data")
    opened: list[BinaryIO] = []
    gate = threading.Event()

    def slow_open(path: str) -> BinaryIO:
        gate.wait(5)
        fh = open(path, "rb")
        opened.append(fh)
        return fh

    async def main() -> None:
        task = asyncio.ensure_future(diskio.run_disk(False, slow_open, str(target)))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # the result comes back on a later loop turn
            if opened and opened[0].closed:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert len(opened) == 1 and opened[0].closed
