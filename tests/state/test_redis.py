"""What only the Redis store does: namespaces, one hash tag, batched takes, outages, several nodes."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from portway.state import Bucket, CountResult, Store, StoreUnavailable
from portway.state.memory import MemoryStore
from portway.state.redis import BUCKET_TTL_MARGIN_MS, CACHE_TTL_MARGIN_MS, COUNTER_GRACE_MS, RedisStore
from tests.redis_fixtures import PrivateRedis, free_port, private_redis

T0 = float(int(time.time()))

MakeStore = Callable[..., RedisStore]


@pytest.fixture
def private() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture
async def make_store() -> AsyncIterator[MakeStore]:
    """Open RedisStores (a fresh namespace unless given); each is cleaned, when reachable, and closed."""
    opened: list[RedisStore] = []

    def make(url: str, **options: Any) -> RedisStore:
        options.setdefault("namespace", f"test-{uuid.uuid4().hex}")
        store = RedisStore.from_url(url, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        with contextlib.suppress(StoreUnavailable):
            await store.clear()
        await store.close()


@pytest.fixture
async def raw(private: PrivateRedis) -> AsyncIterator[Redis]:
    """A plain client on the private server, to look at it from outside the store."""
    client = Redis.from_url(private.url)
    yield client
    await client.aclose()


async def exercise(store: Store) -> None:
    """One call of every kind."""
    await store.take([Bucket("b", rate=1.0, burst=5)], now=T0)
    await store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0)
    await store.cache_put("c", b"value", ttl_s=30.0, now=T0)
    await store.put_record("apikey", "k1", {"name": "one"})


async def test_namespaces_are_isolated(redis_url: str, make_store: MakeStore) -> None:
    one, two = make_store(redis_url), make_store(redis_url)
    await exercise(one)
    assert (await two.take([Bucket("b", rate=1.0, burst=5)], now=T0)).remaining == (4,)
    assert await two.counter("q", now=T0) == 0
    assert await two.cache_get("c", now=T0) is None
    assert await two.cache_drop() == 0
    assert await two.list_records("apikey") == []
    await two.clear()
    assert await one.get_record("apikey", "k1") == {"name": "one"}
    assert await one.cache_get("c", now=T0) == b"value"


def test_namespace_cannot_break_the_hash_tag() -> None:
    for namespace in ("", "a{b", "a}b"):
        with pytest.raises(ValueError, match="namespace"):
            RedisStore(namespace=namespace)


async def test_every_key_carries_the_namespace_hash_tag(
    private: PrivateRedis, raw: Redis, make_store: MakeStore
) -> None:
    await exercise(make_store(private.url, namespace="tagged"))
    keys = sorted(str(key, "utf-8") if isinstance(key, bytes) else key for key in await raw.keys("*"))
    assert keys == [
        "{tagged}:bucket:b",
        "{tagged}:cache-lex",
        "{tagged}:cache-meta",
        "{tagged}:cache-order",
        "{tagged}:cache-sizes",
        "{tagged}:cache:c",
        "{tagged}:count:q",
        "{tagged}:record:apikey",
    ]


async def test_concurrent_takes_go_out_as_few_script_calls(
    private: PrivateRedis, raw: Redis, make_store: MakeStore
) -> None:
    store = make_store(private.url)
    bucket = Bucket("hot", rate=0.0, burst=1_000)
    await store.take([bucket], now=T0)  # loads the script
    await raw.config_resetstat()
    calls_before = store.script_calls

    async def caller() -> int:
        return sum([(await store.take([bucket], now=T0)).allowed for _ in range(30)])

    async with asyncio.timeout(20):
        admitted = sum(await asyncio.gather(*(caller() for _ in range(64))))
    assert admitted == 999  # exact, though batched
    evalsha = (await raw.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert evalsha == store.script_calls - calls_before
    assert evalsha <= 64 * 30 // 10, f"{evalsha} script calls for {64 * 30} takes"


async def test_unreachable_redis_fails_fast(make_store: MakeStore) -> None:
    store = make_store(f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    for call in (
        store.take([Bucket("b", rate=1.0, burst=1)], now=T0),
        store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0),
        store.cache_get("c", now=T0),
        store.put_record("apikey", "k", {}),
    ):
        with pytest.raises(StoreUnavailable, match="cannot be reached"):
            await call
    assert time.monotonic() - started < 1.0


async def test_outage_and_recovery(private: PrivateRedis, make_store: MakeStore) -> None:
    store = make_store(private.url, connect_timeout_s=0.2, timeout_s=0.2)
    bucket = Bucket("b", rate=0.0, burst=5)
    assert (await store.take([bucket], now=T0)).remaining == (4,)
    await store.cache_put("c", b"v", ttl_s=60.0, now=T0)

    private.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.take([bucket], now=T0)
    with pytest.raises(StoreUnavailable):
        await store.cache_get("c", now=T0)
    with pytest.raises(StoreUnavailable):
        await store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0)
    assert time.monotonic() - started < 1.0

    private.start()  # same port, empty, no scripts loaded
    assert (await store.take([bucket], now=T0)).remaining == (4,)  # a new Redis: the bucket is new
    assert await store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0) == CountResult(True, 1)
    await store.cache_put("c", b"v2", ttl_s=60.0, now=T0)
    assert await store.cache_get("c", now=T0) == b"v2"


async def test_frozen_redis_times_out_then_recovers(private: PrivateRedis, make_store: MakeStore) -> None:
    store = make_store(private.url, connect_timeout_s=0.2, timeout_s=0.2)
    assert (await store.take([Bucket("before", rate=1.0, burst=5)], now=T0)).allowed
    private.pause()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.take([Bucket("during", rate=1.0, burst=5)], now=T0)
        with pytest.raises(StoreUnavailable):
            await store.get_record("apikey", "k")
        assert time.monotonic() - started < 1.5
    finally:
        private.resume()
    answer = await store.take([Bucket("after", rate=1.0, burst=5)], now=T0)
    assert answer.remaining == (4,)


async def test_scripts_are_loaded_again_after_a_flush(
    raw: Redis, private: PrivateRedis, make_store: MakeStore
) -> None:
    store = make_store(private.url)
    await exercise(store)
    await raw.script_flush()
    bucket = Bucket("b", rate=1.0, burst=5)
    assert (await store.take([bucket], now=T0)).remaining == (3,)
    assert (await store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0)).value == 2
    await store.cache_put("c", b"again", ttl_s=30.0, now=T0)
    assert await store.cache_drop() == 1


async def test_two_nodes_share_one_bucket_exactly(redis_url: str, make_store: MakeStore) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    nodes = [make_store(redis_url, namespace=namespace) for _ in range(2)]
    bucket = Bucket("shared", rate=0.0, burst=100)
    async with asyncio.timeout(20):
        answers = await asyncio.gather(*(nodes[i % 2].take([bucket], now=T0) for i in range(300)))
    assert sum(answer.allowed for answer in answers) == 100
    assert (await nodes[1].take([bucket], now=T0 + 60.0)).allowed is False


async def test_keys_expire_so_redis_stays_bounded(
    private: PrivateRedis, raw: Redis, make_store: MakeStore
) -> None:
    store = make_store(private.url, namespace="ttl")
    await store.take([Bucket("b", rate=2.0, burst=10)], now=T0, cost=4)  # refilled in 2 s
    await store.take([Bucket("forever", rate=0.0, burst=10)], now=T0)
    now = time.time()
    await store.count("q", 1, limit=None, window_end=now + 30.0, now=now)
    await store.cache_put("c", b"v", ttl_s=20.0, now=now)
    assert 2_000 < await raw.pttl("{ttl}:bucket:b") <= 2_000 + BUCKET_TTL_MARGIN_MS
    assert await raw.pttl("{ttl}:bucket:forever") == -1  # never refills: it must be kept
    assert 29_000 < await raw.pttl("{ttl}:count:q") <= 30_000 + COUNTER_GRACE_MS
    assert 19_000 < await raw.pttl("{ttl}:cache:c") <= 20_000 + CACHE_TTL_MARGIN_MS


async def test_cache_accounts_for_values_redis_dropped(
    raw: Redis, private: PrivateRedis, make_store: MakeStore
) -> None:
    store = make_store(private.url, namespace="gc", cache_bytes=100)
    await store.cache_put("a", b"a" * 30, ttl_s=60.0, now=T0)
    await raw.delete("{gc}:cache:a")  # as if Redis had expired it
    await store.cache_put("b", b"b" * 10, ttl_s=60.0, now=T0)
    assert await raw.hget("{gc}:cache-meta", "bytes") == b"10"
    assert await raw.zrange("{gc}:cache-order", 0, -1) == [b"b"]
    await store.cache_put("c", b"c" * 91, ttl_s=60.0, now=T0)  # evicts b, the oldest
    assert await store.cache_get("b", now=T0) is None
    assert await store.cache_get("c", now=T0) == b"c" * 91


async def test_close_fails_what_is_queued(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    bucket = Bucket("b", rate=1.0, burst=1_000)
    takes = [asyncio.ensure_future(store.take([bucket], now=T0)) for _ in range(10)]
    await asyncio.sleep(0)
    await store.clear()
    await store.close()
    outcomes = await asyncio.gather(*takes, return_exceptions=True)
    assert all(isinstance(outcome, StoreUnavailable) or outcome.allowed for outcome in outcomes)  # type: ignore[union-attr]
    with pytest.raises(StoreUnavailable):
        await store.take([bucket], now=T0)


async def test_take_throughput(
    redis_url: str, make_store: MakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """64 concurrent callers on one event loop, 20,000 take() calls in all, memory vs Redis."""
    callers, per_caller = 64, 20_000 // 64
    bucket = Bucket("bench", rate=1e9, burst=1_000_000_000)

    async def rate(store: Store) -> float:
        async def caller() -> None:
            for _ in range(per_caller):
                await store.take([bucket], now=T0)

        await store.take([bucket], now=T0)
        started = time.perf_counter()
        async with asyncio.timeout(30):
            await asyncio.gather(*(caller() for _ in range(callers)))
        return callers * per_caller / (time.perf_counter() - started)

    memory, redis = await rate(MemoryStore()), await rate(make_store(redis_url))
    with capsys.disabled():
        print(f"\ntake() with {callers} concurrent callers: memory {memory:,.0f}/s, redis {redis:,.0f}/s")
    assert redis > 2_000


async def test_a_closed_store_is_unavailable(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get_record("apikey", "k")
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.count("q", 1, limit=None, window_end=T0 + 60.0, now=T0)
