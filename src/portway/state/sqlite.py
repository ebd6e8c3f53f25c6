"""The SQLite store: state that must survive a restart on one machine (API keys, usage plans, quotas).

Every SQLite call runs on one dedicated worker thread, so the event loop never waits on the disk. The
database is in WAL mode with a busy timeout, and every read-modify-write is one ``BEGIN IMMEDIATE``
transaction, so a running gateway and the ``portway keys`` CLI can share one file at the same time.

>>> import asyncio, tempfile, pathlib
>>> async def demo(path: pathlib.Path) -> int:
...     store = SQLiteStore(path)
...     await store.put_record("apikey", "k1", {"name": "demo"})
...     result = await store.count("quota:k1", 1, limit=10, window_end=2e9, now=1e9)
...     await store.close()
...     return result.value
>>> asyncio.run(demo(pathlib.Path(tempfile.mkdtemp()) / "state.db"))
1
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from portway.state.memory import DEFAULT_CACHE_BYTES, _retry_after
from portway.state.store import Admission, Bucket, CountResult, StoreError, StoreUnavailable

__all__ = ["DEFAULT_BUSY_TIMEOUT_S", "SQLiteStore"]

DEFAULT_BUSY_TIMEOUT_S = 5.0

ERR_CLOSED = "the SQLite store is closed"
ERR_UNAVAILABLE = "SQLite database {path} cannot be used now: {error}"
ERR_FAILED = "SQLite database {path} failed: {error}"

_T = TypeVar("_T")

SCHEMA_VERSION = 1  # PRAGMA user_version once the schema below exists

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    key TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    refilled_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    window_end REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cache (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_size (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO cache_size (id, bytes) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""


class SQLiteStore:
    """A :class:`~portway.state.store.Store` in one SQLite file, safe to share between processes.

    ``path`` is created (with its parent folders) on first use; ``busy_timeout_s`` is how long a call
    waits for another process's write lock before it raises :class:`StoreUnavailable`.
    """

    name = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.cache_bytes = cache_bytes
        self.busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portway-sqlite")
        self._conn: sqlite3.Connection | None = None  # opened and used on the worker thread only
        self._closed = False
        self._lock = threading.Lock()  # guards submissions against a concurrent close

    # -- plumbing ---------------------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the worker thread with the connection, translating SQLite errors."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable(ERR_CLOSED)
            future = self._executor.submit(self._call, work)
        return await asyncio.wrap_future(future)

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return work(self._connection())
        except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk gone, cannot open
            if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF not in (
                sqlite3.SQLITE_BUSY,
                sqlite3.SQLITE_LOCKED,
            ):
                self._drop_connection()  # the next call opens the file afresh (the disk may be back)
            raise StoreUnavailable(ERR_UNAVAILABLE.format(path=self.path, error=exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(ERR_FAILED.format(path=self.path, error=exc)) from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(ERR_UNAVAILABLE.format(path=self.path, error=exc)) from exc
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # kept in the file once set
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # a read: no lock
                    self._write(conn, _create_schema)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        """Forget a connection that failed, so the next call opens a fresh one (e.g. the disk is back)."""
        if self._conn is not None:
            try:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._conn.close()
            self._conn = None

    @staticmethod
    def _write(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """One read-modify-write transaction, holding the write lock from its first statement."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            future = self._executor.submit(self._drop_connection)
        try:
            await asyncio.wrap_future(future)
        finally:
            self._executor.shutdown(wait=False)

    # -- token buckets ----------------------------------------------------------------------------------

    async def take(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        return await self._run(lambda conn: self._write(conn, lambda c: _take(c, buckets, now, cost)))

    # -- counters ---------------------------------------------------------------------------------------

    async def count(
        self, key: str, amount: int, limit: int | None, window_end: float, now: float
    ) -> CountResult:
        if amount < 0:
            raise ValueError("a counter only grows")

        def work(conn: sqlite3.Connection) -> CountResult:
            row = conn.execute("SELECT value, window_end FROM counters WHERE key = ?", (key,)).fetchone()
            value, end = (int(row[0]), float(row[1])) if row is not None else (0, window_end)
            if end <= now:
                value, end = 0, window_end
            if limit is not None and value + amount > limit:
                return CountResult(False, value)
            value += amount
            conn.execute(
                "INSERT INTO counters (key, value, window_end) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, window_end = excluded.window_end",
                (key, value, end),
            )
            return CountResult(True, value)

        return await self._run(lambda conn: self._write(conn, work))

    async def counter(self, key: str, now: float) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value, window_end FROM counters WHERE key = ?", (key,)).fetchone()
            return int(row[0]) if row is not None and float(row[1]) > now else 0

        return await self._run(work)

    # -- cache ------------------------------------------------------------------------------------------

    async def cache_get(self, key: str, now: float) -> bytes | None:
        def work(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value, expires_at FROM cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            if float(row[1]) > now:
                return bytes(row[0])

            def expire(c: sqlite3.Connection) -> None:  # re-checked: another writer may have refreshed it
                again = c.execute("SELECT expires_at FROM cache WHERE key = ?", (key,)).fetchone()
                if again is not None and float(again[0]) <= now:
                    _cache_evict(c, key)

            self._write(conn, expire)
            return None

        return await self._run(work)

    async def cache_put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        bound = self.cache_bytes

        def work(conn: sqlite3.Connection) -> None:
            _cache_evict(conn, key)
            if len(value) > bound or ttl_s <= 0:
                return
            conn.execute(
                "INSERT INTO cache (key, value, expires_at) VALUES (?, ?, ?)", (key, value, now + ttl_s)
            )
            size = _cache_add(conn, len(value))
            while size > bound:
                oldest = conn.execute("SELECT key FROM cache ORDER BY seq LIMIT 1").fetchone()
                if oldest is None:
                    break
                size = _cache_evict(conn, oldest[0])

        await self._run(lambda conn: self._write(conn, work))

    async def cache_drop(self, prefix: str = "") -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*), coalesce(sum(length(value)), 0) FROM cache WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchone()
            if row[0]:
                conn.execute("DELETE FROM cache WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
                _cache_add(conn, -int(row[1]))
            return int(row[0])

        return await self._run(lambda conn: self._write(conn, work))

    # -- records ----------------------------------------------------------------------------------------

    async def put_record(self, kind: str, record_id: str, record: Mapping[str, Any]) -> None:
        body = orjson.dumps(dict(record))
        await self._run(
            lambda conn: conn.execute(
                "INSERT INTO records (kind, id, body) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body",
                (kind, record_id, body),
            )
        )

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT body FROM records WHERE kind = ? AND id = ?", (kind, record_id)
            ).fetchone()
            return _load(row[0]) if row is not None else None

        return await self._run(work)

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            # BINARY collation compares UTF-8 bytes, which orders as Python orders the code points.
            rows = conn.execute("SELECT body FROM records WHERE kind = ? ORDER BY id", (kind,)).fetchall()
            return [_load(row[0]) for row in rows]

        return await self._run(work)

    async def delete_record(self, kind: str, record_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM records WHERE kind = ? AND id = ?", (kind, record_id))
            return cursor.rowcount > 0

        return await self._run(work)


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _take(conn: sqlite3.Connection, buckets: Sequence[Bucket], now: float, cost: int) -> Admission:
    """The memory store's arithmetic, over rows: a bucket starts full; it refills only when time advanced."""
    states: dict[str, list[float]] = {}
    order: list[list[float]] = []
    refused: int | None = None
    retry_after = 0.0
    for index, bucket in enumerate(buckets):
        state = states.get(bucket.key)
        if state is None:
            row = conn.execute(
                "SELECT tokens, refilled_at FROM buckets WHERE key = ?", (bucket.key,)
            ).fetchone()
            if row is None:
                state = [float(bucket.burst), now]
            else:
                state = [float(row[0]), float(row[1])]
                if now > state[1]:
                    state[0] = min(float(bucket.burst), state[0] + (now - state[1]) * bucket.rate)
                    state[1] = now
            states[bucket.key] = state
        elif now > state[1]:
            state[0] = min(float(bucket.burst), state[0] + (now - state[1]) * bucket.rate)
            state[1] = now
        order.append(state)
        if refused is None and state[0] < cost:
            refused = index
            retry_after = _retry_after(state[0], cost, bucket)
    if refused is None:
        for state in order:
            state[0] -= cost
    conn.executemany(
        "INSERT INTO buckets (key, tokens, refilled_at) VALUES (?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, refilled_at = excluded.refilled_at",
        [(key, state[0], state[1]) for key, state in states.items()],
    )
    remaining = tuple(math.floor(state[0]) for state in order)
    if refused is not None:
        return Admission(False, remaining, refused, retry_after)
    return Admission(True, remaining)


def _cache_add(conn: sqlite3.Connection, delta: int) -> int:
    """Add ``delta`` bytes to the cache's size; the size after."""
    row = conn.execute(
        "UPDATE cache_size SET bytes = bytes + ? WHERE id = 0 RETURNING bytes", (delta,)
    ).fetchone()
    return int(row[0])


def _cache_evict(conn: sqlite3.Connection, key: str) -> int:
    """Remove one cache entry (if present); the cache's size after."""
    row = conn.execute("DELETE FROM cache WHERE key = ? RETURNING length(value)", (key,)).fetchone()
    if row is None:
        return _cache_add(conn, 0)
    return _cache_add(conn, -int(row[0]))


def _load(body: bytes) -> dict[str, Any]:
    record: dict[str, Any] = orjson.loads(body)
    return record
