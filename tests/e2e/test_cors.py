"""End to end over real sockets: HTTP API CORS, REST CORS by an OPTIONS mock, customised gateway responses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningGateway, start_gateway

HERE = Path(__file__).parent / "cors"
APP = "https://app.example.com"
_PER_SERVER = frozenset({"date", "server"})
_IDS = frozenset({"apigw-requestid", "x-amzn-requestid", "x-amz-apigw-id"})


def headers_of(response: httpx.Response) -> list[tuple[str, str]]:
    """Every header in order (names lower-case), the server's own left out and request ids as ``<id>``."""
    out = []
    for name, value in response.headers.multi_items():
        if name in _PER_SERVER:
            continue
        if name in _IDS:
            assert value, name
            value = "<id>"
        out.append((name, value))
    return out


def _client(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base, timeout=10) as c:
        yield c


# --- an HTTP API with x-amazon-apigateway-cors --------------------------------------------------------


@pytest.fixture(scope="module")
def http_gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(HERE / "http_api.yaml", stage=None)
    yield gateway
    gateway.stop()


@pytest.fixture
def http(http_gw: RunningGateway) -> Iterator[httpx.Client]:
    yield from _client(http_gw)


PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}
PREFLIGHT_ANSWER = [
    ("access-control-allow-origin", APP),
    ("vary", "origin"),
    ("access-control-allow-credentials", "true"),
    ("access-control-allow-methods", "GET,POST"),
    ("access-control-allow-headers", "content-type,x-api-token"),
    ("access-control-max-age", "600"),
    ("apigw-requestid", "<id>"),
]


@pytest.mark.parametrize("path", ["/items", "/nowhere/at/all"])
def test_the_gateway_answers_a_preflight_no_route_takes(http: httpx.Client, path: str) -> None:
    response = http.options(path, headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.content == b""
    assert headers_of(response) == PREFLIGHT_ANSWER


def test_a_preflight_from_an_origin_not_allowed_gets_no_cors_headers(http: httpx.Client) -> None:
    response = http.options("/items", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert response.status_code == 204
    assert headers_of(response) == [("apigw-requestid", "<id>")]


def test_a_preflight_for_headers_not_allowed_lists_what_is(http: httpx.Client) -> None:
    response = http.options(
        "/items", headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization, x-other"}
    )
    assert response.status_code == 204
    assert headers_of(response) == PREFLIGHT_ANSWER  # the browser sees its headers missing and refuses


def test_an_options_request_that_is_not_a_preflight_is_routed(http: httpx.Client) -> None:
    response = http.options("/items", headers={"Origin": APP})  # no Access-Control-Request-Method
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_an_actual_request_gets_the_configured_headers_and_not_the_integrations(http: httpx.Client) -> None:
    response = http.get("/items", headers={"Origin": APP})
    assert response.status_code == 200
    assert response.json() == {"items": []}
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("x-request-cost", "3"),
        ("access-control-allow-origin", APP),
        ("vary", "origin"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-request-cost"),
        ("apigw-requestid", "<id>"),
        ("content-length", "13"),
    ]


@pytest.mark.parametrize("origin", [{"Origin": "https://evil.example"}, {}])
def test_an_origin_not_allowed_or_none_gets_no_cors_headers_at_all(
    http: httpx.Client, origin: dict[str, str]
) -> None:
    response = http.get("/items", headers=origin)
    assert response.status_code == 200
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("x-request-cost", "3"),
        ("apigw-requestid", "<id>"),
        ("content-length", "13"),
    ]


def test_a_preflight_an_options_route_takes_reaches_its_integration(http: httpx.Client) -> None:
    response = http.options("/explicit", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.text == "from the route"
    assert headers_of(response) == [
        ("content-type", "text/plain"),
        *PREFLIGHT_ANSWER[:-1],
        ("apigw-requestid", "<id>"),
        ("content-length", "14"),
    ]


def test_the_gateways_own_answers_carry_cors_headers_too(http: httpx.Client) -> None:
    response = http.get("/nowhere", headers={"Origin": APP})
    assert response.status_code == 404
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("access-control-allow-origin", APP),
        ("vary", "origin"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-request-cost"),
        ("apigw-requestid", "<id>"),
        ("content-length", "23"),
    ]


# --- a REST API's CORS: an OPTIONS method with a mock integration -------------------------------------


@pytest.fixture(scope="module")
def rest_gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(HERE / "rest_mock.yaml")
    yield gateway
    gateway.stop()


@pytest.fixture
def rest(rest_gw: RunningGateway) -> Iterator[httpx.Client]:
    yield from _client(rest_gw)


def test_a_rest_preflight_is_answered_by_the_options_mock(rest: httpx.Client) -> None:
    response = rest.options("/items", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.json() == {}
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("access-control-allow-headers", "Content-Type,X-Amz-Date,Authorization,X-Api-Key"),
        ("access-control-allow-methods", "GET,OPTIONS"),
        ("access-control-allow-origin", APP),
        ("x-amzn-requestid", "<id>"),
        ("x-amz-apigw-id", "<id>"),
        ("content-length", "2"),
    ]


def test_a_rest_methods_cors_headers_come_from_its_own_integration_response(rest: httpx.Client) -> None:
    response = rest.get("/items", headers={"Origin": APP})
    assert response.status_code == 200
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("access-control-allow-origin", APP),
        ("x-amzn-requestid", "<id>"),
        ("x-amz-apigw-id", "<id>"),
        ("content-length", "13"),
    ]
    # A method whose integration response sets none has none: REST APIs add nothing by themselves.
    plain = rest.get("/plain", headers={"Origin": APP})
    assert plain.status_code == 200
    assert [name for name, _ in headers_of(plain) if name.startswith("access-control-")] == []


def test_a_rest_api_has_no_preflight_of_its_own(rest: httpx.Client) -> None:
    response = rest.options("/plain", headers=PREFLIGHT)
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


# --- a REST API customising its gateway responses ------------------------------------------------------


@pytest.fixture(scope="module")
def responses_gw() -> Iterator[RunningGateway]:
    gateway = start_gateway(HERE / "rest_responses.yaml")
    yield gateway
    gateway.stop()


@pytest.fixture
def responses(responses_gw: RunningGateway) -> Iterator[httpx.Client]:
    yield from _client(responses_gw)


def test_missing_authentication_token_customised_to_a_404(responses: httpx.Client) -> None:
    response = responses.get("/nowhere", headers={"Origin": APP})
    assert response.status_code == 404
    assert response.json() == {
        "message": "Missing Authentication Token",
        "requestId": response.headers["x-amzn-requestid"],
        "path": "/dev/nowhere",
        "stage": "dev",
    }
    # Its own entry: nothing of DEFAULT_4XX's.
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("x-amzn-errortype", "MissingAuthenticationTokenException"),
        ("x-hint", "see /strict"),
        ("x-amzn-requestid", "<id>"),
        ("content-length", str(len(response.content))),
    ]


def test_an_unknown_stage_is_the_same_customised_answer(responses_gw: RunningGateway) -> None:
    response = httpx.get(f"{responses_gw.url}/prod/strict", timeout=10)
    assert response.status_code == 404
    assert response.json()["requestId"] == response.headers["x-amzn-requestid"]
    assert response.json()["path"] == "/prod/strict"


def test_default_4xx_headers_reach_a_type_without_its_own_entry(responses: httpx.Client) -> None:
    response = responses.post(
        "/strict", content=b"hello", headers={"Content-Type": "text/plain", "Origin": APP}
    )
    assert response.status_code == 415
    assert response.json() == {"message": "Unsupported Media Type"}
    assert headers_of(response) == [
        ("content-type", "application/json"),
        ("x-amzn-errortype", "UnsupportedMediaTypeException"),
        ("access-control-allow-origin", "*"),
        ("x-seen-origin", APP),
        ("x-amzn-requestid", "<id>"),
        ("x-amz-apigw-id", "<id>"),
        ("content-length", "36"),
    ]
    # A request parameter the request lacks sets no header.
    bare = responses.post("/strict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert [name for name, _ in headers_of(bare)].count("x-seen-origin") == 0


def test_default_5xx_template_and_status(responses: httpx.Client) -> None:
    response = responses.get("/broken")
    assert response.status_code == 503
    assert response.json() == {
        "error": "Internal server error",
        "type": "API_CONFIGURATION_ERROR",
        "requestId": response.headers["x-amzn-requestid"],
        "resource": "/broken",
    }
    assert response.headers["x-amzn-errortype"] == "InternalServerErrorException"
