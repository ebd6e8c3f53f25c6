"""End to end over real sockets: an HTTP API (payload 2.0) defined by its OpenAPI export."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory, RunningGateway, closed_port, run_asgi, start_gateway
from tests.e2e.upstream import upstream_app

APP = Path(__file__).parent / "http_api"


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(APP / "openapi.yaml", APP / "functions.yaml", stage=None)
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base, timeout=10) as c:
        yield c


def _event(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    event: dict[str, Any] = response.json()["event"]
    return event


def test_default_stage_is_served_at_the_root(gw: RunningGateway) -> None:
    assert gw.base == gw.url


def test_payload_2_event(client: httpx.Client, gw: RunningGateway) -> None:
    response = client.get(
        "/items/a%20b?tag=x&tag=y&q=1",
        headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "c1=v1; c2=v2"), ("User-Agent", "t/1")],
    )
    event = _event(response)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/a b"
    assert event["rawQueryString"] == "tag=x&tag=y&q=1"
    assert event["queryStringParameters"] == {"tag": "x,y", "q": "1"}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "1,2"
    assert "cookie" not in event["headers"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    assert "stageVariables" not in event
    context = event["requestContext"]
    assert context["stage"] == "$default"
    assert context["routeKey"] == "GET /items/{id}"
    assert context["http"] == {
        "method": "GET",
        "path": "/items/a b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "t/1",
    }
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert context["domainName"] == f"127.0.0.1:{gw.port}"
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60
    assert "x-amzn-requestid" not in response.headers


def test_no_route_is_404_not_found(client: httpx.Client) -> None:
    # /{proxy+} takes every path below the root; the root itself has no route.
    response = client.get("/")
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}
    assert response.headers["apigw-requestid"]
    assert "x-amzn-errortype" not in response.headers


def test_a_method_the_specific_route_lacks_goes_to_a_greedy_route_that_has_it(client: httpx.Client) -> None:
    assert _event(client.get("/pets"))["routeKey"] == "GET /pets"
    event = _event(client.post("/pets", json={"name": "Rex"}))
    assert event["routeKey"] == "ANY /{proxy+}"
    assert event["pathParameters"] == {"proxy": "pets"}
    assert event["body"] == '{"name":"Rex"}'


def test_binary_request_body_is_base64(client: httpx.Client) -> None:
    raw = bytes(range(256))
    event = _event(client.put("/upload/x", content=raw, headers={"Content-Type": "application/octet-stream"}))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_payload_1_route_on_an_http_api(client: httpx.Client) -> None:
    event = _event(client.post("/v1/42?a=1", content=b"hi", headers={"Content-Type": "text/plain"}))
    assert event["resource"] == "/v1/{id}"
    assert event["httpMethod"] == "POST"
    assert event["multiValueQueryStringParameters"] == {"a": ["1"]}
    assert event["body"] == "hi"


def test_inferred_string_response(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "string"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text == "Hello from Lambda!"


def test_cookies_become_set_cookie_headers(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "cookies"})
    assert response.status_code == 201
    assert response.text == "with cookies"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-custom"] == "yes"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly", "c=3"]


def test_base64_response_is_decoded_whatever_the_accept_header(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "binary"}, headers={"Accept": "text/html"})
    assert response.content == bytes(range(256))
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize("kind", ["malformed", "raise"])
def test_malformed_or_failed_invocation_is_500(client: httpx.Client, kind: str) -> None:
    response = client.get("/shaped", params={"kind": kind})
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_integration_timeout_is_503(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("/shaped", params={"kind": "sleep"})
    assert response.status_code == 503
    assert response.json() == {"message": "Service Unavailable"}
    assert time.monotonic() - started < 1.5


def test_default_route_takes_what_no_other_route_does(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(APP / "default_route.yaml", APP / "functions.yaml", stage=None)
    with httpx.Client(base_url=gw.base, timeout=10) as client:
        assert _event(client.get("/only"))["routeKey"] == "GET /only"
        for method, path in (("POST", "/only"), ("GET", "/"), ("DELETE", "/any/where")):
            event = _event(client.request(method, path))
            assert event["routeKey"] == "$default"
            assert event["requestContext"]["routeKey"] == "$default"
            assert event["rawPath"] == path
            assert "pathParameters" not in event


def test_a_named_stage_is_served_under_its_name(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(APP / "openapi.yaml", APP / "functions.yaml", stage="prod")
    assert gw.base == f"{gw.url}/prod"
    event = _event(httpx.get(f"{gw.base}/items/7"))
    assert event["rawPath"] == "/prod/items/7"
    assert event["requestContext"]["stage"] == "prod"
    assert event["requestContext"]["http"]["path"] == "/prod/items/7"
    assert httpx.get(f"{gw.url}/items/7").status_code == 404


def test_a_payload_1_route_must_answer_in_the_1_0_format(client: httpx.Client) -> None:
    # The same handler answers a bare string: inferred on a 2.0 route, malformed (500) on a 1.0 one.
    assert client.get("/shaped", params={"kind": "string"}).status_code == 200
    response = client.get("/v1-shaped", params={"kind": "string"})
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_http_proxy_on_an_http_api(gateway_factory: GatewayFactory) -> None:
    upstream = run_asgi(upstream_app)
    try:
        gw = gateway_factory(
            APP / "proxy.yaml",
            stage=None,
            stage_variables={"upstreamPort": str(upstream.port), "closedPort": str(closed_port())},
        )
        with httpx.Client(base_url=gw.base, timeout=10) as client:
            seen = client.post("/up/a/b%20c?x=1&x=2", content=b"payload").json()
            assert seen["method"] == "POST"
            assert seen["raw_path"] == "/a/b%20c"
            assert seen["query"] == "x=1&x=2"
            assert seen["body"] == "payload"
            slow = client.get("/up/slow")
            assert slow.status_code == 503
            assert slow.json() == {"message": "Service Unavailable"}
            refused = client.get("/refused")
            assert refused.status_code == 500
            assert refused.json() == {"message": "Internal Server Error"}
    finally:
        upstream.stop()


def test_body_over_10_mb_is_413(client: httpx.Client) -> None:
    response = client.post("/pets", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json() == {"message": "Request Entity Too Large"}
