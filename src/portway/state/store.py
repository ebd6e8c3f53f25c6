"""The one small state interface every stateful stage uses; implementations are chosen by name.

A store keeps four kinds of state, each operation atomic on its own (on Redis: one Lua script each):

- **token buckets** (throttling): :meth:`Store.take` takes tokens from one or more buckets at once, all or
  nothing;
- **window counters** (quotas, usage, WAF rate rules): :meth:`Store.count` adds to a counter that lives until
  the end of its window, refusing what would pass a limit, never going negative;
- **cache entries** (response caching): bytes under a key with a time to live, within a size bound;
- **records** (API keys, usage plans): small JSON documents by kind and id, which must not be lost.

Every time-dependent operation is given ``now`` (seconds since the epoch) by its caller, so that tests can
drive time and every node of a cluster computes with the same arithmetic. A store that cannot be reached
raises :class:`StoreUnavailable`; what happens then is the calling stage's choice (fail open, last known
state, or a 5xx), never the store's.

>>> from portway.state.memory import MemoryStore
>>> import asyncio
>>> store = MemoryStore()
>>> asyncio.run(store.take([Bucket("api:GET /items", rate=1.0, burst=2)], now=0.0)).allowed
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "Admission",
    "Bucket",
    "CountResult",
    "Store",
    "StoreError",
    "StoreUnavailable",
]


class StoreError(Exception):
    """A state store problem."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (Redis down, a locked database); the caller decides what follows."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` tokens per second; it starts full.

    ``rate`` 0 with ``burst`` 0 admits nothing (as API Gateway treats a zero limit).
    """

    key: str
    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`Store.take`.

    ``allowed``: every bucket had the tokens, and they were all taken. Otherwise nothing was taken, and
    ``refused_by`` is the index (in the request) of the first bucket that was short, ``retry_after`` the
    seconds until it will hold enough. ``remaining`` holds each bucket's whole tokens left, in order.
    """

    allowed: bool
    remaining: tuple[int, ...]
    refused_by: int | None = None
    retry_after: float = 0.0


@dataclass(frozen=True, slots=True)
class CountResult:
    """The answer of :meth:`Store.count`: whether the amount was added, and the counter's value after."""

    allowed: bool
    value: int


class Store(Protocol):
    """What stages need from shared state. Keys are plain strings chosen by the stages; an implementation
    may prefix them (Redis: one hash tag per store, so every script's keys share a cluster slot)."""

    name: str
    cache_bytes: int  # the response cache's size bound, in bytes of cached bodies and headers; may be changed

    async def take(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        """Take ``cost`` tokens from every bucket, or from none when any is short."""
        ...

    async def count(
        self, key: str, amount: int, limit: int | None, window_end: float, now: float
    ) -> CountResult:
        """Add ``amount`` (≥ 0) to the counter ``key`` unless the result would pass ``limit`` (None: no
        limit). The counter starts at 0 and is forgotten after ``window_end``: a new window starts at 0."""
        ...

    async def counter(self, key: str, now: float) -> int:
        """The counter's current value (0 when absent or expired)."""
        ...

    async def cache_get(self, key: str, now: float) -> bytes | None:
        """The cached value, or None when absent or expired."""
        ...

    async def cache_put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds; when the cache's size bound is passed, the least recently
        written entries are evicted first."""
        ...

    async def cache_drop(self, prefix: str = "") -> int:
        """Remove every cache entry whose key starts with ``prefix``; the number removed."""
        ...

    async def put_record(self, kind: str, record_id: str, record: Mapping[str, Any]) -> None:
        """Create or replace a record (a JSON-serialisable mapping)."""
        ...

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None: ...

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        """Every record of a kind, ordered by id."""
        ...

    async def delete_record(self, kind: str, record_id: str) -> bool:
        """Remove a record; False when there was none."""
        ...

    async def close(self) -> None: ...
