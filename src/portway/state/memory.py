"""The in-process store: the default for one gateway process. Nothing survives a restart."""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from portway.state.store import Admission, Bucket, CountResult

__all__ = ["DEFAULT_CACHE_BYTES", "MemoryStore"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


class MemoryStore:
    """Plain dictionaries on the event loop's thread: every operation is atomic because none awaits."""

    name = "memory"

    def __init__(self, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time]
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (value, window end)
        self._cache: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # oldest write first
        self._cache_size = 0
        self.cache_bytes = cache_bytes
        self._records: dict[str, dict[str, dict[str, Any]]] = {}

    async def take(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        return self.take_now(buckets, now, cost)

    def take_now(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        """:meth:`take` without the coroutine, for callers on the hot path that know the store is local."""
        states = [self._refilled(bucket, now) for bucket in buckets]
        for index, (bucket, state) in enumerate(zip(buckets, states, strict=True)):
            if state[0] < cost:
                remaining = tuple(math.floor(s[0]) for s in states)
                return Admission(False, remaining, index, _retry_after(state[0], cost, bucket))
        for state in states:
            state[0] -= cost
        return Admission(True, tuple(math.floor(s[0]) for s in states))

    def admit_now(self, buckets: Sequence[Bucket], now: float) -> float | None:
        """The throttle's fast path: take one token from every bucket, or none; None when taken, else the
        seconds until the first short bucket will have one (what :meth:`take_now` answers, minus the
        allocations)."""
        states = []
        for bucket in buckets:
            state = self._refilled(bucket, now)
            if state[0] < 1:
                return _retry_after(state[0], 1, bucket)
            states.append(state)
        for state in states:
            state[0] -= 1
        return None

    def _refilled(self, bucket: Bucket, now: float) -> list[float]:
        """The bucket's [tokens, time] refilled up to ``now`` (never backwards), created full."""
        state = self._buckets.get(bucket.key)
        if state is None:
            state = self._buckets[bucket.key] = [float(bucket.burst), now]
        elif now > state[1]:
            state[0] = min(float(bucket.burst), state[0] + (now - state[1]) * bucket.rate)
            state[1] = now
        return state

    async def count(
        self, key: str, amount: int, limit: int | None, window_end: float, now: float
    ) -> CountResult:
        if amount < 0:
            raise ValueError("a counter only grows")
        value, end = self._counters.get(key, (0, window_end))
        if end <= now:
            value, end = 0, window_end
        if limit is not None and value + amount > limit:
            return CountResult(False, value)
        value += amount
        self._counters[key] = (value, end)
        return CountResult(True, value)

    def count_now(self, key: str, amount: int, window_end: float, now: float) -> int:
        """:meth:`count` without a limit and without the coroutine: the counter's value after adding
        ``amount`` (the web ACL's rate-based rules on a local store)."""
        if amount < 0:
            raise ValueError("a counter only grows")
        counters = self._counters
        found = counters.get(key)
        if found is None or found[1] <= now:
            counters[key] = (amount, window_end)
            return amount
        value = found[0] + amount
        counters[key] = (value, found[1])
        return value

    async def counter(self, key: str, now: float) -> int:
        return self.counter_now(key, now)

    def counter_now(self, key: str, now: float) -> int:
        """:meth:`counter` without the coroutine."""
        value, end = self._counters.get(key, (0, math.inf))
        return value if end > now else 0

    async def cache_get(self, key: str, now: float) -> bytes | None:
        return self.cache_get_now(key, now)

    def cache_get_now(self, key: str, now: float) -> bytes | None:
        """:meth:`cache_get` without the coroutine (the cache stage's hit path on a local store)."""
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            self._evict(key)
            return None
        return entry[0]

    async def cache_put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        if key in self._cache:
            self._evict(key)
        if len(value) > self.cache_bytes or ttl_s <= 0:
            return
        self._cache[key] = (value, now + ttl_s)
        self._cache_size += len(value)
        while self._cache_size > self.cache_bytes:
            self._evict(next(iter(self._cache)))

    def _evict(self, key: str) -> None:
        value, _ = self._cache.pop(key)
        self._cache_size -= len(value)

    async def cache_drop(self, prefix: str = "") -> int:
        doomed = [key for key in self._cache if key.startswith(prefix)]
        for key in doomed:
            self._evict(key)
        return len(doomed)

    async def put_record(self, kind: str, record_id: str, record: Mapping[str, Any]) -> None:
        self._records.setdefault(kind, {})[record_id] = copy.deepcopy(dict(record))

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        record = self._records.get(kind, {}).get(record_id)
        return copy.deepcopy(record) if record is not None else None

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        records = self._records.get(kind, {})
        return [copy.deepcopy(records[record_id]) for record_id in sorted(records)]

    async def delete_record(self, kind: str, record_id: str) -> bool:
        return self._records.get(kind, {}).pop(record_id, None) is not None

    async def close(self) -> None:
        return None


def _retry_after(tokens: float, cost: int, bucket: Bucket) -> float:
    """Seconds until a bucket holding ``tokens`` holds ``cost``; infinite when it never will."""
    if cost > bucket.burst or bucket.rate <= 0:
        return math.inf
    return (cost - tokens) / bucket.rate
