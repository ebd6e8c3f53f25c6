"""The api_key stage on real request contexts, against the in-process store and a real Redis."""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import pytest

from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES, ResponseTable
from portway.stages.api_key import ApiKeySource, ApiKeyStage
from portway.state.memory import MemoryStore
from portway.state.store import Bucket, Store
from portway.types import Message, Response
from portway.usage_plans import (
    ApiStage,
    KeyCache,
    Period,
    QuotaSettings,
    ThrottleSettings,
    UsagePlan,
    UsagePlans,
    usage_counter_key,
)
from tests.clock import ManualClock as Clock
from tests.conftest import closed_port
from tests.flaky_store import FlakyStore

API_ID = "a1b2c3d4e5"
TITLE = "Shop API"
FORBIDDEN = b'{"message":"Forbidden"}'
LIMIT_EXCEEDED = b'{"message":"Limit Exceeded"}'
HAS_REDIS = importlib.util.find_spec("portway.state.redis") is not None

# Noon UTC two days ahead of the real date: Redis expires counters by its own clock, so the test's time
# must not lie in the past; quota windows still come out on whole days.
TODAY = datetime.now(UTC).date() + timedelta(days=2)
NOON = datetime.combine(TODAY, time(12), tzinfo=UTC).timestamp()
NEXT_MIDNIGHT = datetime.combine(TODAY + timedelta(days=1), time(), tzinfo=UTC).timestamp()


@pytest.fixture(params=["memory", *(["redis"] if HAS_REDIS else [])])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from portway.state.redis import RedisStore

    redis = RedisStore.from_url("redis://127.0.0.1:6379/0", namespace=f"test-api-key-{uuid.uuid4().hex}")
    try:
        yield redis
    finally:
        await redis.clear()
        await redis.close()


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def context(
    headers: list[tuple[bytes, bytes]] | None = None, method: str = "GET", resource: str = "/items/{id}"
) -> RequestContext:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/dev/items/1",
        "raw_path": b"/dev/items/1",
        "query_string": b"",
        "root_path": "",
        "headers": headers or [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
    }
    return RequestContext(scope, _receive, "/items/1", "dev", resource, {"id": "1"}, {})


def with_key(value: str, name: bytes = b"x-api-key") -> RequestContext:
    return context([(b"host", b"localhost"), (name, value.encode())])


def stage(
    store: Store,
    clock: Clock,
    *,
    method: str = "GET",
    resource: str = "/items/{id}",
    stage_name: str = "dev",
    table: ResponseTable = REST_RESPONSES,
    source: ApiKeySource = ApiKeySource.HEADER,
    keys: KeyCache | None = None,
) -> ApiKeyStage:
    return ApiKeyStage(
        API_ID, TITLE, stage_name, method, resource, table, store, clock, source=source, keys=keys
    )


def assert_forbidden(response: Response | None) -> None:
    assert response is not None
    assert (response.status, response.body) == (403, FORBIDDEN)
    assert dict(response.headers)[b"content-type"] == b"application/json"
    assert dict(response.headers)[b"x-amzn-errortype"] == b"ForbiddenException"


def assert_limit_exceeded(response: Response | None) -> None:
    assert response is not None
    assert (response.status, response.body) == (429, LIMIT_EXCEEDED)
    assert dict(response.headers)[b"x-amzn-errortype"] == b"LimitExceededException"


async def make_plan(
    plans: UsagePlans,
    *,
    api: str = TITLE,
    stage_name: str = "dev",
    throttle: ThrottleSettings | None = None,
    quota: QuotaSettings | None = None,
    method_throttle: dict[str, ThrottleSettings] | None = None,
) -> UsagePlan:
    return await plans.create_plan(
        name="plan",
        api_stages=[ApiStage(api, stage_name, method_throttle or {})],
        throttle=throttle,
        quota=quota,
    )


# ------------------------------------------------------------------------------------------- refusals


async def test_a_missing_or_empty_key_is_forbidden(store: Store) -> None:
    clock = Clock(NOON)
    assert_forbidden(await stage(store, clock).on_request(context()))
    assert_forbidden(await stage(store, clock).on_request(with_key("")))
    assert_forbidden(await stage(store, clock).on_request(with_key("   ")))


async def test_an_unknown_key_is_forbidden(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    await plans.create_key(plan_ids=[(await make_plan(plans)).id])
    ctx = with_key("NoSuchKey0123456789abcdef")
    assert_forbidden(await stage(store, clock).on_request(ctx))
    assert (ctx.api_key, ctx.api_key_id, ctx.usage_buckets) == (None, None, ())


async def test_a_disabled_key_is_forbidden(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    created = await plans.create_key(enabled=False, plan_ids=[(await make_plan(plans)).id])
    assert_forbidden(await stage(store, clock).on_request(with_key(created.value)))


async def test_a_key_in_no_plan_for_this_api_stage_is_forbidden(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    alone = await plans.create_key()
    assert_forbidden(await stage(store, clock).on_request(with_key(alone.value)))
    elsewhere = await plans.create_key(
        plan_ids=[(await make_plan(plans, stage_name="prod")).id, (await make_plan(plans, api="Other")).id]
    )
    assert_forbidden(await stage(store, clock).on_request(with_key(elsewhere.value)))
    assert (await stage(store, clock, stage_name="prod").on_request(with_key(elsewhere.value))) is None


async def test_http_apis_answer_without_an_error_type_header(store: Store) -> None:
    response = await stage(store, Clock(NOON), table=HTTP_RESPONSES).on_request(context())
    assert response is not None
    assert (response.status, response.body) == (403, FORBIDDEN)
    assert b"x-amzn-errortype" not in dict(response.headers)


# ---------------------------------------------------------------------------------------------- success


@pytest.mark.parametrize("header", [b"x-api-key", b"X-API-Key", b"X-Api-Key", b"X-API-KEY"])
async def test_the_header_name_is_matched_in_any_case(store: Store, header: bytes) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    created = await plans.create_key(plan_ids=[(await make_plan(plans)).id])
    ctx = with_key(created.value, header)
    assert await stage(store, clock).on_request(ctx) is None
    assert ctx.api_key_id == created.key.id


async def test_an_accepted_key_tells_later_stages_who_called_and_their_buckets(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    plan = await make_plan(
        plans,
        api=API_ID,  # named by id this time
        throttle=ThrottleSettings(10.0, 20),
        method_throttle={"/items/{id}/GET": ThrottleSettings(1.5, 3)},
    )
    alice = await plans.create_key(plan_ids=[plan.id])
    bob = await plans.create_key(plan_ids=[plan.id])
    ctx = with_key(alice.value)
    assert await stage(store, clock).on_request(ctx) is None
    assert (ctx.api_key, ctx.api_key_id) == (alice.value, alice.key.id)
    plan_bucket = f"plan:{plan.id}:{alice.key.id}"
    assert ctx.usage_buckets == (
        Bucket(plan_bucket, 10.0, 20),
        Bucket(f"{plan_bucket}:{API_ID}:dev:/items/{{id}}/GET", 1.5, 3),
    )
    post = with_key(alice.value)
    assert await stage(store, clock, method="POST").on_request(post) is None
    assert post.usage_buckets == (Bucket(plan_bucket, 10.0, 20),)  # no throttle of its own for POST
    other = with_key(bob.value)
    assert await stage(store, clock).on_request(other) is None
    assert other.usage_buckets[0] == Bucket(f"plan:{plan.id}:{bob.key.id}", 10.0, 20)  # per key


async def test_a_plan_without_throttle_gives_no_buckets(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    created = await plans.create_key(plan_ids=[(await make_plan(plans)).id])
    ctx = with_key(created.value)
    assert await stage(store, clock).on_request(ctx) is None
    assert ctx.usage_buckets == ()


async def test_the_authorizer_source_reads_the_key_an_authorizer_left(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    created = await plans.create_key(plan_ids=[(await make_plan(plans)).id])
    authorizer = stage(store, clock, source=ApiKeySource.AUTHORIZER)
    ctx = context()
    ctx.api_key = created.value  # the usageIdentifierKey
    assert await authorizer.on_request(ctx) is None
    assert ctx.api_key_id == created.key.id
    assert_forbidden(await authorizer.on_request(with_key(created.value)))  # the header is not read


# ------------------------------------------------------------------------------------------------ quotas


async def test_over_the_quota_is_429_and_the_refused_request_is_not_counted(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    plan = await make_plan(plans, quota=QuotaSettings(3, Period.DAY))
    created = await plans.create_key(plan_ids=[plan.id])
    api_key = stage(store, clock)
    for _ in range(3):
        assert await api_key.on_request(with_key(created.value)) is None
    for _ in range(2):
        refused = with_key(created.value)
        assert_limit_exceeded(await api_key.on_request(refused))
        assert refused.api_key_id is None
    assert await store.counter(usage_counter_key(plan.id, created.key.id, TODAY), NOON) == 3
    usage = await plans.usage(created.key.id, TODAY, TODAY)
    assert usage.to_get_usage()["items"] == {created.key.id: [[3, 0]]}
    clock.now = NEXT_MIDNIGHT - 0.001
    assert_limit_exceeded(await api_key.on_request(with_key(created.value)))
    clock.now = NEXT_MIDNIGHT  # a new day, a new quota
    assert await api_key.on_request(with_key(created.value)) is None
    usage = await plans.usage(created.key.id, TODAY, TODAY + timedelta(days=1))
    assert usage.to_get_usage()["items"] == {created.key.id: [[3, 0], [1, 2]]}


async def test_a_weekly_quota_rolls_over_on_sunday(store: Store) -> None:
    saturday = TODAY + timedelta(days=(5 - TODAY.weekday()) % 7)  # weekday(): Saturday is 5
    sunday = saturday + timedelta(days=1)
    late_saturday = datetime.combine(saturday, time(23, 59, 59), tzinfo=UTC).timestamp()
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    plan = await make_plan(plans, quota=QuotaSettings(2, Period.WEEK))
    created = await plans.create_key(plan_ids=[plan.id])
    api_key = stage(store, clock)
    clock.now = late_saturday
    assert [await api_key.on_request(with_key(created.value)) for _ in range(2)] == [None, None]
    assert_limit_exceeded(await api_key.on_request(with_key(created.value)))
    clock.now = datetime.combine(sunday, time(), tzinfo=UTC).timestamp()
    assert await api_key.on_request(with_key(created.value)) is None
    usage = await plans.usage(created.key.id, saturday, sunday)
    assert usage.to_get_usage()["items"] == {created.key.id: [[2, 0], [1, 1]]}


async def test_the_quota_is_shared_by_every_stage_of_the_plan(store: Store) -> None:
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    plan = await plans.create_plan(
        name="two stages",
        api_stages=[ApiStage(TITLE, "dev"), ApiStage(TITLE, "prod")],
        quota=QuotaSettings(2, Period.MONTH),
    )
    created = await plans.create_key(plan_ids=[plan.id])
    assert await stage(store, clock).on_request(with_key(created.value)) is None
    assert await stage(store, clock, stage_name="prod").on_request(with_key(created.value)) is None
    assert_limit_exceeded(await stage(store, clock).on_request(with_key(created.value)))
    assert_limit_exceeded(await stage(store, clock, stage_name="prod").on_request(with_key(created.value)))


# ------------------------------------------------------------------------------------------ store down


async def test_while_the_store_is_down_known_keys_pass_uncounted_and_unknown_ones_do_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    plan = await make_plan(plans, quota=QuotaSettings(1, Period.DAY), throttle=ThrottleSettings(5.0, 5))
    created = await plans.create_key(plan_ids=[plan.id])
    disabled = await plans.create_key(plan_ids=[plan.id], enabled=False)
    api_key = stage(store, clock)
    assert await api_key.on_request(with_key(created.value)) is None
    assert_forbidden(await api_key.on_request(with_key(disabled.value)))
    store.down = True
    caplog.set_level(logging.WARNING, logger="portway.usage_plans")
    for _ in range(3):
        clock.now += 10  # past the key cache's TTL: every lookup tries the store, and fails
        ctx = with_key(created.value)
        assert await api_key.on_request(ctx) is None  # over the quota of 1, but it cannot be counted
        assert ctx.api_key_id == created.key.id
        assert ctx.usage_buckets == (Bucket(f"plan:{plan.id}:{created.key.id}", 5.0, 5),)
        assert_forbidden(await api_key.on_request(with_key(disabled.value)))  # last known: disabled
        assert_forbidden(await api_key.on_request(with_key("NeverSeen0123456789abcdef")))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2, errors  # once for keys, once for quotas
    assert any(m.startswith("quotas: state store unavailable") for m in errors)
    store.down = False
    clock.now += 10
    assert_limit_exceeded(await api_key.on_request(with_key(created.value)))  # counting again
    assert api_key.quota_outage.down_since is None


async def test_an_unreachable_redis_is_403_for_an_unseen_key_not_a_500() -> None:
    if not HAS_REDIS:
        pytest.skip("no Redis store")
    from portway.state.redis import RedisStore

    store = RedisStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", namespace="test-api-key-down")
    try:
        assert_forbidden(await stage(store, Clock(NOON)).on_request(with_key("Unseen0123456789abcdefgh")))
    finally:
        await store.close()


async def test_one_key_cache_serves_every_route() -> None:
    store = FlakyStore()
    clock = Clock(NOON)
    plans = UsagePlans(store, clock=clock)
    created = await plans.create_key(plan_ids=[(await make_plan(plans)).id])
    keys = KeyCache(store, clock=clock)
    routes = [stage(store, clock, method=m, keys=keys) for m in ("GET", "POST", "DELETE")]
    store.calls.clear()
    for route in routes:
        assert await route.on_request(with_key(created.value)) is None
    assert store.calls["get_record:apikey-sha256"] == 1


def test_stage_shape() -> None:
    api_key = stage(MemoryStore(), Clock(NOON))
    assert (api_key.name, api_key.needs_body) == ("api_key", False)
    assert ApiKeySource("AUTHORIZER") is ApiKeySource.AUTHORIZER
