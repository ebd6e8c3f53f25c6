"""A store that can be switched off, standing in for a Redis that went away (a double of a dependency, not
of the code under test: every call goes to a real MemoryStore while it is on)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from portway.state.memory import MemoryStore
from portway.state.store import Admission, Bucket, CountResult, Store, StoreUnavailable


class FlakyStore:
    """A MemoryStore that counts every call and can be switched off: then every call raises
    StoreUnavailable, as a Redis that went away would."""

    name = "flaky"
    cache_bytes = 1 << 20

    def __init__(self, *, down: bool = False) -> None:
        self.inner = MemoryStore()
        self.down = down
        self.calls: Counter[str] = Counter()

    def _call(self, what: str) -> None:
        self.calls[what] += 1
        if self.down:
            raise StoreUnavailable("the test switched the store off")

    async def take(self, buckets: Sequence[Bucket], now: float, cost: int = 1) -> Admission:
        self._call("take")
        return await self.inner.take(buckets, now, cost)

    async def count(
        self, key: str, amount: int, limit: int | None, window_end: float, now: float
    ) -> CountResult:
        self._call("count")
        return await self.inner.count(key, amount, limit, window_end, now)

    async def counter(self, key: str, now: float) -> int:
        self._call("counter")
        return await self.inner.counter(key, now)

    async def cache_get(self, key: str, now: float) -> bytes | None:
        self._call("cache_get")
        return await self.inner.cache_get(key, now)

    async def cache_put(self, key: str, value: bytes, ttl_s: float, now: float) -> None:
        self._call("cache_put")
        await self.inner.cache_put(key, value, ttl_s, now)

    async def cache_drop(self, prefix: str = "") -> int:
        self._call("cache_drop")
        return await self.inner.cache_drop(prefix)

    async def put_record(self, kind: str, record_id: str, record: Mapping[str, Any]) -> None:
        self._call("put_record")
        await self.inner.put_record(kind, record_id, record)

    async def get_record(self, kind: str, record_id: str) -> dict[str, Any] | None:
        self._call(f"get_record:{kind}")
        return await self.inner.get_record(kind, record_id)

    async def list_records(self, kind: str) -> list[dict[str, Any]]:
        self._call(f"list_records:{kind}")
        return await self.inner.list_records(kind)

    async def delete_record(self, kind: str, record_id: str) -> bool:
        self._call("delete_record")
        return await self.inner.delete_record(kind, record_id)

    async def close(self) -> None:
        return None


def _flaky_is_a_store(store: FlakyStore) -> Store:
    return store  # mypy checks that the double keeps to the protocol
