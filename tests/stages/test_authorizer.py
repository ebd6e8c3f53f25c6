"""Lambda authorizers on real request contexts, their functions run in real Lambda workers
(tests/stages/authorizers/): TOKEN and REQUEST authorizers on REST APIs, HTTP API authorizers (payload 1.0
and 2.0, simple responses), the result cache, failures, the definition checks, and the whole path over a
socket."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from portway.config.model import (
    ApiDefinition,
    Authorizer,
    Integration,
    IntegrationType,
    Operation,
    StageSettings,
)
from portway.gateway import Gateway, Route
from portway.integrations.events import ApiInfo
from portway.integrations.lambda_proxy import LambdaProxyIntegration
from portway.lambdas.runtime import LambdaRuntime
from portway.lambdas.spec import FunctionSpec
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES
from portway.routing import Router
from portway.stages.authorizer import (
    CACHE_MAX_ENTRIES,
    HTTP_TIMEOUT_S,
    REST_TIMEOUT_S,
    AuthorizerStage,
    LambdaAuthorizer,
    LambdaAuthorizerConfig,
    ResultCache,
    build_stage,
    parse,
    read_answer,
)
from portway.state.memory import MemoryStore
from portway.types import Message, Receive, Response, Scope, Send
from tests.clock import ManualClock as Clock
from tests.conftest import run_asgi

HERE = Path(__file__).parent / "authorizers"
ACCOUNT = "123456789012"
API = ApiInfo("abc123", account_id=ACCOUNT, region="us-east-1", deployment_id="dep1")
ARN_PREFIX = f"arn:aws:execute-api:us-east-1:{ACCOUNT}:abc123"
WHERE = "$.components.securitySchemes['auth']"
UNAUTHORIZED = b'{"message":"Unauthorized"}'
EXPLICIT_DENY = b'{"Message":"User is not authorized to access this resource with an explicit deny"}'
NOT_AUTHORIZED = b'{"Message":"User is not authorized to access this resource"}'
REST_500 = b'{"message":"Internal server error"}'
HTTP_500 = b'{"message":"Internal Server Error"}'
FORBIDDEN = b'{"message":"Forbidden"}'


def uri(function: str) -> str:
    return (
        "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}/invocations"
    )


def spec(name: str, module: str, attribute: str = "handler", **settings: Any) -> FunctionSpec:
    settings.setdefault("concurrency", 1)  # one warm worker: its invocation counter is the function's
    return FunctionSpec(name=name, code_dir=HERE, module=module, attribute=attribute, **settings)


FUNCTIONS = {
    "tokens": spec("tokens", "tokens"),
    "tokens-short": spec("tokens-short", "tokens", timeout_s=0.5),
    "requests": spec("requests", "request_auth"),
    "nested": spec("nested", "request_auth", "nested_context"),
    "simple": spec("simple", "http_api", "simple"),
    "simple-bare": spec("simple-bare", "http_api", "simple_bare"),
    "simple-garbage": spec("simple-garbage", "http_api", "simple_garbage"),
    "http-policy": spec("http-policy", "http_api", "policy"),
    "echo": spec("echo", "echo", concurrency=4),
}


@pytest.fixture
async def runtime() -> AsyncIterator[LambdaRuntime]:
    rt = LambdaRuntime(FUNCTIONS)
    yield rt
    await rt.close()


def scheme(settings: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "custom",
        "x-amazon-apigateway-authorizer": dict(settings) if isinstance(settings, Mapping) else settings,
        **extra,
    }


def configure(
    settings: Mapping[str, Any], http_api: bool = False, extra: Mapping[str, Any] | None = None
) -> LambdaAuthorizerConfig:
    config, problems = parse(Authorizer("auth", scheme(settings, **(extra or {})), WHERE), http_api)
    assert problems == []
    assert config is not None
    return config


def authorizer(
    runtime: LambdaRuntime,
    function: str,
    settings: Mapping[str, Any],
    *,
    http_api: bool = False,
    clock: Callable[[], float] = time.time,
    **options: Any,
) -> LambdaAuthorizer:
    settings = {"authorizerUri": uri(function), **settings}
    return LambdaAuthorizer(
        configure(settings, http_api),
        function,
        runtime,
        api=API,
        stage="$default" if http_api else "dev",
        table=HTTP_RESPONSES if http_api else REST_RESPONSES,
        clock=clock,
        **options,
    )


def token_authorizer(runtime: LambdaRuntime, function: str = "tokens", **options: Any) -> LambdaAuthorizer:
    ttl = options.pop("ttl", 300)
    extra = options.pop("settings", {})
    return authorizer(
        runtime, function, {"type": "token", "authorizerResultTtlInSeconds": ttl, **extra}, **options
    )


def request(
    method: str = "GET",
    path: str = "/pets/a1b2",
    headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
    *,
    query: str = "",
    stage: str = "dev",
    resource: str = "/pets/{id}",
    path_parameters: Mapping[str, str] | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> RequestContext:
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    full = path if stage == "$default" else f"/{stage}{path}"
    scope: Scope = {
        "type": "http",
        "method": method,
        "path": full,
        "raw_path": full.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"api.example.com"), *((n.lower().encode(), v.encode()) for n, v in pairs)],
        "client": ("203.0.113.9", 50000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "http_version": "1.1",
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    params = (
        dict(path_parameters)
        if path_parameters is not None
        else ({"id": "a1b2"} if "{id}" in resource else {})
    )
    return RequestContext(scope, receive, path, stage, resource, params, dict(stage_variables or {}))


def token(value: str) -> dict[str, str]:
    return {"Authorization": value}


def body(response: Response | None) -> Any:
    assert response is not None
    return orjson.loads(response.body)


def header(response: Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key == name), None)


def context_of(ctx: RequestContext) -> dict[str, Any]:
    assert ctx.authorizer is not None
    return ctx.authorizer


# --- REST TOKEN authorizers --------------------------------------------------------------------------------


async def test_token_allow_passes_principal_and_context_stringified(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request(headers=token("allow"))
    assert await stage.on_request(ctx) is None
    view = context_of(ctx)
    latency = view["integrationLatency"]
    assert isinstance(latency, int)
    assert latency >= 0
    # As a REST proxy integration receives it: principalId, integrationLatency, then the context, every value
    # a string.
    assert view == {
        "principalId": "user-1",
        "integrationLatency": latency,
        "calls": "1",
        "tier": "gold",
        "admin": "true",
        "ratio": "1.5",
    }
    assert list(view)[:2] == ["principalId", "integrationLatency"]
    assert ctx.api_key is None
    assert ctx.can_invalidate_cache is False


async def test_token_event_is_type_method_arn_and_token(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request("PATCH", "/pets/a1b2", token("echo"))
    assert await stage.on_request(ctx) is None
    assert json.loads(context_of(ctx)["event"]) == {
        "type": "TOKEN",
        "methodArn": f"{ARN_PREFIX}/dev/PATCH/pets/a1b2",
        "authorizationToken": "echo",
    }


async def test_token_root_resource_arn_ends_with_a_slash(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/")
    ctx = request("GET", "/", token("echo"), resource="/")
    assert await stage.on_request(ctx) is None
    assert json.loads(context_of(ctx)["event"])["methodArn"] == f"{ARN_PREFIX}/dev/GET/"


async def test_token_deny_is_403_explicit_deny(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request(headers=token("deny"))
    response = await stage.on_request(ctx)
    assert response is not None
    assert (response.status, response.body) == (403, EXPLICIT_DENY)
    assert header(response, b"x-amzn-errortype") == b"AccessDeniedException"
    assert ctx.authorizer is None


async def test_token_unauthorized_error_is_401(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    response = await stage.on_request(request(headers=token("unauthorized")))
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    assert header(response, b"x-amzn-errortype") == b"UnauthorizedException"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"X-Other": "allow"}, {"Authorisation": "allow"}],
    ids=["none", "empty", "another header", "misspelt"],
)
async def test_missing_token_is_401_without_invoking(runtime: LambdaRuntime, headers: dict[str, str]) -> None:
    stage = AuthorizerStage(token_authorizer(runtime, ttl=0), resource="/pets/{id}")
    response = await stage.on_request(request(headers=headers))
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    ctx = request(headers=token("allow"))
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "1"  # the function's first invocation: the 401 never reached it


async def test_header_names_are_case_insensitive_and_the_last_value_counts(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request(headers=[("AUTHORIZATION", "deny"), ("authorization", "echo")])
    assert await stage.on_request(ctx) is None
    assert json.loads(context_of(ctx)["event"])["authorizationToken"] == "echo"


async def test_identity_validation_expression(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(
        token_authorizer(runtime, ttl=0, settings={"identityValidationExpression": "allow|deny|k.*"}),
        resource="/pets/{id}",
    )
    for refused in ("echo", "allowed", "xallow", "Allow"):  # the whole token must match
        response = await stage.on_request(request(headers=token(refused)))
        assert response is not None
        assert (response.status, response.body) == (401, UNAUTHORIZED)
    ctx = request(headers=token("allow"))
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "1"  # none of the refused tokens was sent to the function
    denied = await stage.on_request(request(headers=token("deny")))
    assert denied is not None
    assert denied.status == 403


# --- the result cache --------------------------------------------------------------------------------------


async def test_results_are_cached_for_the_ttl(runtime: LambdaRuntime) -> None:
    clock = Clock()
    stage = AuthorizerStage(token_authorizer(runtime, ttl=60, clock=clock), resource="/pets/{id}")

    async def calls() -> str:
        ctx = request(headers=token("allow"))
        assert await stage.on_request(ctx) is None
        return str(context_of(ctx)["calls"])

    assert [await calls() for _ in range(3)] == ["1", "1", "1"]
    clock.now += 59.9
    assert await calls() == "1"
    clock.now += 0.1  # the TTL has run out
    assert await calls() == "2"
    assert await calls() == "2"


async def test_ttl_zero_invokes_every_time(runtime: LambdaRuntime) -> None:
    auth = token_authorizer(runtime, ttl=0)
    assert auth.cache is None
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    seen = []
    for _ in range(3):
        ctx = request(headers=token("allow"))
        assert await stage.on_request(ctx) is None
        seen.append(context_of(ctx)["calls"])
    assert seen == ["1", "2", "3"]


async def test_each_token_has_its_own_entry(runtime: LambdaRuntime) -> None:
    auth = token_authorizer(runtime)
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    for value in ("allow", "deny", "allow", "deny"):
        await stage.on_request(request(headers=token(value)))
    assert auth.cache is not None
    assert len(auth.cache) == 2
    ctx = request(headers=token("allow"))
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "1"


async def test_a_cached_policy_is_evaluated_against_each_method_arn(runtime: LambdaRuntime) -> None:
    auth = token_authorizer(runtime)
    get_pet = AuthorizerStage(auth, resource="/pets/{id}")
    delete_pet = AuthorizerStage(auth, resource="/pets/{id}")
    list_pets = AuthorizerStage(auth, resource="/pets")
    ctx = request("GET", "/pets/a1b2", token("allow"))
    assert await get_pet.on_request(ctx) is None  # the policy allows exactly GET /pets/a1b2
    other = await get_pet.on_request(request("GET", "/pets/zz99", token("allow")))
    assert other is not None
    assert (other.status, other.body) == (403, NOT_AUTHORIZED)  # the same route, another path: no Allow
    deleted = await delete_pet.on_request(request("DELETE", "/pets/a1b2", token("allow")))
    assert deleted is not None
    assert (deleted.status, deleted.body) == (403, NOT_AUTHORIZED)
    assert header(deleted, b"x-amzn-errortype") == b"AccessDeniedException"
    # A policy over every GET: cached once, good for every GET route, refusing the others.
    ctx = request("GET", "/pets", token("get-only"), resource="/pets")
    assert await list_pets.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "2"
    again = request("GET", "/pets/q", token("get-only"))
    assert await get_pet.on_request(again) is None
    assert context_of(again)["calls"] == "2"
    refused = await delete_pet.on_request(request("DELETE", "/pets/q", token("get-only")))
    assert refused is not None
    assert refused.body == NOT_AUTHORIZED


async def test_failures_are_not_cached(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    first = await stage.on_request(request(headers=token("flaky")))
    assert first is not None
    assert first.status == 500
    ctx = request(headers=token("flaky"))
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "2"


def test_the_cache_is_bounded() -> None:
    clock = Clock()
    cache = ResultCache(60, clock, max_entries=3)
    answer = read_answer({"isAuthorized": True}, configure_simple(), 1)
    for key in ("a", "b", "c"):
        cache.put(key, answer)
    cache.put("d", answer)  # full: the oldest goes
    assert [cache.get(k) is not None for k in "abcd"] == [False, True, True, True]
    clock.now += 30
    cache.put("b", answer)  # refreshed: now the newest
    clock.now += 31  # c and d expire, b does not
    cache.put("e", answer)  # full again: the expired entries go first
    assert len(cache) == 2
    assert [cache.get(k) is not None for k in "bcde"] == [True, False, False, True]
    cache.clear()
    assert len(cache) == 0
    assert ResultCache(60).max_entries == CACHE_MAX_ENTRIES


def configure_simple() -> LambdaAuthorizerConfig:
    return configure(
        {
            "type": "request",
            "authorizerUri": uri("simple"),
            "identitySource": "$request.header.Authorization",
            "authorizerPayloadFormatVersion": "2.0",
            "enableSimpleResponses": True,
        },
        http_api=True,
    )


# --- what else the answer carries --------------------------------------------------------------------------


async def test_usage_identifier_key_becomes_the_api_key(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime, key_source_authorizer=True), resource="/pets/{id}")
    ctx = request(headers=token("key:abcdefghij0123456789"))
    assert await stage.on_request(ctx) is None
    assert ctx.api_key == "abcdefghij0123456789"
    cached = request(headers=token("key:abcdefghij0123456789"))
    assert await stage.on_request(cached) is None
    assert cached.api_key == "abcdefghij0123456789"
    # With the API's key source HEADER, the authorizer's key is not the caller's API key.
    header_source = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request(headers=token("key:abcdefghij0123456789"))
    assert await header_source.on_request(ctx) is None
    assert ctx.api_key is None


async def test_invalidate_cache_permission(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    ctx = request(headers=token("invalidate"))  # execute-api:* on every method
    assert await stage.on_request(ctx) is None
    assert ctx.can_invalidate_cache is True
    ctx = request(headers=token("allow"))  # execute-api:Invoke only
    assert await stage.on_request(ctx) is None
    assert ctx.can_invalidate_cache is False


async def test_wildcard_policy_allows_every_method(runtime: LambdaRuntime) -> None:
    auth = token_authorizer(runtime)
    for method, path, resource in (
        ("GET", "/", "/"),
        ("POST", "/pets", "/pets"),
        ("DELETE", "/pets/x", "/pets/{id}"),
    ):
        ctx = request(method, path, token("wildcard"), resource=resource)
        assert await AuthorizerStage(auth, resource=resource).on_request(ctx) is None
        assert context_of(ctx)["calls"] == "1"


async def test_conditions_are_not_evaluated_and_say_so(
    runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    with caplog.at_level(logging.WARNING, logger="portway.authorizer"):
        response = await stage.on_request(request(headers=token("conditional")))
    assert response is not None
    assert (response.status, response.body) == (403, NOT_AUTHORIZED)  # the conditional Allow grants nothing
    assert "the policy has Condition blocks, which are not evaluated" in caplog.text


# --- failures: AWS's answer, a log line saying why, and the gateway goes on --------------------------------

FAILURES = [
    ("boom", "ValueError: database is down"),
    ("garbage", "the function returned str, not a JSON object"),
    ("list", "the function returned list, not a JSON object"),
    ("no-principal", "principalId must be a string, got null"),
    ("bad-policy", "Could not parse policy: Statement[0].Effect must be 'Allow' or 'Deny'"),
    ("nested", "context.roles must be a string, number or boolean, got list"),
    ("exit", "RUNTIME_EXIT"),
    ("never-heard-of", "Exception: unexpected token 'never-heard-of'"),
]


@pytest.mark.parametrize(("value", "logged"), FAILURES)
async def test_failures_are_500_authorizer_configuration_error(
    runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture, value: str, logged: str
) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    with caplog.at_level(logging.ERROR, logger="portway.authorizer"):
        ctx = request(headers=token(value))
        response = await stage.on_request(ctx)
    assert response is not None
    assert (response.status, response.body) == (500, REST_500)
    assert header(response, b"x-amzn-errortype") == b"AuthorizerConfigurationException"
    assert ctx.authorizer is None
    lines = [r.getMessage() for r in caplog.records if r.name == "portway.authorizer"]
    assert len(lines) == 1
    assert "[auth]" in lines[0]
    assert ctx.request_id in lines[0]
    assert "Execution failed due to configuration error" in lines[0]
    assert logged in lines[0]
    # The gateway keeps working: the next caller is served (by a new worker if the old one died).
    ok = request(headers=token("allow"))
    assert await stage.on_request(ok) is None


async def test_function_timeout_is_500(runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture) -> None:
    stage = AuthorizerStage(token_authorizer(runtime, "tokens-short"), resource="/pets/{id}")
    with caplog.at_level(logging.ERROR, logger="portway.authorizer"):
        response = await stage.on_request(request(headers=token("slow")))
    assert response is not None
    assert (response.status, response.body) == (500, REST_500)
    assert "FUNCTION_TIMEOUT" in caplog.text
    assert "Task timed out after 0.50 seconds" in caplog.text
    assert await stage.on_request(request(headers=token("allow"))) is None


async def test_authorizer_timeout_is_500(runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture) -> None:
    assert (REST_TIMEOUT_S, HTTP_TIMEOUT_S) == (29.0, 10.0)
    assert token_authorizer(runtime).timeout_s == REST_TIMEOUT_S
    stage = AuthorizerStage(token_authorizer(runtime, timeout_s=0.3), resource="/pets/{id}")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="portway.authorizer"):
        response = await stage.on_request(request(headers=token("slow")))
    assert time.monotonic() - started < 1.5
    assert response is not None
    assert (response.status, response.body) == (500, REST_500)
    assert "the authorizer did not answer within 300 ms" in caplog.text


async def test_many_callers_at_once(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(token_authorizer(runtime, ttl=0), resource="/pets/{id}")
    values = ["allow", "deny", "unauthorized", "boom"] * 5
    responses = await asyncio.gather(*(stage.on_request(request(headers=token(v))) for v in values))
    statuses = [None if r is None else r.status for r in responses]
    assert statuses == [None, 403, 401, 500] * 5


# --- REST REQUEST authorizers ------------------------------------------------------------------------------


def request_authorizer(
    runtime: LambdaRuntime, sources: str, ttl: int = 300, **options: Any
) -> LambdaAuthorizer:
    settings = {"type": "request", "identitySource": sources, "authorizerResultTtlInSeconds": ttl}
    return authorizer(runtime, "requests", settings, **options)


async def test_request_event_carries_the_request(runtime: LambdaRuntime) -> None:
    auth = request_authorizer(runtime, "method.request.header.X-User, method.request.querystring.tenant")
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    ctx = request(
        "POST",
        "/pets/a1b2",
        [("X-User", "alice"), ("Accept", "*/*"), ("Accept", "text/plain")],
        query="tenant=t1&tenant=t2&x=%20y",
        stage_variables={"env": "test"},
    )
    assert await stage.on_request(ctx) is None
    event = json.loads(context_of(ctx)["event"])
    assert list(event)[:2] == ["type", "methodArn"]
    assert event["type"] == "REQUEST"
    assert event["methodArn"] == f"{ARN_PREFIX}/dev/POST/pets/a1b2"
    assert event["resource"] == "/pets/{id}"
    assert event["path"] == "/pets/a1b2"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["X-User"] == "alice"
    assert event["headers"]["Accept"] == "text/plain"
    assert event["multiValueHeaders"]["Accept"] == ["*/*", "text/plain"]
    assert event["queryStringParameters"] == {"tenant": "t2", "x": " y"}
    assert event["multiValueQueryStringParameters"] == {"tenant": ["t1", "t2"], "x": [" y"]}
    assert event["pathParameters"] == {"id": "a1b2"}
    assert event["stageVariables"] == {"env": "test"}
    assert "body" not in event
    assert "isBase64Encoded" not in event
    assert "version" not in event
    context = event["requestContext"]
    assert context["resourcePath"] == "/pets/{id}"
    assert context["httpMethod"] == "POST"
    assert context["path"] == "/dev/pets/a1b2"
    assert context["stage"] == "dev"
    assert context["apiId"] == "abc123"
    assert context["accountId"] == ACCOUNT
    assert context["requestId"] == ctx.request_id
    assert context["identity"]["sourceIp"] == "203.0.113.9"
    assert "authorizer" not in context
    view = context_of(ctx)
    assert view["principalId"] == "request-user"
    assert view["tags"] == "a,b"


async def test_request_event_has_empty_maps_not_nulls(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(request_authorizer(runtime, "method.request.header.X-User"), resource="/pets")
    ctx = request("GET", "/pets", {"X-User": "alice"}, resource="/pets")
    assert await stage.on_request(ctx) is None
    event = json.loads(context_of(ctx)["event"])
    for key in (
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
    ):
        assert event[key] == {}, key


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, "tenant=t1"),
        ({"X-User": "alice"}, ""),
        ({"X-User": "alice"}, "tenant="),
        ({"X-User": ""}, "tenant=t1"),
    ],
    ids=["no header", "no query", "empty query value", "empty header"],
)
async def test_request_missing_source_is_401_without_invoking(
    runtime: LambdaRuntime, headers: dict[str, str], query: str
) -> None:
    auth = request_authorizer(runtime, "method.request.header.X-User, method.request.querystring.tenant")
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    response = await stage.on_request(request(headers=headers, query=query))
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    ctx = request(headers={"X-User": "alice"}, query="tenant=t1")
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "1"


async def test_request_cache_key_is_every_source(runtime: LambdaRuntime) -> None:
    auth = request_authorizer(
        runtime,
        "method.request.header.X-User, method.request.querystring.tenant, "
        "stageVariables.env, context.httpMethod",
    )
    get = AuthorizerStage(auth, resource="/pets/{id}")
    post = AuthorizerStage(auth, resource="/pets/{id}")

    async def calls(
        method: str, user: str, tenant: str, env: str = "test", stage: AuthorizerStage = get
    ) -> str:
        ctx = request(
            method, headers={"X-User": user}, query=f"tenant={tenant}", stage_variables={"env": env}
        )
        assert await stage.on_request(ctx) is None
        return str(context_of(ctx)["calls"])

    assert await calls("GET", "alice", "t1") == "1"
    assert await calls("GET", "alice", "t1") == "1"
    assert await calls("GET", "alice", "t2") == "2"
    assert await calls("GET", "bob", "t1") == "3"
    assert await calls("GET", "alice", "t1", env="prod") == "4"
    assert await calls("POST", "alice", "t1", stage=post) == "5"  # context.httpMethod is part of the key
    assert await calls("GET", "alice", "t1") == "1"
    missing = await get.on_request(request(headers={"X-User": "a"}, query="tenant=t"))
    assert missing is not None
    assert missing.status == 401  # the stage variable is not set: missing like any other source


async def test_request_deny_is_cached_too(runtime: LambdaRuntime) -> None:
    stage = AuthorizerStage(
        request_authorizer(runtime, "method.request.header.X-Mode"), resource="/pets/{id}"
    )
    for _ in range(2):
        response = await stage.on_request(request(headers={"X-Mode": "deny"}))
        assert response is not None
        assert response.body == EXPLICIT_DENY
    ctx = request(headers={"X-Mode": "allow"})
    assert await stage.on_request(ctx) is None
    assert context_of(ctx)["calls"] == "2"


async def test_request_without_sources_and_no_cache_invokes_every_time(runtime: LambdaRuntime) -> None:
    auth = authorizer(runtime, "requests", {"type": "request", "authorizerResultTtlInSeconds": 0})
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    seen = []
    for _ in range(2):
        ctx = request()
        assert await stage.on_request(ctx) is None
        seen.append(context_of(ctx)["calls"])
    assert seen == ["1", "2"]


async def test_request_context_variable_sources(runtime: LambdaRuntime) -> None:
    auth = request_authorizer(
        runtime,
        "context.identity.sourceIp, context.resourcePath, context.stage, context.path, context.domainName",
    )
    stage = AuthorizerStage(auth, resource="/pets/{id}")
    ctx = request()
    assert await stage.on_request(ctx) is None
    assert auth.identity(request(), stage) == [
        "203.0.113.9",
        "/pets/{id}",
        "dev",
        "/dev/pets/a1b2",
        "api.example.com",
    ]


# --- HTTP APIs ---------------------------------------------------------------------------------------------


def http_request(
    method: str = "GET", path: str = "/items/7", headers: Mapping[str, str] | None = None, **kw: Any
) -> RequestContext:
    kw.setdefault("resource", "/items/{id}")
    kw.setdefault("path_parameters", {"id": "7"} if "{id}" in kw["resource"] else {})
    return request(method, path, headers or {}, stage="$default", **kw)


def http_authorizer(runtime: LambdaRuntime, function: str, **settings: Any) -> LambdaAuthorizer:
    options = {k: settings.pop(k) for k in ("clock", "timeout_s") if k in settings}
    base = {
        "type": "request",
        "identitySource": "$request.header.Authorization",
        "authorizerPayloadFormatVersion": "2.0",
    }
    return authorizer(runtime, function, {**base, **settings}, http_api=True, **options)


def http_stage(
    auth: LambdaAuthorizer, route_key: str = "GET /items/{id}", payload: str = "2.0"
) -> AuthorizerStage:
    resource = route_key.split(" ", 1)[1] if " " in route_key else route_key
    return AuthorizerStage(auth, resource=resource, route_key=route_key, integration_payload=payload)


async def test_http_simple_response_and_the_v2_event(runtime: LambdaRuntime) -> None:
    stage = http_stage(http_authorizer(runtime, "simple", enableSimpleResponses=True))
    ctx = http_request(
        headers={"Authorization": "secret", "Cookie": "a=1; b=2", "X-Multi": "1"}, query="a=1&a=2"
    )
    ctx.headers.append((b"x-multi", b"2"))
    assert await stage.on_request(ctx) is None
    view = context_of(ctx)
    assert list(view) == ["lambda"]
    context = view["lambda"]
    assert context["calls"] == 1  # HTTP APIs pass values as the function returned them
    assert context["roles"] == ["a", "b"]
    event = context["event"]
    assert list(event)[:4] == ["version", "type", "routeArn", "identitySource"]
    assert event["version"] == "2.0"
    assert event["type"] == "REQUEST"
    assert event["routeArn"] == f"{ARN_PREFIX}/$default/GET/items/7"
    assert event["identitySource"] == ["secret"]
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/7"
    assert event["rawQueryString"] == "a=1&a=2"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["authorization"] == "secret"
    assert event["headers"]["x-multi"] == "1,2"
    assert event["queryStringParameters"] == {"a": "1,2"}
    assert event["pathParameters"] == {"id": "7"}
    assert "stageVariables" not in event  # none: left out, not null
    assert "body" not in event
    assert "isBase64Encoded" not in event
    request_context = event["requestContext"]
    assert request_context["http"]["method"] == "GET"
    assert request_context["http"]["path"] == "/items/7"
    assert request_context["routeKey"] == "GET /items/{id}"
    assert request_context["stage"] == "$default"
    assert request_context["requestId"] == ctx.extended_request_id
    assert "authorizer" not in request_context


async def test_http_simple_response_refusals(runtime: LambdaRuntime) -> None:
    stage = http_stage(http_authorizer(runtime, "simple", enableSimpleResponses=True))
    refused = await stage.on_request(http_request(headers={"Authorization": "wrong"}))
    assert refused is not None
    assert (refused.status, refused.body) == (403, FORBIDDEN)
    assert header(refused, b"x-amzn-errortype") is None  # HTTP APIs send no error type
    missing = await stage.on_request(http_request())
    assert missing is not None
    assert (missing.status, missing.body) == (401, UNAUTHORIZED)
    garbage = http_stage(http_authorizer(runtime, "simple-garbage", enableSimpleResponses=True))
    failed = await garbage.on_request(http_request(headers={"Authorization": "x"}))
    assert failed is not None
    assert (failed.status, failed.body) == (500, HTTP_500)


async def test_http_simple_response_without_context(runtime: LambdaRuntime) -> None:
    bare = http_authorizer(runtime, "simple-bare", enableSimpleResponses=True)
    ctx = http_request(headers={"Authorization": "x"})
    assert await http_stage(bare).on_request(ctx) is None
    assert ctx.authorizer == {"lambda": None}  # as AWS sends it
    ctx = http_request(headers={"Authorization": "x"})
    assert await http_stage(bare, payload="1.0").on_request(ctx) is None
    assert set(context_of(ctx)) == {"integrationLatency"}


async def test_http_cache_is_shared_by_routes_unless_route_key_is_a_source(runtime: LambdaRuntime) -> None:
    shared = http_authorizer(runtime, "simple", enableSimpleResponses=True, authorizerResultTtlInSeconds=300)
    get_item, list_items = http_stage(shared), http_stage(shared, "GET /items")

    async def calls(stage: AuthorizerStage, path: str, resource: str) -> int:
        ctx = http_request("GET", path, {"Authorization": "secret"}, resource=resource)
        assert await stage.on_request(ctx) is None
        return int(context_of(ctx)["lambda"]["calls"])

    assert await calls(get_item, "/items/7", "/items/{id}") == 1
    assert await calls(list_items, "/items", "/items") == 1  # another route, the same cached answer
    per_route = http_authorizer(
        runtime,
        "simple",
        enableSimpleResponses=True,
        authorizerResultTtlInSeconds=300,
        identitySource="$request.header.Authorization, $context.routeKey",
    )
    get_item, list_items = http_stage(per_route), http_stage(per_route, "GET /items")
    assert await calls(get_item, "/items/7", "/items/{id}") == 2
    assert await calls(list_items, "/items", "/items") == 3
    assert await calls(get_item, "/items/8", "/items/{id}") == 2


async def test_http_default_ttl_is_no_cache(runtime: LambdaRuntime) -> None:
    auth = http_authorizer(runtime, "simple", enableSimpleResponses=True)
    assert auth.cache is None
    stage = http_stage(auth)
    seen = []
    for _ in range(2):
        ctx = http_request(headers={"Authorization": "secret"})
        assert await stage.on_request(ctx) is None
        seen.append(context_of(ctx)["lambda"]["calls"])
    assert seen == [1, 2]


async def test_http_policy_v2(runtime: LambdaRuntime) -> None:
    stage = http_stage(http_authorizer(runtime, "http-policy"))
    ctx = http_request(headers={"Authorization": "ok"})
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer == {"lambda": {"calls": 1, "roles": ["a"]}}
    denied = await stage.on_request(http_request(headers={"Authorization": "deny"}))
    assert denied is not None
    assert (denied.status, denied.body) == (403, FORBIDDEN)
    # The cached policy names one route ARN: another path is refused with the same 403.
    auth = http_authorizer(runtime, "http-policy", authorizerResultTtlInSeconds=60)
    assert await http_stage(auth).on_request(http_request(headers={"Authorization": "ok"})) is None
    other = await http_stage(auth).on_request(http_request("GET", "/items/8", {"Authorization": "ok"}))
    assert other is not None
    assert (other.status, other.body) == (403, FORBIDDEN)


async def test_http_payload_1_event_and_flat_context(runtime: LambdaRuntime) -> None:
    auth = http_authorizer(
        runtime,
        "requests",
        authorizerPayloadFormatVersion="1.0",
        identitySource="$request.header.Authorization, $request.querystring.tenant",
    )
    ctx = http_request(headers={"Authorization": "tok"}, query="tenant=a&tenant=b")
    assert await http_stage(auth, payload="1.0").on_request(ctx) is None
    view = context_of(ctx)
    event = json.loads(view["event"])
    assert list(event)[:5] == ["version", "type", "methodArn", "identitySource", "authorizationToken"]
    assert event["version"] == "1.0"
    assert event["methodArn"] == f"{ARN_PREFIX}/$default/GET/items/7"
    assert event["identitySource"] == "tok,a,b"  # HTTP APIs join repeated values with commas
    assert event["authorizationToken"] == "tok,a,b"
    assert event["resource"] == "/items/{id}"
    assert event["queryStringParameters"] == {"tenant": "b"}
    assert event["multiValueQueryStringParameters"] == {"tenant": ["a", "b"]}
    assert event["pathParameters"] == {"id": "7"}
    assert view["principalId"] == "request-user"
    assert view["calls"] == 1  # not stringified on HTTP APIs
    assert isinstance(view["integrationLatency"], int)


async def test_http_payload_1_context_may_hold_objects(runtime: LambdaRuntime) -> None:
    auth = http_authorizer(runtime, "nested", authorizerPayloadFormatVersion="1.0")
    ctx = http_request(headers={"Authorization": "tok"})
    assert await http_stage(auth, payload="1.0").on_request(ctx) is None
    view = context_of(ctx)
    assert view == {
        "principalId": "request-user",
        "integrationLatency": view["integrationLatency"],
        "calls": 1,
        "roles": ["admin", "dev"],
        "profile": {"plan": "pro"},
        "active": True,
    }
    ctx = http_request(headers={"Authorization": "tok"})
    assert await http_stage(auth, payload="2.0").on_request(ctx) is None
    assert ctx.authorizer == {
        "lambda": {"calls": 2, "roles": ["admin", "dev"], "profile": {"plan": "pro"}, "active": True}
    }


async def test_http_default_route_arn(runtime: LambdaRuntime) -> None:
    stage = http_stage(http_authorizer(runtime, "simple", enableSimpleResponses=True), "$default")
    ctx = http_request("DELETE", "/any/thing", {"Authorization": "secret"}, resource="$default")
    assert await stage.on_request(ctx) is None
    event = context_of(ctx)["lambda"]["event"]
    assert event["routeArn"] == f"{ARN_PREFIX}/$default/DELETE/any/thing"
    assert event["routeKey"] == "$default"


# --- the definition, checked when it loads -----------------------------------------------------------------

TOKEN = {"type": "token", "authorizerUri": uri("tokens")}
HTTP = {"type": "request", "authorizerUri": uri("simple"), "authorizerPayloadFormatVersion": "2.0"}
BASE = f"{WHERE}.x-amazon-apigateway-authorizer"


def test_parse_defaults() -> None:
    config = configure(TOKEN)
    assert (config.type, config.ttl_s, config.payload_format, config.simple_responses) == (
        "TOKEN",
        300,
        "1.0",
        False,
    )
    assert [(s.kind, s.name) for s in config.identity_sources] == [("header", "authorization")]  # scheme name
    assert config.uri == uri("tokens")
    assert config.handler is None
    assert config.uri_where == f"{BASE}.authorizerUri"
    assert config.handler_where == f"{WHERE}.x-portway-handler"
    http = configure(HTTP, http_api=True)
    assert (http.type, http.ttl_s, http.payload_format, http.identity_sources) == ("REQUEST", 0, "2.0", ())
    request_config = configure(
        {
            "type": "REQUEST",
            "authorizerUri": uri("requests"),
            "identitySource": "method.request.header.X-User,method.request.querystring.tenant , "
            "stageVariables.env, context.identity.sourceIp",
            "authorizerResultTtlInSeconds": "60",
            "authorizerCredentials": "arn:aws:iam::123456789012:role/invoker",
        }
    )
    assert [(s.kind, s.name) for s in request_config.identity_sources] == [
        ("header", "x-user"),
        ("querystring", "tenant"),
        ("stageVariables", "env"),
        ("context", "identity.sourceIp"),
    ]
    assert request_config.ttl_s == 60
    yaml_float = configure(
        {**HTTP, "authorizerPayloadFormatVersion": 1.0, "identitySource": ["$request.header.A"]}, True
    )
    assert yaml_float.payload_format == "1.0"
    assert [s.name for s in yaml_float.identity_sources] == ["a"]


def test_parse_token_identity_source_and_handler() -> None:
    config = configure(
        {**TOKEN, "identitySource": "method.request.header.X-Token"},
        extra={"x-portway-handler": "auth.handler"},
    )
    assert [(s.kind, s.name) for s in config.identity_sources] == [("header", "x-token")]
    assert config.handler == "auth.handler"
    only_handler = configure({"type": "token"}, extra={"x-portway-handler": "auth.handler"})
    assert only_handler.uri is None


@pytest.mark.parametrize(
    "settings",
    [
        {"type": "jwt", "jwtConfiguration": {"issuer": "x"}},
        {"type": "cognito_user_pools", "providerARNs": []},
    ],
)
def test_parse_leaves_other_authorizers_alone(settings: dict[str, Any]) -> None:
    assert parse(Authorizer("auth", scheme(settings), WHERE), http_api=True) == (None, [])
    assert parse(Authorizer("auth", scheme(settings), WHERE), http_api=False) == (None, [])
    assert parse(
        Authorizer("auth", {"type": "apiKey", "x-amazon-apigateway-authtype": "awsSigv4"}, WHERE), False
    ) == (
        None,
        [],
    )


PROBLEMS = [
    # (settings, http_api, extra scheme keys, (JSON path, message fragment))
    ("not a mapping", False, {}, (BASE, "must be a mapping")),
    ({"type": "oauth"}, False, {}, (f"{BASE}.type", "unknown authorizer type 'oauth'")),
    ({**HTTP, "type": "token"}, True, {}, (f"{BASE}.type", "use request or jwt")),
    ({**TOKEN, "colour": "red"}, False, {}, (f"{BASE}.colour", "unknown setting")),
    ({"type": "token"}, False, {}, (f"{BASE}.authorizerUri", "needs authorizerUri (or x-portway-handler)")),
    ({**TOKEN, "authorizerUri": 5}, False, {}, (f"{BASE}.authorizerUri", "must be a string")),
    (
        TOKEN,
        False,
        {"x-portway-handler": "nodots"},
        (f"{WHERE}.x-portway-handler", "must be 'module.function'"),
    ),
    ({**TOKEN, "authorizerCredentials": 1}, False, {}, (f"{BASE}.authorizerCredentials", "role ARN string")),
    (TOKEN, False, {"name": None}, (f"{BASE}.identitySource", "a token authorizer reads one header")),
    (TOKEN, False, {"in": "query"}, (f"{BASE}.identitySource", "a token authorizer reads one header")),
    (
        {**TOKEN, "identitySource": "method.request.querystring.t"},
        False,
        {},
        (f"{BASE}.identitySource", "identity source is one header"),
    ),
    (
        {**TOKEN, "identitySource": "method.request.header.A, method.request.header.B"},
        False,
        {},
        (f"{BASE}.identitySource", "identity source is one header"),
    ),
    (
        {**TOKEN, "identitySource": "$request.header.A"},
        False,
        {},
        (f"{BASE}.identitySource", "'$request.header.A' is not an identity source"),
    ),
    (
        {**HTTP, "identitySource": "method.request.header.A"},
        True,
        {},
        (f"{BASE}.identitySource", "(use $request.header.NAME"),
    ),
    (
        {**TOKEN, "type": "request", "identitySource": "method.request.path.id"},
        False,
        {},
        (f"{BASE}.identitySource", "'method.request.path.id' is not an identity source"),
    ),
    (
        {**TOKEN, "type": "request", "identitySource": "context.authorizer.x"},
        False,
        {},
        (f"{BASE}.identitySource", "context variable 'authorizer.x' is not supported"),
    ),
    (
        {**HTTP, "identitySource": "$context.resourcePath"},
        True,
        {},
        (f"{BASE}.identitySource", "context variable 'resourcePath' is not supported"),
    ),
    ({**TOKEN, "identitySource": 5}, False, {}, (f"{BASE}.identitySource", "comma-separated string")),
    (
        {**TOKEN, "identityValidationExpression": "("},
        False,
        {},
        (f"{BASE}.identityValidationExpression", "not a valid regular expression"),
    ),
    (
        {**TOKEN, "identityValidationExpression": 5},
        False,
        {},
        (f"{BASE}.identityValidationExpression", "must be a regular expression string"),
    ),
    (
        {
            **TOKEN,
            "type": "request",
            "identitySource": "method.request.header.A",
            "identityValidationExpression": ".*",
        },
        False,
        {},
        (f"{BASE}.identityValidationExpression", "applies to token authorizers only"),
    ),
    (
        {**TOKEN, "authorizerResultTtlInSeconds": 3601},
        False,
        {},
        (f"{BASE}.authorizerResultTtlInSeconds", "from 0 to 3600, got 3601"),
    ),
    (
        {**TOKEN, "authorizerResultTtlInSeconds": -1},
        False,
        {},
        (f"{BASE}.authorizerResultTtlInSeconds", "from 0 to 3600"),
    ),
    (
        {**TOKEN, "authorizerResultTtlInSeconds": True},
        False,
        {},
        (f"{BASE}.authorizerResultTtlInSeconds", "whole number of seconds"),
    ),
    (
        {**TOKEN, "authorizerResultTtlInSeconds": "5m"},
        False,
        {},
        (f"{BASE}.authorizerResultTtlInSeconds", "whole number of seconds"),
    ),
    (
        {"type": "request", "authorizerUri": uri("requests")},
        False,
        {},
        (
            f"{BASE}.identitySource",
            "caching (authorizerResultTtlInSeconds > 0) needs at least one identity source",
        ),
    ),
    (
        {**HTTP, "authorizerResultTtlInSeconds": 300},
        True,
        {},
        (f"{BASE}.identitySource", "needs at least one identity source"),
    ),
    (
        {"type": "request", "authorizerUri": uri("simple")},
        True,
        {},
        (f"{BASE}.authorizerPayloadFormatVersion", "HTTP API Lambda authorizers need it"),
    ),
    (
        {**HTTP, "authorizerPayloadFormatVersion": "3.0"},
        True,
        {},
        (f"{BASE}.authorizerPayloadFormatVersion", "must be '1.0' or '2.0', got '3.0'"),
    ),
    (
        {**TOKEN, "authorizerPayloadFormatVersion": "2.0"},
        False,
        {},
        (f"{BASE}.authorizerPayloadFormatVersion", "applies to HTTP APIs only"),
    ),
    (
        {**HTTP, "enableSimpleResponses": "yes"},
        True,
        {},
        (f"{BASE}.enableSimpleResponses", "must be true or false"),
    ),
    (
        {**TOKEN, "enableSimpleResponses": True},
        False,
        {},
        (f"{BASE}.enableSimpleResponses", "HTTP APIs only"),
    ),
    (
        {**HTTP, "authorizerPayloadFormatVersion": "1.0", "enableSimpleResponses": True},
        True,
        {},
        (f"{BASE}.enableSimpleResponses", "simple responses need authorizerPayloadFormatVersion '2.0'"),
    ),
]


@pytest.mark.parametrize(("settings", "http_api", "extra", "problem"), PROBLEMS)
def test_parse_problems(
    settings: Any, http_api: bool, extra: dict[str, Any], problem: tuple[str, str]
) -> None:
    config, problems = parse(Authorizer("auth", scheme(settings, **extra), WHERE), http_api)
    assert config is None
    assert len(problems) >= 1
    where, fragment = problem
    assert any(p == where and fragment in m for p, m in problems), problems


def test_parse_reports_every_problem_at_once() -> None:
    settings = {
        "type": "token",
        "authorizerResultTtlInSeconds": 99999,
        "identityValidationExpression": "(",
        "enableSimpleResponses": 1,
        "extra": True,
    }
    _, problems = parse(Authorizer("auth", scheme(settings), WHERE), False)
    assert {where.rsplit(".", 1)[1] for where, _ in problems} == {
        "authorizerUri",
        "authorizerResultTtlInSeconds",
        "identityValidationExpression",
        "enableSimpleResponses",
        "extra",
    }


# --- build_stage: what the compiler calls -----------------------------------------------------------------


def operation(method: str, resource: str, auth: str | None, payload: str = "1.0") -> Operation:
    integration = Integration(IntegrationType.AWS_PROXY, uri=uri("echo"), payload_format=payload)
    return Operation(
        method, resource, integration, None, f"$.paths['{resource}'].{method.lower()}", authorizer=auth
    )


def stage_build(
    runtime: LambdaRuntime,
    schemes: Mapping[str, Mapping[str, Any]],
    kind: str = "REST",
    key_source: str = "HEADER",
) -> tuple[StageBuild, list[tuple[str, str]], list[tuple[Any, ...]]]:
    problems: list[tuple[str, str]] = []
    resolved: list[tuple[Any, ...]] = []

    def function(
        uri_: str | None, handler: str | None, label: str, uri_where: str, handler_where: str
    ) -> str | None:
        resolved.append((uri_, handler, label, uri_where, handler_where))
        assert uri_ is not None
        return uri_.split(":function:", 1)[1].split("/", 1)[0]

    api = ApiDefinition(
        kind=kind,
        title="Pets",
        source=Path("pets.yaml"),
        operations=(),
        api_key_source=key_source,
        authorizers={
            name: Authorizer(name, s, f"$.components.securitySchemes['{name}']")
            for name, s in schemes.items()
        },
    )
    build = StageBuild(
        api=api,
        api_info=API,
        stage="$default" if kind == "HTTP" else "dev",
        stage_variables={},
        settings=StageSettings(),
        table=HTTP_RESPONSES if kind == "HTTP" else REST_RESPONSES,
        runtime=runtime,
        store=MemoryStore(),
        clock=time.time,
        problem=lambda where, message: problems.append((where, message)),
        settings_problem=lambda where, message: problems.append((where, message)),
        function=function,
    )
    return build, problems, resolved


async def test_build_stage_shares_one_authorizer_per_scheme(runtime: LambdaRuntime) -> None:
    build, problems, resolved = stage_build(
        runtime,
        {"tokens": scheme(TOKEN), "jwt": scheme({"type": "jwt", "jwtConfiguration": {}})},
        key_source="AUTHORIZER",
    )
    assert build_stage(operation("GET", "/pets", None), build) is None
    assert build_stage(operation("GET", "/pets", "jwt"), build) is None  # another module's authorizer
    assert build_stage(operation("GET", "/pets", "unknown-scheme"), build) is None
    first = build_stage(operation("GET", "/pets/{id}", "tokens"), build)
    second = build_stage(operation("DELETE", "/pets/{id}", "tokens"), build)
    assert isinstance(first, AuthorizerStage)
    assert isinstance(second, AuthorizerStage)
    assert first.authorizer is second.authorizer  # one function, one result cache for the API
    assert first.name == "authorizer"
    assert not first.needs_body
    assert not first.responds
    assert first.authorizer.function == "tokens"
    assert first.authorizer.key_source_authorizer
    assert first.authorizer.arn_prefix == f"{ARN_PREFIX}/dev/"
    assert problems == []
    assert resolved == [
        (
            uri("tokens"),
            None,
            "authorizer 'tokens'",
            "$.components.securitySchemes['tokens'].x-amazon-apigateway-authorizer.authorizerUri",
            "$.components.securitySchemes['tokens'].x-portway-handler",
        )
    ]
    ctx = request("DELETE", headers=token("key:abcdefghij0123456789"))
    assert await second.on_request(ctx) is None
    assert ctx.api_key == "abcdefghij0123456789"


def test_build_stage_reports_problems_once(runtime: LambdaRuntime) -> None:
    build, problems, resolved = stage_build(
        runtime, {"broken": scheme({"type": "token", "authorizerResultTtlInSeconds": -5})}
    )
    assert build_stage(operation("GET", "/a", "broken"), build) is None
    assert build_stage(operation("GET", "/b", "broken"), build) is None
    assert [where.rsplit(".", 1)[1] for where, _ in problems] == [
        "authorizerUri",
        "authorizerResultTtlInSeconds",
    ]
    assert resolved == []


def test_build_stage_http_routes(runtime: LambdaRuntime) -> None:
    build, problems, _ = stage_build(
        runtime, {"lambda": scheme({**HTTP, "enableSimpleResponses": True})}, kind="HTTP"
    )
    v2 = build_stage(operation("GET", "/items/{id}", "lambda", "2.0"), build)
    v1 = build_stage(operation("ANY", "$default", "lambda", "1.0"), build)
    assert isinstance(v2, AuthorizerStage)
    assert isinstance(v1, AuthorizerStage)
    assert (v2.route_key, v2.view) == ("GET /items/{id}", "http2")
    assert (v1.route_key, v1.view) == ("$default", "http1")
    assert v2.authorizer.timeout_s == HTTP_TIMEOUT_S
    assert v2.authorizer.arn_prefix == f"{ARN_PREFIX}/$default/"
    assert problems == []


# --- the hot path: a cached Allow --------------------------------------------------------------------------


def run_without_awaiting(stage: AuthorizerStage, ctx: RequestContext) -> Response | None:
    """Drive ``on_request`` by hand: a cached answer never awaits, so it finishes on the first step."""
    coroutine = stage.on_request(ctx)
    try:
        coroutine.send(None)
    except StopIteration as done:
        answer: Response | None = done.value
        return answer
    coroutine.close()
    raise AssertionError("the cached path awaited something")


async def test_cached_allow_is_cheap(runtime: LambdaRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    stage = AuthorizerStage(token_authorizer(runtime), resource="/pets/{id}")
    assert await stage.on_request(request(headers=token("allow"))) is None  # fills the cache
    contexts = [
        request(headers={"Authorization": "allow", "User-Agent": "bench", "Accept": "*/*"})
        for _ in range(2000)
    ]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        answers = [run_without_awaiting(stage, ctx) for ctx in contexts]
        best = min(best, (time.perf_counter() - started) / len(contexts))
        assert answers == [None] * len(contexts)
    with capsys.disabled():
        print(f"\ncached Allow: {best * 1e6:.2f} µs per request")
    assert best < 100e-6  # generous: a loaded CI machine; typically a few µs


# --- over a socket: client → gateway (authorizer + Lambda proxy) → handler ----------------------------------


@pytest.fixture
def served() -> Iterator[str]:
    runtime = LambdaRuntime(FUNCTIONS)
    auth = token_authorizer(runtime, key_source_authorizer=False)
    integration = LambdaProxyIntegration(
        function="echo",
        handler="echo.handler",
        runtime=runtime,
        timeout_s=10,
        api=API,
        resource_id="res123",
        binary_media_types=(),
    )
    routes = [
        (
            "GET",
            "/pets/{id}",
            Route("GET", "/pets/{id}", integration, (AuthorizerStage(auth, resource="/pets/{id}"),)),
        ),
        ("POST", "/pets", Route("POST", "/pets", integration, (AuthorizerStage(auth, resource="/pets"),))),
    ]
    api = ApiDefinition(kind="REST", title="Pets", source=Path("inline.yaml"), operations=())
    gateway = Gateway(api=api, api_info=API, stage="dev", stage_variables={}, router=Router(routes))
    loops: list[asyncio.AbstractEventLoop] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not loops:
            loops.append(asyncio.get_running_loop())
        await gateway.handle(scope, receive, send)

    server = run_asgi(app)
    try:
        yield f"{server.url}/dev"
    finally:
        if loops:
            asyncio.run_coroutine_threadsafe(runtime.close(), loops[0]).result(timeout=15)
        server.stop()


def test_over_a_socket(served: str) -> None:
    with httpx.Client(timeout=20) as client:
        missing = client.get(f"{served}/pets/1")
        assert (missing.status_code, missing.content) == (401, UNAUTHORIZED)
        assert missing.headers["x-amzn-errortype"] == "UnauthorizedException"
        assert "x-amzn-requestid" in missing.headers
        allowed = client.get(f"{served}/pets/1", headers={"Authorization": "allow"})
        assert allowed.status_code == 200
        received = allowed.json()
        assert received == {
            "principalId": "user-1",
            "integrationLatency": received["integrationLatency"],
            "calls": "1",
            "tier": "gold",
            "admin": "true",
            "ratio": "1.5",
        }
        again = client.get(f"{served}/pets/1", headers={"Authorization": "allow"})
        assert again.json() == received  # cached: the same answer, no second invocation
        other_method = client.post(f"{served}/pets", headers={"Authorization": "allow"})
        assert (other_method.status_code, other_method.content) == (403, NOT_AUTHORIZED)
        denied = client.get(f"{served}/pets/1", headers={"Authorization": "deny"})
        assert (denied.status_code, denied.content) == (403, EXPLICIT_DENY)
        broken = client.get(f"{served}/pets/1", headers={"Authorization": "boom"})
        assert (broken.status_code, broken.content) == (500, REST_500)
        assert broken.headers["x-amzn-errortype"] == "AuthorizerConfigurationException"
        wildcard = client.post(f"{served}/pets", headers={"Authorization": "wildcard"})
        assert wildcard.status_code == 200
        assert wildcard.json()["calls"] == "4"  # allow, deny, boom, wildcard: one invocation each
