"""Authorizers over real sockets: Lambda TOKEN and REQUEST authorizers (REST), a Lambda authorizer with simple
responses (HTTP API), a JWT authorizer (HTTP API) and a Cognito user pool authorizer (REST), each in front of
a Lambda proxy integration that echoes the ``requestContext.authorizer`` it received.

Authorizer functions run in real workers and count their invocations (tests/e2e/auth/lambdas.py). Keys are
made here; the issuer is a real HTTP server on 127.0.0.1 serving its OpenID configuration and key set.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, RSAKey

from portway.stages.jwks import KeySet
from tests.conftest import GatewayFactory, RunningGateway

AUTH = Path(__file__).parent / "auth"
FUNCTIONS = AUTH / "functions.yaml"

UNAUTHORIZED = {"message": "Unauthorized"}
EXPLICIT_DENY = {"Message": "User is not authorized to access this resource with an explicit deny"}
NOT_AUTHORIZED = {"Message": "User is not authorized to access this resource"}
REST_500 = {"message": "Internal server error"}
HTTP_500 = {"message": "Internal Server Error"}
FORBIDDEN = {"message": "Forbidden"}
AUDIENCE = "orders-client"
POOL_CLIENT = "cognito-client"


def check(response: httpx.Response, status: int, body: Any, error_type: str | None = None) -> None:
    """The response's status, JSON body and x-amzn-ErrorType (None: no such header, as HTTP APIs send)."""
    assert (response.status_code, response.json()) == (status, body), response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers.get("x-amzn-errortype") == error_type


# --- REST API: Lambda TOKEN and REQUEST authorizers ---------------------------------------------------------


@pytest.fixture
def rest(gateway_factory: GatewayFactory) -> Iterator[httpx.Client]:
    gw = gateway_factory(AUTH / "rest_lambda.yaml", FUNCTIONS, stage="dev")
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        yield client


def test_token_authorizer_context_reaches_the_integration(rest: httpx.Client) -> None:
    response = rest.get("/pets", headers={"Authorization": "allow"})
    assert response.status_code == 200, response.text
    received = response.json()
    latency = received["authorizer"]["integrationLatency"]
    assert isinstance(latency, int)
    assert latency >= 0
    # Context values reach a REST integration as strings; integrationLatency is the authorizer's run time.
    assert received == {
        "calls": 1,
        "authorizer": {
            "principalId": "user-allow",
            "integrationLatency": latency,
            "calls": "1",
            "tier": "gold",
            "admin": "true",
            "ratio": "1.5",
        },
    }


def test_token_authorizer_refusals_and_failures(rest: httpx.Client) -> None:
    check(rest.get("/pets"), 401, UNAUTHORIZED, "UnauthorizedException")
    check(rest.get("/pets", headers={"Authorization": ""}), 401, UNAUTHORIZED, "UnauthorizedException")
    check(rest.get("/pets", headers={"X-Token": "allow"}), 401, UNAUTHORIZED, "UnauthorizedException")
    check(
        rest.get("/pets", headers={"Authorization": "unauthorized"}),
        401,
        UNAUTHORIZED,
        "UnauthorizedException",
    )
    check(rest.get("/pets", headers={"Authorization": "deny"}), 403, EXPLICIT_DENY, "AccessDeniedException")
    # A policy allowing GET /pets alone: the cached answer is evaluated against each method ARN.
    only_get = {"Authorization": "only-get"}
    allowed = rest.get("/pets", headers=only_get)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["authorizer"]["principalId"] == "user-get"
    check(rest.post("/pets", headers=only_get), 403, NOT_AUTHORIZED, "AccessDeniedException")
    check(rest.get("/pets/7", headers=only_get), 403, NOT_AUTHORIZED, "AccessDeniedException")
    for broken in ("boom", "garbage", "boom"):  # failures are not cached: each one runs the function
        check(
            rest.get("/pets", headers={"Authorization": broken}),
            500,
            REST_500,
            "AuthorizerConfigurationException",
        )
    # The gateway still serves; the function ran once per token, and once for each failure:
    # unauthorized, deny, only-get, boom, garbage, boom, and now allow.
    final = rest.get("/pets/7", headers={"Authorization": "allow"})
    assert final.status_code == 200, final.text
    assert final.json()["authorizer"]["calls"] == "7"
    assert final.json()["calls"] == 2  # the integration ran for the two allowed requests only


def test_token_authorizer_caches_by_token(rest: httpx.Client) -> None:
    first = [rest.get("/pets", headers={"Authorization": "allow"}) for _ in range(3)]
    assert [r.status_code for r in first] == [200, 200, 200]
    assert [r.json()["authorizer"]["calls"] for r in first] == ["1", "1", "1"]  # one invocation
    assert [r.json()["calls"] for r in first] == [1, 2, 3]  # the integration ran each time
    # Another route of the same authorizer shares its cache.
    other_route = rest.get("/pets/1", headers={"Authorization": "allow"})
    assert other_route.json()["authorizer"]["calls"] == "1"
    # Another token: another invocation, then cached in turn; the first token's entry stays.
    second = [rest.get("/pets", headers={"Authorization": "allow-again"}) for _ in range(2)]
    assert [r.json()["authorizer"] for r in second] == [second[0].json()["authorizer"]] * 2
    assert second[0].json()["authorizer"]["calls"] == "2"
    assert second[0].json()["authorizer"]["principalId"] == "user-allow-again"
    assert rest.get("/pets", headers={"Authorization": "allow"}).json()["authorizer"]["calls"] == "1"


def test_token_authorizer_without_caching_runs_every_time(rest: httpx.Client) -> None:
    responses = [rest.get("/uncached", headers={"X-Token": "allow"}) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["authorizer"]["calls"] for r in responses] == ["1", "2", "3"]
    check(rest.get("/uncached", headers={"X-Token": "deny"}), 403, EXPLICIT_DENY, "AccessDeniedException")
    check(rest.get("/uncached", headers={"X-Token": "deny"}), 403, EXPLICIT_DENY, "AccessDeniedException")
    # The cached authorizer of /pets is another function: its count is its own.
    assert rest.get("/pets", headers={"Authorization": "allow"}).json()["authorizer"]["calls"] == "1"
    assert rest.get("/uncached", headers={"X-Token": "allow"}).json()["authorizer"]["calls"] == "6"


def test_request_authorizer_reads_header_and_query_sources(rest: httpx.Client) -> None:
    tenant = {"X-Tenant": "acme"}
    # A missing or empty source is refused before the function runs.
    check(rest.get("/tenants"), 401, UNAUTHORIZED, "UnauthorizedException")
    check(rest.get("/tenants", headers=tenant), 401, UNAUTHORIZED, "UnauthorizedException")
    check(rest.get("/tenants", params={"session": "s1"}), 401, UNAUTHORIZED, "UnauthorizedException")
    check(
        rest.get("/tenants", params={"session": ""}, headers=tenant),
        401,
        UNAUTHORIZED,
        "UnauthorizedException",
    )
    check(
        rest.get("/tenants", params={"session": "s1"}, headers={"X-Tenant": ""}),
        401,
        UNAUTHORIZED,
        "UnauthorizedException",
    )
    first = rest.get("/tenants", params={"session": "s1"}, headers=tenant)
    assert first.status_code == 200, first.text
    context = first.json()["authorizer"]
    assert context == {
        "principalId": "tenant-acme",
        "integrationLatency": context["integrationLatency"],
        "calls": "1",  # the five refusals above never ran it
        "tenant": "acme",
        "session": "s1",
        "type": "REQUEST",
    }
    # Every source is part of the cache key.
    same = rest.get("/tenants", params={"session": "s1"}, headers=tenant)
    assert same.json()["authorizer"] == context
    new_session = rest.get("/tenants", params={"session": "s2"}, headers=tenant)
    assert new_session.json()["authorizer"]["calls"] == "2"
    assert new_session.json()["authorizer"]["session"] == "s2"
    new_tenant = rest.get("/tenants", params={"session": "s1"}, headers={"X-Tenant": "globex"})
    assert new_tenant.json()["authorizer"]["calls"] == "3"
    blocked = {"X-Tenant": "blocked"}
    check(
        rest.get("/tenants", params={"session": "s1"}, headers=blocked),
        403,
        EXPLICIT_DENY,
        "AccessDeniedException",
    )
    check(rest.get("/tenants", headers=blocked), 401, UNAUTHORIZED, "UnauthorizedException")
    final = rest.get("/tenants", params={"session": "s1"}, headers=tenant)
    assert final.status_code == 200
    assert final.json()["authorizer"]["calls"] == "1"  # still the first answer, from the cache


# --- HTTP API: Lambda authorizer, payload 2.0, simple responses ---------------------------------------------


def test_http_api_simple_responses(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(AUTH / "http_lambda.yaml", FUNCTIONS, stage=None)
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        check(client.get("/me"), 401, UNAUTHORIZED)
        allowed = client.get("/me", headers={"Authorization": "letmein"})
        assert allowed.status_code == 200, allowed.text
        # The context reaches a payload 2.0 integration under "lambda", its values as the function gave them.
        assert allowed.json() == {
            "calls": 1,
            "authorizer": {
                "lambda": {
                    "calls": 1,
                    "user": "jane",
                    "admin": False,
                    "roles": ["reader", "writer"],
                    "identitySource": ["letmein"],
                    "routeKey": "GET /me",
                }
            },
        }
        # HTTP APIs cache nothing unless asked to: the function runs for every request.
        assert (
            client.get("/me", headers={"Authorization": "letmein"}).json()["authorizer"]["lambda"]["calls"]
            == 2
        )
        check(client.get("/me", headers={"Authorization": "nope"}), 403, FORBIDDEN)
        check(client.get("/me", headers={"Authorization": "unauthorized"}), 401, UNAUTHORIZED)
        check(client.get("/me", headers={"Authorization": "boom"}), 500, HTTP_500)
        final = client.get("/me", headers={"Authorization": "letmein"})
        assert final.status_code == 200
        assert final.json()["calls"] == 3  # the integration ran for the allowed requests only
        assert final.json()["authorizer"]["lambda"]["calls"] == 6


# --- a local identity provider ------------------------------------------------------------------------------


class Keys:
    """The signing keys of the tests, made once (RSA generation is the slow part)."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
        self.stranger = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})  # same kid, not published
        self.rotated = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


class Issuer:
    """An OpenID provider on 127.0.0.1: ``/.well-known/openid-configuration`` names ``/keys``, the key set
    (also at ``/.well-known/jwks.json``, where a Cognito user pool has it). ``hits`` counts requests."""

    def __init__(self, published: list[Key]) -> None:
        self.published = published
        self.hits = {"configuration": 0, "jwks": 0}
        self._lock = threading.Lock()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    issuer.count("configuration")
                    document: Mapping[str, Any] = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/keys"}
                elif self.path in ("/keys", "/.well-known/jwks.json"):
                    issuer.count("jwks")
                    document = {"keys": [key.as_dict(private=False) for key in issuer.published]}
                else:
                    self.send_error(404)
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, args=(0.05,), name="issuer", daemon=True
        )
        self.thread.start()

    def count(self, what: str) -> None:
        with self._lock:
            self.hits[what] += 1

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def definition(self, template: str, directory: Path) -> Path:
        """A definition of tests/e2e/auth with the issuer's URL written in."""
        path = directory / template
        path.write_text((AUTH / template).read_text().replace("__ISSUER__", self.url))
        return path


@pytest.fixture
def issuer(keys: Keys) -> Iterator[Issuer]:
    server = Issuer([keys.rsa, keys.ec])
    try:
        yield server
    finally:
        server.stop()


def sign(key: Key, claims: Mapping[str, Any], *, alg: str | None = None, kid: str | None = None) -> str:
    algorithm = alg or ("ES256" if isinstance(key, ECKey) else "RS256")
    header = {"alg": algorithm, "kid": kid or key.kid}
    return jwt.encode(header, dict(claims), key, algorithms=[algorithm])


def b64(document: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


# --- HTTP API: JWT authorizer -------------------------------------------------------------------------------


def jwt_claims(issuer: Issuer, **claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": issuer.url, "sub": "user-1", "aud": AUDIENCE, "iat": now, "exp": now + 3600, **claims}


def invalid_token(description: str, scope: str = "") -> str:
    """AWS's challenge for a token that fails a check."""
    return f'Bearer scope="{scope}" error="invalid_token" error_description="{description}"'


@pytest.fixture
def jwt_api(gateway_factory: GatewayFactory, issuer: Issuer, tmp_path: Path) -> RunningGateway:
    return gateway_factory(issuer.definition("http_jwt.yaml", tmp_path), FUNCTIONS, stage=None)


def test_jwt_valid_tokens_hand_their_claims_to_the_integration(
    jwt_api: RunningGateway, issuer: Issuer, keys: Keys
) -> None:
    claims = jwt_claims(issuer, email_verified=True, groups=["a", "b"], scope="profile orders/read")
    rsa_token = sign(keys.rsa, claims)
    ec_token = sign(keys.ec, {**claims, "sub": "user-2", "aud": "other-client"})
    with httpx.Client(base_url=jwt_api.base, timeout=20) as client:
        by_rsa = client.get("/me", headers={"Authorization": f"Bearer {rsa_token}"})
        by_ec = client.get("/me", headers={"Authorization": ec_token})  # "Bearer" is optional
        scoped = client.get("/orders", headers={"Authorization": f"Bearer {rsa_token}"})
    assert (by_rsa.status_code, by_ec.status_code, scoped.status_code) == (200, 200, 200), by_rsa.text
    expected_claims = {
        "iss": issuer.url,
        "sub": "user-1",
        "aud": AUDIENCE,
        "iat": str(claims["iat"]),
        "exp": str(claims["exp"]),
        "email_verified": "true",
        "groups": "[a b]",
        "scope": "profile orders/read",
    }
    # A route without scopes passes scopes as null; a scoped route passes the token's scopes.
    assert by_rsa.json()["authorizer"] == {"jwt": {"claims": expected_claims, "scopes": None}}
    assert by_ec.json()["authorizer"] == {
        "jwt": {"claims": {**expected_claims, "sub": "user-2", "aud": "other-client"}, "scopes": None}
    }
    assert scoped.json()["authorizer"] == {
        "jwt": {"claims": expected_claims, "scopes": ["profile", "orders/read"]}
    }
    # One discovery, one key set fetch for the three requests and both keys.
    assert issuer.hits == {"configuration": 1, "jwks": 1}


def test_jwt_refusals_are_401_with_aws_challenge(jwt_api: RunningGateway, issuer: Issuer, keys: Keys) -> None:
    now = int(time.time())
    good = jwt_claims(issuer)
    refused = {
        "expired": (sign(keys.rsa, {**good, "iat": now - 7200, "exp": now - 60}), "the token has expired"),
        "wrong audience": (
            sign(keys.rsa, {**good, "aud": "someone-else"}),
            "the token does not have a valid audience",
        ),
        "wrong issuer": (
            sign(keys.rsa, {**good, "iss": "http://127.0.0.1:9/elsewhere"}),
            "the token does not have a valid issuer",
        ),
        "another key's signature": (
            sign(keys.stranger, good),
            "the token does not have a valid signature",
        ),
        "alg none": (
            f"{b64({'alg': 'none', 'kid': 'rsa-1'})}.{b64(good)}.",
            "the token's signing algorithm is not accepted",
        ),
        "unpublished kid": (sign(keys.rotated, good), "the token's kid names no key of the issuer"),
        "malformed": ("not.a.jwt", "the token is not a JWT"),
        "two segments": ("abc.def", "the token is not a JWT"),
    }
    with httpx.Client(base_url=jwt_api.base, timeout=20) as client:
        missing = client.get("/me")
        check(missing, 401, UNAUTHORIZED)
        assert missing.headers["www-authenticate"] == "Bearer"
        bare = client.get("/me", headers={"Authorization": "Bearer"})
        check(bare, 401, UNAUTHORIZED)
        assert bare.headers["www-authenticate"] == "Bearer"
        for case, (token, description) in refused.items():
            response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED), case
            assert response.headers["www-authenticate"] == invalid_token(description), case
        # On a scoped route, the challenge names the route's scopes.
        expired = client.get("/orders", headers={"Authorization": refused["expired"][0]})
        check(expired, 401, UNAUTHORIZED)
        assert expired.headers["www-authenticate"] == invalid_token(
            "the token has expired", "orders/read orders/admin"
        )
        final = client.get("/me", headers={"Authorization": sign(keys.rsa, good)})
        assert final.status_code == 200, final.text
        assert final.json()["authorizer"]["jwt"]["claims"]["sub"] == "user-1"


def test_jwt_route_scopes(jwt_api: RunningGateway, issuer: Issuer, keys: Keys) -> None:
    insufficient = (
        'Bearer scope="orders/read orders/admin" error="insufficient_scope" '
        'error_description="the token does not have the route\'s scopes"'
    )
    with httpx.Client(base_url=jwt_api.base, timeout=20) as client:
        for claims in (
            jwt_claims(issuer, scope="profile orders/write"),
            jwt_claims(issuer),  # no scope claim at all
            jwt_claims(issuer, scp=["orders/reader"]),
        ):
            response = client.get("/orders", headers={"Authorization": sign(keys.rsa, claims)})
            check(response, 403, FORBIDDEN)
            assert response.headers["www-authenticate"] == insufficient
        # scp counts too, and any one of the route's scopes is enough.
        admin = client.get(
            "/orders", headers={"Authorization": sign(keys.ec, jwt_claims(issuer, scp=["orders/admin"]))}
        )
        assert admin.status_code == 200, admin.text
        assert admin.json()["authorizer"]["jwt"]["scopes"] == ["orders/admin"]
        # The same token on a route without scopes.
        me = client.get("/me", headers={"Authorization": sign(keys.rsa, jwt_claims(issuer, scope="profile"))})
        assert me.status_code == 200


def test_jwt_issuer_rotating_keys(jwt_api: RunningGateway, issuer: Issuer, keys: Keys) -> None:
    before = sign(keys.rsa, jwt_claims(issuer))
    after = sign(keys.rotated, jwt_claims(issuer, sub="user-2"))
    with httpx.Client(base_url=jwt_api.base, timeout=20) as client:
        assert client.get("/me", headers={"Authorization": before}).status_code == 200
        assert issuer.hits == {"configuration": 1, "jwks": 1}
        issuer.published = [keys.rotated, keys.ec]  # rsa-1 withdrawn, rsa-2 new

        # Right after a fetch, an unknown kid is refused without asking the issuer again (at most one
        # fetch per refetch interval, so made-up kids cannot hammer it).
        too_soon = client.get("/me", headers={"Authorization": after})
        check(too_soon, 401, UNAUTHORIZED)
        assert too_soon.headers["www-authenticate"] == invalid_token(
            "the token's kid names no key of the issuer"
        )
        assert issuer.hits == {"configuration": 1, "jwks": 1}

        # The interval is 10 s; shortened on the running gateway's key set so the test need not wait.
        key_sets = [v for v in jwt_api.service.resources.lasting.values() if isinstance(v, KeySet)]
        assert len(key_sets) == 1
        key_sets[0].refetch_interval_s = 0.2
        time.sleep(0.3)

        accepted = client.get("/me", headers={"Authorization": after})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["authorizer"]["jwt"]["claims"]["sub"] == "user-2"
        assert issuer.hits == {"configuration": 2, "jwks": 2}
        # The withdrawn key's token, verified before, is refused now that the issuer's keys changed.
        withdrawn = client.get("/me", headers={"Authorization": before})
        check(withdrawn, 401, UNAUTHORIZED)
        assert withdrawn.headers["www-authenticate"] == invalid_token(
            "the token's kid names no key of the issuer"
        )
        assert client.get("/me", headers={"Authorization": after}).status_code == 200


# --- REST API: Cognito user pool authorizer -----------------------------------------------------------------


def java_date(seconds: int) -> str:
    """Java's Date.toString() in UTC, as API Gateway passes exp and iat to a REST integration."""
    return time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime(seconds))


def test_cognito_user_pool_authorizer(
    gateway_factory: GatewayFactory, issuer: Issuer, keys: Keys, tmp_path: Path
) -> None:
    gw = gateway_factory(issuer.definition("rest_cognito.yaml", tmp_path), FUNCTIONS, stage="dev")
    now = int(time.time())
    id_claims = {
        "sub": "4a1c-jane",
        "aud": POOL_CLIENT,
        "iss": issuer.url,
        "token_use": "id",
        "cognito:username": "jane",
        "cognito:groups": ["admins", "ops"],
        "email": "jane@example.com",
        "email_verified": True,
        "auth_time": now - 10,
        "iat": now - 10,
        "exp": now + 3600,
    }
    with httpx.Client(base_url=gw.base, timeout=20) as client:
        check(client.get("/profile"), 401, UNAUTHORIZED, "UnauthorizedException")
        valid = client.get("/profile", headers={"Authorization": sign(keys.rsa, id_claims)})
        assert valid.status_code == 200, valid.text
        assert valid.json()["authorizer"] == {
            "claims": {
                "sub": "4a1c-jane",
                "aud": POOL_CLIENT,
                "iss": issuer.url,
                "token_use": "id",
                "cognito:username": "jane",
                "cognito:groups": "[admins ops]",
                "email": "jane@example.com",
                "email_verified": "true",
                "auth_time": str(now - 10),
                "iat": java_date(now - 10),
                "exp": java_date(now + 3600),
            }
        }
        expired = {**id_claims, "iat": now - 7200, "exp": now - 3600}
        check(
            client.get("/profile", headers={"Authorization": sign(keys.rsa, expired)}),
            401,
            {"message": "The incoming token has expired"},
            "UnauthorizedException",
        )
        # A method without scopes takes ID tokens only; a bad signature is refused like any invalid token.
        access = {**id_claims, "token_use": "access", "scope": "aws.cognito.signin.user.admin"}
        for token in (sign(keys.rsa, access), sign(keys.stranger, id_claims), "garbage"):
            check(
                client.get("/profile", headers={"Authorization": token}),
                401,
                UNAUTHORIZED,
                "UnauthorizedException",
            )
        assert client.get("/profile", headers={"Authorization": sign(keys.ec, id_claims)}).status_code == 200
    # The user pool's keys come from x-portway-jwks directly: no discovery document.
    assert issuer.hits == {"configuration": 0, "jwks": 1}
