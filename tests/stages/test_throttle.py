"""The throttle stage on its own: a driven clock, several buckets, a store that fails."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES
from portway.stages.throttle import Limit, ThrottleStage
from portway.state.memory import MemoryStore
from portway.state.store import Bucket
from tests.clock import ManualClock as Clock
from tests.flaky_store import FlakyStore


def context(usage: tuple[Bucket, ...] = ()) -> RequestContext:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": "GET", "path": "/dev/x", "headers": [], "query_string": b""}
    ctx = RequestContext(scope, receive, "/x", "dev", "/x", {}, {})
    ctx.usage_buckets = usage
    return ctx


async def test_refills_at_the_rate_and_caps_at_the_burst() -> None:
    clock = Clock()
    stage = ThrottleStage((Limit(2, 4).bucket("m"),), MemoryStore(), clock=clock)
    results = [await stage.on_request(context()) for _ in range(5)]
    assert [r is None for r in results] == [True, True, True, True, False]
    refused = results[-1]
    assert refused is not None
    assert refused.status == 429
    assert (b"retry-after", b"1") in refused.headers
    clock.now += 1.0  # two tokens back
    assert [await stage.on_request(context()) is None for _ in range(3)] == [True, True, False]
    clock.now += 100.0  # never more than the burst
    assert [await stage.on_request(context()) is None for _ in range(5)] == [True] * 4 + [False]


async def test_the_strictest_bucket_decides_and_a_refusal_takes_nothing() -> None:
    clock = Clock()
    store = MemoryStore()
    stage = ThrottleStage(
        (Limit(100, 100).bucket("account"), Limit(0.5, 1).bucket("method")), store, clock=clock
    )
    assert await stage.on_request(context()) is None
    assert await stage.on_request(context()) is not None
    admission = store.take_now([Bucket("account", 100, 100)], clock.now, cost=0)
    assert admission.remaining == (99,), "the refused request took no token from the account bucket"


async def test_usage_plan_buckets_join_the_route_buckets() -> None:
    clock = Clock()
    stage = ThrottleStage((Limit(100, 100).bucket("method"),), MemoryStore(), clock=clock)
    plan = (Bucket("plan:key1", 1, 1),)
    assert await stage.on_request(context(plan)) is None
    assert await stage.on_request(context(plan)) is not None
    assert await stage.on_request(context((Bucket("plan:key2", 1, 1),))) is None  # another key's bucket


async def test_a_zero_limit_refuses_everything_without_a_retry_after() -> None:
    stage = ThrottleStage((Limit(0, 0).bucket("m"),), MemoryStore(), table=HTTP_RESPONSES, clock=Clock())
    response = await stage.on_request(context())
    assert response is not None
    assert response.status == 429
    assert response.body == b'{"message":"Too Many Requests"}'
    assert response.headers == [(b"content-type", b"application/json")]  # HTTP APIs: no x-amzn-ErrorType


async def test_an_unreachable_store_fails_open_logging_once_then_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore(down=True)
    stage = ThrottleStage((Limit(1, 1).bucket("m"),), store, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="portway.throttle"):
        assert [await stage.on_request(context()) is None for _ in range(10)] == [True] * 10
        store.down = False
        assert await stage.on_request(context()) is None
        assert await stage.on_request(context()) is not None  # throttling again
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "unavailable" in messages[0]
    assert "back" in messages[1]
