"""JWT (HTTP API) and Cognito user pool (REST API) authorizers, with keys made here and served over HTTP.

The issuer is a real aiohttp server on 127.0.0.1 (its OpenID configuration and key set), the definitions go
through the real OpenAPI loader, the stages are what ``build_stage`` makes, and requests are real
RequestContexts made from ASGI scopes. Time is a hand-moved clock.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

from portway.config.model import ApiDefinition, StageSettings
from portway.config.openapi import parse_openapi
from portway.integrations.events import ApiInfo
from portway.lambdas.runtime import LambdaRuntime
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES
from portway.pipeline.stage import Stage
from portway.stages.jwks import MAX_JWKS_BYTES, KeySet, KeySetSource, SourceKind, parse_jwks
from portway.stages.jwt import (
    LEEWAY_S,
    ClaimsShape,
    JwtStage,
    TokenVerifier,
    build_stage,
    java_date,
    parse,
    render_claims,
)
from portway.state.memory import MemoryStore
from portway.types import Message, Response
from tests.clock import ManualClock as Clock

AUDIENCE = "client-abc"
LAMBDA_URI = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:items/invocations"
)

POOL_ARN = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_AbC123"
UNAUTHORIZED = b'{"message":"Unauthorized"}'
RS256_HEADER = b'{"alg":"RS256","kid":"rsa-1"}'
FORBIDDEN = b'{"message":"Forbidden"}'


class Issuer:
    """An identity provider on 127.0.0.1: OpenID configuration, key set, hit counts, keys to sign with."""

    def __init__(self) -> None:
        self.keys: dict[str, Key] = {
            "rsa-1": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
            "ec-1": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
        }
        self.published = ["rsa-1", "ec-1"]
        self.hits: dict[str, int] = {"configuration": 0, "jwks": 0}
        self.mode = "ok"  # "ok", "error", "slow", "huge"
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys[kid].as_dict(private=False) for kid in self.published]}

    def rotate(self, kid: str) -> Key:
        """A new RSA key published under ``kid``, and the old ones withdrawn."""
        self.keys[kid] = RSAKey.generate_key(2048, parameters={"kid": kid})
        self.published = [kid]
        return self.keys[kid]

    def token(
        self,
        kid: str = "rsa-1",
        *,
        key: Key | None = None,
        alg: str | None = None,
        header: Mapping[str, Any] | None = None,
        now: float | None = None,
        **claims: Any,
    ) -> str:
        moment = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": self.url,
            "sub": "user-1",
            "aud": AUDIENCE,
            "iat": moment,
            "exp": moment + 3600,
            **claims,
        }
        body = {name: value for name, value in body.items() if value is not ...}
        signing_key = key if key is not None else self.keys[kid]
        algorithm = alg or ("ES256" if isinstance(signing_key, ECKey) else "RS256")
        protected = {"alg": algorithm, "kid": kid, **(header or {})}
        protected = {name: value for name, value in protected.items() if value is not None}
        return jwt.encode(protected, body, signing_key, algorithms=[algorithm])

    async def _configuration(self, request: web.Request) -> web.StreamResponse:
        self.hits["configuration"] += 1
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

    async def _keys(self, request: web.Request) -> web.StreamResponse:
        self.hits["jwks"] += 1
        if self.mode == "error":
            return web.Response(status=500, text="boom")
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        if self.mode == "huge":
            return web.json_response({**self.jwks(), "padding": "x" * MAX_JWKS_BYTES})
        return web.json_response(self.jwks())

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._configuration)
        app.router.add_get("/keys", self._keys)
        app.router.add_get("/.well-known/jwks.json", self._keys)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    server = Issuer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def context(authorization: str | None = None, *, query: bytes = b"", **headers: str) -> RequestContext:
    raw: list[tuple[bytes, bytes]] = [(b"host", b"api.local")]
    if authorization is not None:
        raw.append((b"authorization", authorization.encode("latin-1")))
    raw.extend((name.replace("_", "-").encode(), value.encode()) for name, value in headers.items())
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": query,
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3000),
    }
    return RequestContext(scope, _receive, "/items", "$default", "/items", {}, {})


# --- definitions -------------------------------------------------------------------------------------------


def http_api(
    scheme: Mapping[str, Any],
    *,
    scopes: list[str] | None = None,
    payload: str = "2.0",
    file: Path = Path("/tmp/api.yaml"),
) -> ApiDefinition:
    operation = {
        "security": [{"jwt": scopes or []}],
        "x-amazon-apigateway-integration": {
            "type": "aws_proxy",
            "uri": LAMBDA_URI,
            "payloadFormatVersion": payload,
        },
    }
    document = {
        "openapi": "3.0.1",
        "info": {"title": "Items", "version": "1"},
        "x-amazon-apigateway-importexport-version": "1.0",
        "components": {"securitySchemes": {"jwt": scheme}},
        "paths": {
            "/items": {"get": operation},
            "/open": {"get": {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": LAMBDA_URI}}},
        },
    }
    return parse_openapi(document, file)


def jwt_scheme(issuer: str, audience: list[str] | None = None, **authorizer: Any) -> dict[str, Any]:
    return {
        "type": "oauth2",
        "flows": {},
        "x-amazon-apigateway-authorizer": {
            "type": "jwt",
            "jwtConfiguration": {"issuer": issuer, "audience": [AUDIENCE] if audience is None else audience},
            "identitySource": "$request.header.Authorization",
            **authorizer,
        },
    }


def rest_api(scheme: Mapping[str, Any], *, scopes: list[str] | None = None) -> ApiDefinition:
    document = {
        "swagger": "2.0",
        "info": {"title": "Shop", "version": "1"},
        "securityDefinitions": {"pool": scheme},
        "paths": {
            "/items": {
                "get": {
                    "security": [{"pool": scopes or []}],
                    "x-amazon-apigateway-integration": {
                        "type": "aws_proxy",
                        "httpMethod": "POST",
                        "uri": LAMBDA_URI,
                    },
                }
            }
        },
    }
    return parse_openapi(document, Path("/tmp/shop.json"))


def cognito_scheme(issuer: Issuer | None = None, **authorizer: Any) -> dict[str, Any]:
    scheme: dict[str, Any] = {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "cognito_user_pools",
        "x-amazon-apigateway-authorizer": {
            "type": "cognito_user_pools",
            "providerARNs": [POOL_ARN],
            **authorizer,
        },
    }
    if issuer is not None:
        scheme["x-portway-issuer"] = issuer.url
        scheme["x-portway-jwks"] = f"{issuer.url}/.well-known/jwks.json"
    return scheme


class Built:
    def __init__(self, api: ApiDefinition, clock: Clock, lasting: dict[str, Any] | None = None) -> None:
        self.api = api
        self.problems: list[tuple[str, str]] = []
        self.build = StageBuild(
            api=api,
            api_info=ApiInfo("abc123"),
            stage="$default" if api.kind == "HTTP" else "dev",
            stage_variables={"pool": "us-east-1_FromStage1"},
            settings=StageSettings(),
            table=HTTP_RESPONSES if api.kind == "HTTP" else REST_RESPONSES,
            runtime=LambdaRuntime({}),
            store=MemoryStore(),
            clock=clock,
            problem=lambda where, message: self.problems.append((where, message)),
            settings_problem=lambda where, message: self.problems.append((where, message)),
            function=lambda *args: None,
            lasting=lasting if lasting is not None else {},
        )

    def stage(self, resource: str = "/items") -> Stage | None:
        op = next(op for op in self.api.operations if op.resource == resource)
        return build_stage(op, self.build)

    def jwt_stage(self, resource: str = "/items") -> JwtStage:
        stage = self.stage(resource)
        assert isinstance(stage, JwtStage), self.problems
        return stage


def challenge(response: Response) -> str:
    found = [value.decode() for name, value in response.headers if name == b"www-authenticate"]
    assert len(found) == 1, response.headers
    return found[0]


def invalid(description: str, scope: str = "") -> str:
    return f'Bearer scope="{scope}" error="invalid_token" error_description="{description}"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- HTTP APIs: JWT authorizers ---------------------------------------------------------------------------


async def test_valid_rs256_token_sets_payload_2_claims(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    assert (stage.name, stage.needs_body, stage.responds) == ("jwt", False, False)
    now = int(clock.now)
    token = issuer.token(now=now, email_verified=True, groups=["admin", "ops"], nickname=None)
    ctx = context("Bearer " + token)
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer == {
        "jwt": {
            "claims": {
                "iss": issuer.url,
                "sub": "user-1",
                "aud": AUDIENCE,
                "iat": str(now),
                "exp": str(now + 3600),
                "email_verified": "true",
                "groups": "[admin ops]",
            },
            "scopes": None,
        }
    }
    assert issuer.hits == {"configuration": 1, "jwks": 1}


async def test_exact_claims_and_scopes_for_payload_1_0(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url), scopes=["orders/read"], payload="1.0"), clock).jwt_stage()
    ctx = context(issuer.token(now=1_700_000_000, exp=int(clock.now) + 60, scope="openid orders/read", n=1.5))
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer == {
        "claims": {
            "iss": issuer.url,
            "sub": "user-1",
            "aud": AUDIENCE,
            "iat": "1700000000",
            "exp": str(int(clock.now) + 60),
            "scope": "openid orders/read",
            "n": "1.5",
        },
        "scopes": ["openid", "orders/read"],
    }


async def test_es256_key_is_accepted(issuer: Issuer) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    ctx = context("Bearer " + issuer.token("ec-1"))
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer is not None


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer ", "BEARER  ", ""])
async def test_bearer_prefix_is_optional(issuer: Issuer, prefix: str) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    assert await stage.on_request(context(prefix + issuer.token())) is None


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   "])
async def test_missing_token_is_401_with_a_bare_challenge(issuer: Issuer, authorization: str | None) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    response = await stage.on_request(context(authorization))
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    assert challenge(response) == "Bearer"
    assert issuer.hits == {"configuration": 0, "jwks": 0}


def _claims_case(issuer: Issuer, clock: Clock, case: str) -> tuple[str, str]:
    """(token, the www-authenticate description it must get)."""
    now = clock.now
    cases: dict[str, Callable[[], tuple[str, str]]] = {
        "expired": lambda: (issuer.token(exp=now - LEEWAY_S - 1, iat=now - 100), "the token has expired"),
        "nbf in future": lambda: (issuer.token(nbf=now + 600), "the token is not valid yet"),
        "iat in future": lambda: (issuer.token(iat=now + 600), "the token's iat is in the future"),
        "no exp": lambda: (issuer.token(exp=...), "the token does not have a valid exp claim"),
        "string exp": lambda: (issuer.token(exp="tomorrow"), "the token does not have a valid exp claim"),
        "wrong iss": lambda: (
            issuer.token(iss="https://evil.example"),
            "the token does not have a valid issuer",
        ),
        "wrong aud": lambda: (issuer.token(aud="someone-else"), "the token does not have a valid audience"),
        "wrong aud, right client_id": lambda: (
            issuer.token(aud="someone-else", client_id=AUDIENCE),
            "the token does not have a valid audience",
        ),
        "no aud nor client_id": lambda: (issuer.token(aud=...), "the token does not have a valid audience"),
        "another key's signature": lambda: (
            issuer.token(key=RSAKey.generate_key(2048)),
            "the token does not have a valid signature",
        ),
        "RS256 header on an EC key": lambda: (
            issuer.token("ec-1", key=issuer.keys["rsa-1"], alg="RS256"),
            "the token's signing algorithm is not accepted",
        ),
        "no kid": lambda: (
            issuer.token(header={"kid": None}),
            "the token does not name its signing key (kid)",
        ),
    }
    return cases[case]()


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "nbf in future",
        "iat in future",
        "no exp",
        "string exp",
        "wrong iss",
        "wrong aud",
        "wrong aud, right client_id",
        "no aud nor client_id",
        "another key's signature",
        "RS256 header on an EC key",
        "no kid",
    ],
)
async def test_refused_tokens_get_401_and_a_reason(issuer: Issuer, case: str) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    token, description = _claims_case(issuer, clock, case)
    ctx = context("Bearer " + token)
    response = await stage.on_request(ctx)
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    assert challenge(response) == invalid(description)
    assert (b"content-type", b"application/json") in response.headers
    assert ctx.authorizer is None


async def test_the_documented_audience_answer_word_for_word(issuer: Issuer) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    response = await stage.on_request(context(issuer.token(aud="x")))
    assert response is not None
    # The developer guide's example (Troubleshooting issues with HTTP API JWT authorizers):
    assert challenge(response) == (
        'Bearer scope="" error="invalid_token" error_description="the token does not have a valid audience"'
    )


async def test_client_id_counts_when_there_is_no_aud(issuer: Issuer) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url, ["other", AUDIENCE])), Clock()).jwt_stage()
    assert await stage.on_request(context(issuer.token(aud=..., client_id=AUDIENCE))) is None
    assert await stage.on_request(context(issuer.token(aud=["x", AUDIENCE]))) is None


def _unsigned(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b"") -> str:
    return f"{b64(orjson.dumps(header))}.{b64(orjson.dumps(claims))}.{b64(signature)}"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda i: _unsigned({"alg": "none", "kid": "rsa-1"}, _claims(i)), id="alg none"),
        pytest.param(lambda i: _unsigned({"alg": "None", "kid": "rsa-1"}, _claims(i)), id="alg None"),
        pytest.param(lambda i: _unsigned({"kid": "rsa-1"}, _claims(i)), id="no alg"),
        pytest.param(
            # The classic confusion: HS256 keyed with the issuer's public key.
            lambda i: jwt.encode(
                {"alg": "HS256", "kid": "rsa-1"},
                _claims(i),
                OctKey.import_key(orjson.dumps(i.keys["rsa-1"].as_dict(private=False))),
                algorithms=["HS256"],
            ),
            id="HS256 with the public key as secret",
        ),
    ],
)
async def test_unaccepted_algorithms_are_refused(issuer: Issuer, make: Callable[[Issuer], str]) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    response = await stage.on_request(context("Bearer " + make(issuer)))
    assert response is not None
    assert response.status == 401
    assert challenge(response) == invalid("the token's signing algorithm is not accepted")
    assert issuer.hits["jwks"] == 0  # refused before any key was needed


def _claims(issuer: Issuer) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer.url, "aud": AUDIENCE, "sub": "u", "iat": now, "exp": now + 600}


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.e30.e30",
        f"{b64(b'not json')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(b'[1, 2]')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(RS256_HEADER)}.{b64(b'[]')}.{b64(b'sig')}",
        f"{b64(RS256_HEADER)}.{b64(b'{}')}.s+g/",
        "ünïcode.e30.e30",
        f"{b64(RS256_HEADER)}\n.{b64(b'{}')}.{b64(b'sig')}",
    ],
)
async def test_malformed_tokens_are_refused(issuer: Issuer, token: str) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    response = await stage.on_request(context("Bearer " + token))
    assert response is not None
    assert response.status == 401
    assert challenge(response) == invalid("the token is not a JWT")


async def test_route_scopes(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url), scopes=["orders/read", "orders/admin"]), clock).jwt_stage()
    ok = context(issuer.token(scope="openid orders/read"))
    assert await stage.on_request(ok) is None
    assert ok.authorizer is not None
    assert ok.authorizer["jwt"]["scopes"] == ["openid", "orders/read"]
    scp = context(issuer.token(scp=["orders/admin"]))
    assert await stage.on_request(scp) is None
    assert scp.authorizer is not None
    assert scp.authorizer["jwt"]["scopes"] == ["orders/admin"]
    for token in (issuer.token(scope="openid profile"), issuer.token()):
        response = await stage.on_request(context(token))
        assert response is not None
        assert (response.status, response.body) == (403, FORBIDDEN)
        assert challenge(response) == (
            'Bearer scope="orders/read orders/admin" error="insufficient_scope" '
            'error_description="the token does not have the route\'s scopes"'
        )
    # A bad token on a scoped route names the route's scopes in its challenge.
    expired = await stage.on_request(context(issuer.token(exp=clock.now - 60)))
    assert expired is not None
    assert expired.status == 401
    assert challenge(expired) == invalid("the token has expired", "orders/read orders/admin")


async def test_unknown_kid_refetches_once_then_accepts_rotated_key(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    before = issuer.token()
    assert await stage.on_request(context(before)) is None
    assert await stage.on_request(context(before)) is None  # remembered
    assert issuer.hits == {"configuration": 1, "jwks": 1}

    issuer.rotate("rsa-2")
    clock.advance(11)  # past the refetch interval
    assert await stage.on_request(context(issuer.token("rsa-2"))) is None
    assert issuer.hits == {"configuration": 2, "jwks": 2}

    # A flood of made-up kids right after: refused, and the issuer is not asked again.
    for _ in range(25):
        response = await stage.on_request(context(issuer.token("rsa-2", header={"kid": uuid.uuid4().hex})))
        assert response is not None
        assert response.status == 401
        assert challenge(response) == invalid("the token's kid names no key of the issuer")
    assert issuer.hits == {"configuration": 2, "jwks": 2}

    # The withdrawn key's tokens stop working, even one verified (and remembered) before the rotation.
    response = await stage.on_request(context(before))
    assert response is not None
    assert response.status == 401


async def test_concurrent_first_requests_share_one_fetch(issuer: Issuer) -> None:
    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    tokens = [issuer.token(sub=f"user-{n}") for n in range(20)]
    results = await asyncio.gather(*(stage.on_request(context(t)) for t in tokens))
    assert results == [None] * 20
    assert issuer.hits == {"configuration": 1, "jwks": 1}


async def test_issuer_down_gives_401_and_one_loud_log_then_recovers(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="portway.auth")
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    token = issuer.token()
    await issuer.stop()
    for _ in range(3):
        response = await stage.on_request(context(token))
        assert response is not None
        assert (response.status, response.body) == (401, UNAUTHORIZED)
        assert challenge(response) == invalid("the issuer's signing keys could not be fetched")
        clock.advance(11)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "could not be read" in errors[0].getMessage()
    assert "openid-configuration" in errors[0].getMessage()

    await issuer.start()  # the same port again
    assert await stage.on_request(context(token)) is None
    assert any("readable again" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_old_keys_stay_in_use_while_the_issuer_is_down(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    assert await stage.on_request(context(issuer.token(sub="a"))) is None
    await issuer.stop()
    clock.advance(3601)  # the key set is old: fetched again (in the background) on use, and that fails
    assert await stage.on_request(context(issuer.token(sub="b", now=clock.now))) is None
    keys = stage.verifier.key_sets[issuer.url]
    await asyncio.sleep(0.2)
    assert keys.last_error is not None
    await issuer.start()
    clock.advance(11)
    assert await stage.on_request(context(issuer.token(sub="c", now=clock.now))) is None
    await asyncio.sleep(0.2)
    assert keys.last_error is None
    assert keys.loaded_at == clock.now


@pytest.mark.parametrize("mode", ["error", "slow", "huge"])
async def test_key_set_fetch_failures(issuer: Issuer, mode: str) -> None:
    issuer.mode = mode
    clock = Clock()
    keys = KeySet(KeySetSource(SourceKind.JWKS_URL, f"{issuer.url}/keys"), clock, fetch_timeout_s=0.2)
    assert await keys.find("rsa-1") is None
    assert not keys.available
    expected = {
        "error": "answered 500",
        "slow": "no answer within 0.2 s",
        "huge": f"over {MAX_JWKS_BYTES}",
    }
    assert keys.last_error is not None
    assert expected[mode] in keys.last_error
    issuer.mode = "ok"
    assert await keys.find("rsa-1") is None  # within the refetch interval: not asked again
    clock.advance(11)
    found = await keys.find("rsa-1")
    assert found is not None
    assert set(found.algorithms) == {"RS256", "RS384", "RS512"}


async def test_cached_tokens_never_outlive_exp(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(http_api(jwt_scheme(issuer.url)), clock).jwt_stage()
    token = issuer.token(exp=clock.now + 30)
    assert await stage.on_request(context(token)) is None
    assert await stage.on_request(context(token)) is None  # from the cache
    clock.advance(30 + LEEWAY_S + 1)
    response = await stage.on_request(context(token))
    assert response is not None
    assert challenge(response) == invalid("the token has expired")


async def test_token_in_a_query_parameter(issuer: Issuer) -> None:
    scheme = jwt_scheme(issuer.url, identitySource="$request.querystring.access_token")
    stage = Built(http_api(scheme), Clock()).jwt_stage()
    query = f"x=1&access_token={issuer.token()}".encode()
    assert await stage.on_request(context(query=query)) is None
    response = await stage.on_request(context(issuer.token()))  # the header is not the source
    assert response is not None
    assert challenge(response) == "Bearer"


async def test_openid_connect_url_and_custom_header(issuer: Issuer) -> None:
    scheme = {
        "type": "openIdConnect",
        "openIdConnectUrl": f"{issuer.url}/.well-known/openid-configuration",
        "x-amazon-apigateway-authorizer": {
            "type": "jwt",
            "jwtConfiguration": {"audience": [AUDIENCE]},
            "identitySource": "$request.header.X-Id-Token",
        },
    }
    stage = Built(http_api(scheme), Clock()).jwt_stage()
    assert await stage.on_request(context(x_id_token=issuer.token())) is None
    assert issuer.hits["configuration"] == 1


async def test_key_set_file_and_issuer_override(issuer: Issuer, tmp_path: Path) -> None:
    jwks = tmp_path / "keys" / "jwks.json"
    jwks.parent.mkdir()
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    scheme = {
        **jwt_scheme("https://login.example.com/"),
        "x-portway-issuer": issuer.url,
        "x-portway-jwks": "keys/jwks.json",
    }
    clock = Clock()
    built = Built(http_api(scheme, file=tmp_path / "api.yaml"), clock)
    stage = built.jwt_stage()
    assert await stage.on_request(context(issuer.token())) is None
    assert issuer.hits == {"configuration": 0, "jwks": 0}
    # Rotated in the file: an unknown kid reads it again.
    issuer.rotate("rsa-9")
    jwks.write_bytes(orjson.dumps(issuer.jwks()))
    clock.advance(11)
    assert await stage.on_request(context(issuer.token("rsa-9"))) is None


async def test_routes_share_a_verifier_and_reloads_share_the_key_set(issuer: Issuer) -> None:
    clock = Clock()
    lasting: dict[str, Any] = {}
    api = http_api(jwt_scheme(issuer.url))
    first = Built(api, clock, lasting)
    one, two = first.jwt_stage(), first.jwt_stage()
    assert one.verifier is two.verifier
    assert first.stage("/open") is None
    assert await one.on_request(context(issuer.token())) is None
    reloaded = Built(api, clock, lasting).jwt_stage()
    assert reloaded.verifier is not one.verifier
    assert await reloaded.on_request(context(issuer.token(sub="other"))) is None
    assert issuer.hits == {"configuration": 1, "jwks": 1}


async def test_a_bug_in_verification_is_a_401_not_a_500(
    issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(KeySet):
        async def find(self, kid: str) -> Any:
            raise RuntimeError("bug")

    stage = Built(http_api(jwt_scheme(issuer.url)), Clock()).jwt_stage()
    config = stage.verifier.config
    broken = Broken(config.key_sets[issuer.url])
    stage = JwtStage(TokenVerifier(config, {issuer.url: broken}), (), ClaimsShape.HTTP_V2, HTTP_RESPONSES)
    response = await stage.on_request(context(issuer.token()))
    assert response is not None
    assert response.status == 401
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)


# --- REST APIs: Cognito user pool authorizers -------------------------------------------------------------


def _id_token(issuer: Issuer, **claims: Any) -> str:
    return issuer.token(
        **{
            "token_use": "id",
            "auth_time": 1469814773,
            "email_verified": True,
            "cognito:username": "jane",
            "cognito:groups": ["admins", "ops"],
            **claims,
        }
    )


def _access_token(
    issuer: Issuer, scope: str = "aws.cognito.signin.user.admin orders/read", **claims: Any
) -> str:
    return issuer.token(
        **{"aud": ..., "client_id": AUDIENCE, "token_use": "access", "scope": scope, **claims}
    )


async def test_cognito_id_token_claims_as_a_rest_api_passes_them(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(rest_api(cognito_scheme(issuer)), clock).jwt_stage()
    assert stage.name == "cognito"
    now = 1_700_000_000
    ctx = context("Bearer " + _id_token(issuer, now=now, exp=clock.now + 600))
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer == {
        "claims": {
            "iss": issuer.url,
            "sub": "user-1",
            "aud": AUDIENCE,
            "iat": "Tue Nov 14 22:13:20 UTC 2023",
            "exp": java_date(int(clock.now + 600)),
            "token_use": "id",
            "auth_time": "1469814773",
            "email_verified": "true",
            "cognito:username": "jane",
            "cognito:groups": "[admins ops]",
        }
    }


async def test_cognito_method_without_scopes_takes_only_id_tokens(issuer: Issuer) -> None:
    stage = Built(rest_api(cognito_scheme(issuer)), Clock()).jwt_stage()
    response = await stage.on_request(context(_access_token(issuer)))
    assert response is not None
    assert (response.status, response.body) == (401, UNAUTHORIZED)
    assert (b"x-amzn-errortype", b"UnauthorizedException") in response.headers
    assert all(name != b"www-authenticate" for name, _ in response.headers)


async def test_cognito_method_with_scopes_takes_access_tokens_with_one_of_them(issuer: Issuer) -> None:
    stage = Built(
        rest_api(cognito_scheme(issuer), scopes=["orders/read", "orders/write"]), Clock()
    ).jwt_stage()
    ctx = context(_access_token(issuer))
    assert await stage.on_request(ctx) is None
    assert ctx.authorizer is not None
    assert ctx.authorizer["claims"]["scope"] == "aws.cognito.signin.user.admin orders/read"
    assert ctx.authorizer["claims"]["client_id"] == AUDIENCE
    for token in (_access_token(issuer, scope="aws.cognito.signin.user.admin"), _id_token(issuer)):
        response = await stage.on_request(context(token))
        assert response is not None
        assert (response.status, response.body) == (401, UNAUTHORIZED)  # AWS: "401 Unauthorized"


async def test_cognito_expired_and_missing_tokens(issuer: Issuer) -> None:
    clock = Clock()
    stage = Built(rest_api(cognito_scheme(issuer)), clock).jwt_stage()
    expired = await stage.on_request(context(_id_token(issuer, exp=clock.now - 60)))
    assert expired is not None
    assert (expired.status, expired.body) == (401, b'{"message":"The incoming token has expired"}')
    assert (b"x-amzn-errortype", b"UnauthorizedException") in expired.headers
    missing = await stage.on_request(context())
    assert missing is not None
    assert (missing.status, missing.body) == (401, UNAUTHORIZED)
    garbage = await stage.on_request(context("not-a-jwt"))
    assert garbage is not None
    assert (garbage.status, garbage.body) == (401, UNAUTHORIZED)
    other_pool = await stage.on_request(context(_id_token(issuer, iss="https://cognito-idp.x/y")))
    assert other_pool is not None
    assert other_pool.status == 401


async def test_cognito_identity_validation_expression_checks_aud(issuer: Issuer) -> None:
    scheme = cognito_scheme(issuer, identityValidationExpression="client-[a-z]+")
    stage = Built(rest_api(scheme), Clock()).jwt_stage()
    assert await stage.on_request(context(_id_token(issuer))) is None
    response = await stage.on_request(context(_id_token(issuer, aud="client-123")))
    assert response is not None
    assert response.status == 401
    scoped = Built(rest_api(scheme, scopes=["orders/read"]), Clock()).jwt_stage()
    response = await scoped.on_request(context(_access_token(issuer)))  # no aud to match
    assert response is not None
    assert response.status == 401


def test_cognito_pools_become_issuers() -> None:
    arns = [POOL_ARN, "arn:aws-cn:cognito-idp:cn-north-1:123456789012:userpool/${stageVariables.pool}"]
    scheme = cognito_scheme(providerARNs=arns)
    auth = rest_api(scheme).authorizers["pool"]
    config, problems = parse(auth, False, stage_variables={"pool": "cn-north-1_Xy9"})
    assert problems == []
    assert config is not None
    assert dict(config.key_sets) == {
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123": KeySetSource(
            SourceKind.JWKS_URL,
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbC123/.well-known/jwks.json",
        ),
        "https://cognito-idp.cn-north-1.amazonaws.com.cn/cn-north-1_Xy9": KeySetSource(
            SourceKind.JWKS_URL,
            "https://cognito-idp.cn-north-1.amazonaws.com.cn/cn-north-1_Xy9/.well-known/jwks.json",
        ),
    }
    assert (config.identity_location, config.identity_name) == ("header", "authorization")


# --- load-time problems -----------------------------------------------------------------------------------

S = "$.components.securitySchemes['jwt']"
A = f"{S}.x-amazon-apigateway-authorizer"
P = "$.securityDefinitions['pool'].x-amazon-apigateway-authorizer"


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        (
            {"type": "oauth2", "x-amazon-apigateway-authorizer": {"type": "jwt"}},
            (f"{A}.jwtConfiguration", "a jwt authorizer needs jwtConfiguration with issuer and audience"),
        ),
        (
            jwt_scheme("https://login.example.com", audience=[]),
            (f"{A}.jwtConfiguration.audience", "must list 1 to 50 audiences (aud or client_id values)"),
        ),
        (
            {
                **jwt_scheme("https://x"),
                "x-amazon-apigateway-authorizer": {"type": "JWT", "jwtConfiguration": {}},
            },
            (
                f"{A}.jwtConfiguration.issuer",
                "the issuer's URL is required (or the scheme's openIdConnectUrl)",
            ),
        ),
        (
            jwt_scheme("login.example.com"),
            (
                f"{A}.jwtConfiguration.issuer",
                "'login.example.com': must be an https URL, where /.well-known/openid-configuration is found",
            ),
        ),
        (
            jwt_scheme("https://x", identitySource="$request.header.A, $request.header.B"),
            (
                f"{A}.identitySource",
                "a jwt authorizer takes one identity source: $request.header.NAME or "
                "$request.querystring.NAME",
            ),
        ),
        (
            {**jwt_scheme("https://x"), "x-portway-jwks": 42},
            (f"{S}.x-portway-jwks", "must be a key set URL (http:// or https://) or a file path"),
        ),
        (
            cognito_scheme(),
            (f"{A}.type", "cognito_user_pools authorizers belong to REST APIs: an HTTP API uses type jwt"),
        ),
    ],
)
def test_http_api_definition_problems(scheme: dict[str, Any], expected: tuple[str, str]) -> None:
    auth = http_api(scheme).authorizers["jwt"]
    assert parse(auth, True) == (None, [expected])


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        (
            cognito_scheme(providerARNs=[]),
            (f"{P}.providerARNs", "must list 1 to 1000 user pool ARNs"),
        ),
        (
            cognito_scheme(providerARNs=["arn:aws:cognito-idp:us-east-1:123:userpool/x"]),
            (
                f"{P}.providerARNs[0]",
                "'arn:aws:cognito-idp:us-east-1:123:userpool/x': "
                "not arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID",
            ),
        ),
        (
            cognito_scheme(
                providerARNs=["arn:aws:cognito-idp:us-east-1:123456789012:userpool/${stageVariables.nope}"]
            ),
            (
                f"{P}.providerARNs[0]",
                "no stage variable 'nope' for "
                "'arn:aws:cognito-idp:us-east-1:123456789012:userpool/${stageVariables.nope}'",
            ),
        ),
        (
            cognito_scheme(identityValidationExpression="("),
            (
                f"{P}.identityValidationExpression",
                "not a regular expression: missing ), unterminated subpattern at position 0",
            ),
        ),
        (
            cognito_scheme(identitySource="method.request.querystring.token"),
            (f"{P}.identitySource", "must be method.request.header.NAME"),
        ),
        (
            jwt_scheme("https://x"),
            (
                f"{P}.type",
                "jwt authorizers belong to HTTP APIs: a REST API uses cognito_user_pools or Lambda",
            ),
        ),
        (
            {
                "type": "apiKey",
                "name": "Authorization",
                "in": "header",
                "x-amazon-apigateway-authtype": "cognito_user_pools",
            },
            (f"{P}.type", "required: cognito_user_pools, with the authorizer's settings beside it"),
        ),
    ],
)
def test_rest_api_definition_problems(scheme: dict[str, Any], expected: tuple[str, str]) -> None:
    auth = rest_api(scheme).authorizers["pool"]
    assert parse(auth, False) == (None, [expected])


def test_build_stage_reports_problems_once_and_serves_nothing(tmp_path: Path) -> None:
    scheme = {**jwt_scheme("https://login.example.com"), "x-portway-jwks": "missing.json"}
    built = Built(http_api(scheme, file=tmp_path / "api.yaml"), Clock())
    assert built.stage() is None
    assert built.stage() is None
    assert len(built.problems) == 1
    where, message = built.problems[0]
    assert where == f"{S}.x-portway-jwks"
    assert message.startswith("key set file: cannot read ")
    assert "missing.json" in message


def test_a_key_set_file_without_usable_keys_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text('{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}')
    scheme = {**jwt_scheme("https://login.example.com"), "x-portway-jwks": str(tmp_path / "jwks.json")}
    built = Built(http_api(scheme), Clock())
    assert built.stage() is None
    assert built.problems == [
        (f"{S}.x-portway-jwks", f"{tmp_path / 'jwks.json'} holds no RSA or EC signing key with a kid")
    ]


def test_too_many_route_scopes_is_a_problem(issuer: Issuer) -> None:
    built = Built(http_api(jwt_scheme("https://x"), scopes=[f"s{n}" for n in range(11)]), Clock())
    built.stage()
    assert built.problems == [("$.paths['/items'].get.security", "a route may list at most 10 scopes")]


def test_other_schemes_get_no_stage() -> None:
    lambda_scheme = {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": LAMBDA_URI},
    }
    built = Built(rest_api(lambda_scheme), Clock())
    assert built.stage() is None
    assert built.problems == []
    op = built.api.operations[0]
    assert op.authorizer == "pool"
    assert parse(built.api.authorizers["pool"], False) == (None, [])


# --- pure parts --------------------------------------------------------------------------------------------


def test_render_claims() -> None:
    payload = {
        "s": "x",
        "n": 3,
        "f": 1.5,
        "t": True,
        "l": ["a", 1, False],
        "o": {"k": "v"},
        "none": None,
        "exp": 1469818373,
    }
    assert render_claims(payload, rest=False) == {
        "s": "x",
        "n": "3",
        "f": "1.5",
        "t": "true",
        "l": "[a 1 false]",
        "o": '{"k":"v"}',
        "exp": "1469818373",
    }
    assert render_claims(payload, rest=True)["exp"] == "Fri Jul 29 18:52:53 UTC 2016"
    assert java_date(0) == "Thu Jan 01 00:00:00 UTC 1970"


def test_parse_jwks_keeps_only_usable_keys() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r"}).as_dict(private=False)
    ec384 = ECKey.generate_key("P-384", parameters={"kid": "e"}).as_dict(private=False)
    private = RSAKey.generate_key(2048, parameters={"kid": "p"}).as_dict(private=True)
    document = {
        "keys": [
            rsa,
            ec384,
            private,
            {**rsa, "kid": "enc", "use": "enc"},
            {**rsa, "kid": "ps", "alg": "PS256"},
            {k: v for k, v in rsa.items() if k != "kid"},
            {"kty": "oct", "kid": "s", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "bad", "n": "!!", "e": "AQAB"},
            {**rsa},
            "junk",
        ]
    }
    keys, skipped = parse_jwks(orjson.dumps(document))
    assert set(keys) == {"r", "e", "p"}
    assert set(keys["e"].algorithms) == {"ES384"}
    assert not keys["p"].key.is_private  # private members are never imported
    assert len(skipped) == 7
