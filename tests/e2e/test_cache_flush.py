"""`portway cache flush`: a shared Redis cache flushed directly, an in-process one through its process."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.cli_runner import portway
from tests.conftest import GatewayFactory
from tests.e2e.test_redis_nodes import node
from tests.redis_fixtures import private_redis

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"


def calls(url: str) -> int:
    response = httpx.get(url)
    assert response.status_code == 200
    count: int = response.json()["calls"]
    return count


def test_flushing_a_redis_cache(gateway_factory: GatewayFactory) -> None:
    with private_redis() as redis:
        gw = gateway_factory(API, FUNCTIONS, stage="cached", state=redis.url)
        url = f"{gw.base}/echo/1"
        first, cached = calls(url), calls(url)
        done = portway(
            *("cache", "flush", str(API), "--functions", str(FUNCTIONS), "--stage", "cached"),
            *("--state", redis.url),
        )
        after = calls(url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed 1 cached response(s) of Traffic API, stage cached"
    assert cached == first, "the second answer came from the cache"
    assert after == first + 1, "after the flush the integration answers again"


def test_flushing_the_cache_of_a_process_on_the_memory_store() -> None:
    with node("memory", "cached") as served:
        url = f"{served.base}/echo/2"
        first, cached = calls(url), calls(url)
        done = portway("cache", "flush", str(API), "--pid", str(served.pid))
        assert done.returncode == 0, done.stderr
        for _ in range(50):  # the signal is handled on the process's loop: give it a moment
            after = calls(url)
            if after != cached:
                break
            time.sleep(0.02)
    assert cached == first
    assert after == first + 1


def test_flush_refuses_the_memory_store_by_url() -> None:
    done = portway("cache", "flush", str(API), "--functions", str(FUNCTIONS), "--state", "memory")
    assert done.returncode == 1
    assert "--pid" in done.stderr
