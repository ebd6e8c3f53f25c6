"""Lambda authorizers: REST APIs' TOKEN and REQUEST authorizers, HTTP APIs' REQUEST authorizers (payload 1.0
or 2.0, IAM policies or simple responses), with API Gateway's result cache.

A route whose ``security`` names a security scheme carrying ``x-amazon-apigateway-authorizer`` of type
``token`` or ``request`` gets this stage (``jwt`` and ``cognito_user_pools`` schemes belong to another
module). The function is the scheme's ``authorizerUri``, or its ``x-portway-handler: module.function``,
which wins, as for integrations. Settings, as API Gateway names them (checked when the definition loads):

- ``type``: ``token`` (REST only: the caller's token in one header) or ``request``;
- ``identitySource``: comma-separated. REST: ``method.request.header.NAME``,
  ``method.request.querystring.NAME``, ``stageVariables.NAME``, ``context.NAME``; a token authorizer's one
  header may come from the scheme's ``name`` instead. HTTP APIs: ``$request.header.NAME``,
  ``$request.querystring.NAME``, ``$stageVariables.NAME``, ``$context.NAME``;
- ``identityValidationExpression`` (REST token authorizers): a regular expression the whole token must match;
- ``authorizerResultTtlInSeconds``: 0 to 3600; REST default 300, HTTP APIs' default 0 (no caching);
- ``authorizerPayloadFormatVersion`` (HTTP APIs, required): ``1.0`` or ``2.0``;
- ``enableSimpleResponses`` (HTTP APIs, payload 2.0): the function answers ``{isAuthorized, context}``;
- ``authorizerCredentials``: accepted and ignored (local invocations need no role).

Per request, as AWS does it (developer guide: *Use API Gateway Lambda authorizers*, *Input to* and *Output
from an API Gateway Lambda authorizer*, *Working with AWS Lambda authorizers for HTTP APIs*):

- an identity source missing or empty, or a token that fails ``identityValidationExpression`` → 401
  ``UNAUTHORIZED`` without invoking the function;
- the values of all identity sources together are the cache key (one cache per authorizer, shared by every
  route using it); a cached policy is evaluated against each request's own method ARN;
- the function raising an error whose message is exactly ``Unauthorized`` → 401;
- any other error, a timeout (REST 29 s, HTTP APIs 10 s), a crash, or an answer that is not a valid
  authorizer output → 500 ``AUTHORIZER_CONFIGURATION_ERROR``, with a log line saying what was wrong;
- the policy explicitly denying ``execute-api:Invoke`` on the method ARN → 403 ``ACCESS_DENIED`` ("… with an
  explicit deny"); no statement allowing it → 403 "User is not authorized to access this resource" (HTTP
  APIs: 403 ``Forbidden`` for both, and for ``isAuthorized: false``);
- allowed: ``ctx.authorizer`` is what the integration's ``requestContext.authorizer`` carries — REST:
  ``{"principalId", "integrationLatency", **context}`` with context values stringified; HTTP API payload
  2.0: ``{"lambda": context}``; HTTP API payload 1.0: like REST but values as returned —
  ``ctx.api_key`` the ``usageIdentifierKey`` (API key source ``AUTHORIZER``), and ``ctx.can_invalidate_cache``
  whether the policy allows ``execute-api:InvalidateCache`` on the method ARN.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from portway.config.model import DEFAULT_ROUTE, Authorizer, Operation
from portway.integrations.events import ApiInfo, build_event_v1, parse_query, stable_id
from portway.integrations.events_v2 import build_event_v2
from portway.lambdas.runtime import LambdaRuntime, Outcome
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import ResponseTable, ResponseType, gateway_response
from portway.pipeline.stage import Stage
from portway.stages.policy import (
    INVALIDATE_CACHE,
    INVOKE,
    Decision,
    Policy,
    PolicyError,
    arn_prefix,
    compile_policy,
)
from portway.types import Response

__all__ = [
    "AUTHORIZER_KEY",
    "CACHE_MAX_ENTRIES",
    "HANDLER_KEY",
    "HTTP_TIMEOUT_S",
    "HTTP_TTL_DEFAULT_S",
    "NOT_AUTHORIZED_MESSAGE",
    "REST_TIMEOUT_S",
    "REST_TTL_DEFAULT_S",
    "TTL_MAX_S",
    "AuthorizerStage",
    "IdentitySource",
    "InvalidAnswer",
    "LambdaAuthorizer",
    "LambdaAuthorizerConfig",
    "ResultCache",
    "build_stage",
    "parse",
    "read_answer",
]

log = logging.getLogger("portway.authorizer")

AUTHORIZER_KEY = "x-amazon-apigateway-authorizer"
HANDLER_KEY = "x-portway-handler"
REST_TTL_DEFAULT_S = 300  # authorizerResultTtlInSeconds when not set (REST APIs)
HTTP_TTL_DEFAULT_S = 0  # HTTP APIs cache only when asked to
TTL_MAX_S = 3600
REST_TIMEOUT_S = 29.0  # AWS documents no separate limit: the REST integration timeout's maximum
HTTP_TIMEOUT_S = 10.0  # HTTP API quota "Timeout for Lambda authorizer response: 10000 ms"
CACHE_MAX_ENTRIES = 10_000  # per authorizer; the oldest entry goes when a new one would pass it
UNAUTHORIZED_ERROR = "Unauthorized"  # the error message that makes API Gateway answer 401
# REST's 403 when no statement allows the method (an explicit Deny keeps the table's own message).
NOT_AUTHORIZED_MESSAGE = "User is not authorized to access this resource"

_LAMBDA_TYPES = {"token": "TOKEN", "request": "REQUEST"}
_OTHER_TYPES = frozenset({"jwt", "cognito_user_pools"})  # authorizers another module runs
_KNOWN_KEYS = (
    "type",
    "authorizerUri",
    "authorizerCredentials",
    "identitySource",
    "identityValidationExpression",
    "authorizerResultTtlInSeconds",
    "authorizerPayloadFormatVersion",
    "enableSimpleResponses",
)
_REST_SOURCE = re.compile(r"^(?:method\.request\.(header|querystring)|(stageVariables)|(context))\.(.+)$")
_HTTP_SOURCE = re.compile(r"^(?:\$request\.(header|querystring)|\$(stageVariables)|\$(context))\.(.+)$")


# --- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdentitySource:
    """One identity source: where its value comes from (``header`` names lower-case)."""

    kind: str  # "header", "querystring", "stageVariables" or "context"
    name: str
    expression: str  # as written


@dataclass(frozen=True, slots=True)
class LambdaAuthorizerConfig:
    """A Lambda authorizer as the definition describes it, checked."""

    name: str
    type: str  # "TOKEN" or "REQUEST"
    uri: str | None
    handler: str | None
    identity_sources: tuple[IdentitySource, ...]
    validation: re.Pattern[str] | None  # identityValidationExpression (REST token authorizers)
    ttl_s: int  # 0: no caching
    payload_format: str  # the event's shape: "1.0" (REST, or HTTP API 1.0) or "2.0"
    simple_responses: bool
    http_api: bool
    uri_where: str
    handler_where: str


def _field(base: str, key: str) -> str:
    return f"{base}.{key}"


def _sources(
    raw: Any, http_api: bool, where: str, problems: list[tuple[str, str]]
) -> tuple[IdentitySource, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        texts = [part.strip() for part in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        texts = [item.strip() for item in raw]
    else:
        problems.append((where, "must be a comma-separated string of identity sources"))
        return ()
    pattern, example = (
        (_HTTP_SOURCE, "$request.header.NAME, $request.querystring.NAME, $stageVariables.NAME, $context.NAME")
        if http_api
        else (
            _REST_SOURCE,
            "method.request.header.NAME, method.request.querystring.NAME, stageVariables.NAME, context.NAME",
        )
    )
    sources: list[IdentitySource] = []
    for text in texts:
        match = pattern.match(text)
        if match is None:
            problems.append((where, f"{text!r} is not an identity source (use {example})"))
            continue
        location, stage_variables, context, name = match.groups()
        kind = location or stage_variables or context
        if kind == "context" and name not in _context_names(http_api):
            supported = ", ".join(sorted(_context_names(http_api)))
            problems.append((where, f"{text!r}: context variable {name!r} is not supported ({supported})"))
            continue
        sources.append(IdentitySource(kind, name.lower() if kind == "header" else name, text))
    return tuple(sources)


def _ttl(raw: Any, default: int, where: str, problems: list[tuple[str, str]]) -> int:
    if raw is None:
        return default
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw)
    if value is None or not 0 <= value <= TTL_MAX_S:
        problems.append((where, f"must be a whole number of seconds from 0 to {TTL_MAX_S}, got {raw!r}"))
        return default
    return value


def parse(auth: Authorizer, http_api: bool) -> tuple[LambdaAuthorizerConfig | None, list[tuple[str, str]]]:
    """The Lambda authorizer a security scheme describes, and every problem in it as (JSON path, message).

    (None, []) for a scheme that is not a Lambda authorizer (``jwt``, ``cognito_user_pools``, or no
    ``x-amazon-apigateway-authorizer``); (None, problems) when it is one written wrong.
    """
    scheme = auth.scheme
    raw = scheme.get(AUTHORIZER_KEY)
    base = _field(auth.where, AUTHORIZER_KEY)
    problems: list[tuple[str, str]] = []
    if raw is None:
        return None, []
    if not isinstance(raw, Mapping):
        return None, [(base, "must be a mapping (type, authorizerUri, identitySource …)")]
    kind = raw.get("type")
    lowered = kind.lower() if isinstance(kind, str) else None
    if lowered in _OTHER_TYPES:
        return None, []
    if lowered not in _LAMBDA_TYPES or (http_api and lowered == "token"):
        allowed = "request or jwt" if http_api else "token, request or cognito_user_pools"
        return None, [(_field(base, "type"), f"unknown authorizer type {kind!r} (use {allowed})")]
    type_ = _LAMBDA_TYPES[lowered]
    for key in raw:
        if key not in _KNOWN_KEYS:
            problems.append((_field(base, str(key)), f"unknown setting (known: {', '.join(_KNOWN_KEYS)})"))

    uri = raw.get("authorizerUri")
    if uri is not None and not isinstance(uri, str):
        problems.append((_field(base, "authorizerUri"), "must be a string"))
        uri = None
    handler_where = _field(auth.where, HANDLER_KEY)
    handler = scheme.get(HANDLER_KEY)
    if handler is not None and not (isinstance(handler, str) and "." in handler):
        problems.append((handler_where, f"must be 'module.function', got {handler!r}"))
        handler = None
    if raw.get("authorizerUri") is None and scheme.get(HANDLER_KEY) is None:
        problems.append(
            (_field(base, "authorizerUri"), "a Lambda authorizer needs authorizerUri (or x-portway-handler)")
        )
    credentials = raw.get("authorizerCredentials")
    if credentials is not None and not isinstance(credentials, str):
        problems.append((_field(base, "authorizerCredentials"), "must be a role ARN string"))

    sources_where = _field(base, "identitySource")
    sources = _sources(raw.get("identitySource"), http_api, sources_where, problems)
    if type_ == "TOKEN":
        if raw.get("identitySource") is None:
            name = scheme.get("name")
            if isinstance(name, str) and name and scheme.get("in", "header") == "header":
                sources = (IdentitySource("header", name.lower(), f"method.request.header.{name}"),)
            else:
                problems.append(
                    (
                        sources_where,
                        "a token authorizer reads one header: set identitySource: method.request.header.NAME "
                        "(or the scheme's name, in: header)",
                    )
                )
        elif len(sources) != 1 or sources[0].kind != "header":
            problems.append((sources_where, "a token authorizer's identity source is one header"))

    validation: re.Pattern[str] | None = None
    expression = raw.get("identityValidationExpression")
    if expression is not None:
        where = _field(base, "identityValidationExpression")
        if type_ != "TOKEN":
            problems.append((where, "applies to token authorizers only (REST APIs)"))
        elif not isinstance(expression, str):
            problems.append((where, "must be a regular expression string"))
        else:
            try:
                validation = re.compile(expression)
            except re.error as exc:
                problems.append((where, f"not a valid regular expression: {exc}"))

    ttl_where = _field(base, "authorizerResultTtlInSeconds")
    default_ttl = HTTP_TTL_DEFAULT_S if http_api else REST_TTL_DEFAULT_S
    ttl = _ttl(raw.get("authorizerResultTtlInSeconds"), default_ttl, ttl_where, problems)
    if ttl > 0 and not sources and type_ == "REQUEST":
        problems.append(
            (
                sources_where,
                "caching (authorizerResultTtlInSeconds > 0) needs at least one identity source, the cache "
                "key: set identitySource, or authorizerResultTtlInSeconds: 0",
            )
        )

    payload_format = "1.0"
    format_where = _field(base, "authorizerPayloadFormatVersion")
    raw_format = raw.get("authorizerPayloadFormatVersion")
    if http_api:
        if raw_format is None:
            problems.append((format_where, "HTTP API Lambda authorizers need it: '1.0' or '2.0'"))
        elif isinstance(raw_format, str | float) and str(raw_format) in ("1.0", "2.0"):
            payload_format = str(raw_format)
        else:
            problems.append((format_where, f"must be '1.0' or '2.0', got {raw_format!r}"))
    elif raw_format is not None:
        problems.append((format_where, "applies to HTTP APIs only"))

    simple_where = _field(base, "enableSimpleResponses")
    simple = raw.get("enableSimpleResponses", False)
    if not isinstance(simple, bool):
        problems.append((simple_where, "must be true or false"))
        simple = False
    elif simple and not http_api:
        problems.append((simple_where, "applies to HTTP APIs only"))
    elif simple and payload_format != "2.0":
        problems.append((simple_where, "simple responses need authorizerPayloadFormatVersion '2.0'"))

    if problems:
        return None, problems
    return (
        LambdaAuthorizerConfig(
            name=auth.name,
            type=type_,
            uri=uri,
            handler=handler,
            identity_sources=sources,
            validation=validation,
            ttl_s=ttl,
            payload_format=payload_format,
            simple_responses=simple,
            http_api=http_api,
            uri_where=_field(base, "authorizerUri"),
            handler_where=handler_where,
        ),
        [],
    )


# --- what an authorizer answered --------------------------------------------------------------------------


class InvalidAnswer(ValueError):
    """The function's result is not a valid authorizer output; says what is wrong."""


_MAX_DECISIONS = 256  # method ARNs remembered per answer (a cached policy decides each ARN once)


class _Answer:
    """One valid authorizer output, ready to apply to any route (and to be cached)."""

    __slots__ = ("api_key", "authorized", "decisions", "policy", "views")

    def __init__(
        self,
        policy: Policy | None,
        authorized: bool,
        views: dict[str, dict[str, Any]],
        api_key: str | None,
    ) -> None:
        self.policy = policy  # None: a simple response, ``authorized`` says it all
        self.authorized = authorized
        self.views = views  # requestContext.authorizer per integration shape ("rest", "http1", "http2")
        self.api_key = api_key
        self.decisions: dict[str, tuple[Decision, bool]] = {}

    def decide(self, arn: str) -> tuple[Decision, bool]:
        """(Invoke's decision, whether InvalidateCache is allowed) for a method ARN."""
        found = self.decisions.get(arn)
        if found is not None:
            return found
        policy = self.policy
        if policy is None:
            found = (Decision.ALLOW if self.authorized else Decision.IMPLICIT_DENY, False)
        else:
            found = (policy.decide(INVOKE, arn), policy.decide(INVALIDATE_CACHE, arn) is Decision.ALLOW)
        if len(self.decisions) < _MAX_DECISIONS:
            self.decisions[arn] = found
        return found


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _context(payload: Mapping[str, Any], stringify: bool) -> dict[str, Any] | None:
    """The answer's ``context``: REST APIs take strings, numbers and booleans only, passed on as strings."""
    context = payload.get("context")
    if context is None:
        return None
    if not isinstance(context, dict):
        raise InvalidAnswer(f"context must be an object, got {_type_name(context)}")
    if not stringify:
        return context
    out: dict[str, Any] = {}
    for key, value in context.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[key] = orjson.dumps(value).decode()
        else:
            raise InvalidAnswer(
                f"context.{key} must be a string, number or boolean, got {_type_name(value)} "
                "(objects and arrays are not allowed)"
            )
    return out


def _flat_view(
    principal_id: str | None, latency_ms: int, context: Mapping[str, Any] | None
) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if principal_id is not None:
        view["principalId"] = principal_id
    view["integrationLatency"] = latency_ms
    for key, value in (context or {}).items():
        view.setdefault(key, value)
    return view


def read_answer(payload: Any, config: LambdaAuthorizerConfig, latency_ms: int) -> _Answer:
    """Check a function's result as API Gateway does; :class:`InvalidAnswer` says what is wrong."""
    if not isinstance(payload, dict):
        raise InvalidAnswer(f"the function returned {_type_name(payload)}, not a JSON object")
    http_api = config.http_api
    if config.simple_responses:
        authorized = payload.get("isAuthorized")
        if not isinstance(authorized, bool):
            raise InvalidAnswer(f"isAuthorized must be true or false, got {authorized!r}")
        context = _context(payload, stringify=False)
        views = {"http2": {"lambda": context}, "http1": _flat_view(None, latency_ms, context)}
        return _Answer(None, authorized, views, None)
    principal_id = payload.get("principalId")
    if not isinstance(principal_id, str):
        raise InvalidAnswer(f"principalId must be a string, got {_type_name(principal_id)}")
    if "policyDocument" not in payload:
        raise InvalidAnswer("the answer has no policyDocument")
    try:
        policy = compile_policy(payload["policyDocument"])
    except PolicyError as exc:
        raise InvalidAnswer(f"Could not parse policy: {exc}") from None
    api_key = payload.get("usageIdentifierKey")
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidAnswer(f"usageIdentifierKey must be a string, got {_type_name(api_key)}")
    context = _context(payload, stringify=not http_api)
    if http_api:
        views = {"http2": {"lambda": context}, "http1": _flat_view(principal_id, latency_ms, context)}
    else:
        views = {"rest": _flat_view(principal_id, latency_ms, context)}
    return _Answer(policy, False, views, api_key)


# --- the result cache -------------------------------------------------------------------------------------


class ResultCache:
    """An authorizer's answers by identity-source values, each for ``ttl_s`` seconds of ``clock``; at most
    ``max_entries`` (expired entries go first, then the oldest)."""

    __slots__ = ("_entries", "clock", "max_entries", "ttl_s")

    def __init__(
        self, ttl_s: float, clock: Callable[[], float] = time.time, max_entries: int = CACHE_MAX_ENTRIES
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, _Answer]] = {}

    def get(self, key: Any) -> _Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: Any, answer: _Answer) -> None:
        entries = self._entries
        now = self.clock()
        if key in entries:
            del entries[key]
        elif len(entries) >= self.max_entries:
            for stale in [k for k, (expires, _) in entries.items() if expires <= now]:
                del entries[stale]
            if len(entries) >= self.max_entries:
                del entries[next(iter(entries))]
        entries[key] = (now + self.ttl_s, answer)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


# --- identity sources -------------------------------------------------------------------------------------

_ContextGetter = Callable[["RequestContext", "AuthorizerStage"], "str | None"]


def _domain(ctx: RequestContext, stage: AuthorizerStage) -> str:
    host = ctx.header(b"host")
    if host:
        return host.decode("latin-1")
    api = stage.authorizer.api
    return f"{api.api_id}.execute-api.{api.region}.amazonaws.com"


def _user_agent(ctx: RequestContext, stage: AuthorizerStage) -> str | None:
    agent = ctx.header(b"user-agent")
    return agent.decode("latin-1") if agent is not None else None


# $context variables usable as identity sources: those the gateway knows before the integration runs.
_CONTEXT_COMMON: dict[str, _ContextGetter] = {
    "httpMethod": lambda ctx, stage: ctx.method,
    "stage": lambda ctx, stage: ctx.stage,
    "apiId": lambda ctx, stage: stage.authorizer.api.api_id,
    "accountId": lambda ctx, stage: stage.authorizer.api.account_id,
    "domainName": _domain,
    "domainPrefix": lambda ctx, stage: _domain(ctx, stage).split(".", 1)[0],
    "identity.sourceIp": lambda ctx, stage: ctx.client_ip,
    "identity.userAgent": _user_agent,
    "protocol": lambda ctx, stage: f"HTTP/{ctx.http_version}",
}
_CONTEXT_REST: dict[str, _ContextGetter] = {
    **_CONTEXT_COMMON,
    "path": lambda ctx, stage: f"/{ctx.stage}{ctx.path or '/'}",
    "resourcePath": lambda ctx, stage: stage.resource,
    "resourceId": lambda ctx, stage: stage.resource_id,
    "requestId": lambda ctx, stage: ctx.request_id,
    "extendedRequestId": lambda ctx, stage: ctx.extended_request_id,
}
_CONTEXT_HTTP: dict[str, _ContextGetter] = {
    **_CONTEXT_COMMON,
    "path": lambda ctx, stage: ctx.scope_path(),
    "routeKey": lambda ctx, stage: stage.route_key,
    "requestId": lambda ctx, stage: ctx.extended_request_id,
}


def _context_names(http_api: bool) -> frozenset[str]:
    return frozenset(_CONTEXT_HTTP if http_api else _CONTEXT_REST)


# --- the authorizer and its stage -------------------------------------------------------------------------


class LambdaAuthorizer:
    """One Lambda authorizer of a compiled gateway: its function, its result cache, what every route using
    it shares. ``timeout_s`` defaults to AWS's (REST 29 s, HTTP APIs 10 s)."""

    api: ApiInfo

    def __init__(
        self,
        config: LambdaAuthorizerConfig,
        function: str,
        runtime: LambdaRuntime,
        *,
        api: ApiInfo,
        stage: str,
        table: ResponseTable,
        clock: Callable[[], float] = time.time,
        key_source_authorizer: bool = False,
        timeout_s: float | None = None,
        cache_max_entries: int = CACHE_MAX_ENTRIES,
    ) -> None:
        self.config = config
        self.function = function
        self.runtime = runtime
        self.api = api
        self.api_json = api.as_json()
        self.stage = stage
        self.table = table
        self.key_source_authorizer = key_source_authorizer  # usageIdentifierKey becomes ctx.api_key
        self.timeout_s = (
            timeout_s if timeout_s is not None else (HTTP_TIMEOUT_S if config.http_api else REST_TIMEOUT_S)
        )
        self.cache = ResultCache(config.ttl_s, clock, cache_max_entries) if config.ttl_s > 0 else None
        self.arn_prefix = arn_prefix(api.region, api.account_id, api.api_id, stage)
        self.sources = config.identity_sources
        self.only_headers = all(source.kind == "header" for source in self.sources)
        self.joined_values = config.http_api  # HTTP APIs join repeated headers and parameters with commas
        self.context_getters = _CONTEXT_HTTP if config.http_api else _CONTEXT_REST
        self.not_authorized_message = None if config.http_api else NOT_AUTHORIZED_MESSAGE

    def describe(self) -> str:
        return f"lambda authorizer {self.config.name} ({self.function})"

    # Identity ---------------------------------------------------------------------------------------------

    def identity(self, ctx: RequestContext, stage: AuthorizerStage) -> list[str] | None:
        """The identity sources' values, in order; None when one is missing or empty."""
        sources = self.sources
        if self.only_headers:
            return self._header_values(ctx, sources)
        values: list[str] = []
        query: list[tuple[str, str]] | None = None
        for source in sources:
            kind = source.kind
            value: str | None
            if kind == "header":
                found = self._header_values(ctx, (source,))
                value = found[0] if found else None
            elif kind == "querystring":
                if query is None:
                    query = parse_query(ctx.query_string)
                matches = [v for name, v in query if name == source.name]
                value = (",".join(matches) if self.joined_values else matches[-1]) if matches else None
            elif kind == "stageVariables":
                value = ctx.stage_variables.get(source.name)
            else:
                value = self.context_getters[source.name](ctx, stage)
            if not value:
                return None
            values.append(value)
        return values

    def _header_values(self, ctx: RequestContext, sources: tuple[IdentitySource, ...]) -> list[str] | None:
        if len(sources) == 1:
            wanted = sources[0].name.encode("latin-1")
            found: bytes | None = None
            for name, value in ctx.headers:
                if name == wanted:
                    found = value if found is None or not self.joined_values else found + b"," + value
            return [found.decode("latin-1")] if found else None
        values: list[str] = []
        for source in sources:
            one = self._header_values(ctx, (source,))
            if one is None:
                return None
            values.append(one[0])
        return values

    # The function's event ---------------------------------------------------------------------------------

    def event(
        self, ctx: RequestContext, stage: AuthorizerStage, arn: str, values: list[str]
    ) -> dict[str, Any]:
        """The event API Gateway sends the function (built here: it is small, and cached results skip it)."""
        config = self.config
        if config.type == "TOKEN":
            return {"type": "TOKEN", "methodArn": arn, "authorizationToken": values[0]}
        facts: dict[str, Any] = {
            "method": ctx.method,
            "stage": ctx.stage,
            "pathParameters": dict(ctx.path_parameters),
            "stageVariables": dict(ctx.stage_variables),
            "headers": [(name.decode("latin-1"), value.decode("latin-1")) for name, value in ctx.headers],
            "query": ctx.query_string.decode("latin-1"),
            "clientIp": ctx.client_ip,
            "serverPort": ctx.server_port,
            "scheme": ctx.scheme,
            "httpVersion": ctx.http_version,
            "requestTimeNs": ctx.request_time_ns,
            "api": self.api_json,
            "body": None,
            "isBase64Encoded": False,
        }
        if config.payload_format == "2.0":
            facts["rawPath"] = ctx.scope_path()
            facts["routeKey"] = stage.route_key
            facts["requestId"] = ctx.extended_request_id
            proxy = build_event_v2(facts)
            event: dict[str, Any] = {
                "version": "2.0",
                "type": "REQUEST",
                "routeArn": arn,
                "identitySource": values,
            }
            for key in (
                "routeKey",
                "rawPath",
                "rawQueryString",
                "cookies",
                "headers",
                "queryStringParameters",
            ):
                if key in proxy:
                    event[key] = proxy[key]
            event["requestContext"] = proxy["requestContext"]
            for key in ("pathParameters", "stageVariables"):
                if key in proxy:
                    event[key] = proxy[key]
            return event
        facts["resource"] = ctx.resource
        facts["path"] = ctx.path
        facts["requestId"] = ctx.request_id
        facts["extendedRequestId"] = ctx.extended_request_id
        facts["resourceId"] = stage.resource_id
        proxy = build_event_v1(facts)
        if config.http_api:
            joined = ",".join(values)
            event = {
                "version": "1.0",
                "type": "REQUEST",
                "methodArn": arn,
                "identitySource": joined,
                "authorizationToken": joined,
            }
        else:
            event = {"type": "REQUEST", "methodArn": arn}
        for key in (
            "resource",
            "path",
            "httpMethod",
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
        ):
            value = proxy[key]
            event[key] = {} if value is None else value  # an authorizer's event has empty maps, not null
        event["requestContext"] = proxy["requestContext"]
        return event

    # Invocation -------------------------------------------------------------------------------------------

    async def invoke(
        self, ctx: RequestContext, stage: AuthorizerStage, arn: str, values: list[str]
    ) -> _Answer | Response:
        """Run the function; its valid answer, or the response that ends the request."""
        name = self.config.name
        event = self.event(ctx, stage, arn, values)
        started = time.perf_counter()
        invocation = await self.runtime.invoke(
            self.function,
            event,
            request_id=RequestContext.new_request_id(),
            integration_timeout_s=self.timeout_s,
        )
        latency_ms = round((time.perf_counter() - started) * 1000)
        outcome = invocation.outcome
        if outcome is Outcome.OK:
            try:
                answer = read_answer(invocation.payload, self.config, latency_ms)
            except InvalidAnswer as exc:
                self._failed(ctx, f"Invalid authorizer response: {exc}")
                return gateway_response(ResponseType.AUTHORIZER_CONFIGURATION_ERROR, self.table)
            if answer.policy is not None and answer.policy.unevaluated_conditions:
                log.warning(
                    "[%s] [%s] the policy has Condition blocks, which are not evaluated: an Allow with one "
                    "grants nothing, a Deny with one always applies",
                    name,
                    ctx.request_id,
                )
            return answer
        error = invocation.error or {}
        if outcome is Outcome.HANDLER_ERROR and error.get("errorMessage") == UNAUTHORIZED_ERROR:
            log.info("[%s] [%s] the authorizer answered Unauthorized", name, ctx.request_id)
            return gateway_response(ResponseType.UNAUTHORIZED, self.table)
        if outcome is Outcome.INTEGRATION_TIMEOUT:
            self._failed(ctx, f"the authorizer did not answer within {self.timeout_s * 1000:.0f} ms")
        else:
            self._failed(
                ctx,
                f"Authorizer error ({outcome.name}): {error.get('errorType', 'Unknown')}: "
                f"{error.get('errorMessage', '')}",
            )
        return gateway_response(ResponseType.AUTHORIZER_CONFIGURATION_ERROR, self.table)

    def _failed(self, ctx: RequestContext, why: str) -> None:
        log.error(
            "[%s] [%s] Execution failed due to configuration error: %s (function %s)",
            self.config.name,
            ctx.request_id,
            why,
            self.function,
        )


class AuthorizerStage:
    """A route's authorizer check: identity → cached or fresh answer → this route's method ARN decided.

    ``ctx.authorizer`` is the cached answer's own dict, shared by every request the answer serves (and by
    the cache): read it, never change it.
    """

    name = "authorizer"
    needs_body = False
    responds = False

    __slots__ = ("authorizer", "resource", "resource_id", "route_key", "view")

    authorizer: LambdaAuthorizer
    resource: str  # the route's resource path template (REST) or path (HTTP APIs)
    resource_id: str
    route_key: str | None  # an HTTP API route's key (GET /items/{id}, $default)
    view: str  # which shape of requestContext.authorizer the integration gets

    def __init__(
        self,
        authorizer: LambdaAuthorizer,
        *,
        resource: str,
        route_key: str | None = None,
        integration_payload: str = "1.0",
    ) -> None:
        self.authorizer = authorizer
        self.resource = resource
        self.resource_id = stable_id(resource, 6)
        self.route_key = route_key
        if not authorizer.config.http_api:
            self.view = "rest"
        else:
            self.view = "http2" if integration_payload == "2.0" else "http1"

    async def on_request(self, ctx: RequestContext) -> Response | None:
        started = time.perf_counter()
        return ctx.note_authorizer(started, await self._authorize(ctx))

    async def _authorize(self, ctx: RequestContext) -> Response | None:
        authorizer = self.authorizer
        values = authorizer.identity(ctx, self)
        if values is None:
            return gateway_response(ResponseType.UNAUTHORIZED, authorizer.table)
        validation = authorizer.config.validation
        if validation is not None and validation.fullmatch(values[0]) is None:
            return gateway_response(ResponseType.UNAUTHORIZED, authorizer.table)
        arn = f"{authorizer.arn_prefix}{ctx.method}/{ctx.path[1:]}"
        cache = authorizer.cache
        key: Any = None
        answer: _Answer | None = None
        if cache is not None:
            key = values[0] if len(values) == 1 else tuple(values)
            answer = cache.get(key)
        if answer is None:
            fresh = await authorizer.invoke(ctx, self, arn, values)
            if isinstance(fresh, Response):
                return fresh
            answer = fresh
            if cache is not None:
                cache.put(key, answer)
        decision, can_invalidate = answer.decide(arn)
        if decision is not Decision.ALLOW:
            message = authorizer.not_authorized_message if decision is Decision.IMPLICIT_DENY else None
            return gateway_response(ResponseType.ACCESS_DENIED, authorizer.table, message)
        ctx.authorizer = answer.views[self.view]
        if authorizer.key_source_authorizer and answer.api_key is not None:
            ctx.api_key = answer.api_key
        ctx.can_invalidate_cache = can_invalidate
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response


# --- compile time -----------------------------------------------------------------------------------------

_SHARED_KEY = "authorizer"  # build.shared[_SHARED_KEY]: scheme name -> LambdaAuthorizer, or None if unusable


def _route_key(op: Operation) -> str:
    return DEFAULT_ROUTE if op.resource == DEFAULT_ROUTE else f"{op.method} {op.resource}"


def _authorizer(auth: Authorizer, build: StageBuild) -> LambdaAuthorizer | None:
    """The scheme's Lambda authorizer for this gateway (problems reported once, here), or None."""
    config, problems = parse(auth, http_api=build.api.kind == "HTTP")
    for where, message in problems:
        build.problem(where, message)
    if config is None:
        return None
    function = build.function(
        config.uri, config.handler, f"authorizer {auth.name!r}", config.uri_where, config.handler_where
    )
    if function is None:
        return None
    return LambdaAuthorizer(
        config,
        function,
        build.runtime,
        api=build.api_info,
        stage=build.stage,
        table=build.table,
        clock=build.clock,
        key_source_authorizer=build.api.api_key_source == "AUTHORIZER",
    )


def build_stage(op: Operation, build: StageBuild) -> Stage | None:
    """The route's authorizer stage, or None when its security names no Lambda authorizer.

    Each authorizer is checked, its function registered and its result cache made once per gateway
    (``build.shared``), whichever route names it first; its problems are reported once.
    """
    name = op.authorizer
    if name is None:
        return None
    auth = build.api.authorizers.get(name)
    if auth is None:
        return None
    authorizers: dict[str, LambdaAuthorizer | None] = build.shared.setdefault(_SHARED_KEY, {})
    if name not in authorizers:
        authorizers[name] = _authorizer(auth, build)
    authorizer = authorizers[name]
    if authorizer is None:
        return None
    http_api = build.api.kind == "HTTP"
    return AuthorizerStage(
        authorizer,
        resource=op.resource,
        route_key=_route_key(op) if http_api else None,
        integration_payload=op.integration.payload_format,
    )
