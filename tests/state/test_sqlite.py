"""What only the SQLite store does: survive restarts, share one file between processes, stay off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from portway.state import Bucket, CountResult, StoreUnavailable
from portway.state.sqlite import SQLiteStore

T0 = float(int(time.time()))
FAR = 4e9  # a window end in 2096

INCREMENTER = """
import asyncio, sys
from portway.state.sqlite import SQLiteStore

async def main() -> None:
    store = SQLiteStore(sys.argv[1])
    for _ in range(int(sys.argv[2])):
        await store.count("shared", 1, None, {far}, {now})
    await store.put_record("seen", sys.argv[3], {{"by": sys.argv[3]}})
    await store.close()

asyncio.run(main())
"""


async def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    bucket = Bucket("b", rate=0.0, burst=5)
    first = SQLiteStore(path)
    await first.take([bucket], now=T0, cost=2)
    await first.count("quota", 7, limit=None, window_end=T0 + 3600.0, now=T0)
    await first.cache_put("c", b"cached", ttl_s=60.0, now=T0)
    await first.put_record("apikey", "k1", {"name": "one", "enabled": True})
    await first.close()

    second = SQLiteStore(path)
    try:
        assert (await second.take([bucket], now=T0)).remaining == (2,)
        assert await second.counter("quota", now=T0) == 7
        assert await second.cache_get("c", now=T0) == b"cached"
        assert await second.get_record("apikey", "k1") == {"name": "one", "enabled": True}
    finally:
        await second.close()


async def test_parent_folders_are_created(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a" / "b" / "state.db")
    await store.put_record("k", "1", {})
    await store.close()
    assert (tmp_path / "a" / "b" / "state.db").is_file()


async def test_two_processes_lose_no_increments(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SQLiteStore(path)
    await store.count("shared", 0, None, FAR, T0)  # the schema exists before the others start
    script = INCREMENTER.format(far=FAR, now=T0)
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(path), "200", name)
        for name in ("cli-1", "cli-2")
    ]
    try:
        for _ in range(200):
            await store.count("shared", 1, None, FAR, T0)
        async with asyncio.timeout(60):
            codes = [await child.wait() for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert codes == [0, 0]
    assert await store.counter("shared", now=T0) == 600
    assert [record["by"] for record in await store.list_records("seen")] == ["cli-1", "cli-2"]
    await store.close()


async def test_the_event_loop_keeps_running_during_writes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.count("warm", 1, None, FAR, T0)
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    for i in range(300):
        await store.cache_put(f"k{i}", b"x" * 10_000, ttl_s=60.0, now=T0)
        await store.count("writes", 1, None, FAR, T0)
    elapsed = time.monotonic() - started
    done.set()
    await ticking
    await store.close()
    assert len(gaps) >= 10
    assert max(gaps) < 0.1, f"the loop stalled for {max(gaps):.3f} s during {elapsed:.3f} s of writes"


async def test_a_lock_held_too_long_makes_it_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path, busy_timeout_s=0.2)
    await store.count("q", 1, None, FAR, T0)
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, say the CLI
    try:
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            await store.count("q", 1, None, FAR, T0)
        assert time.monotonic() - started < 1.0
        assert await store.counter("q", now=T0) == 1  # WAL: readers are not blocked by the writer
        other.execute("ROLLBACK")
        assert await store.count("q", 1, None, FAR, T0) == CountResult(True, 2)
    finally:
        other.close()
        await store.close()


async def test_a_path_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = SQLiteStore(tmp_path / "file" / "state.db")
    with pytest.raises(StoreUnavailable):
        await store.get_record("k", "1")
    await store.close()


async def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    await store.put_record("k", "1", {})
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get_record("k", "1")
