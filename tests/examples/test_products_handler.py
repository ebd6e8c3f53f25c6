"""Tests for the example Product API handler (examples/products/products.py).

The handler is called directly with API Gateway REST API (payload format 1.0) proxy events,
against a SQLite file in a temporary directory. The module is loaded fresh for every test
from its file, so no conftest or sys.path changes are needed.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import pytest
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "products"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:products"
INTEGRATION_URI = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{FUNCTION_ARN}/invocations"
SEEDED_NAMES = ["Chef's Knife", "Espresso Machine", "Trail Running Shoes", "Wireless Headphones"]


class ProductsModule(Protocol):
    MODULE_DIR: Path
    ROUTES: dict[str, dict[str, Any]]

    def handler(self, event: dict[str, Any], context: object) -> dict[str, Any]: ...

    def close_connection(self) -> None: ...

    def _db_path(self) -> Path: ...


class LambdaContext:
    """The attributes of a Lambda context object that handlers commonly read."""

    function_name = "products"
    function_version = "$LATEST"
    invoked_function_arn = FUNCTION_ARN
    memory_limit_in_mb = 256
    log_group_name = "/aws/lambda/products"
    log_stream_name = "2024/06/01/[$LATEST]0123456789abcdef"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def load_products_module(name: str = "portway_example_products") -> ProductsModule:
    spec = importlib.util.spec_from_file_location(name, EXAMPLE_DIR / "products.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast("ProductsModule", module)


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "products.db"
    monkeypatch.setenv("PRODUCTS_DB", str(path))
    return path


@pytest.fixture
def products(db_path: Path) -> Iterator[ProductsModule]:
    module = load_products_module()
    yield module
    module.close_connection()


def make_event(
    method: str,
    path: str,
    *,
    query: dict[str, str] | None = None,
    body: str | None = None,
    base64_body: bool = False,
    headers: dict[str, str] | None = None,
    stage: str = "dev",
) -> dict[str, Any]:
    """An API Gateway REST API Lambda proxy event (payload 1.0) for ``method path``."""
    segments = path.strip("/").split("/")
    if len(segments) == 2 and segments[0] == "products":
        resource = "/products/{id}"
        path_parameters: dict[str, str] | None = {"id": segments[1]}
    else:
        resource = path
        path_parameters = None
    all_headers = {
        "Accept": "application/json",
        "Host": "abc123defg.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    if body is not None:
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    request_id = str(uuid.uuid4())
    if base64_body and body is not None:
        body = base64.b64encode(body.encode("utf-8")).decode("ascii")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {key: [value] for key, value in all_headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": (
            None if query is None else {key: [value] for key, value in query.items()}
        ),
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "a1b2c3",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Xyz0AbCdIAMEbZw=",
            "requestTime": "01/Jun/2024:12:00:00 +0000",
            "path": f"/{stage}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "abc123defg",
            "requestTimeEpoch": 1717243200000,
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": "203.0.113.7",
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": "curl/8.5.0",
                "user": None,
            },
            "domainName": "abc123defg.execute-api.us-east-1.amazonaws.com",
            "apiId": "abc123defg",
        },
        "body": body,
        "isBase64Encoded": base64_body and body is not None,
    }


def call(products: ProductsModule, event: dict[str, Any]) -> dict[str, Any]:
    response = products.handler(event, LambdaContext())
    assert isinstance(response["statusCode"], int)
    assert isinstance(response["headers"], dict)
    assert isinstance(response["body"], str)
    return response


def json_body(response: dict[str, Any]) -> Any:
    assert response["headers"]["Content-Type"] == "application/json"
    return json.loads(response["body"])


def new_product(**overrides: object) -> str:
    data: dict[str, object] = {
        "name": "Desk Lamp",
        "category": "home",
        "price": 39.9,
        "description": "LED desk lamp with dimmer.",
    }
    data.update(overrides)
    return json.dumps(data)


def create(products: ProductsModule, **overrides: object) -> dict[str, Any]:
    response = call(products, make_event("POST", "/products", body=new_product(**overrides)))
    assert response["statusCode"] == 201, response["body"]
    product: dict[str, Any] = json_body(response)
    return product


# --------------------------------------------------------------------------- GET /products


def test_list_returns_seeded_products_ordered_by_name(products: ProductsModule, db_path: Path) -> None:
    response = call(products, make_event("GET", "/products"))

    assert response["statusCode"] == 200
    payload = json_body(response)
    assert [item["name"] for item in payload["items"]] == SEEDED_NAMES
    assert payload["count"] == len(SEEDED_NAMES)
    assert db_path.exists()
    for item in payload["items"]:
        assert set(item) == {"id", "name", "category", "price", "description", "createdAt", "updatedAt"}
        assert str(uuid.UUID(item["id"])) == item["id"]
        assert isinstance(item["price"], float)
        assert item["createdAt"].endswith("Z")


def test_list_filters_by_category_exactly(products: ProductsModule) -> None:
    create(products, name="Apron", category="kitchen", price=12)
    create(products, name="Kettle", category="Kitchen", price=30)

    payload = json_body(call(products, make_event("GET", "/products", query={"category": "kitchen"})))

    assert [item["name"] for item in payload["items"]] == ["Apron", "Chef's Knife", "Espresso Machine"]
    assert payload["count"] == 3
    assert {item["category"] for item in payload["items"]} == {"kitchen"}


def test_list_unknown_category_is_empty(products: ProductsModule) -> None:
    response = call(products, make_event("GET", "/products", query={"category": "garden"}))

    assert response["statusCode"] == 200
    assert json_body(response) == {"items": [], "count": 0}


def test_list_limit(products: ProductsModule) -> None:
    payload = json_body(call(products, make_event("GET", "/products", query={"limit": "2"})))
    assert [item["name"] for item in payload["items"]] == SEEDED_NAMES[:2]
    assert payload["count"] == 2

    payload = json_body(
        call(products, make_event("GET", "/products", query={"category": "kitchen", "limit": "1"}))
    )
    assert [item["name"] for item in payload["items"]] == ["Chef's Knife"]


def test_list_limit_defaults_to_20_and_allows_100(products: ProductsModule) -> None:
    for index in range(30):
        create(products, name=f"Item {index:02d}", category="bulk", price=index)

    default = json_body(call(products, make_event("GET", "/products", query={"category": "bulk"})))
    assert default["count"] == 20
    assert default["items"][0]["name"] == "Item 00"

    everything = json_body(call(products, make_event("GET", "/products", query={"limit": "100"})))
    assert everything["count"] == 30 + len(SEEDED_NAMES)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", " 5", "1e2", "99999"])
def test_list_invalid_limit_is_400(products: ProductsModule, limit: str) -> None:
    response = call(products, make_event("GET", "/products", query={"limit": limit}))

    assert response["statusCode"] == 400
    assert json_body(response) == {"message": "limit must be an integer between 1 and 100"}


def test_list_ignores_unknown_query_parameters(products: ProductsModule) -> None:
    response = call(products, make_event("GET", "/products", query={"sort": "price"}))

    assert response["statusCode"] == 200
    assert json_body(response)["count"] == len(SEEDED_NAMES)


# --------------------------------------------------------------------------- POST /products


def test_create_returns_201_with_location(products: ProductsModule) -> None:
    response = call(products, make_event("POST", "/products", body=new_product()))

    assert response["statusCode"] == 201
    product = json_body(response)
    assert response["headers"]["Location"] == f"/products/{product['id']}"
    assert str(uuid.UUID(product["id"], version=4)) == product["id"]
    assert product["name"] == "Desk Lamp"
    assert product["category"] == "home"
    assert product["price"] == 39.9
    assert product["description"] == "LED desk lamp with dimmer."
    assert product["createdAt"] == product["updatedAt"]

    fetched = call(products, make_event("GET", f"/products/{product['id']}"))
    assert fetched["statusCode"] == 200
    assert json_body(fetched) == product

    names = [item["name"] for item in json_body(call(products, make_event("GET", "/products")))["items"]]
    assert "Desk Lamp" in names


def test_create_without_description_and_with_integer_price(products: ProductsModule) -> None:
    body = json.dumps({"name": "  Stool ", "category": "home", "price": 0})
    response = call(products, make_event("POST", "/products", body=body))

    assert response["statusCode"] == 201
    product = json_body(response)
    assert product["name"] == "Stool"
    assert product["price"] == 0
    assert product["description"] is None


def test_create_with_base64_encoded_body(products: ProductsModule) -> None:
    event = make_event("POST", "/products", body=new_product(name="Théière"), base64_body=True)
    assert event["isBase64Encoded"] is True
    assert "Théière" not in event["body"]

    response = call(products, event)

    assert response["statusCode"] == 201
    assert json_body(response)["name"] == "Théière"


def test_create_with_invalid_base64_body_is_400(products: ProductsModule) -> None:
    event = make_event("POST", "/products", body=new_product())
    event["isBase64Encoded"] = True  # the body is plain JSON, not base64

    response = call(products, event)

    assert response["statusCode"] == 400
    assert "base64" in json_body(response)["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(None, "body", id="missing-body"),
        pytest.param("", "body", id="empty-body"),
        pytest.param("{not json", "JSON", id="invalid-json"),
        pytest.param('{"name": "x", "category": "y", "price": NaN}', "JSON", id="nan-literal"),
        pytest.param("[]", "object", id="array"),
        pytest.param('"text"', "object", id="string"),
        pytest.param(json.dumps({"category": "home", "price": 1}), "name", id="name-missing"),
        pytest.param(new_product(name=""), "name", id="name-empty"),
        pytest.param(new_product(name="   "), "name", id="name-blank"),
        pytest.param(new_product(name=42), "name", id="name-number"),
        pytest.param(new_product(name=None), "name", id="name-null"),
        pytest.param(json.dumps({"name": "Lamp", "price": 1}), "category", id="category-missing"),
        pytest.param(new_product(category=""), "category", id="category-empty"),
        pytest.param(new_product(category=["home"]), "category", id="category-list"),
        pytest.param(json.dumps({"name": "Lamp", "category": "home"}), "price", id="price-missing"),
        pytest.param(new_product(price="10"), "price", id="price-string"),
        pytest.param(new_product(price=True), "price", id="price-bool"),
        pytest.param(new_product(price=None), "price", id="price-null"),
        pytest.param(new_product(price=-0.01), "price", id="price-negative"),
        pytest.param(new_product(description=5), "description", id="description-number"),
    ],
)
def test_create_invalid_body_is_400_naming_the_field(
    products: ProductsModule, body: str | None, field: str
) -> None:
    response = call(products, make_event("POST", "/products", body=body))

    assert response["statusCode"] == 400
    message = json_body(response)["message"]
    assert isinstance(message, str)
    assert field in message
    assert json_body(call(products, make_event("GET", "/products")))["count"] == len(SEEDED_NAMES)


# --------------------------------------------------------------------------- /products/{id}


def test_get_unknown_product_is_404(products: ProductsModule) -> None:
    response = call(products, make_event("GET", f"/products/{uuid.uuid4()}"))

    assert response["statusCode"] == 404
    assert json_body(response) == {"message": "Product not found"}


def test_put_replaces_all_fields(products: ProductsModule) -> None:
    created = create(products)
    body = json.dumps({"name": "Floor Lamp", "category": "lighting", "price": 120.5})

    response = call(products, make_event("PUT", f"/products/{created['id']}", body=body))

    assert response["statusCode"] == 200
    updated = json_body(response)
    assert updated["id"] == created["id"]
    assert updated["name"] == "Floor Lamp"
    assert updated["category"] == "lighting"
    assert updated["price"] == 120.5
    assert updated["description"] is None  # replaced, not merged
    assert updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] >= created["updatedAt"]
    assert json_body(call(products, make_event("GET", f"/products/{created['id']}"))) == updated


def test_put_unknown_product_is_404(products: ProductsModule) -> None:
    response = call(products, make_event("PUT", f"/products/{uuid.uuid4()}", body=new_product()))

    assert response["statusCode"] == 404
    assert json_body(response) == {"message": "Product not found"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (new_product(name=""), "name"),
        (new_product(category=None), "category"),
        (new_product(price=-1), "price"),
        ("nope", "JSON"),
    ],
)
def test_put_invalid_body_is_400_and_leaves_product_unchanged(
    products: ProductsModule, body: str, field: str
) -> None:
    created = create(products)

    response = call(products, make_event("PUT", f"/products/{created['id']}", body=body))

    assert response["statusCode"] == 400
    assert field in json_body(response)["message"]
    assert json_body(call(products, make_event("GET", f"/products/{created['id']}"))) == created


def test_put_with_base64_encoded_body(products: ProductsModule) -> None:
    created = create(products)
    event = make_event("PUT", f"/products/{created['id']}", body=new_product(price=1.25), base64_body=True)

    response = call(products, event)

    assert response["statusCode"] == 200
    assert json_body(response)["price"] == 1.25


def test_delete_returns_204_then_404(products: ProductsModule) -> None:
    created = create(products)
    path = f"/products/{created['id']}"

    response = call(products, make_event("DELETE", path))
    assert response["statusCode"] == 204
    assert response["body"] == ""
    assert "Content-Type" not in response["headers"]

    assert call(products, make_event("GET", path))["statusCode"] == 404
    again = call(products, make_event("DELETE", path))
    assert again["statusCode"] == 404
    assert json_body(again) == {"message": "Product not found"}


def test_item_route_without_path_parameters_is_404(products: ProductsModule) -> None:
    event = make_event("GET", "/products/x")
    event["pathParameters"] = None

    response = call(products, event)

    assert response["statusCode"] == 404
    assert json_body(response) == {"message": "Product not found"}


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(("method", "path"), [("GET", "/"), ("GET", "/orders"), ("POST", "/products/a/b")])
def test_unknown_route_is_404(products: ProductsModule, method: str, path: str) -> None:
    response = call(products, make_event(method, path))

    assert response["statusCode"] == 404
    assert isinstance(json_body(response)["message"], str)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/products", "GET, POST"),
        ("PATCH", "/products/abc", "GET, PUT, DELETE"),
        ("POST", "/products/abc", "GET, PUT, DELETE"),
    ],
)
def test_unsupported_method_is_405(products: ProductsModule, method: str, path: str, allow: str) -> None:
    response = call(products, make_event(method, path))

    assert response["statusCode"] == 405
    assert response["headers"]["Allow"] == allow
    assert method in json_body(response)["message"]


# --------------------------------------------------------------------------- database lifecycle


def test_connection_is_reused_and_data_persists_across_cold_starts(
    products: ProductsModule, db_path: Path
) -> None:
    created = create(products)
    products.close_connection()

    # A new worker process (fresh module) opening the existing database neither recreates nor reseeds it.
    cold = load_products_module("portway_example_products_cold")
    try:
        payload = json_body(call(cold, make_event("GET", "/products", query={"limit": "100"})))
        assert payload["count"] == len(SEEDED_NAMES) + 1
        assert json_body(call(cold, make_event("GET", f"/products/{created['id']}"))) == created
    finally:
        cold.close_connection()


def test_seed_only_happens_when_the_table_is_created(products: ProductsModule, db_path: Path) -> None:
    for item in json_body(call(products, make_event("GET", "/products")))["items"]:
        assert call(products, make_event("DELETE", f"/products/{item['id']}"))["statusCode"] == 204
    products.close_connection()

    response = call(products, make_event("GET", "/products"))  # reopens the same file

    assert json_body(response) == {"items": [], "count": 0}
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM products").fetchone() == (0,)
    finally:
        conn.close()


def test_changing_products_db_opens_the_new_database(
    products: ProductsModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(products)
    other = tmp_path / "nested" / "other.db"
    monkeypatch.setenv("PRODUCTS_DB", str(other))

    payload = json_body(call(products, make_event("GET", "/products")))

    assert payload["count"] == len(SEEDED_NAMES)
    assert other.exists()


def test_relative_products_db_resolves_next_to_the_module(
    products: ProductsModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODUCTS_DB", "data/products.db")
    assert products._db_path() == products.MODULE_DIR / "data" / "products.db"

    monkeypatch.delenv("PRODUCTS_DB")
    assert products._db_path() == EXAMPLE_DIR / "products.db"


# --------------------------------------------------------------------------- definition files


def test_openapi_definition_matches_the_handler(products: ProductsModule) -> None:
    spec = yaml.safe_load((EXAMPLE_DIR / "openapi.yaml").read_text(encoding="utf-8"))

    assert spec["openapi"] == "3.0.1"
    assert spec["info"]["title"] == "Product API"
    assert set(spec["components"]["schemas"]) >= {"Product", "NewProduct", "Error"}
    operations: dict[str, set[str]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            integration = operation["x-amazon-apigateway-integration"]
            assert integration["type"] == "aws_proxy"
            assert integration["httpMethod"] == "POST"
            assert integration["uri"] == INTEGRATION_URI
            operations.setdefault(path, set()).add(method.upper())
    assert operations == {resource: set(methods) for resource, methods in products.ROUTES.items()}


def test_functions_file_points_at_the_handler() -> None:
    config = yaml.safe_load((EXAMPLE_DIR / "functions.yaml").read_text(encoding="utf-8"))

    function = config["functions"]["products"]
    module_path, _, attribute = function["handler"].rpartition(".")
    assert (EXAMPLE_DIR / f"{module_path.replace('.', '/')}.py").is_file()
    assert attribute == "handler"
    assert function["timeout"] == 10
    assert function["memory"] == 256
    assert function["concurrency"] == 4
    assert function["environment"] == {"PRODUCTS_DB": "products.db"}
