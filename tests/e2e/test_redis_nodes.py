"""Several gateway nodes sharing one Redis, and a Redis that dies under a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from portway.state.redis import RedisStore
from portway.usage_plans import ApiStage, Period, QuotaSettings, UsagePlans
from tests.conftest import GatewayFactory
from tests.e2e.load import hammer
from tests.redis_fixtures import PrivateRedis, free_port, private_redis

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Node:
    base: str  # the stage's base URL
    pid: int


@contextlib.contextmanager
def node(state: str, stage: str) -> Iterator[Node]:
    """A `portway serve` process (a gateway node of its own) using ``state``."""
    port = free_port()
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "portway", "serve", str(API), "--functions", str(FUNCTIONS)),
            *("--stage", stage, "--port", str(port), "--state", state, "--account-throttle", "off"),
            *("--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "node did not start"
                time.sleep(0.05)
        yield Node(f"http://127.0.0.1:{port}/{stage}", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_two_nodes_over_one_redis_admit_the_configured_rate_together() -> None:
    """Stage `accurate`: 50 requests/s with a burst of 5. Two nodes together admit that, not twice it."""
    with (
        private_redis() as redis,
        node(redis.url, "accurate") as first,
        node(redis.url, "accurate") as second,
    ):
        for url in (first.base, second.base):  # both serve before the clock starts
            assert httpx.get(f"{url}/open").status_code == 200
        ok, refused, elapsed = asyncio.run(hammer([first.base, second.base], 3.0))
    expected = 5 + 50 * elapsed
    assert refused > ok
    assert abs(ok - expected) <= 0.05 * expected, (ok, expected, refused)


def test_a_redis_outage_fails_open_and_throttling_comes_back(gateway_factory: GatewayFactory) -> None:
    with private_redis() as redis:
        gw = gateway_factory(API, FUNCTIONS, stage="dev", state=redis.url, account_limit=None)
        url = f"{gw.base}/limited"  # 1 request/s, burst 3
        with httpx.Client(timeout=5) as client:
            assert [client.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
            redis.kill()
            started = time.monotonic()
            during = [client.get(url).status_code for _ in range(5)]
            outage_s = time.monotonic() - started
            redis.start()  # empty again: a full bucket
            after = [client.get(url).status_code for _ in range(4)]
    assert during == [200] * 5, "throttling fails open while the store is down"
    assert outage_s < 5, "each request waited at most the store's short timeout"
    assert after == [200, 200, 200, 429], "throttling is back without a restart"


def test_known_keys_keep_working_while_redis_is_down(gateway_factory: GatewayFactory) -> None:
    with private_redis() as redis:
        value = asyncio.run(_make_key(redis))
        gw = gateway_factory(API, FUNCTIONS, stage="dev", state=redis.url, keys_state=redis.url)
        with httpx.Client(base_url=gw.base, timeout=5) as client:
            assert client.get("/keyed", headers={"x-api-key": value}).status_code == 200
            redis.kill()
            during = client.get("/keyed", headers={"x-api-key": value})
            stranger = client.get("/keyed", headers={"x-api-key": "y" * 40})
            redis.start()
    assert during.status_code == 200, "the last known key and plan stand during the outage"
    assert stranger.status_code == 403
    assert stranger.content == b'{"message":"Forbidden"}'


async def _make_key(redis: PrivateRedis) -> str:
    store = RedisStore.from_url(redis.url)
    try:
        plans = UsagePlans(store)
        plan = await plans.create_plan(
            name="p",
            api_stages=[ApiStage(api="Traffic API", stage="dev")],
            quota=QuotaSettings(limit=1000, period=Period.DAY),
        )
        created = await plans.create_key(name="k", plan_ids=[plan.id])
        return created.value
    finally:
        await store.close()
