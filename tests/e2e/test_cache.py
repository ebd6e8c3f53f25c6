"""The response cache over real sockets: hits that never reach the handler, cache key parameters, TTLs,
`Cache-Control: max-age=0` under each strategy, and one cache shared by two gateways through Redis.

The `counter` handler answers how many times its worker has been called: a cached answer repeats a count.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from portway.config.compile import cache_prefix
from tests.conftest import GatewayFactory, RunningGateway

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"

REFRESH = {"cache-control": "max-age=0"}
WARNING = "199 Cache-control headers were ignored because the caller was unauthorized."
FORBIDDEN = b'{"message":"Forbidden"}'


def echoed(calls: int, path: str = "/echo/1", query: dict[str, str] | None = None) -> bytes:
    """The `counter` handler's body, byte for byte."""
    return json.dumps({"calls": calls, "path": path, "query": query}).encode()


def calls(response: httpx.Response) -> int:
    assert response.status_code == 200, response.content
    count: Any = response.json()["calls"]
    assert isinstance(count, int)
    return count


def test_a_miss_then_hits_that_do_not_call_the_handler(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="cached")
    with httpx.Client(base_url=gw.base) as client:
        answers = [client.get("/echo/1", params={"type": "a"}) for _ in range(3)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.content == echoed(1, query={"type": "a"})
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["content-length"] == str(len(answer.content))
        # API Gateway tells no hit from a miss in the response; neither does Portway.
        assert not {"warning", "age", "x-cache", "content-encoding"} & set(answer.headers)
    # Every answer is this request's own, hit or not.
    assert len({answer.headers["x-amzn-requestid"] for answer in answers}) == 3
    assert len({answer.headers["x-amz-apigw-id"] for answer in answers}) == 3


def test_entries_are_keyed_by_the_cache_key_parameters_only(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="cached")
    with httpx.Client(base_url=gw.base) as client:
        first = client.get("/echo/1?type=a")
        other_id = client.get("/echo/2?type=a")  # method.request.path.id is a key parameter
        other_type = client.get("/echo/1?type=b")  # and so is method.request.querystring.type
        no_type = client.get("/echo/1")
        unlisted = client.get("/echo/1?type=a&colour=red")  # not a key parameter: the first entry
        again = [client.get(path) for path in ("/echo/2?type=a", "/echo/1?type=b", "/echo/1")]
    assert first.content == echoed(1, query={"type": "a"})
    assert other_id.content == echoed(2, "/echo/2", {"type": "a"})
    assert other_type.content == echoed(3, query={"type": "b"})
    assert no_type.content == echoed(4)
    # The entry's body is the first request's: the handler never saw `colour`.
    assert unlisted.status_code == 200
    assert unlisted.content == first.content
    assert [a.content for a in again] == [other_id.content, other_type.content, no_type.content]


def test_a_post_whose_method_setting_disables_caching_always_reaches_the_handler(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="cached")
    with httpx.Client(base_url=gw.base) as client:
        cached = client.get("/echo/1")
        posts = [calls(client.post("/echo/1", content=b"{}")) for _ in range(3)]
        still_cached = client.get("/echo/1")
    assert calls(cached) == 1
    assert posts == [2, 3, 4]
    assert still_cached.content == cached.content  # a POST does not touch the GET's entry


def test_an_entry_expires_after_its_ttl(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="shortlived")  # cacheTtlInSeconds: 1
    with httpx.Client(base_url=gw.base) as client:
        fresh = [calls(client.get("/echo/1")) for _ in range(2)]
        time.sleep(1.1)
        expired = [calls(client.get("/echo/1")) for _ in range(2)]
    assert fresh == [1, 1]
    assert expired == [2, 2]  # fetched again, then cached again


def test_max_age_0_refreshes_the_entry_when_no_authorization_is_required(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="refreshable")  # requireAuthorizationForCacheControl: false
    with httpx.Client(base_url=gw.base) as client:
        primed = client.get("/echo/1")
        refreshed = client.get("/echo/1", headers=REFRESH)
        after = client.get("/echo/1")
        other_directives = [
            client.get("/echo/1", headers={"cache-control": value}) for value in ("no-cache", "max-age=60")
        ]
        mixed = client.get("/echo/1", headers={"cache-control": "no-store, Max-Age=0"})
    assert primed.content == echoed(1)
    assert refreshed.status_code == 200
    assert refreshed.content == echoed(2)
    assert "warning" not in refreshed.headers
    assert after.content == echoed(2)  # the entry was replaced
    # Only max-age=0 asks for a fresh answer (as API Gateway documents it).
    assert [a.content for a in other_directives] == [echoed(2), echoed(2)]
    assert mixed.content == echoed(3)


@pytest.mark.parametrize(
    ("stage", "strategy"),
    [
        ("strict", "FAIL_WITH_403"),
        ("warned", "SUCCEED_WITH_RESPONSE_HEADER"),
        ("silent", "SUCCEED_WITHOUT_RESPONSE_HEADER"),
        ("cached", "SUCCEED_WITH_RESPONSE_HEADER"),  # API Gateway's defaults: authorization required
    ],
)
def test_an_unauthorized_max_age_0_follows_the_strategy(
    gateway_factory: GatewayFactory, stage: str, strategy: str
) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage=stage)
    with httpx.Client(base_url=gw.base) as client:
        primed = client.get("/echo/1")
        on_hit = client.get("/echo/1", headers=REFRESH)
        on_miss = client.get("/echo/2", headers=REFRESH)  # nothing cached for it yet
        after_hit = client.get("/echo/1")
        after_miss = client.get("/echo/2")
    assert primed.content == echoed(1)
    # Whatever the strategy, the entry is not refreshed and plain requests are answered from it, unmarked.
    assert after_hit.content == echoed(1)
    assert "warning" not in after_hit.headers
    if strategy == "FAIL_WITH_403":
        for refused in (on_hit, on_miss):
            assert refused.status_code == 403
            assert refused.content == FORBIDDEN
            assert refused.headers["content-type"] == "application/json"
            assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
            assert refused.headers["x-amzn-requestid"]
        assert after_miss.content == echoed(2, "/echo/2")  # the refused request stored nothing
        return
    assert on_hit.status_code == 200
    assert on_hit.content == echoed(1)  # from the cache: the handler was not called
    assert on_miss.content == echoed(2, "/echo/2")  # fetched, since nothing was cached
    assert after_miss.content == echoed(2, "/echo/2")  # and cached
    assert "warning" not in after_miss.headers  # the entry holds the answer, not the warning
    if strategy == "SUCCEED_WITH_RESPONSE_HEADER":
        assert on_hit.headers.get_list("warning") == [WARNING]
        assert on_miss.headers.get_list("warning") == [WARNING]
    else:
        assert "warning" not in on_hit.headers
        assert "warning" not in on_miss.headers


def _drop_entries(gw: RunningGateway) -> int:
    """Remove this API stage's cache entries from the gateway's store; how many there were."""
    assert gw.service.app is not None
    gateway = gw.gateway
    prefix = cache_prefix(gateway.api_info.api_id, gateway.stage)
    dropped = gw.call(gw.service.resources.store.cache_drop(prefix))
    assert isinstance(dropped, int)
    return dropped


def test_gateways_sharing_redis_share_the_cache(gateway_factory: GatewayFactory, redis_url: str) -> None:
    one = gateway_factory(API, FUNCTIONS, stage="cached", state=redis_url)
    two = gateway_factory(API, FUNCTIONS, stage="cached", state=redis_url)
    assert one.service.resources.store.name == "redis"
    assert one.service.app is not None
    assert two.service.app is not None
    assert one.gateway.api_info == two.gateway.api_info  # same API: same keys
    _drop_entries(one)  # entries an earlier run left (Redis keeps them for their TTL)
    tag = {"type": uuid.uuid4().hex}  # a key parameter: this run's keys are its own in any case
    try:
        with (
            httpx.Client(base_url=one.base, params=tag) as first,
            httpx.Client(base_url=two.base, params=tag) as second,
        ):
            miss = first.get("/echo/1")
            hit = first.get("/echo/1")
            primed = first.get("/echo/2")  # the first gateway's handler: its second call
            shared = second.get("/echo/2")  # the second gateway's first request: a hit
            own = second.get("/echo/3")  # a miss: the second gateway's handler, its first call
            back = first.get("/echo/3")  # the first gateway answered from the second one's entry
            unlisted = second.get("/echo/1", params={**tag, "colour": "red"})
    finally:
        dropped = _drop_entries(one)
    assert miss.content == hit.content == unlisted.content == echoed(1, query=tag)
    assert primed.content == shared.content == echoed(2, "/echo/2", tag)  # the second handler would say 1
    assert own.content == back.content == echoed(1, "/echo/3", tag)  # the first handler would say 3
    assert shared.headers["x-amzn-requestid"] != primed.headers["x-amzn-requestid"]
    assert dropped == 3  # the three entries were in Redis
