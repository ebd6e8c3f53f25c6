"""Throttling over real sockets: method, stage-wide and account buckets, exact 429s, accuracy in real time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from portway.stages.throttle import Limit
from tests.conftest import GatewayFactory
from tests.e2e.load import hammer

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"

THROTTLED_BODY = b'{"message":"Too Many Requests"}'


def test_a_method_limit_admits_its_burst_then_answers_429(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="dev")
    with httpx.Client(base_url=gw.base) as client:
        statuses = [client.get("/limited").status_code for _ in range(3)]
        refused = client.get("/limited")
        other = [client.get("/open").status_code for _ in range(10)]  # no limit of its own
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.content == THROTTLED_BODY
    assert refused.headers["content-type"] == "application/json"
    assert refused.headers["x-amzn-errortype"] == "TooManyRequestsException"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-amzn-requestid"]
    assert other == [200] * 10


def test_stage_wide_limits_apply_to_each_method_on_its_own(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="stagewide")
    with httpx.Client(base_url=gw.base) as client:
        limited = [client.get("/limited").status_code for _ in range(3)]
        keyed = [client.get("/big").status_code for _ in range(3)]  # its own bucket, same limits
        opened = [client.get("/open").status_code for _ in range(20)]  # overridden: 1000/1000
    assert limited == [200, 200, 429]
    assert keyed == [200, 200, 429]
    assert opened == [200] * 20


def test_the_account_limit_covers_every_route(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="stagewide", account_limit=Limit(0.001, 3))
    with httpx.Client(base_url=gw.base) as client:
        statuses = [client.get(path).status_code for path in ("/open", "/big", "/open", "/big", "/open")]
    assert statuses == [200, 200, 200, 429, 429]


def test_account_throttle_off_leaves_routes_without_a_throttle_stage(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="dev", account_limit=None)
    assert gw.service.app is not None
    stages = {(r.method, r.resource): r.describe_stages() for r in gw.gateway.routes()}
    assert stages[("GET", "/open")] == "compress → integration"
    assert stages[("GET", "/limited")] == "throttle → compress → integration"


def test_the_admitted_rate_matches_the_configured_rate_in_real_time(gateway_factory: GatewayFactory) -> None:
    """50 requests/s with a burst of 5, driven well above that for 2 s: about 5 + 50 x 2 get through."""
    gw = gateway_factory(API, FUNCTIONS, stage="accurate", account_limit=None)

    ok, refused, elapsed = asyncio.run(hammer([gw.base], 2.0, per_node=8))
    expected = 5 + 50 * elapsed
    assert refused > ok, "the load must exceed the limit for the test to mean anything"
    assert abs(ok - expected) <= 0.05 * expected, (ok, expected, refused)
