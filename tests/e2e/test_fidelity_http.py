"""Third-party fidelity on an HTTP API (payload 2.0): FastAPI + Mangum on the $default route answers as the
app does directly; aws-lambda-powertools' APIGatewayHttpResolver sees path and query parameters as on AWS."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningGateway, start_gateway
from tests.e2e.test_fidelity import FIDELITY, _assert_same, _json, direct, direct_app, fastapi_module

__all__ = ["direct", "direct_app", "fastapi_module"]  # fixtures shared with the REST fidelity tests


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(FIDELITY / "http_api.yaml", FIDELITY / "functions.yaml", stage=None)
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base, timeout=30) as c:
        yield c


@pytest.mark.parametrize(
    "target",
    ["/", "/items?tag=a&tag=b", "/items?tag=hello%20world&tag=a%2Bb&tag=caf%C3%A9", "/items/1", "/nope"],
)
def test_fastapi_answers_as_directly(client: httpx.Client, direct: httpx.Client, target: str) -> None:
    _assert_same(direct.get(target), client.get(target))


def test_fastapi_json_post(client: httpx.Client, direct: httpx.Client) -> None:
    payload = {"name": "lamp", "price": 9.5, "tags": ["a", "é"]}
    _assert_same(direct.post("/items", json=payload), client.post("/items", json=payload))


def test_fastapi_binary_response(client: httpx.Client, direct: httpx.Client) -> None:
    _assert_same(direct.get("/image"), client.get("/image"))


def test_fastapi_binary_request_body(client: httpx.Client, direct: httpx.Client) -> None:
    raw = bytes(range(256)) * 10
    headers = {"Content-Type": "application/octet-stream"}
    proxied = _json(client.post("/upload", content=raw, headers=headers))
    assert proxied == {"length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    _assert_same(
        direct.post("/upload", content=raw, headers=headers),
        client.post("/upload", content=raw, headers=headers),
    )


def test_fastapi_cookies_both_ways(client: httpx.Client, direct: httpx.Client) -> None:
    sent = {"Cookie": "c1=v1; c2=v2"}
    proxied = client.get("/cookies", headers=sent)
    _assert_same(direct.get("/cookies", headers=sent), proxied)
    assert proxied.json() == {"c1": "v1", "c2": "v2"}
    assert len(proxied.headers.get_list("set-cookie")) == 2


def test_repeated_headers_reach_the_app_joined_with_commas(client: httpx.Client) -> None:
    # Payload 2.0 has no multi-value maps: API Gateway joins repeated headers, so the app sees one value.
    values: list[str] = client.get("/headers", headers=[("X-Multi", "1"), ("X-Multi", "2")]).json()
    assert values == ["1,2"]


def test_powertools_http_resolver_path_and_query(client: httpx.Client) -> None:
    data: dict[str, Any] = _json(client.get("/orders/o-7?tag=x&tag=y&single=1", headers={"Cookie": "a=1"}))
    assert data == {
        "order_id": "o-7",
        "path_parameters": {"order_id": "o-7"},
        "tag": "x,y",
        "query": {"tag": "x,y", "single": "1"},
        "cookies": ["a=1"],
        "route_key": "GET /orders/{order_id}",
    }


def test_powertools_http_resolver_json_body(client: httpx.Client) -> None:
    assert _json(client.post("/orders", json={"qty": 2})) == {"created": {"qty": 2}}
