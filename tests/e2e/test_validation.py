"""Request validation over real sockets: a REST API with request validators (parameters and body, or the
body only) and a model built of ``$ref``s, in front of a Lambda proxy integration that counts its calls
(tests/e2e/auth/validation.yaml, tests/e2e/auth/lambdas.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import GatewayFactory

AUTH = Path(__file__).parent / "auth"
INVALID_BODY = {"message": "Invalid request body"}
HEADERS = {"X-Tenant": "acme", "X-Request-Id": "r-1"}
QUERY = {"limit": "10", "after": "o-5"}
ORDER: dict[str, Any] = {
    "customer": {"id": "c-42", "email": "jane@example.com"},
    "items": [{"sku": "tea", "quantity": 2}, {"sku": "cup", "quantity": 1}],
    "note": "gift",
}


def missing(*names: str) -> dict[str, str]:
    return {"message": f"Missing required request parameters: [{', '.join(names)}]"}


def refused(response: httpx.Response, body: dict[str, str]) -> None:
    assert (response.status_code, response.json()) == (400, body), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-amzn-errortype"] == "BadRequestException"


@pytest.fixture
def client(gateway_factory: GatewayFactory) -> Iterator[httpx.Client]:
    gw = gateway_factory(AUTH / "validation.yaml", AUTH / "functions.yaml", stage="dev")
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        yield client


def test_a_valid_request_reaches_the_integration(client: httpx.Client) -> None:
    response = client.post("/orders", params={**QUERY, "dryRun": "true"}, headers=HEADERS, json=ORDER)
    assert response.status_code == 200, response.text
    assert response.json() == {"calls": 1, "body": ORDER, "query": {**QUERY, "dryRun": "true"}}
    # Optional members may go; the query parameters' types are not checked (AWS checks presence only).
    minimal = {"customer": {"id": "c-1"}, "items": [{"sku": "x", "quantity": 1}]}
    second = client.post("/orders", params={"limit": "many", "after": "x"}, headers=HEADERS, json=minimal)
    assert second.status_code == 200, second.text
    assert second.json()["calls"] == 2


def test_an_invalid_body_is_400_and_the_integration_is_not_called(client: httpx.Client) -> None:
    invalid: list[bytes | dict[str, Any] | list[Any]] = [
        {"customer": {"id": "c-42"}},  # items missing
        {**ORDER, "items": []},  # minItems
        {**ORDER, "customer": {"id": "42"}},  # the Customer model's pattern, through a $ref
        {**ORDER, "customer": {"id": "c-1", "email": "not-an-address"}},  # format: email
        {**ORDER, "items": [{"sku": "tea", "quantity": "2"}]},  # the Item model's type
        {**ORDER, "items": [{"sku": "tea", "quantity": 0}]},  # minimum
        {**ORDER, "items": [{"sku": "tea", "quantity": 1, "colour": "red"}]},  # additionalProperties
        {**ORDER, "note": "x" * 21},  # maxLength
        [ORDER],  # not an object
        b'{"customer": ',  # not JSON
        b"",  # empty: checked as {}, which lacks the required members
    ]
    for body in invalid:
        if isinstance(body, bytes):
            response = client.post(
                "/orders", params=QUERY, headers={**HEADERS, "Content-Type": "application/json"}, content=body
            )
        else:
            response = client.post("/orders", params=QUERY, headers=HEADERS, json=body)
        refused(response, INVALID_BODY)
    # A request without Content-Type is taken as JSON, and checked as such.
    refused(client.post("/orders", params=QUERY, headers=HEADERS, content=b'{"items": []}'), INVALID_BODY)
    final = client.post("/orders", params=QUERY, headers=HEADERS, json=ORDER)
    assert final.status_code == 200, final.text
    assert final.json()["calls"] == 1  # the first call to reach the integration


def test_missing_parameters_are_400_in_aws_order(client: httpx.Client) -> None:
    # Headers first, then query string parameters, each group by name; the optional dryRun never counts.
    refused(client.post("/orders", json=ORDER), missing("x-request-id", "x-tenant", "after", "limit"))
    refused(
        client.post("/orders", params={"after": "o-5"}, headers={"X-Tenant": "acme"}, json=ORDER),
        missing("x-request-id", "limit"),
    )
    # An empty or blank value is missing, too.
    refused(
        client.post("/orders", params={"limit": "", "after": " "}, headers=HEADERS, json=ORDER),
        missing("after", "limit"),
    )
    refused(
        client.post("/orders", params=QUERY, headers={**HEADERS, "X-Tenant": ""}, json=ORDER),
        missing("x-tenant"),
    )
    # Parameters are checked before the body: a request failing both gets the parameters answer.
    refused(client.post("/orders", params=QUERY, json={"items": []}), missing("x-request-id", "x-tenant"))
    final = client.post("/orders", params=QUERY, headers=HEADERS, json=ORDER)
    assert final.status_code == 200, final.text
    assert final.json()["calls"] == 1


def test_a_body_only_validator_ignores_missing_parameters(client: httpx.Client) -> None:
    response = client.post("/drafts", json=ORDER)  # x-tenant and limit are required, but not checked here
    assert response.status_code == 200, response.text
    assert response.json() == {"calls": 1, "body": ORDER, "query": None}
    refused(client.post("/drafts", json={**ORDER, "items": [{"sku": ""}]}), INVALID_BODY)
    refused(client.post("/drafts", params={"limit": "1"}, headers=HEADERS, json={}), INVALID_BODY)
    final = client.post("/drafts", params={"limit": "1"}, headers={"X-Tenant": "acme"}, json=ORDER)
    assert final.status_code == 200, final.text
    assert final.json()["calls"] == 2
