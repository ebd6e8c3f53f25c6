"""The example Product API served by a real gateway, exactly as the README's first command starts it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningGateway, start_gateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "products"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    # A copy, so the SQLite file the handler creates lands in a temporary folder.
    folder = tmp_path_factory.mktemp("products") / "products"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    gateway = start_gateway(folder / "openapi.yaml", folder / "functions.yaml")
    yield gateway
    gateway.stop()
    assert (folder / "products.db").is_file()


@pytest.fixture
def client(api: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base, timeout=10) as c:
        yield c


def test_list_filter_and_limit(client: httpx.Client) -> None:
    everything = client.get("/products")
    assert everything.status_code == 200
    assert everything.headers["content-type"] == "application/json"
    names = [p["name"] for p in everything.json()["items"]]
    assert names == sorted(names)
    kitchen = client.get("/products", params={"category": "kitchen"}).json()
    assert kitchen["count"] >= 2
    assert {p["category"] for p in kitchen["items"]} == {"kitchen"}
    assert client.get("/products", params={"limit": "1"}).json()["count"] == 1
    bad = client.get("/products", params={"limit": "500"})
    assert bad.status_code == 400
    assert "limit" in bad.json()["message"]


def test_create_read_replace_delete(client: httpx.Client) -> None:
    created = client.post("/products", json={"name": "Desk Lamp", "category": "home", "price": 39.9})
    assert created.status_code == 201
    product = created.json()
    assert created.headers["location"] == f"/products/{product['id']}"
    assert client.get(f"/products/{product['id']}").json() == product
    replaced = client.put(
        f"/products/{product['id']}", json={"name": "Lamp", "category": "home", "price": 35}
    )
    assert replaced.status_code == 200
    assert replaced.json()["name"] == "Lamp"
    deleted = client.delete(f"/products/{product['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = client.get(f"/products/{product['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"message": "Product not found"}


def test_a_body_against_the_model_is_the_validators_400(client: httpx.Client) -> None:
    response = client.post("/products", json={"name": "x", "category": "y", "price": -1})
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid request body"}
    assert response.headers["x-amzn-errortype"] == "BadRequestException"


def test_a_body_the_model_allows_but_the_handler_refuses_is_the_handlers_400(client: httpx.Client) -> None:
    response = client.post("/products", content=b"[]", headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert "message" in response.json()


def test_routes_the_api_does_not_have_are_api_gateways_403(client: httpx.Client) -> None:
    assert client.patch("/products/abc").status_code == 403
    assert client.get("/orders").json() == {"message": "Missing Authentication Token"}
