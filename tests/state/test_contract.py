"""One contract for every store: the same tests run against memory, SQLite and Redis.

Times are given explicitly (``now``), starting from a real epoch second so that Redis' own expiry (which
follows its clock) never interferes with the caller's clock.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from portway.state import Bucket, CountResult, Store, open_store
from portway.state.memory import DEFAULT_CACHE_BYTES, MemoryStore
from portway.state.redis import RedisStore
from portway.state.sqlite import SQLiteStore
from tests.redis_fixtures import ensure_redis

BACKENDS = ["memory", "sqlite", "redis"]
T0 = float(int(time.time()))

OpenStore = Callable[..., Awaitable[Store]]


@pytest.fixture(params=BACKENDS)
async def open_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """A function opening a fresh store of the parametrized backend; every store is cleaned and closed."""
    backend: str = request.param
    opened: list[Store] = []
    url = ensure_redis() if backend == "redis" else ""

    async def open_one(cache_bytes: int = DEFAULT_CACHE_BYTES) -> Store:
        if backend == "memory":
            store = open_store("memory", cache_bytes=cache_bytes)
        elif backend == "sqlite":
            store = open_store(f"sqlite://{tmp_path}/state-{len(opened)}.db", cache_bytes=cache_bytes)
        else:
            store = open_store(url, namespace=f"test-{uuid.uuid4().hex}", cache_bytes=cache_bytes)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        if isinstance(store, RedisStore):
            await store.clear()
        await store.close()


@pytest.fixture
async def store(open_backend: OpenStore) -> Store:
    return await open_backend()


# -- token buckets ---------------------------------------------------------------------------------------


async def test_bucket_starts_full(store: Store) -> None:
    answer = await store.take([Bucket("b", rate=1.0, burst=5)], now=T0)
    assert answer.allowed
    assert answer.remaining == (4,)
    assert answer.refused_by is None
    assert answer.retry_after == 0.0


async def test_refill_arithmetic(store: Store) -> None:
    bucket = Bucket("b", rate=2.0, burst=10)
    assert (await store.take([bucket], now=T0, cost=10)).remaining == (0,)
    after = await store.take([bucket], now=T0 + 1.25)  # 2.5 tokens refilled, 1 taken
    assert after.allowed
    assert after.remaining == (1,)
    refused = await store.take([bucket], now=T0 + 1.25, cost=2)  # 1.5 tokens held
    assert not refused.allowed
    assert refused.refused_by == 0
    assert refused.remaining == (1,)
    assert refused.retry_after == pytest.approx(0.25)
    later = await store.take([bucket], now=T0 + 1.5, cost=2)  # 1.5 + 0.5 = 2
    assert later.allowed
    assert later.remaining == (0,)


async def test_refill_is_capped_at_burst(store: Store) -> None:
    bucket = Bucket("b", rate=5.0, burst=3)
    await store.take([bucket], now=T0, cost=3)
    assert (await store.take([bucket], now=T0 + 1000.0)).remaining == (2,)


async def test_all_or_nothing_over_several_buckets(store: Store) -> None:
    wide = Bucket("wide", rate=1.0, burst=5)
    narrow = Bucket("narrow", rate=1.0, burst=1)
    both = await store.take([wide, narrow], now=T0)
    assert both.allowed
    assert both.remaining == (4, 0)
    refused = await store.take([wide, narrow], now=T0)
    assert not refused.allowed
    assert refused.refused_by == 1
    assert refused.remaining == (4, 0)  # the wide bucket gave nothing
    assert refused.retry_after == pytest.approx(1.0)
    assert (await store.take([wide], now=T0)).remaining == (3,)


async def test_refused_by_is_the_first_short_bucket(store: Store) -> None:
    first = Bucket("first", rate=1.0, burst=1)
    second = Bucket("second", rate=0.5, burst=1)
    await store.take([first, second], now=T0)
    refused = await store.take([first, second], now=T0 + 0.5)
    assert refused.refused_by == 0
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.remaining == (0, 0)


async def test_zero_rate_and_zero_burst_admit_nothing(store: Store) -> None:
    answer = await store.take([Bucket("zero", rate=0.0, burst=0)], now=T0)
    assert not answer.allowed
    assert answer.refused_by == 0
    assert answer.remaining == (0,)
    assert math.isinf(answer.retry_after)


async def test_zero_rate_never_refills(store: Store) -> None:
    bucket = Bucket("fixed", rate=0.0, burst=2)
    assert (await store.take([bucket], now=T0, cost=2)).allowed
    later = await store.take([bucket], now=T0 + 3600.0)
    assert not later.allowed
    assert math.isinf(later.retry_after)


async def test_cost_above_one(store: Store) -> None:
    bucket = Bucket("b", rate=4.0, burst=5)
    assert (await store.take([bucket], now=T0, cost=3)).remaining == (2,)
    short = await store.take([bucket], now=T0, cost=3)
    assert not short.allowed
    assert short.retry_after == pytest.approx(0.25)
    never = await store.take([bucket], now=T0, cost=6)  # more than the bucket can ever hold
    assert not never.allowed
    assert math.isinf(never.retry_after)
    assert (await store.take([bucket], now=T0 + 0.25, cost=3)).remaining == (0,)


async def test_time_going_backwards_never_refills(store: Store) -> None:
    bucket = Bucket("b", rate=1.0, burst=5)
    assert (await store.take([bucket], now=T0 + 10.0, cost=5)).allowed
    behind = await store.take([bucket], now=T0 + 5.0)  # another node's clock, 5 s behind
    assert not behind.allowed
    assert behind.remaining == (0,)
    assert behind.retry_after == pytest.approx(1.0)
    # The refill time stayed at T0 + 10: one second later holds one token, not six.
    ahead = await store.take([bucket], now=T0 + 11.0)
    assert ahead.allowed
    assert ahead.remaining == (0,)


async def test_remaining_counts_whole_tokens(store: Store) -> None:
    bucket = Bucket("b", rate=0.5, burst=4)
    await store.take([bucket], now=T0, cost=4)
    assert (await store.take([bucket], now=T0 + 7.0)).remaining == (2,)  # 3.5 - 1 = 2.5


async def test_buckets_are_separate_by_key(store: Store) -> None:
    await store.take([Bucket("a", rate=1.0, burst=1)], now=T0)
    assert (await store.take([Bucket("b", rate=1.0, burst=1)], now=T0)).allowed


async def test_same_answers_as_the_memory_store(store: Store) -> None:
    """Random takes (clocks jumping back and forth, several buckets, costs) answer exactly as MemoryStore,
    also when sent concurrently (the Redis store batches them, in order, into one script call)."""
    rng = random.Random(8)
    reference = MemoryStore()
    keys = [
        Bucket(f"k{i}", rate=rng.choice([0.0, 0.3, 1.0, 2.5, 7.0]), burst=rng.randint(0, 6)) for i in range(6)
    ]
    calls = []
    now = T0
    for _ in range(300):
        now += rng.choice([-0.7, 0.0, 0.013, 0.1, 0.25, 1.3])
        calls.append((rng.sample(keys, rng.randint(1, 3)), now, rng.randint(1, 3)))
    expected = [reference.take_now(buckets, at, cost) for buckets, at, cost in calls]
    assert {answer.allowed for answer in expected} == {True, False}
    sequential = [await store.take(buckets, at, cost) for buckets, at, cost in calls[:150]]
    async with asyncio.timeout(20):
        concurrent = await asyncio.gather(
            *(store.take(buckets, at, cost) for buckets, at, cost in calls[150:])
        )
    assert [*sequential, *concurrent] == expected


async def test_many_concurrent_takes_admit_exactly_the_burst(store: Store) -> None:
    bucket = Bucket("crowd", rate=0.0, burst=100)
    async with asyncio.timeout(20):
        answers = await asyncio.gather(*(store.take([bucket], now=T0) for _ in range(500)))
    assert sum(answer.allowed for answer in answers) == 100
    assert sorted(answer.remaining[0] for answer in answers if answer.allowed) == list(range(100))


# -- counters --------------------------------------------------------------------------------------------


async def test_counter_refusal_leaves_the_value(store: Store) -> None:
    end = T0 + 60.0
    assert await store.count("q", 3, limit=5, window_end=end, now=T0) == CountResult(True, 3)
    refused = await store.count("q", 3, limit=5, window_end=end, now=T0 + 1.0)
    assert not refused.allowed
    assert refused.value == 3
    assert await store.counter("q", now=T0 + 1.0) == 3
    assert await store.count("q", 2, limit=5, window_end=end, now=T0 + 2.0) == CountResult(True, 5)


async def test_counter_without_limit(store: Store) -> None:
    for _ in range(3):
        await store.count("q", 1_000_000, limit=None, window_end=T0 + 60.0, now=T0)
    assert await store.counter("q", now=T0) == 3_000_000


async def test_counter_window_rolls_over_at_its_end(store: Store) -> None:
    end = T0 + 60.0
    await store.count("q", 4, limit=None, window_end=end, now=T0)
    # A call inside the window that names a later end keeps the window the counter started with.
    assert await store.count("q", 1, limit=None, window_end=end + 60.0, now=T0 + 59.0) == CountResult(True, 5)
    assert await store.counter("q", now=end - 0.001) == 5
    assert await store.counter("q", now=end) == 0
    assert await store.count("q", 2, limit=None, window_end=end + 60.0, now=end) == CountResult(True, 2)
    assert await store.counter("q", now=end + 1.0) == 2


async def test_counter_amount_zero_reads(store: Store) -> None:
    assert await store.count("q", 0, limit=10, window_end=T0 + 60.0, now=T0) == CountResult(True, 0)
    await store.count("q", 7, limit=10, window_end=T0 + 60.0, now=T0)
    assert await store.count("q", 0, limit=10, window_end=T0 + 60.0, now=T0) == CountResult(True, 7)
    assert await store.counter("q", now=T0) == 7


async def test_counter_rejects_a_negative_amount(store: Store) -> None:
    with pytest.raises(ValueError, match="only grows"):
        await store.count("q", -1, limit=None, window_end=T0 + 60.0, now=T0)
    assert await store.counter("q", now=T0) == 0


async def test_absent_counter_reads_zero(store: Store) -> None:
    assert await store.counter("nothing", now=T0) == 0


async def test_concurrent_counts_respect_the_limit(store: Store) -> None:
    async with asyncio.timeout(20):
        answers = await asyncio.gather(
            *(store.count("q", 1, limit=50, window_end=T0 + 60.0, now=T0) for _ in range(120))
        )
    assert sum(answer.allowed for answer in answers) == 50
    assert await store.counter("q", now=T0) == 50


# -- cache -----------------------------------------------------------------------------------------------


async def test_cache_put_get_and_expiry(store: Store) -> None:
    assert await store.cache_get("k", now=T0) is None
    await store.cache_put("k", b"value", ttl_s=10.0, now=T0)
    assert await store.cache_get("k", now=T0 + 9.999) == b"value"
    assert await store.cache_get("k", now=T0 + 10.0) is None
    assert await store.cache_get("k", now=T0) is None  # an expired entry is gone


async def test_cache_overwrite(store: Store) -> None:
    await store.cache_put("k", b"one", ttl_s=10.0, now=T0)
    await store.cache_put("k", b"two", ttl_s=10.0, now=T0)
    assert await store.cache_get("k", now=T0) == b"two"


async def test_cache_zero_ttl_stores_nothing(store: Store) -> None:
    await store.cache_put("k", b"one", ttl_s=10.0, now=T0)
    await store.cache_put("k", b"two", ttl_s=0.0, now=T0)
    assert await store.cache_get("k", now=T0) is None


async def test_cache_binary_values(store: Store) -> None:
    value = bytes(range(256)) * 4
    await store.cache_put("bin", value, ttl_s=10.0, now=T0)
    assert await store.cache_get("bin", now=T0) == value


async def test_cache_evicts_oldest_writes_first(open_backend: OpenStore) -> None:
    store = await open_backend(cache_bytes=100)
    for key in ("k1", "k2", "k3"):
        await store.cache_put(key, b"x" * 40, ttl_s=60.0, now=T0)
    assert await store.cache_get("k1", now=T0) is None
    assert await store.cache_get("k2", now=T0) == b"x" * 40
    await store.cache_put("k2", b"y" * 40, ttl_s=60.0, now=T0)  # rewritten: now the newest
    await store.cache_put("k4", b"z" * 40, ttl_s=60.0, now=T0)
    assert await store.cache_get("k3", now=T0) is None
    assert await store.cache_get("k2", now=T0) == b"y" * 40
    assert await store.cache_get("k4", now=T0) == b"z" * 40


async def test_cache_overwrite_does_not_count_twice(open_backend: OpenStore) -> None:
    store = await open_backend(cache_bytes=100)
    for _ in range(5):
        await store.cache_put("same", b"x" * 60, ttl_s=60.0, now=T0)
    await store.cache_put("other", b"o" * 40, ttl_s=60.0, now=T0)
    assert await store.cache_get("same", now=T0) == b"x" * 60
    assert await store.cache_get("other", now=T0) == b"o" * 40


async def test_cache_entry_over_the_bound_is_not_stored(open_backend: OpenStore) -> None:
    store = await open_backend(cache_bytes=100)
    await store.cache_put("small", b"s" * 50, ttl_s=60.0, now=T0)
    await store.cache_put("huge", b"h" * 101, ttl_s=60.0, now=T0)
    assert await store.cache_get("huge", now=T0) is None
    assert await store.cache_get("small", now=T0) == b"s" * 50  # nothing evicted for it
    await store.cache_put("small", b"h" * 101, ttl_s=60.0, now=T0)
    assert await store.cache_get("small", now=T0) is None  # the old value is gone, the new not stored
    await store.cache_put("exact", b"e" * 100, ttl_s=60.0, now=T0)
    assert await store.cache_get("exact", now=T0) == b"e" * 100


async def test_cache_drop_by_prefix(store: Store) -> None:
    for key in ("api:GET /a", "api:GET /b", "api:POST /a", "other:GET /a", "[odd]-*key", "é:1"):
        await store.cache_put(key, b"v", ttl_s=60.0, now=T0)
    assert await store.cache_drop("api:GET ") == 2
    assert await store.cache_get("api:GET /a", now=T0) is None
    assert await store.cache_get("api:POST /a", now=T0) == b"v"
    assert await store.cache_drop("[odd]") == 1
    assert await store.cache_drop("é") == 1
    assert await store.cache_drop("missing") == 0
    assert await store.cache_drop() == 2
    assert await store.cache_get("other:GET /a", now=T0) is None


async def test_cache_after_drop_still_bounded(open_backend: OpenStore) -> None:
    store = await open_backend(cache_bytes=100)
    await store.cache_put("a", b"x" * 90, ttl_s=60.0, now=T0)
    assert await store.cache_drop("a") == 1
    await store.cache_put("b", b"y" * 90, ttl_s=60.0, now=T0)  # the dropped bytes were given back
    await store.cache_put("c", b"z" * 10, ttl_s=60.0, now=T0)
    assert await store.cache_get("b", now=T0) == b"y" * 90
    assert await store.cache_get("c", now=T0) == b"z" * 10


# -- records ---------------------------------------------------------------------------------------------


async def test_records_put_get_delete(store: Store) -> None:
    assert await store.get_record("apikey", "k1") is None
    await store.put_record("apikey", "k1", {"name": "one", "tags": ["a"], "n": 1, "on": True})
    assert await store.get_record("apikey", "k1") == {"name": "one", "tags": ["a"], "n": 1, "on": True}
    await store.put_record("apikey", "k1", {"name": "replaced"})
    assert await store.get_record("apikey", "k1") == {"name": "replaced"}
    assert await store.delete_record("apikey", "k1")
    assert not await store.delete_record("apikey", "k1")
    assert await store.get_record("apikey", "k1") is None


async def test_records_list_ordered_by_id(store: Store) -> None:
    for record_id in ("b", "é", "a", "C", "aa"):
        await store.put_record("plan", record_id, {"id": record_id})
    await store.put_record("other", "z", {"id": "z"})
    listed = await store.list_records("plan")
    assert [record["id"] for record in listed] == sorted(["b", "é", "a", "C", "aa"])
    assert await store.list_records("nothing") == []


async def test_records_are_copies(store: Store) -> None:
    original = {"name": "one", "nested": {"n": 1}}
    await store.put_record("apikey", "k1", original)
    original["nested"]["n"] = 2  # type: ignore[index]
    fetched = await store.get_record("apikey", "k1")
    assert fetched == {"name": "one", "nested": {"n": 1}}
    assert fetched is not None
    fetched["nested"]["n"] = 3
    (await store.list_records("apikey"))[0]["name"] = "changed"
    assert await store.get_record("apikey", "k1") == {"name": "one", "nested": {"n": 1}}


# -- choosing a store by name ----------------------------------------------------------------------------


async def test_open_store_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store("memory"), MemoryStore)
    absolute = open_store(f"sqlite://{tmp_path}/a.db")  # tmp_path is absolute: sqlite:///tmp/…/a.db
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "a.db"
    four = open_store(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(four, SQLiteStore)
    assert four.path == tmp_path / "a.db"
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:data/b.db")
    assert isinstance(relative, SQLiteStore)
    assert relative.path == Path("data/b.db")
    plain = open_store("state.sqlite")
    assert isinstance(plain, SQLiteStore)
    redis = open_store("redis://127.0.0.1:1/0", namespace="n", cache_bytes=10)
    assert isinstance(redis, RedisStore)
    assert (redis.namespace, redis.cache_bytes) == ("n", 10)
    assert isinstance(open_store("unix:///tmp/redis.sock"), RedisStore)
    for store in (absolute, four, relative, plain, redis):
        await store.close()


@pytest.mark.parametrize("url", ["mongodb://db", "state.json", "sqlite:", "", "postgres://x/y.db"])
def test_open_store_rejects_unknown_forms(url: str) -> None:
    with pytest.raises(ValueError, match="memory, redis://"):
        open_store(url)
