"""JWT authorizers (HTTP APIs) and Amazon Cognito user pool authorizers (REST APIs), checked in the gateway.

A route whose ``security`` names such a scheme gets this stage (``build_stage``); it finds the token, verifies
it against the issuer's public keys (:mod:`portway.stages.jwks`), checks the route's scopes and hands the
claims to the integration in ``requestContext.authorizer``.

**HTTP APIs** (``x-amazon-apigateway-authorizer: {type: jwt, jwtConfiguration: {issuer, audience: [...]},
identitySource: "$request.header.Authorization"}``; an ``openIdConnect`` scheme may give ``openIdConnectUrl``
instead of the issuer). As the developer guide's *Control access to HTTP APIs with JWT authorizers* says: the
token is the identity source's value, alone or after ``Bearer``; its signature is checked with the key its
``kid`` names in the issuer's ``jwks_uri`` (from ``{issuer}/.well-known/openid-configuration``); ``iss``
must equal the issuer; ``aud`` must be one of the audience entries, or, only when the token has no ``aud``,
``client_id`` must (*Troubleshooting issues with HTTP API JWT authorizers*); ``exp`` must be after now,
``nbf`` and ``iat`` before now; when the route lists scopes, the token's ``scope`` (space-separated) or
``scp`` must hold at least one of them. Answers:

- no token → 401 ``{"message":"Unauthorized"}``, ``www-authenticate: Bearer``;
- any failed check → 401 ``{"message":"Unauthorized"}`` with ``www-authenticate: Bearer scope="…"
  error="invalid_token" error_description="…"`` (AWS's own format; its one published description, "the
  token does not have a valid audience", is used as is, the others are Portway's in the same style);
- a valid token without any of the route's scopes → 403 ``{"message":"Forbidden"}`` with
  ``error="insufficient_scope"`` (third-party captures of AWS; not in AWS's guide).

The claims reach a payload 2.0 integration as ``{"jwt": {"claims": {...}, "scopes": [...]}}`` and a
payload 1.0 one as ``{"claims": {...}, "scopes": [...]}`` (*Working with AWS Lambda proxy integrations for
HTTP APIs*). Every claim value is a string, as captured events show: numbers and booleans as their JSON
text, lists as ``[a b]``, objects as JSON, null claims left out. ``scopes`` is the token's scopes on a route
that lists scopes, and ``null`` on one that does not.

**REST APIs** (``x-amazon-apigateway-authtype: cognito_user_pools``, ``x-amazon-apigateway-authorizer: {type:
cognito_user_pools, providerARNs: [arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID]}``, the token in the
scheme's header, ``Authorization`` by default). As *Integrate a REST API with an Amazon Cognito user pool*
says: a method without authorization scopes takes an ID token (``token_use: id``); a method with scopes takes
an access token (``token_use: access``) whose ``scope`` holds at least one of them, "otherwise, the call fails
with a 401 Unauthorized response"; ``identityValidationExpression`` must match the ID token's ``aud`` (so it
refuses access tokens, which have none). The issuer is ``https://cognito-idp.REGION.amazonaws.com/POOL_ID``
and its keys ``{issuer}/.well-known/jwks.json``. Every refusal is 401 ``{"message":"Unauthorized"}``, an
expired token 401 ``{"message":"The incoming token has expired"}``. The integration gets
``{"claims": {...}}``, every value a string, ``exp``/``iat``/``nbf`` in Java's date form (``Fri Jul 29
18:52:53 UTC 2016``), as API Gateway passes them.

**Portway's extensions**, on the security scheme beside ``x-amazon-apigateway-authorizer``, for running
against a local identity provider:

- ``x-portway-issuer: http://127.0.0.1:9000/realm`` — the issuer tokens must name, instead of the
  ``jwtConfiguration.issuer`` or the user pools' issuers;
- ``x-portway-jwks: keys/jwks.json`` (a file beside the definition, read when the gateway is built) or
  ``x-portway-jwks: http://127.0.0.1:9000/jwks.json`` — where the keys come from, instead of the issuer's
  OpenID configuration (JWT) or ``{issuer}/.well-known/jwks.json`` (Cognito).

Beyond AWS, EC keys (ES256, ES384) are accepted besides RSA; ``alg: none`` and HS* never.

Decisions where AWS says nothing: ``exp``, ``nbf`` and ``iat`` are allowed :data:`LEEWAY_S` seconds of clock
skew, and a token without ``exp`` is refused; the token's header must name a ``kid``; ``Bearer`` is accepted
in any case, on REST APIs too; an issuer whose keys cannot be fetched gets its tokens refused like invalid
ones (401) and one loud log line, never a 5xx; ``scope`` and ``scp`` both count.

Verified tokens are remembered (by the token string, at most :data:`TOKEN_CACHE_SIZE` of them, never past
their ``exp``, and forgotten when the issuer's keys change), so a client repeating its token costs a dict
lookup instead of a signature check.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from portway.config.model import Authorizer, Operation
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import ResponseTable, ResponseType, gateway_response
from portway.pipeline.stage import Stage
from portway.stages.jwks import (
    ACCEPTED_ALGORITHMS,
    DISCOVERY_PATH,
    KeySet,
    KeySetError,
    KeySetSource,
    SourceKind,
)
from portway.types import Response

__all__ = [
    "LEEWAY_S",
    "TOKEN_CACHE_SIZE",
    "AuthorizerKind",
    "ClaimsShape",
    "JwtAuthorizerConfig",
    "JwtStage",
    "Refusal",
    "TokenRefused",
    "TokenVerifier",
    "Verified",
    "authorizer_kind",
    "build_stage",
    "java_date",
    "parse",
    "render_claims",
    "token_scopes",
]

log = logging.getLogger("portway.auth")

AUTHORIZER_KEY = "x-amazon-apigateway-authorizer"
AUTHTYPE_KEY = "x-amazon-apigateway-authtype"
ISSUER_KEY = "x-portway-issuer"
JWKS_KEY = "x-portway-jwks"
LEEWAY_S = 5.0  # clock skew allowed on exp, nbf and iat
TOKEN_CACHE_SIZE = 10_000  # verified tokens remembered per authorizer
MAX_AUDIENCES = 50  # HTTP API quotas: "Audiences per authorizer"
MAX_ROUTE_SCOPES = 10  # HTTP API quotas: "Scopes per route"
MAX_USER_POOLS = 1_000  # "up to 1,000 user pools for one COGNITO_USER_POOLS authorizer"
DEFAULT_IDENTITY_SOURCE = "$request.header.Authorization"
EXPIRED_MESSAGE = "The incoming token has expired"  # a REST Cognito authorizer's 401 for an expired token

_HTTP_SOURCE = re.compile(r"^\$request\.(header|querystring)\.([A-Za-z0-9!#$%&'*+.^_`|~-]+)$")
_REST_SOURCE = re.compile(r"^method\.request\.header\.([A-Za-z0-9!#$%&'*+.^_`|~-]+)$")
_USER_POOL_ARN = re.compile(
    r"^arn:(aws[a-z-]*):cognito-idp:([a-z0-9-]+):(\d{12}):userpool/([\w-]+_[0-9A-Za-z]+)$"
)
_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")  # fullmatch: base64url without padding

# What a failed check says in www-authenticate (HTTP APIs) and the debug log. Never token text: it would
# let a caller write into our response headers.
NO_TOKEN = "no token"
NOT_A_JWT = "the token is not a JWT"
BAD_ALGORITHM = "the token's signing algorithm is not accepted"
NO_KID = "the token does not name its signing key (kid)"
UNKNOWN_KID = "the token's kid names no key of the issuer"
KEYS_UNAVAILABLE = "the issuer's signing keys could not be fetched"
BAD_SIGNATURE = "the token does not have a valid signature"
BAD_ISSUER = "the token does not have a valid issuer"
BAD_AUDIENCE = "the token does not have a valid audience"  # AWS's words
NO_EXPIRY = "the token does not have a valid exp claim"
EXPIRED = "the token has expired"
NOT_YET_VALID = "the token is not valid yet"
ISSUED_IN_FUTURE = "the token's iat is in the future"
WRONG_TOKEN_USE = "the token is not the kind of token this method takes"
MISSING_SCOPE = "the token does not have the route's scopes"
INTERNAL = "the token could not be verified"


class AuthorizerKind(StrEnum):
    JWT = "jwt"  # HTTP APIs
    COGNITO = "cognito_user_pools"  # REST APIs


class ClaimsShape(StrEnum):
    """How ``requestContext.authorizer`` carries the claims for the route's integration."""

    HTTP_V2 = "http 2.0"  # {"jwt": {"claims": ..., "scopes": ...}}
    HTTP_V1 = "http 1.0"  # {"claims": ..., "scopes": ...}
    REST = "rest"  # {"claims": ...}


class Refusal(StrEnum):
    INVALID = "invalid"
    EXPIRED = "expired"
    UNAVAILABLE = "unavailable"  # the issuer's keys could not be fetched


class TokenRefused(Exception):
    def __init__(self, kind: Refusal, description: str) -> None:
        super().__init__(description)
        self.kind = kind
        self.description = description


@dataclass(frozen=True, slots=True)
class JwtAuthorizerConfig:
    """One JWT or Cognito user pool authorizer, checked at load time.

    ``key_sets`` maps every issuer a token may name to where that issuer's keys come from.
    """

    name: str
    kind: AuthorizerKind
    key_sets: Mapping[str, KeySetSource]
    identity_location: str  # "header" or "querystring"
    identity_name: str  # the header's name, lower-case, or the query parameter's
    audience: frozenset[str] = frozenset()  # JWT authorizers
    validation_expression: re.Pattern[str] | None = None  # Cognito: identityValidationExpression on aud
    where: str = ""
    jwks_where: str = ""  # JSON path of x-portway-jwks, for problems reading a key set file


def authorizer_kind(auth: Authorizer) -> AuthorizerKind | None:
    """The kind of a security scheme that is a JWT or Cognito authorizer; None for any other scheme.

    A scheme whose ``x-amazon-apigateway-authtype`` is ``cognito_user_pools`` counts as one even when its
    authorizer object lacks the type (then :func:`parse` reports it): such a route must not go unguarded.
    """
    raw = auth.scheme.get(AUTHORIZER_KEY)
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if isinstance(kind, str):
        lowered = kind.lower()
        for member in AuthorizerKind:
            if member.value == lowered:
                return member
        return None
    authtype = auth.scheme.get(AUTHTYPE_KEY)
    if isinstance(authtype, str) and authtype.lower() == AuthorizerKind.COGNITO.value:
        return AuthorizerKind.COGNITO
    return None


def parse(
    auth: Authorizer,
    http_api: bool,
    *,
    base_dir: Path | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> tuple[JwtAuthorizerConfig | None, list[tuple[str, str]]]:
    """Check a JWT or Cognito authorizer as written: its config, or None and every problem (JSON path,
    message). A scheme that is neither comes back as ``(None, [])``.

    ``base_dir`` is where a relative ``x-portway-jwks`` file is found (the definition's directory);
    ``stage_variables`` fill ``${stageVariables.NAME}`` in ``providerARNs``.
    """
    kind = authorizer_kind(auth)
    if kind is None:
        return None, []
    problems: list[tuple[str, str]] = []
    where = f"{auth.where}.{AUTHORIZER_KEY}"
    raw = auth.scheme.get(AUTHORIZER_KEY)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
        problems.append(
            (f"{where}.type", f"required: {kind.value}, with the authorizer's settings beside it")
        )
        return None, problems
    overrides = _overrides(auth, base_dir, problems)
    if kind is AuthorizerKind.JWT:
        config = _parse_jwt(auth, raw, where, http_api, overrides, problems)
    else:
        config = _parse_cognito(auth, raw, where, http_api, overrides, stage_variables or {}, problems)
    return (None if problems else config), problems


@dataclass(frozen=True, slots=True)
class _Overrides:
    issuer: str | None
    jwks: KeySetSource | None
    jwks_where: str


def _overrides(auth: Authorizer, base_dir: Path | None, problems: list[tuple[str, str]]) -> _Overrides:
    issuer = auth.scheme.get(ISSUER_KEY)
    if issuer is not None and (not isinstance(issuer, str) or not issuer):
        problems.append((f"{auth.where}.{ISSUER_KEY}", "must be the issuer's URL, as tokens name it in iss"))
        issuer = None
    jwks_where = f"{auth.where}.{JWKS_KEY}"
    raw = auth.scheme.get(JWKS_KEY)
    jwks: KeySetSource | None = None
    if raw is not None:
        if not isinstance(raw, str) or not raw.strip():
            problems.append((jwks_where, "must be a key set URL (http:// or https://) or a file path"))
        elif raw.startswith(("https://", "http://")):
            jwks = KeySetSource(SourceKind.JWKS_URL, raw)
        else:
            path = Path(raw)
            if not path.is_absolute():
                path = (base_dir or Path.cwd()) / path
            jwks = KeySetSource(SourceKind.FILE, str(path.resolve()))
    return _Overrides(issuer, jwks, jwks_where)


def _parse_jwt(
    auth: Authorizer,
    raw: Mapping[str, Any],
    where: str,
    http_api: bool,
    overrides: _Overrides,
    problems: list[tuple[str, str]],
) -> JwtAuthorizerConfig | None:
    if not http_api:
        problems.append(
            (
                f"{where}.type",
                "jwt authorizers belong to HTTP APIs: a REST API uses cognito_user_pools or Lambda",
            )
        )
        return None
    conf = raw.get("jwtConfiguration")
    conf_where = f"{where}.jwtConfiguration"
    if not isinstance(conf, Mapping):
        problems.append((conf_where, "a jwt authorizer needs jwtConfiguration with issuer and audience"))
        return None
    issuer = conf.get("issuer")
    discovery: str | None = None
    connect_url = auth.scheme.get("openIdConnectUrl")
    if issuer is None and isinstance(connect_url, str):
        if not connect_url.endswith(DISCOVERY_PATH):
            problems.append((f"{auth.where}.openIdConnectUrl", f"must end with {DISCOVERY_PATH}"))
            return None
        issuer, discovery = connect_url.removesuffix(DISCOVERY_PATH), connect_url
    if not isinstance(issuer, str) or not issuer:
        problems.append(
            (f"{conf_where}.issuer", "the issuer's URL is required (or the scheme's openIdConnectUrl)")
        )
        return None
    if overrides.issuer is not None:
        issuer, discovery = overrides.issuer, None
    source = overrides.jwks
    if source is None:
        if not issuer.startswith(("https://", "http://")):
            problems.append(
                (f"{conf_where}.issuer", f"{issuer!r}: must be an https URL, where {DISCOVERY_PATH} is found")
            )
            return None
        source = KeySetSource(SourceKind.DISCOVERY, discovery or issuer.rstrip("/") + DISCOVERY_PATH)
    audience = conf.get("audience")
    if (
        not isinstance(audience, list)
        or not audience
        or not all(isinstance(a, str) and a for a in audience)
        or len(audience) > MAX_AUDIENCES
    ):
        problems.append(
            (f"{conf_where}.audience", f"must list 1 to {MAX_AUDIENCES} audiences (aud or client_id values)")
        )
        return None
    identity = raw.get("identitySource", DEFAULT_IDENTITY_SOURCE)
    entries = [part.strip() for part in identity.split(",")] if isinstance(identity, str) else []
    match = _HTTP_SOURCE.match(entries[0]) if len(entries) == 1 else None
    if match is None:
        problems.append(
            (
                f"{where}.identitySource",
                "a jwt authorizer takes one identity source: $request.header.NAME or "
                "$request.querystring.NAME",
            )
        )
        return None
    location, name = match.group(1), match.group(2)
    return JwtAuthorizerConfig(
        name=auth.name,
        kind=AuthorizerKind.JWT,
        key_sets={issuer: source},
        identity_location=location,
        identity_name=name.lower() if location == "header" else name,
        audience=frozenset(audience),
        where=auth.where,
        jwks_where=overrides.jwks_where,
    )


def _parse_cognito(
    auth: Authorizer,
    raw: Mapping[str, Any],
    where: str,
    http_api: bool,
    overrides: _Overrides,
    stage_variables: Mapping[str, str],
    problems: list[tuple[str, str]],
) -> JwtAuthorizerConfig | None:
    if http_api:
        problems.append(
            (f"{where}.type", "cognito_user_pools authorizers belong to REST APIs: an HTTP API uses type jwt")
        )
        return None
    arns = raw.get("providerARNs")
    arns_where = f"{where}.providerARNs"
    if not isinstance(arns, list) or not arns or len(arns) > MAX_USER_POOLS:
        problems.append((arns_where, f"must list 1 to {MAX_USER_POOLS} user pool ARNs"))
        return None
    issuers: list[str] = []
    for index, arn in enumerate(arns):
        here = f"{arns_where}[{index}]"
        if not isinstance(arn, str):
            problems.append((here, "must be a user pool ARN"))
            continue
        missing = [v for v in _STAGE_VARIABLE.findall(arn) if v not in stage_variables]
        if missing:
            problems.append((here, f"no stage variable {missing[0]!r} for {arn!r}"))
            continue
        arn = _STAGE_VARIABLE.sub(lambda m: stage_variables[m.group(1)], arn)
        match = _USER_POOL_ARN.match(arn)
        if match is None:
            problems.append((here, f"{arn!r}: not arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID"))
            continue
        partition, region, _account, pool = match.groups()
        domain = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
        issuers.append(f"https://cognito-idp.{region}.{domain}/{pool}")
    header = _cognito_header(auth, raw, where, problems)
    expression = raw.get("identityValidationExpression")
    pattern: re.Pattern[str] | None = None
    if expression is not None:
        try:
            pattern = re.compile(str(expression))
        except re.error as exc:
            problems.append((f"{where}.identityValidationExpression", f"not a regular expression: {exc}"))
    if problems or header is None:
        return None
    if overrides.issuer is not None:
        issuers = [overrides.issuer]
    key_sets = {
        issuer: overrides.jwks
        or KeySetSource(SourceKind.JWKS_URL, issuer.rstrip("/") + "/.well-known/jwks.json")
        for issuer in issuers
    }
    return JwtAuthorizerConfig(
        name=auth.name,
        kind=AuthorizerKind.COGNITO,
        key_sets=key_sets,
        identity_location="header",
        identity_name=header,
        validation_expression=pattern,
        where=auth.where,
        jwks_where=overrides.jwks_where,
    )


def _cognito_header(
    auth: Authorizer, raw: Mapping[str, Any], where: str, problems: list[tuple[str, str]]
) -> str | None:
    """The header a Cognito authorizer reads: its identitySource, else the scheme's header, else
    Authorization."""
    source = raw.get("identitySource")
    if source is not None:
        match = _REST_SOURCE.match(source.strip()) if isinstance(source, str) else None
        if match is None:
            problems.append((f"{where}.identitySource", "must be method.request.header.NAME"))
            return None
        return match.group(1).lower()
    name = auth.scheme.get("name")
    if auth.scheme.get("in") == "header" and isinstance(name, str) and name:
        return name.lower()
    return "authorization"


# --- claims as the integration sees them -----------------------------------------------------------


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_REST_DATE_CLAIMS = frozenset({"exp", "iat", "nbf"})


def java_date(seconds: float) -> str:
    """A time as Java's ``Date.toString()`` writes it in UTC: how a REST API passes ``exp`` and ``iat``.

    >>> java_date(1469818373)
    'Fri Jul 29 18:52:53 UTC 2016'
    """
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} UTC {t.tm_year}"
    )


def _claim_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + " ".join("null" if v is None else _claim_text(v) for v in value) + "]"
    return orjson.dumps(value).decode()


def render_claims(payload: Mapping[str, Any], rest: bool) -> dict[str, str]:
    """The token's claims as API Gateway hands them on: every value a string, null claims left out; a REST
    API's dates in Java's form.

    >>> render_claims({"sub": "u", "exp": 1469818373, "groups": ["a", "b"], "x": None}, rest=False)
    {'sub': 'u', 'exp': '1469818373', 'groups': '[a b]'}
    """
    claims: dict[str, str] = {}
    for name, value in payload.items():
        if value is None:
            continue
        if rest and name in _REST_DATE_CLAIMS and _is_number(value):
            try:
                claims[name] = java_date(value)
                continue
            except (OverflowError, OSError, ValueError):
                pass
        claims[name] = _claim_text(value)
    return claims


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def token_scopes(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The scopes a token claims (``scope``, space-separated, and ``scp``, a list or string); None when it
    has neither claim."""
    found: list[str] = []
    present = False
    for claim in ("scope", "scp"):
        value = payload.get(claim)
        if isinstance(value, str):
            present = True
            found.extend(value.split())
        elif isinstance(value, list):
            present = True
            found.extend(v for v in value if isinstance(v, str))
    return tuple(dict.fromkeys(found)) if present else None


# --- verification ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verified:
    """A token that passed every authorizer-wide check; the route's own checks (scopes) come after."""

    claims: Mapping[str, str]  # as the integration gets them
    scopes: tuple[str, ...] | None
    token_use: str | None
    exp: float
    key_set: KeySet
    generation: int  # the key set's generation it was verified with


def _b64json(segment: str) -> Any:
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def _invalid(description: str) -> TokenRefused:
    return TokenRefused(Refusal.INVALID, description)


class TokenVerifier:
    """Verifies tokens for one authorizer (shared by all its routes), remembering the valid ones."""

    def __init__(
        self,
        config: JwtAuthorizerConfig,
        key_sets: Mapping[str, KeySet],
        clock: Callable[[], float] = time.time,
        *,
        cache_size: int = TOKEN_CACHE_SIZE,
        leeway_s: float = LEEWAY_S,
    ) -> None:
        self.config = config
        self.key_sets = key_sets  # issuer -> its keys
        self.clock = clock
        self.cache_size = cache_size
        self.leeway_s = leeway_s
        self._cache: dict[str, Verified] = {}
        self._rest = config.kind is AuthorizerKind.COGNITO

    async def verify(self, token: str) -> Verified:
        """The verified token, or :class:`TokenRefused` saying why not."""
        cached = self._cache.get(token)
        if cached is not None:
            if cached.generation == cached.key_set.generation and self.clock() <= cached.exp + self.leeway_s:
                return cached
            self._cache.pop(token, None)
        verified = await self._verify(token)
        if self.cache_size > 0:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)), None)  # the oldest entry
            self._cache[token] = verified
        return verified

    async def _verify(self, token: str) -> Verified:
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():
            raise _invalid(NOT_A_JWT)
        try:
            header = _b64json(parts[0])
            payload = _b64json(parts[1])
            signature = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except (ValueError, binascii.Error):
            raise _invalid(NOT_A_JWT) from None
        if not isinstance(header, dict) or not isinstance(payload, dict) or not _B64URL.fullmatch(parts[2]):
            raise _invalid(NOT_A_JWT)
        alg = header.get("alg")
        if alg not in ACCEPTED_ALGORITHMS:  # "none", HS*, anything unknown
            log.debug("authorizer %s: token algorithm %r refused", self.config.name, alg)
            raise _invalid(BAD_ALGORITHM)
        issuer = payload.get("iss")
        key_set = self.key_sets.get(issuer) if isinstance(issuer, str) else None
        if key_set is None:
            raise _invalid(BAD_ISSUER)  # before any fetch: only configured issuers are ever asked for keys
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid(NO_KID)
        key = await key_set.find(kid)
        if key is None:
            if not key_set.available:
                raise TokenRefused(Refusal.UNAVAILABLE, KEYS_UNAVAILABLE)
            raise _invalid(UNKNOWN_KID)
        generation = key_set.generation
        model = key.algorithms.get(alg)
        if model is None:
            raise _invalid(BAD_ALGORITHM)  # e.g. RS256 named with an EC key, ES384 with a P-256 key
        if not model.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature, key.key):
            raise _invalid(BAD_SIGNATURE)
        exp = self._check_times(payload)
        self._check_audience(payload)
        token_use = payload.get("token_use")
        return Verified(
            claims=render_claims(payload, rest=self._rest),
            scopes=token_scopes(payload),
            token_use=token_use if isinstance(token_use, str) else None,
            exp=exp,
            key_set=key_set,
            generation=generation,
        )

    def _check_times(self, payload: Mapping[str, Any]) -> float:
        now = self.clock()
        exp = payload.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _invalid(NO_EXPIRY)
        if now > exp + self.leeway_s:
            raise TokenRefused(Refusal.EXPIRED, EXPIRED)
        nbf = payload.get("nbf")
        if nbf is not None and (not _is_number(nbf) or nbf > now + self.leeway_s):
            raise _invalid(NOT_YET_VALID)
        iat = payload.get("iat")
        if iat is not None and (not _is_number(iat) or iat > now + self.leeway_s):
            raise _invalid(ISSUED_IN_FUTURE)
        return float(exp)

    def _check_audience(self, payload: Mapping[str, Any]) -> None:
        aud = payload.get("aud")
        if self.config.kind is AuthorizerKind.COGNITO:
            pattern = self.config.validation_expression
            if pattern is not None and not (isinstance(aud, str) and pattern.fullmatch(aud)):
                raise _invalid(BAD_AUDIENCE)
            return
        audience = self.config.audience
        if aud is not None:  # client_id counts only when the token has no aud
            values = aud if isinstance(aud, list) else [aud]
            if any(isinstance(v, str) and v in audience for v in values):
                return
        else:
            client_id = payload.get("client_id")
            if isinstance(client_id, str) and client_id in audience:
                return
        raise _invalid(BAD_AUDIENCE)


# --- the stage -----------------------------------------------------------------------------------------


class JwtStage:
    """One route's JWT / Cognito check: token → verified claims → the route's scopes → ``ctx.authorizer``."""

    needs_body = False
    responds = False

    def __init__(
        self,
        verifier: TokenVerifier,
        scopes: tuple[str, ...],
        shape: ClaimsShape,
        table: ResponseTable,
    ) -> None:
        self.verifier = verifier
        self.scopes = scopes
        self.shape = shape
        self.table = table
        config = verifier.config
        self.cognito = config.kind is AuthorizerKind.COGNITO
        self.name = "cognito" if self.cognito else "jwt"
        self._header = (
            config.identity_name.encode("latin-1") if config.identity_location == "header" else None
        )
        self._query = config.identity_name
        self._wanted = frozenset(scopes)
        self._challenge_scope = " ".join(scopes)

    async def on_request(self, ctx: RequestContext) -> Response | None:
        started = time.perf_counter()
        return ctx.note_authorizer(started, await self._authorize(ctx))

    async def _authorize(self, ctx: RequestContext) -> Response | None:
        token = self._token(ctx)
        if token is None:
            return self._refuse(TokenRefused(Refusal.INVALID, NO_TOKEN))
        try:
            verified = await self.verifier.verify(token)
        except TokenRefused as refused:
            return self._refuse(refused)
        except Exception:
            # A bug of ours must not turn into a 500 nor let the request through.
            log.exception("authorizer %s: verifying a token failed", self.verifier.config.name)
            return self._refuse(TokenRefused(Refusal.INVALID, INTERNAL))
        if self.cognito:
            wanted_use = "access" if self.scopes else "id"
            if verified.token_use != wanted_use:
                return self._refuse(TokenRefused(Refusal.INVALID, WRONG_TOKEN_USE))
        if self.scopes and (verified.scopes is None or self._wanted.isdisjoint(verified.scopes)):
            return self._refuse(TokenRefused(Refusal.INVALID, MISSING_SCOPE), insufficient_scope=True)
        claims = dict(verified.claims)
        if self.shape is ClaimsShape.REST:
            ctx.authorizer = {"claims": claims}
        else:
            scopes = list(verified.scopes) if self.scopes and verified.scopes is not None else None
            if self.shape is ClaimsShape.HTTP_V2:
                ctx.authorizer = {"jwt": {"claims": claims, "scopes": scopes}}
            else:
                ctx.authorizer = {"claims": claims, "scopes": scopes}
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response

    def _token(self, ctx: RequestContext) -> str | None:
        if self._header is not None:
            raw = ctx.header(self._header)
            text = raw.decode("latin-1") if raw is not None else None
        else:
            text = None
            for name, value in parse_qsl(ctx.query_string.decode("latin-1"), keep_blank_values=True):
                if name == self._query:
                    text = value
        if text is None:
            return None
        text = text.strip()
        if text[:7].lower() == "bearer ":
            text = text[7:].lstrip()
        elif text.lower() == "bearer":
            return None
        return text or None

    def _refuse(self, refused: TokenRefused, *, insufficient_scope: bool = False) -> Response:
        log.debug("authorizer %s refused a request: %s", self.verifier.config.name, refused.description)
        if self.cognito:
            if refused.kind is Refusal.EXPIRED:
                return gateway_response(ResponseType.UNAUTHORIZED, self.table, message=EXPIRED_MESSAGE)
            return gateway_response(ResponseType.UNAUTHORIZED, self.table)
        if insufficient_scope:
            response = gateway_response(ResponseType.ACCESS_DENIED, self.table)
            error = "insufficient_scope"
        else:
            response = gateway_response(ResponseType.UNAUTHORIZED, self.table)
            error = "invalid_token"
        if refused.description == NO_TOKEN:
            challenge = "Bearer"
        else:
            challenge = (
                f'Bearer scope="{self._challenge_scope}" error="{error}" '
                f'error_description="{refused.description}"'
            )
        response.headers.append((b"www-authenticate", challenge.encode("latin-1")))
        return response


# --- compile time ------------------------------------------------------------------------------------

_MODULE = "portway.stages.jwt"
_FAILED = object()  # build.shared's mark for an authorizer whose problems were reported already


def build_stage(op: Operation, build: StageBuild) -> Stage | None:
    """The route's JWT (HTTP API) or Cognito user pool (REST API) stage, or None when ``op.authorizer``
    names no such scheme.

    The authorizer is checked once per compiled gateway (problems reported through ``build.problem``; the
    route then gets no stage, and the compiler refuses the definition). Routes of one authorizer share one
    :class:`TokenVerifier`; remote key sets live in ``build.lasting`` (one per source, across reloads), a key
    set file is read again with each build.
    """
    if op.authorizer is None:
        return None
    auth = build.api.authorizers.get(op.authorizer)
    if auth is None or authorizer_kind(auth) is None:
        return None
    http_api = build.api.kind == "HTTP"
    if http_api and len(op.authorization_scopes) > MAX_ROUTE_SCOPES:
        build.problem(f"{op.where}.security", f"a route may list at most {MAX_ROUTE_SCOPES} scopes")
    verifier = _verifier(auth, build, http_api)
    if verifier is None:
        return None
    if not http_api:
        shape = ClaimsShape.REST
    elif op.integration.payload_format == "1.0":
        shape = ClaimsShape.HTTP_V1
    else:
        shape = ClaimsShape.HTTP_V2
    return JwtStage(verifier, op.authorization_scopes, shape, build.table)


def _verifier(auth: Authorizer, build: StageBuild, http_api: bool) -> TokenVerifier | None:
    memo_key = f"{_MODULE}:authorizer:{auth.name}"
    found = build.shared.get(memo_key)
    if isinstance(found, TokenVerifier):
        return found
    if found is _FAILED:
        return None
    config, problems = parse(
        auth, http_api, base_dir=build.api.source.parent, stage_variables=build.stage_variables
    )
    for where, message in problems:
        build.problem(where, message)
    key_sets = _key_sets(config, build) if config is not None else None
    if config is None or key_sets is None:
        build.shared[memo_key] = _FAILED
        return None
    verifier = TokenVerifier(config, key_sets, build.clock)
    build.shared[memo_key] = verifier
    return verifier


def _key_sets(config: JwtAuthorizerConfig, build: StageBuild) -> dict[str, KeySet] | None:
    key_sets: dict[str, KeySet] = {}
    for issuer, source in config.key_sets.items():
        if source.kind is SourceKind.FILE:
            # Per build: an edited file is read again on reload (and its problems reported then).
            store = build.shared
            memo_key = f"{_MODULE}:keys:{source.location}"
        else:
            store = build.lasting
            memo_key = f"{_MODULE}:keys:{source.kind}:{source.location}"
        key_set = store.get(memo_key)
        if not isinstance(key_set, KeySet):
            key_set = KeySet(source, build.clock)
            if source.kind is SourceKind.FILE:
                try:
                    key_set.load_now()
                except KeySetError as exc:
                    build.problem(config.jwks_where, f"key set file: {exc}")
                    return None
                if not key_set.keys:
                    build.problem(
                        config.jwks_where, f"{source.location} holds no RSA or EC signing key with a kid"
                    )
                    return None
            store[memo_key] = key_set
        key_sets[issuer] = key_set
    return key_sets
