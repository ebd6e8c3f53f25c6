"""CORS for HTTP APIs: ``x-amazon-apigateway-cors``, answered by the gateway as API Gateway answers it.

What AWS documents ("Configure CORS for HTTP APIs in API Gateway", "x-amazon-apigateway-cors object", the
apigatewayv2 ``Cors`` model):

- With CORS configured, API Gateway answers preflight OPTIONS requests itself, "even if there isn't an
  OPTIONS route"; a route that takes the OPTIONS request (an ``OPTIONS`` route, ``ANY``, ``$default``) gets it
  instead (that is why AWS advises an unauthorised ``OPTIONS /{proxy+}`` beside an authorised ``$default``).
- To answer with CORS headers the request must carry ``Origin``; a preflight, ``Origin`` and
  ``Access-Control-Request-Method``.
- API Gateway adds the configured headers to the integration's response, and *ignores* CORS headers the
  integration returns.
- ``allowOrigins`` takes exact origins, ``*``, and ``https://*`` / ``http://*`` (any origin of that scheme);
  ``allowCredentials`` with a ``*`` origin is refused ("allow-credentials is not supported if 'allow-origin'
  is *"). ``maxAge`` is -1 to 86400 seconds.

Portway's choices where AWS says nothing (held against real answers where we had them — an HTTP API with a
listed origin answered ``access-control-allow-origin: <origin>``, ``vary: origin``,
``access-control-allow-credentials: true``):

- a listed or scheme-matched origin is echoed (with ``vary: origin``); ``*`` is sent as ``*`` (no Vary);
- a preflight is answered 204 with no body: allow-origin (and Vary), allow-credentials, allow-methods,
  allow-headers, max-age, each only when configured; the configured lists are sent as configured (joined with
  ``,``), the browser decides whether the requested method and headers are among them. A preflight from an
  origin not allowed gets 204 without any CORS header;
- an actual request gets allow-origin (and Vary), allow-credentials and expose-headers; an origin not allowed
  gets none; integration ``access-control-*`` headers are dropped either way;
- origins compare case-insensitively, the request's spelling is echoed.

REST APIs do not read this extension (AWS keeps it to HTTP APIs): their preflights are OPTIONS methods,
usually with a mock integration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from portway.config.errors import json_path
from portway.config.model import HTTP_METHODS, Operation
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.types import Headers, Response

__all__ = ["EXTENSION", "CorsPolicy", "CorsStage", "build_stage", "parse_cors", "policy"]

EXTENSION = "x-amazon-apigateway-cors"
MAX_AGE_RANGE = (-1, 86_400)  # apigatewayv2 Cors.MaxAge
_FIELDS = ("allowOrigins", "allowMethods", "allowHeaders", "exposeHeaders", "maxAge", "allowCredentials")
_SCHEME_WILDCARDS = ("https://*", "http://*")

_ALLOW_ORIGIN = b"access-control-allow-origin"
_VARY_ORIGIN = (b"vary", b"origin")
_ANY = b"*"
_PREFIX = b"access-control-"


def _request_headers(headers: Headers) -> tuple[bytes | None, bytes | None]:
    """(Origin, Access-Control-Request-Method) of the request, in one pass (last values)."""
    origin = requested = None
    for name, value in headers:
        if name == b"origin":
            origin = value
        elif name == b"access-control-request-method":
            requested = value
    return origin, requested


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """An API's CORS configuration, compiled: what each kind of request is answered with."""

    any_origin: bool
    origins: frozenset[bytes]  # exact origins, lower-case
    schemes: tuple[bytes, ...]  # b"https://" for "https://*"
    actual: tuple[tuple[bytes, bytes], ...]  # after allow-origin: credentials, expose-headers
    preflight_headers: tuple[
        tuple[bytes, bytes], ...
    ]  # after allow-origin: credentials, methods, headers, age

    def allow_origin(self, origin: bytes) -> bytes | None:
        """The Access-Control-Allow-Origin value for ``origin``, or None when it is not allowed."""
        if self.any_origin:
            return _ANY
        lower = origin.lower()
        if lower in self.origins or lower.startswith(self.schemes):
            return origin
        return None

    def preflight(self, method: str, headers: Headers) -> Response | None:
        """The gateway's answer to a preflight no route takes (204, no body); None when the request is not a
        preflight (it lacks Origin or Access-Control-Request-Method)."""
        if method != "OPTIONS":
            return None
        origin, requested = _request_headers(headers)
        if origin is None or requested is None:
            return None
        response = Response(204, [])
        self._add(origin, response.headers, self.preflight_headers)
        return response

    def apply(self, method: str, request_headers: Headers, response: Response) -> None:
        """Put the CORS headers on ``response`` in place of any the integration set."""
        headers = response.headers
        if any(name[:15].lower() == _PREFIX for name, _ in headers):
            headers = response.headers = [h for h in headers if h[0][:15].lower() != _PREFIX]
        origin, requested = _request_headers(request_headers)
        if origin is None:
            return
        preflight = method == "OPTIONS" and requested is not None
        self._add(origin, headers, self.preflight_headers if preflight else self.actual)

    def _add(self, origin: bytes, headers: Headers, extra: tuple[tuple[bytes, bytes], ...]) -> None:
        allowed = self.allow_origin(origin)
        if allowed is None:
            return
        headers.append((_ALLOW_ORIGIN, allowed))
        if allowed is not _ANY:
            headers.append(_VARY_ORIGIN)
        headers.extend(extra)


def _strings(
    value: Any, field: str, problems: list[tuple[str, str]], *, upper: bool = False
) -> tuple[str, ...]:
    where = json_path(EXTENSION, field)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        problems.append((where, "must be a list of non-empty strings"))
        return ()
    return tuple(item.strip().upper() if upper else item.strip() for item in value)


def parse_cors(raw: Mapping[str, Any]) -> tuple[CorsPolicy | None, list[tuple[str, str]]]:
    """The policy for an HTTP API's ``x-amazon-apigateway-cors``, and problems as (JSON path, message)."""
    problems: list[tuple[str, str]] = []
    for key in raw:
        if key not in _FIELDS:
            problems.append((json_path(EXTENSION, str(key)), f"unknown field: use {', '.join(_FIELDS)}"))
    origins = _strings(raw.get("allowOrigins"), "allowOrigins", problems)
    methods = _strings(raw.get("allowMethods"), "allowMethods", problems, upper=True)
    allow_headers = _strings(raw.get("allowHeaders"), "allowHeaders", problems)
    expose = _strings(raw.get("exposeHeaders"), "exposeHeaders", problems)
    for i, origin in enumerate(origins):
        if "*" in origin and origin != "*" and origin not in _SCHEME_WILDCARDS:
            problems.append(
                (
                    json_path(EXTENSION, "allowOrigins", i),
                    f"{origin!r}: a wildcard origin is '*', 'https://*' or 'http://*'",
                )
            )
    for i, method in enumerate(methods):
        if method != "*" and method not in HTTP_METHODS:
            problems.append(
                (
                    json_path(EXTENSION, "allowMethods", i),
                    f"{method!r}: not one of {', '.join(HTTP_METHODS)} or *",
                )
            )
    max_age = raw.get("maxAge")
    low, high = MAX_AGE_RANGE
    if max_age is not None and (
        isinstance(max_age, bool) or not isinstance(max_age, int) or not low <= max_age <= high
    ):
        problems.append(
            (json_path(EXTENSION, "maxAge"), f"must be a whole number of seconds from {low} to {high}")
        )
        max_age = None
    credentials = raw.get("allowCredentials", False)
    if not isinstance(credentials, bool):
        problems.append((json_path(EXTENSION, "allowCredentials"), "must be true or false"))
        credentials = False
    if credentials and "*" in origins:
        # AWS refuses it too: "allow-credentials is not supported if 'allow-origin' is *".
        problems.append(
            (json_path(EXTENSION, "allowCredentials"), "cannot be true when allowOrigins has '*'")
        )
    if problems:
        return None, problems
    common: list[tuple[bytes, bytes]] = []
    if credentials:
        common.append((b"access-control-allow-credentials", b"true"))
    actual = list(common)
    if expose:
        actual.append((b"access-control-expose-headers", ",".join(expose).encode("latin-1")))
    preflight = list(common)
    if methods:
        preflight.append((b"access-control-allow-methods", ",".join(methods).encode("latin-1")))
    if allow_headers:
        preflight.append((b"access-control-allow-headers", ",".join(allow_headers).encode("latin-1")))
    if max_age is not None:
        preflight.append((b"access-control-max-age", str(max_age).encode()))
    policy = CorsPolicy(
        any_origin="*" in origins,
        origins=frozenset(o.lower().encode("latin-1") for o in origins if "*" not in o),
        schemes=tuple(o[:-1].lower().encode() for o in origins if o in _SCHEME_WILDCARDS),
        actual=tuple(actual),
        preflight_headers=tuple(preflight),
    )
    return policy, problems


_SHARED_KEY = "cors"


def policy(build: StageBuild) -> CorsPolicy | None:
    """The API's CORS policy: parsed once per compiled gateway (its problems reported once); None for a REST
    API or an HTTP API without ``x-amazon-apigateway-cors``. The gateway answers preflights with it too."""
    if _SHARED_KEY not in build.shared:
        found: CorsPolicy | None = None
        if build.api.kind == "HTTP" and build.api.cors is not None:
            found, problems = parse_cors(build.api.cors)
            for where, message in problems:
                build.problem(where, message)
        build.shared[_SHARED_KEY] = found
    shared: CorsPolicy | None = build.shared[_SHARED_KEY]
    return shared


class CorsStage:
    """The CORS headers of every answer of the route, its own stages' refusals included: put it first."""

    name = "cors"
    needs_body = False
    responds = True

    def __init__(self, cors: CorsPolicy) -> None:
        self.cors = cors

    async def on_request(self, ctx: RequestContext) -> Response | None:
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        self.cors.apply(ctx.method, ctx.headers, response)
        return response


def build_stage(op: Operation, build: StageBuild) -> CorsStage | None:
    """The route's CORS stage when the API configures CORS (every route of it has one)."""
    found = policy(build)
    return CorsStage(found) if found is not None else None
