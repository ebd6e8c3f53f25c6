"""A SAM template's protection settings over real sockets: Lambda and Cognito authorizers, DefaultAuthorizer
and NONE, CORS preflights, gateway responses and request models (REST); a JWT authorizer and
CorsConfiguration (HTTP API).

The authorizer and the integration run in real workers (tests/e2e/sam/auth/src/app.py). Tokens are signed
here and checked against a real issuer on 127.0.0.1, which the templates name through a parameter
(``--parameter-overrides IssuerUrl=…``, and Portway's ``x-portway-issuer`` / ``x-portway-jwks`` for the
Cognito user pool).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from tests.conftest import GatewayFactory
from tests.e2e.test_authorizers import Issuer, sign

AUTH = Path(__file__).parent / "sam" / "auth"
ORIGIN = "https://shop.example"
EXPLICIT_DENY = {"Message": "User is not authorized to access this resource with an explicit deny"}


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "sam-1"})


@pytest.fixture
def issuer(key: RSAKey) -> Iterator[Issuer]:
    server = Issuer([key])
    try:
        yield server
    finally:
        server.stop()


def claims(issuer: Issuer, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer.url, "sub": "user-1", "iat": now, "exp": now + 3600, **extra}


# --- REST API -----------------------------------------------------------------------------------------------


@pytest.fixture
def rest(gateway_factory: GatewayFactory, issuer: Issuer) -> Iterator[httpx.Client]:
    gw = gateway_factory(AUTH / "template.yaml", stage=None, parameter_overrides={"IssuerUrl": issuer.url})
    assert gw.base == f"{gw.url}/live"
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        yield client


def test_lambda_token_authorizer_by_default_and_an_event_opting_out(rest: httpx.Client) -> None:
    missing = rest.get("/orders")
    # The customised UNAUTHORIZED answer (GatewayResponses), with its header.
    assert (missing.status_code, missing.json()) == (401, {"error": "Unauthorized"})
    assert missing.headers["access-control-allow-origin"] == ORIGIN
    refused = rest.get("/orders", headers={"Authorization": "nope"})  # the function raises Unauthorized
    assert (refused.status_code, refused.json()) == (401, {"error": "Unauthorized"})
    denied = rest.get("/orders", headers={"Authorization": "deny"})
    assert (denied.status_code, denied.json()) == (403, EXPLICIT_DENY)
    allowed = rest.get("/orders", headers={"Authorization": "allow"})
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["route"] == "GET /orders"
    assert allowed.json()["authorizer"]["principalId"] == "user-1"
    assert allowed.json()["authorizer"]["tier"] == "gold"
    health = rest.get("/health")  # Auth.Authorizer: NONE
    assert health.status_code == 200, health.text
    assert health.json()["authorizer"] is None


def test_request_model_validates_the_body(rest: httpx.Client) -> None:
    headers = {"Authorization": "allow", "content-type": "application/json"}
    bad = rest.post("/orders", headers=headers, content=json.dumps({"item": "tea", "quantity": 0}))
    assert (bad.status_code, bad.json()) == (400, {"message": "Invalid request body"})
    missing = rest.post("/orders", headers=headers, content=json.dumps({"item": "tea"}))
    assert missing.status_code == 400
    good = rest.post("/orders", headers=headers, content=json.dumps({"item": "tea", "quantity": 2}))
    assert good.status_code == 200, good.text
    assert json.loads(good.json()["body"]) == {"item": "tea", "quantity": 2}
    # The authorizer runs first: a bad body without a token is 401.
    assert rest.post("/orders", content="{}", headers={"content-type": "application/json"}).status_code == 401


def test_cors_preflight_is_the_mock_options_method_sam_adds(rest: httpx.Client) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    answer = rest.options("/orders", headers=preflight)  # no token: AddDefaultAuthorizerToCorsPreflight false
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-allow-methods"] == "GET,OPTIONS,POST"  # the path's methods
    assert answer.headers["access-control-allow-headers"] == "Content-Type,Authorization"
    assert answer.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in answer.headers
    single = rest.options("/health", headers=preflight)
    assert single.status_code == 200
    assert single.headers["access-control-allow-methods"] == "GET,OPTIONS"


def test_cognito_user_pool_authorizer_with_a_local_issuer(
    rest: httpx.Client, issuer: Issuer, key: RSAKey
) -> None:
    assert rest.get("/profile").status_code == 401
    id_token = sign(key, claims(issuer, aud="pool-client", token_use="id", email="jane@example.com"))
    profile = rest.get("/profile", headers={"Authorization": id_token})
    assert profile.status_code == 200, profile.text
    assert profile.json()["authorizer"]["claims"]["email"] == "jane@example.com"
    # The Lambda authorizer's token is no user pool token.
    assert rest.get("/profile", headers={"Authorization": "allow"}).status_code == 401
    assert issuer.hits["jwks"] == 1


# --- HTTP API -----------------------------------------------------------------------------------------------


@pytest.fixture
def http(gateway_factory: GatewayFactory, issuer: Issuer) -> Iterator[httpx.Client]:
    gw = gateway_factory(AUTH / "http.yaml", stage=None, parameter_overrides={"IssuerUrl": issuer.url})
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        yield client


def test_http_api_jwt_authorizer_by_default_with_its_scopes(
    http: httpx.Client, issuer: Issuer, key: RSAKey
) -> None:
    assert http.get("/orders").status_code == 401
    reader = sign(key, claims(issuer, aud="orders-client", scope="orders/read"))
    writer = sign(key, claims(issuer, aud="orders-client", scope="orders/write"))
    stranger = sign(key, claims(issuer, aud="someone-else", scope="orders/read"))
    listed = http.get("/orders", headers={"Authorization": f"Bearer {reader}"})
    assert listed.status_code == 200, listed.text
    assert listed.json()["route"] == "GET /orders"
    assert listed.json()["authorizer"]["jwt"]["claims"]["sub"] == "user-1"
    assert listed.json()["authorizer"]["jwt"]["scopes"] == ["orders/read"]  # the authorizer's own scopes
    assert http.get("/orders", headers={"Authorization": f"Bearer {stranger}"}).status_code == 401
    assert http.get("/orders", headers={"Authorization": f"Bearer {writer}"}).status_code == 403
    # The event's AuthorizationScopes replace the authorizer's, on the default authorizer.
    assert http.post("/orders", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
    created = http.post("/orders", headers={"Authorization": f"Bearer {writer}"})
    assert created.status_code == 200, created.text
    health = http.get("/health")  # Auth.Authorizer: NONE
    assert health.status_code == 200, health.text


def test_http_api_cors_configuration(http: httpx.Client, issuer: Issuer, key: RSAKey) -> None:
    preflight = http.options("/orders", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204, preflight.text
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-methods"] == "GET,POST"
    assert preflight.headers["access-control-allow-headers"] == "authorization,content-type"
    assert preflight.headers["access-control-max-age"] == "300"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    token = sign(key, claims(issuer, aud="orders-client", scope="orders/read"))
    actual = http.get("/orders", headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == ORIGIN
    assert actual.headers["access-control-expose-headers"] == "x-request-id"
    other = http.options(
        "/orders", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert other.status_code == 204
    assert "access-control-allow-origin" not in other.headers
