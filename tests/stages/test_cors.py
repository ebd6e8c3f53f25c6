"""HTTP API CORS on its own: the configuration's checks, preflight answers and actual requests' headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from portway.config.model import ApiDefinition, Integration, IntegrationType, Operation, StageSettings
from portway.integrations.events import ApiInfo
from portway.lambdas.runtime import LambdaRuntime
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES
from portway.stages.cors import CorsPolicy, CorsStage, build_stage, parse_cors, policy
from portway.state.memory import MemoryStore
from portway.types import Response

APP = "https://app.example.com"
CONFIG: dict[str, Any] = {
    "allowOrigins": [APP, "https://Other.Example.com"],
    "allowMethods": ["GET", "post"],
    "allowHeaders": ["content-type", "x-api-token"],
    "exposeHeaders": ["x-request-cost", "date"],
    "maxAge": 600,
    "allowCredentials": True,
}
PREFLIGHT_HEADERS = [
    (b"access-control-allow-credentials", b"true"),
    (b"access-control-allow-methods", b"GET,POST"),
    (b"access-control-allow-headers", b"content-type,x-api-token"),
    (b"access-control-max-age", b"600"),
]


def compiled(config: Mapping[str, Any] = CONFIG) -> CorsPolicy:
    found, problems = parse_cors(config)
    assert problems == []
    assert found is not None
    return found


def preflight(
    origin: bytes | None = APP.encode(), method: bytes | None = b"POST", headers: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    sent = [(b"host", b"api.example.com")]
    if origin is not None:
        sent.append((b"origin", origin))
    if method is not None:
        sent.append((b"access-control-request-method", method))
    if headers is not None:
        sent.append((b"access-control-request-headers", headers))
    return sent


def test_a_preflight_from_an_allowed_origin_gets_the_configured_headers() -> None:
    answer = compiled().preflight("OPTIONS", preflight(headers=b"content-type"))
    assert answer is not None
    assert (answer.status, answer.body) == (204, b"")
    assert answer.headers == [
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        *PREFLIGHT_HEADERS,
    ]


def test_origins_compare_case_insensitively_and_are_echoed_as_sent() -> None:
    answer = compiled().preflight("OPTIONS", preflight(origin=b"https://other.EXAMPLE.com"))
    assert answer is not None
    assert answer.headers[0] == (b"access-control-allow-origin", b"https://other.EXAMPLE.com")


def test_a_preflight_from_another_origin_is_answered_without_cors_headers() -> None:
    answer = compiled().preflight("OPTIONS", preflight(origin=b"https://evil.example"))
    assert answer is not None
    assert (answer.status, answer.headers, answer.body) == (204, [], b"")


def test_methods_and_headers_are_sent_as_configured_the_browser_decides() -> None:
    # DELETE and x-other are not allowed: the answer lists what is, and the browser refuses the request.
    answer = compiled().preflight("OPTIONS", preflight(method=b"DELETE", headers=b"x-other, content-type"))
    assert answer is not None
    assert answer.status == 204
    assert answer.headers == [
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        *PREFLIGHT_HEADERS,
    ]


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("OPTIONS", preflight(method=None)),  # no Access-Control-Request-Method: a plain OPTIONS
        ("OPTIONS", preflight(origin=None)),  # no Origin
        ("GET", preflight()),
    ],
)
def test_only_options_with_origin_and_a_requested_method_is_a_preflight(
    method: str, headers: list[tuple[bytes, bytes]]
) -> None:
    assert compiled().preflight(method, headers) is None


def test_a_wildcard_origin_is_sent_as_a_wildcard_without_vary() -> None:
    cors = compiled(
        {"allowOrigins": ["*"], "allowMethods": ["*"], "allowHeaders": ["*"], "exposeHeaders": ["*"]}
    )
    answer = cors.preflight("OPTIONS", preflight(origin=b"https://anyone.example"))
    assert answer is not None
    assert answer.headers == [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"*"),
        (b"access-control-allow-headers", b"*"),
    ]
    actual = Response(200, [(b"content-type", b"text/plain")], b"hi")
    cors.apply("GET", [(b"origin", b"null")], actual)
    assert actual.headers == [
        (b"content-type", b"text/plain"),
        (b"access-control-allow-origin", b"*"),
        (b"access-control-expose-headers", b"*"),
    ]


def test_a_scheme_wildcard_allows_every_origin_of_that_scheme() -> None:
    cors = compiled({"allowOrigins": ["https://*"]})
    allowed = cors.preflight("OPTIONS", preflight(origin=b"https://a.example:8443"))
    assert allowed is not None
    assert allowed.headers == [
        (b"access-control-allow-origin", b"https://a.example:8443"),
        (b"vary", b"origin"),
    ]
    refused = cors.preflight("OPTIONS", preflight(origin=b"http://a.example"))
    assert refused is not None
    assert refused.headers == []


def test_an_actual_request_gets_origin_credentials_and_exposed_headers() -> None:
    response = Response(200, [(b"content-type", b"application/json"), (b"x-request-cost", b"3")], b"{}")
    compiled().apply("GET", [(b"origin", APP.encode())], response)
    assert response.headers == [
        (b"content-type", b"application/json"),
        (b"x-request-cost", b"3"),
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"x-request-cost,date"),
    ]


def test_the_integrations_own_cors_headers_are_ignored() -> None:
    integration_headers = [
        (b"content-type", b"text/plain"),
        (b"Access-Control-Allow-Origin", b"https://evil.example"),
        (b"access-control-allow-methods", b"DELETE"),
        (b"x-kept", b"1"),
    ]
    allowed = Response(200, list(integration_headers))
    compiled().apply("GET", [(b"origin", APP.encode())], allowed)
    assert allowed.headers == [
        (b"content-type", b"text/plain"),
        (b"x-kept", b"1"),
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"x-request-cost,date"),
    ]
    for request_headers in ([(b"origin", b"https://evil.example")], []):  # origin not allowed; no Origin
        refused = Response(200, list(integration_headers))
        compiled().apply("GET", request_headers, refused)
        assert refused.headers == [(b"content-type", b"text/plain"), (b"x-kept", b"1")]


def context(method: str, headers: Sequence[tuple[bytes, bytes]]) -> RequestContext:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": method, "path": "/x", "headers": list(headers), "query_string": b""}
    return RequestContext(scope, receive, "/x", "$default", "/x", {}, {})


async def test_the_stage_answers_nothing_itself_and_decorates_every_response() -> None:
    stage = CorsStage(compiled())
    assert (stage.name, stage.needs_body, stage.responds) == ("cors", False, True)
    ctx = context("GET", [(b"origin", APP.encode())])
    assert await stage.on_request(ctx) is None
    refused = Response(401, [(b"content-type", b"application/json")], b'{"message":"Unauthorized"}')
    answer = await stage.on_response(ctx, refused)
    assert answer.headers[1:4] == [
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        (b"access-control-allow-credentials", b"true"),
    ]


async def test_a_preflight_a_route_takes_gets_the_preflight_headers_on_the_routes_answer() -> None:
    stage = CorsStage(compiled())
    ctx = context("OPTIONS", preflight())
    answer = await stage.on_response(
        ctx, Response(200, [(b"content-type", b"text/plain")], b"from the route")
    )
    assert answer.status == 200
    assert answer.headers == [
        (b"content-type", b"text/plain"),
        (b"access-control-allow-origin", APP.encode()),
        (b"vary", b"origin"),
        *PREFLIGHT_HEADERS,
    ]


@pytest.mark.parametrize(
    ("config", "where", "says"),
    [
        (
            {"allowOrigins": ["*"], "allowCredentials": True},
            "$.x-amazon-apigateway-cors.allowCredentials",
            "cannot be true when allowOrigins has '*'",
        ),
        (
            {"allowOrigins": ["https://*.example.com"]},
            "$.x-amazon-apigateway-cors.allowOrigins[0]",
            "a wildcard origin is '*', 'https://*' or 'http://*'",
        ),
        ({"allowOrigins": "https://a.example"}, "$.x-amazon-apigateway-cors.allowOrigins", "must be a list"),
        (
            {"allowMethods": ["GET", "FETCH"]},
            "$.x-amazon-apigateway-cors.allowMethods[1]",
            "'FETCH': not one of",
        ),
        ({"maxAge": 86_401}, "$.x-amazon-apigateway-cors.maxAge", "from -1 to 86400"),
        ({"maxAge": "600"}, "$.x-amazon-apigateway-cors.maxAge", "whole number of seconds"),
        ({"allowCredentials": "yes"}, "$.x-amazon-apigateway-cors.allowCredentials", "must be true or false"),
        ({"allowOrigin": ["*"]}, "$.x-amazon-apigateway-cors.allowOrigin", "unknown field"),
    ],
)
def test_a_configuration_aws_would_refuse_is_refused(config: dict[str, Any], where: str, says: str) -> None:
    found, problems = parse_cors(config)
    assert found is None
    assert len(problems) == 1, problems
    assert problems[0][0] == where
    assert says in problems[0][1]


def test_max_age_minus_one_and_zero_are_sent() -> None:
    for age in (-1, 0):
        answer = compiled({"allowOrigins": ["*"], "maxAge": age}).preflight("OPTIONS", preflight())
        assert answer is not None
        assert answer.headers[-1] == (b"access-control-max-age", str(age).encode())


def stage_build(kind: str, cors: Mapping[str, Any] | None, problems: list[tuple[str, str]]) -> StageBuild:
    api = ApiDefinition(kind=kind, title="t", source=Path("api.yaml"), operations=(), cors=cors)
    return StageBuild(
        api=api,
        api_info=ApiInfo(api_id="abc", region="us-east-1", deployment_id="d"),
        stage="$default",
        stage_variables={},
        settings=StageSettings(),
        table=HTTP_RESPONSES,
        runtime=LambdaRuntime({}),
        store=MemoryStore(),
        clock=lambda: 0.0,
        problem=lambda where, message: problems.append((where, message)),
        settings_problem=lambda where, message: problems.append((where, message)),
        function=lambda *args: None,
    )


OP = Operation("GET", "/x", Integration(IntegrationType.MOCK), None, "$.paths['/x'].get")


def test_every_route_of_an_http_api_with_cors_has_the_stage_and_the_policy_is_shared() -> None:
    problems: list[tuple[str, str]] = []
    build = stage_build("HTTP", CONFIG, problems)
    first, second = build_stage(OP, build), build_stage(OP, build)
    assert isinstance(first, CorsStage)
    assert isinstance(second, CorsStage)
    assert first.cors is second.cors is policy(build)
    assert problems == []


def test_problems_are_reported_once_and_leave_no_stage() -> None:
    problems: list[tuple[str, str]] = []
    build = stage_build("HTTP", {"allowOrigins": ["*"], "allowCredentials": True}, problems)
    assert build_stage(OP, build) is None
    assert build_stage(OP, build) is None
    assert policy(build) is None
    assert len(problems) == 1


@pytest.mark.parametrize(("kind", "cors"), [("HTTP", None), ("REST", CONFIG)])
def test_no_stage_without_cors_or_on_a_rest_api(kind: str, cors: Mapping[str, Any] | None) -> None:
    problems: list[tuple[str, str]] = []
    build = stage_build(kind, cors, problems)
    assert build_stage(OP, build) is None
    assert policy(build) is None
    assert problems == []
