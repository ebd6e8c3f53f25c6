"""Third-party fidelity: real Lambda web frameworks behind Portway answer as they do on API Gateway.

A FastAPI app wrapped with Mangum behind a ``/{proxy+}`` Lambda proxy route must answer exactly as the same
app served directly by uvicorn; an aws-lambda-powertools ``APIGatewayRestResolver`` app must see the path
parameters and query strings API Gateway would give it.
"""

from __future__ import annotations

import base64
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import RunningApp, RunningGateway, run_asgi, start_gateway

FIDELITY = Path(__file__).parent / "fidelity"

# Headers that legitimately differ between uvicorn and the gateway: per-connection or per-server ones, and
# the ones API Gateway adds (x-amzn-RequestId, x-amz-apigw-id, apigw-requestid, x-amzn-Remapped-*, ...).
_UNCOMPARED = frozenset({"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding"})
_UNCOMPARED_PREFIXES = ("x-amzn-", "x-amz-", "apigw-")


def _load_module(name: str, path: Path) -> ModuleType:
    """Import a handler module from its file, under a name that cannot clash with the worker's copy."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the models' annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fastapi_module() -> Iterator[ModuleType]:
    name = "portway_fidelity_fastapi_app"
    yield _load_module(name, FIDELITY / "fastapi_app.py")
    sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def direct_app(fastapi_module: ModuleType) -> Iterator[RunningApp]:
    app = run_asgi(fastapi_module.app)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(FIDELITY / "fidelity_api.yaml", FIDELITY / "functions.yaml")
    yield gateway
    gateway.stop()


@pytest.fixture
def direct(direct_app: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=direct_app.url, timeout=10) as c:
        yield c


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[httpx.Client]:
    # The first call of each function starts a worker that imports FastAPI or Powertools: allow for it.
    with httpx.Client(base_url=gw.base, timeout=30) as c:
        yield c


def _compared_headers(response: httpx.Response) -> list[tuple[str, str]]:
    pairs = [(name.lower(), value) for name, value in response.headers.multi_items()]
    return sorted(
        (name, value)
        for name, value in pairs
        if name not in _UNCOMPARED and not name.startswith(_UNCOMPARED_PREFIXES)
    )


def _assert_same(direct: httpx.Response, proxied: httpx.Response) -> None:
    """The gateway's answer is the app's own answer: status, body bytes, content type, other headers."""
    assert proxied.status_code == direct.status_code, proxied.text
    assert proxied.content == direct.content
    assert proxied.headers.get("content-type") == direct.headers.get("content-type")
    assert _compared_headers(proxied) == _compared_headers(direct)
    assert int(proxied.headers["content-length"]) == len(proxied.content)


def _json(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    data: dict[str, Any] = response.json()
    return data


# --- FastAPI + Mangum behind /{proxy+} ---------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/items?tag=a&tag=b",
        "/items",
        "/items?other=1&tag=z",
        "/items?tag=hello%20world&tag=a%2Bb&tag=x+y&tag=&tag=caf%C3%A9",
        "/items?tag=a%26b&tag=c%3Dd&tag",
        "/items/1",
    ],
)
def test_fastapi_get_answers_as_directly(client: httpx.Client, direct: httpx.Client, target: str) -> None:
    _assert_same(direct.get(target), client.get(target))


def test_fastapi_repeated_query_parameters_all_reach_the_app(
    client: httpx.Client, direct: httpx.Client
) -> None:
    proxied = client.get("/items", params=[("tag", "a"), ("tag", "b"), ("tag", "a")])
    _assert_same(direct.get("/items", params=[("tag", "a"), ("tag", "b"), ("tag", "a")]), proxied)
    assert proxied.json() == ["a", "b", "a"]
    assert proxied.headers["x-tag-count"] == "3"


def test_fastapi_root_resource(client: httpx.Client, direct: httpx.Client) -> None:
    proxied = client.get("/")
    _assert_same(direct.get("/"), proxied)
    assert proxied.json() == {"service": "fastapi"}


def test_fastapi_json_post_answers_as_directly(client: httpx.Client, direct: httpx.Client) -> None:
    item = {"name": "théière ☕", "price": 12.5, "tags": ["kitchen", "tea"]}
    proxied = client.post("/items", json=item)
    _assert_same(direct.post("/items", json=item), proxied)
    assert proxied.status_code == 201
    assert proxied.json() == {"created": item, "id": "2"}


def test_fastapi_invalid_json_post_is_the_apps_422(client: httpx.Client, direct: httpx.Client) -> None:
    body = b'{"name": "teapot"}'
    headers = {"Content-Type": "application/json"}
    proxied = client.post("/items", content=body, headers=headers)
    _assert_same(direct.post("/items", content=body, headers=headers), proxied)
    assert proxied.status_code == 422


def test_fastapi_binary_response_answers_as_directly(
    client: httpx.Client, direct: httpx.Client, fastapi_module: ModuleType
) -> None:
    headers = {"Accept": "image/png"}
    proxied = client.get("/image", headers=headers)
    _assert_same(direct.get("/image", headers=headers), proxied)
    assert proxied.content == fastapi_module.PNG
    assert proxied.headers["content-type"] == "image/png"
    assert proxied.headers["cache-control"] == "max-age=60"


def test_fastapi_binary_response_stays_base64_when_accept_is_not_binary(
    client: httpx.Client, direct: httpx.Client
) -> None:
    """API Gateway decodes only when the first Accept type is a binary media type; else the client gets
    the base64 text Mangum returned."""
    headers = {"Accept": "application/json, image/png"}
    proxied = client.get("/image", headers=headers)
    original = direct.get("/image", headers=headers)
    assert proxied.status_code == 200
    assert proxied.headers["content-type"] == "image/png"
    assert proxied.content == base64.b64encode(original.content)


@pytest.mark.parametrize("target", ["/items/999", "/items/a%20b", "/nothing/here"])
def test_fastapi_404_answers_as_directly(client: httpx.Client, direct: httpx.Client, target: str) -> None:
    proxied = client.get(target)
    _assert_same(direct.get(target), proxied)
    assert proxied.status_code == 404
    assert "detail" in proxied.json()


def test_fastapi_404_names_the_decoded_path_parameter(client: httpx.Client) -> None:
    assert client.get("/items/a%20b").json() == {"detail": "item 'a b' not found"}


def test_fastapi_405_with_allow_header_answers_as_directly(
    client: httpx.Client, direct: httpx.Client
) -> None:
    proxied = client.delete("/items")
    _assert_same(direct.delete("/items"), proxied)
    assert proxied.status_code == 405
    assert "allow" in proxied.headers


# --- aws-lambda-powertools APIGatewayRestResolver ----------------------------------------------------


def test_powertools_path_parameter(client: httpx.Client) -> None:
    assert _json(client.get("/orders/o-42")) == {
        "order_id": "o-42",
        "resource": "/orders/{order_id}",
        "pathParameters": {"order_id": "o-42"},
        "expand": None,
        "fields": [],
        "queryStringParameters": {},
        "multiValueQueryStringParameters": {},
    }


def test_powertools_single_and_repeated_query_strings(client: httpx.Client) -> None:
    data = _json(client.get("/orders/o-42?expand=lines&field=a&field=b&note=hello%20world&plus=a+b"))
    assert data["order_id"] == "o-42"
    assert data["expand"] == "lines"
    assert data["fields"] == ["a", "b"]
    assert data["queryStringParameters"] == {
        "expand": "lines",
        "field": "b",
        "note": "hello world",
        "plus": "a b",
    }
    assert data["multiValueQueryStringParameters"] == {
        "expand": ["lines"],
        "field": ["a", "b"],
        "note": ["hello world"],
        "plus": ["a b"],
    }


def test_powertools_repeated_single_value_is_the_last(client: httpx.Client) -> None:
    data = _json(client.get("/orders/o-1", params=[("expand", "x"), ("expand", "y")]))
    assert data["expand"] == "y"
    assert data["multiValueQueryStringParameters"] == {"expand": ["x", "y"]}


def test_powertools_two_path_parameters(client: httpx.Client) -> None:
    data = _json(client.get("/orders/o-7/lines/3", params={"field": "qty"}))
    assert data == {
        "order_id": "o-7",
        "line_id": "3",
        "resource": "/orders/{order_id}/lines/{line_id}",
        "pathParameters": {"order_id": "o-7", "line_id": "3"},
        "expand": None,
        "fields": ["qty"],
        "queryStringParameters": {"field": "qty"},
        "multiValueQueryStringParameters": {"field": ["qty"]},
    }


def test_powertools_static_route_with_repeated_query(client: httpx.Client) -> None:
    data = _json(client.get("/orders", params=[("status", "open"), ("status", "paid")]))
    assert data["status"] == ["open", "paid"]
    assert data["queryStringParameters"] == {"status": "paid"}


def test_powertools_unknown_route_is_its_404(client: httpx.Client) -> None:
    # /orders/{order_id}/{proxy+} reaches the resolver, which has no such route.
    response = client.get("/orders/o-42/refunds")
    assert _json(response, 404) == {"statusCode": 404, "message": "Not found"}


def test_powertools_unknown_method_is_its_404(client: httpx.Client) -> None:
    # ANY on /orders/{order_id} reaches the resolver, which routes only GET there.
    response = client.delete("/orders/o-42")
    assert _json(response, 404) == {"statusCode": 404, "message": "Not found"}
