"""A SAM API's protection settings → the model an OpenAPI definition gives, as the SAM translator writes them
into the API's definition: authorizers, CORS, gateway responses and request validation.

Read from an ``AWS::Serverless::Api`` (and ``Globals.Api``, the implicit API's only place for them):

- ``Auth.Authorizers``: Lambda TOKEN authorizers (``FunctionArn``, ``Identity.Header`` — ``Authorization`` by
  default —, ``Identity.ValidationExpression``, ``Identity.ReauthorizeEvery``: the result cache's TTL), Lambda
  REQUEST authorizers (``FunctionPayloadType: REQUEST``, ``Identity.Headers`` / ``QueryStrings`` /
  ``StageVariables`` / ``Context``) and Cognito user pool authorizers (``UserPoolArn``, one or a list,
  ``Identity.Header``, ``Identity.ValidationExpression``), each with its ``AuthorizationScopes``;
  ``Auth.DefaultAuthorizer`` (every method without its own, OPTIONS ones too unless
  ``AddDefaultAuthorizerToCorsPreflight: false``); an ``Api`` event's ``Auth.Authorizer`` (a name, or
  ``NONE`` when the API has a default) and ``Auth.AuthorizationScopes`` (over the authorizer's).
- ``Cors`` (a string, the allowed origin, or ``AllowOrigin`` / ``AllowHeaders`` / ``AllowMethods`` /
  ``MaxAge`` / ``AllowCredentials``; values in single quotes, as API Gateway reads header values): SAM adds a
  mock ``OPTIONS`` method to every path that has none, answering 200 with those ``Access-Control-*``
  headers, ``Access-Control-Allow-Methods`` being the path's methods (all of them for ``ANY``) when not given.
  Portway adds the same methods. The Lambda functions' own answers get no CORS header from SAM.
- ``GatewayResponses`` (``StatusCode``, ``ResponseParameters.Headers`` / ``Paths`` / ``QueryStrings``,
  ``ResponseTemplates``), as ``x-amazon-apigateway-gateway-responses``.
- ``Models`` (JSON schemas by name; each needs a ``type``) and an ``Api`` event's ``RequestModel`` (``Model``,
  ``Required``, ``ValidateBody``, ``ValidateParameters``: a validator named ``body-and-params``, ``body-only``
  or ``params-only`` as SAM names them, only when one of the two is given) and ``RequestParameters``
  (``method.request.header.NAME`` / ``querystring`` / ``path``, alone or with ``Required`` and ``Caching``:
  a cache key parameter).

From an ``AWS::Serverless::HttpApi`` (and ``Globals.HttpApi``): ``Auth.Authorizers`` — JWT ones
(``JwtConfiguration`` with ``issuer`` and ``audience``, ``IdentitySource``, ``AuthorizationScopes``) and
Lambda ones (``FunctionArn``, ``AuthorizerPayloadFormatVersion``, ``EnableSimpleResponses``,
``Identity.Headers`` / ``QueryStrings`` / ``StageVariables`` / ``Context``, ``Identity.ReauthorizeEvery``) —,
``Auth.DefaultAuthorizer`` (every route without its own but OPTIONS ones), an ``HttpApi`` event's
``Auth.Authorizer`` / ``AuthorizationScopes``; and ``CorsConfiguration`` (``true``: any origin, or
``AllowOrigins`` / ``AllowHeaders`` / ``AllowMethods`` / ``ExposeHeaders`` / ``MaxAge`` /
``AllowCredentials``) as ``x-amazon-apigateway-cors``.

A Lambda authorizer's ``FunctionArn`` (usually ``!GetAtt AuthFunction.Arn``) names one of the template's
functions, which runs it locally; ``x-portway-handler: module.function`` beside it runs a function the
template does not define. A Cognito or JWT authorizer takes Portway's ``x-portway-issuer`` and
``x-portway-jwks`` beside its SAM properties, to check tokens of a local identity provider (SAM's translator
reads only the properties it knows, so the template still deploys; ``sam validate --lint`` may flag them); an
HTTP API's ``JwtConfiguration.issuer`` may simply name the local issuer, through a template parameter and
``--parameter-overrides``. ``AWS_IAM`` authorization (Signature Version 4) is not emulated: a template using
it is refused rather than served open. ``Auth.ResourcePolicy`` and ``InvokeRole`` are accepted and ignored.

Every problem names the logical id that has it and the property's JSON path; SAM's own words where it refuses
the template too. Beyond SAM, a property it would silently ignore (``FunctionARN``, ``Identity.Headers`` on a
TOKEN authorizer) is a problem, and a Lambda authorizer whose function is not one of the template's Python
functions is refused when the template loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from portway.config.errors import json_path
from portway.config.model import (
    ANY_METHOD,
    Authorizer,
    FunctionEntry,
    Integration,
    IntegrationResponse,
    IntegrationType,
    Operation,
    Parameter,
    RequestValidator,
)
from portway.integrations.mock import TemplateError, static_header_value
from portway.pipeline.gateway_responses import EXTENSION as RESPONSES_EXTENSION
from portway.pipeline.gateway_responses import parse_gateway_responses
from portway.pipeline.responses import REST_RESPONSES
from portway.stages import authorizer as lambda_authorizers
from portway.stages import jwt as jwt_authorizers
from portway.stages.cache import parse_cache_key_parameters
from portway.stages.cors import EXTENSION as CORS_EXTENSION
from portway.stages.cors import parse_cors

__all__ = [
    "AWS_IAM",
    "NONE",
    "EventProtection",
    "Protected",
    "Source",
    "pick",
    "protect",
    "sub_path",
]

Source = tuple[Mapping[str, Any], str]  # an API's resolved properties (or its Globals), and their JSON path
Report = Callable[[str, str, str], None]  # (logical id, JSON path, message)

AUTHORIZER_KEY = "x-amazon-apigateway-authorizer"
AUTHTYPE_KEY = "x-amazon-apigateway-authtype"
HANDLER_KEY = "x-portway-handler"
ISSUER_KEY = "x-portway-issuer"
JWKS_KEY = "x-portway-jwks"
NONE = "NONE"  # an event's Auth.Authorizer: no authorizer, whatever the API's default
AWS_IAM = "AWS_IAM"
_IAM_MESSAGE = (
    "AWS_IAM authorization (Signature Version 4) is not emulated by Portway, which would serve the route "
    "unprotected: use a Lambda or Cognito authorizer, or leave it out for local runs"
)
_REST_AUTH_KEYS = (
    "Authorizers",
    "DefaultAuthorizer",
    "InvokeRole",
    "AddDefaultAuthorizerToCorsPreflight",
    "AddApiKeyRequiredToCorsPreflight",
    "ApiKeyRequired",
    "ResourcePolicy",
    "UsagePlan",
)
_HTTP_AUTH_KEYS = ("Authorizers", "DefaultAuthorizer", "EnableIamAuthorizer")
_PORTWAY_KEYS = (HANDLER_KEY, ISSUER_KEY, JWKS_KEY)
_COGNITO_KEYS = ("UserPoolArn", "Identity", "AuthorizationScopes", ISSUER_KEY, JWKS_KEY)
_REST_LAMBDA_KEYS = (
    "FunctionArn",
    "FunctionPayloadType",
    "FunctionInvokeRole",
    "Identity",
    "AuthorizationScopes",
    "DisableFunctionDefaultPermissions",
    HANDLER_KEY,
)
_JWT_KEYS = ("JwtConfiguration", "IdentitySource", "AuthorizationScopes", ISSUER_KEY, JWKS_KEY)
_HTTP_LAMBDA_KEYS = (
    "FunctionArn",
    "FunctionInvokeRole",
    "Identity",
    "AuthorizerPayloadFormatVersion",
    "EnableSimpleResponses",
    "EnableFunctionDefaultPermissions",
    HANDLER_KEY,
)
_TOKEN_IDENTITY = ("Header", "ValidationExpression", "ReauthorizeEvery")
_REQUEST_IDENTITY = ("Headers", "QueryStrings", "StageVariables", "Context", "ReauthorizeEvery")
# A Lambda authorizer's identity sources, as SAM writes them: (Identity key, REST prefix, HTTP API prefix).
_SOURCE_KINDS = (
    ("Headers", "method.request.header.", "$request.header."),
    ("QueryStrings", "method.request.querystring.", "$request.querystring."),
    ("StageVariables", "stageVariables.", "$stageVariables."),
    ("Context", "context.", "$context."),
)
# Where a problem the stage modules find in the authorizer SAM wrote lies in the template: a setting of
# x-amazon-apigateway-authorizer -> the SAM property it came from (a trailing "*": and the rest of the path,
# ".issuer" or "[0]").
Places = Mapping[str, str]
_REST_LAMBDA_PLACES: Places = {
    "type": ".FunctionPayloadType",
    "authorizerUri": ".FunctionArn",
    "authorizerCredentials": ".FunctionInvokeRole",
    "identitySource": ".Identity",
    "identityValidationExpression": ".Identity.ValidationExpression",
    "authorizerResultTtlInSeconds": ".Identity.ReauthorizeEvery",
}
_HTTP_LAMBDA_PLACES: Places = {
    **_REST_LAMBDA_PLACES,
    "authorizerPayloadFormatVersion": ".AuthorizerPayloadFormatVersion",
    "enableSimpleResponses": ".EnableSimpleResponses",
}
_COGNITO_PLACES: Places = {
    "providerARNs": ".UserPoolArn",
    "identitySource": ".Identity.Header",
    "identityValidationExpression": ".Identity.ValidationExpression",
}
_JWT_PLACES: Places = {"jwtConfiguration": ".JwtConfiguration*", "identitySource": ".IdentitySource"}
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:([a-z0-9-]+):\d{12}:function:([A-Za-z0-9_-]+)(?::[A-Za-z0-9_$-]+)?$"
)
_REST_CORS_KEYS = ("AllowMethods", "AllowHeaders", "AllowOrigin", "MaxAge", "AllowCredentials")
_HTTP_CORS_KEYS = (
    "AllowOrigins",
    "AllowHeaders",
    "AllowMethods",
    "ExposeHeaders",
    "MaxAge",
    "AllowCredentials",
)
_ANY_ORIGIN = "'*'"
_ALL_METHODS = ("OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH")  # SAM's list, for ANY
_CORS_REQUEST_TEMPLATE = '{\n  "statusCode" : 200\n}\n'
_CORS_HEADER_ORDER = (  # as SAM writes the OPTIONS method's response parameters
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Max-Age",
    "Access-Control-Allow-Credentials",
)
_GATEWAY_RESPONSE_KEYS = ("ResponseParameters", "ResponseTemplates", "StatusCode")
_RESPONSE_PARAMETER_KINDS = {"Headers": "header", "Paths": "path", "QueryStrings": "querystring"}
_REQUEST_MODEL_KEYS = ("Model", "Required", "ValidateBody", "ValidateParameters")
_REQUEST_PARAMETER = re.compile(r"^method\.request\.(querystring|path|header)\.(.+)$")
_PARAMETER_SETTINGS = ("Required", "Caching")
_LOCATIONS = {"querystring": "query", "header": "header", "path": "path"}


# --- reading an API's sources ------------------------------------------------------------------------------


def sub_path(where: str, *parts: str | int) -> str:
    """``where`` followed by ``parts`` as a JSON path: ``sub_path("$.A", "B", 0)`` is ``$.A.B[0]``."""
    return where + json_path(*parts)[1:]


def pick(sources: list[Source], *keys: str) -> tuple[Any, str] | None:
    """The value at ``keys`` in the source of highest precedence that has it (maps merge), and its path."""
    for props, where in reversed(sources):
        value: Any = props
        for key in keys:
            if not isinstance(value, Mapping) or key not in value:
                break
            value = value[key]
        else:
            return value, sub_path(where, *keys)
    return None


def _globals_merge(base: Any, over: Any) -> Any:
    """SAM's Globals rule: maps merge key by key, lists add up (the Globals' first), other values replace."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _globals_merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return [*base, *over]
    return over


def _merged(sources: list[Source], *keys: str) -> tuple[Any, str] | None:
    """The value at ``keys`` with the Globals merged under the API's own, and the path of the own one."""
    found = pick(sources, *keys)
    if found is None:
        return None
    value: Any = None
    for props, _ in sources:
        here: Any = props
        for key in keys:
            here = here.get(key) if isinstance(here, Mapping) else None
        if here is not None:
            value = here if value is None else _globals_merge(value, here)
    return value, found[1]


def _flag(value: Any) -> bool | None:
    """A boolean as a template gives it (a parameter's "true" too); None when it is none."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(item, str) and item for item in value):
        return list(value)
    return None


def _unknown(
    raw: Mapping[str, Any], known: tuple[str, ...], where: str, add: Callable[[str, str], None]
) -> None:
    for key in raw:
        if key not in known:
            add(sub_path(where, str(key)), f"unknown property (known here: {', '.join(known)})")


# --- what protect() reads and gives ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventProtection:
    """An ``Api`` / ``HttpApi`` event's own protection settings, as written (None: not given)."""

    method: str
    resource: str
    owner: str  # the function's logical id
    where: str  # JSON path of the event's Properties
    auth: Any = None
    request_model: Any = None
    request_parameters: Any = None


@dataclass(slots=True)
class Protected:
    """An API's operations and the protection objects of its model (its definition body's, then SAM's)."""

    operations: list[Operation]
    authorizers: dict[str, Authorizer] = field(default_factory=dict)
    request_validators: dict[str, RequestValidator] = field(default_factory=dict)
    gateway_responses: dict[str, Any] = field(default_factory=dict)
    cors: Mapping[str, Any] | None = None
    document: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Built:
    """An authorizer SAM defines: the scheme it writes, and the scopes its routes get by default."""

    authorizer: Authorizer
    scopes: tuple[str, ...]


@dataclass(slots=True)
class _Context:
    kind: str  # "REST" or "HTTP"
    logical_id: str
    file: Path
    functions: Mapping[str, FunctionEntry]
    stage_variables: Mapping[str, str]
    report: Report

    @property
    def http(self) -> bool:
        return self.kind == "HTTP"

    def add(self, where: str, message: str) -> None:
        self.report(self.logical_id, where, message)


def protect(
    kind: str,
    logical_id: str,
    sources: list[Source],
    own: Source | None,
    inline: bool,
    body: Protected,
    events: list[EventProtection],
    functions: Mapping[str, FunctionEntry],
    stage_variables: Mapping[str, str],
    file: Path,
    report: Report,
) -> Protected:
    """The API ``logical_id`` with its protection settings applied to ``body`` (what its definition body
    gave: operations, authorizers …), every problem reported.

    ``sources``: its Globals, then its own properties (``own``, None for an implicit API); ``inline``: False
    when its definition is a DefinitionUri, which SAM cannot add to; ``events``: its events' own settings.
    """
    context = _Context(kind, logical_id, file, functions, stage_variables, report)
    out = Protected(
        operations=list(body.operations),
        authorizers=dict(body.authorizers),
        request_validators=dict(body.request_validators),
        gateway_responses=dict(body.gateway_responses),
        cors=body.cors,
        document=body.document,
    )
    if not inline:
        _refuse_on_definition_uri(sources, own, context)
        return out
    by_route = {(event.method, event.resource): event for event in events}
    if context.http:
        _http_cors(sources, out, context)
    else:
        _rest_cors(sources, out, context)
        _gateway_responses(sources, out, context)
        _request_validation(own, by_route, out, context)
    _authorization(sources, by_route, out, context)
    return out


def _refuse_on_definition_uri(sources: list[Source], own: Source | None, context: _Context) -> None:
    names = ("CorsConfiguration",) if context.http else ("Cors", "GatewayResponses", "Models")
    for name in names:
        found = pick(sources, name) if name != "Models" else (pick([own], name) if own else None)
        if found is not None and found[0]:
            context.add(
                found[1], "works only with an inline DefinitionBody, not a DefinitionUri (SAM's rule)"
            )
    for name in ("Authorizers", "DefaultAuthorizer"):
        found = pick(sources, "Auth", name)
        if found is not None and found[0]:
            context.add(
                found[1], "works only with an inline DefinitionBody, not a DefinitionUri (SAM's rule)"
            )


# --- authorizers -------------------------------------------------------------------------------------------


def _authorization(
    sources: list[Source],
    by_route: Mapping[tuple[str, str], EventProtection],
    out: Protected,
    context: _Context,
) -> None:
    """Build the API's authorizers and give each operation its own, the default, or none."""
    auth = _merged(sources, "Auth")
    if auth is not None and not isinstance(auth[0], Mapping):
        if context.http:  # a REST API's Auth is checked with its ApiKeyRequired
            context.add(auth[1], "must be a mapping (Authorizers, DefaultAuthorizer …)")
        auth = None
    raw_auth: Mapping[str, Any] = auth[0] if auth is not None else {}
    if auth is not None:
        _unknown(raw_auth, _HTTP_AUTH_KEYS if context.http else _REST_AUTH_KEYS, auth[1], context.add)
    built: dict[str, _Built] = {}
    configured: dict[str, Any] = {}
    listed = pick(sources, "Auth", "Authorizers")
    raw_authorizers = raw_auth.get("Authorizers")
    if listed is not None and raw_authorizers is not None and not isinstance(raw_authorizers, Mapping):
        context.add(listed[1], "must be a mapping of authorizer names to authorizers")
    elif isinstance(raw_authorizers, Mapping):
        configured = dict(raw_authorizers)
        for name, raw in configured.items():
            found = pick(sources, "Auth", "Authorizers", str(name))
            where = (
                found[1]
                if found is not None
                else sub_path(auth[1] if auth else "$", "Authorizers", str(name))
            )
            one = _authorizer(str(name), raw, where, context)
            if one is not None:
                built[str(name)] = one
    default = _default_authorizer(sources, raw_auth, configured, context)
    preflight_found = pick(sources, "Auth", "AddDefaultAuthorizerToCorsPreflight")
    to_preflight = True
    if preflight_found is not None:
        value = _flag(preflight_found[0])
        if value is None:
            context.add(preflight_found[1], "must be true or false")
        else:
            to_preflight = value
    out.authorizers.update({name: one.authorizer for name, one in built.items()})
    operations: list[Operation] = []
    for op in out.operations:
        event = by_route.get((op.method, op.resource))
        chosen = _chosen(op, event, default, configured, built, to_preflight, context)
        if chosen is None:
            operations.append(op)
        else:
            chosen_name, scopes = chosen
            operations.append(replace(op, authorizer=chosen_name, authorization_scopes=scopes))
    out.operations = operations


def _default_authorizer(
    sources: list[Source], raw_auth: Mapping[str, Any], configured: Mapping[str, Any], context: _Context
) -> str | None:
    """The API's DefaultAuthorizer, checked; None when it has none (or a wrong one, reported)."""
    found = pick(sources, "Auth", "DefaultAuthorizer")
    default = raw_auth.get("DefaultAuthorizer")
    if found is None or not default:
        return None
    if not context.http and not configured and default != AWS_IAM:
        return None  # SAM sets a REST API's default only with Authorizers beside it
    if not isinstance(default, str):
        context.add(found[1], "DefaultAuthorizer is not a string")
        return None
    if default == AWS_IAM:
        context.add(found[1], _IAM_MESSAGE)
        return None
    if default not in configured:
        context.add(
            found[1], f"Unable to set DefaultAuthorizer because {default!r} was not defined in 'Authorizers'"
        )
        return None
    return default


def _chosen(
    op: Operation,
    event: EventProtection | None,
    default: str | None,
    configured: Mapping[str, Any],
    built: Mapping[str, _Built],
    to_preflight: bool,
    context: _Context,
) -> tuple[str | None, tuple[str, ...]] | None:
    """(authorizer, scopes) for the operation, as SAM writes its security; None: leave it as it is."""
    auth: Mapping[str, Any] | None = None
    if event is not None and event.auth is not None:
        if not isinstance(event.auth, Mapping):
            if context.http:  # a REST event's Auth is checked with its ApiKeyRequired
                context.report(event.owner, f"{event.where}.Auth", "Auth must be a mapping (Authorizer …)")
            return None
        auth = event.auth
    name: Any = auth.get("Authorizer") if auth is not None else None
    if event is not None and auth and context.http and not name:
        if default is None:
            context.report(
                event.owner,
                f"{event.where}.Auth",
                "'Auth' section requires either an explicit 'Authorizer' set or a 'DefaultAuthorizer' "
                "configured on the HttpApi",
            )
            return None
        name = default  # an HTTP API event's Auth without an Authorizer names the default (its scopes apply)
    if not name:
        if op.authorizer is not None:
            return None  # the definition body's own security
        if default is None or (op.method == "OPTIONS" and (context.http or not to_preflight)):
            return None
        return default, built[default].scopes if default in built else ()
    assert event is not None
    assert auth is not None
    where = f"{event.where}.Auth.Authorizer"
    route = f"on API method [{op.method.lower()}] for path [{op.resource}]"
    if not isinstance(name, str):
        context.report(
            event.owner, where, f"Unable to set Authorizer {route}: it must be an authorizer's name"
        )
        return None
    if name == AWS_IAM:
        context.report(event.owner, where, _IAM_MESSAGE)
        return None
    if name == NONE:
        if default is None:
            context.report(
                event.owner,
                where,
                f"Unable to set Authorizer {route} because 'NONE' is only a valid value when a "
                "DefaultAuthorizer on the API is specified",
            )
        return None, ()
    if not configured:
        context.report(
            event.owner,
            where,
            f"Unable to set Authorizer [{name}] {route} because the related API does not define any "
            "Authorizers",
        )
        return None
    if name not in configured:
        context.report(
            event.owner,
            where,
            f"Unable to set Authorizer [{name}] {route} because it wasn't defined in the API's Authorizers",
        )
        return None
    scopes: tuple[str, ...] = built[name].scopes if name in built else ()
    raw_scopes = auth.get("AuthorizationScopes")
    if raw_scopes is not None:
        listed = _strings(raw_scopes)
        if listed is None:
            context.report(
                event.owner, f"{event.where}.Auth.AuthorizationScopes", "must be a list of scope strings"
            )
        elif listed or not context.http:  # an HTTP API event's empty list keeps the authorizer's scopes
            scopes = tuple(listed)
    return name, scopes


def _authorizer(name: str, raw: Any, where: str, context: _Context) -> _Built | None:
    """One SAM authorizer as the security scheme SAM writes, checked by the stage that runs it."""
    if not isinstance(raw, Mapping):
        context.add(where, "must be a mapping (FunctionArn, UserPoolArn, JwtConfiguration …)")
        return None
    if name in (NONE, AWS_IAM):
        context.add(where, f"{name!r} is a reserved authorizer name")
        return None
    if "OpenIdConnectUrl" in raw:
        context.add(
            sub_path(where, "OpenIdConnectUrl"),
            f"'OpenIdConnectUrl' is no longer a supported property for authorizer {name!r}: use "
            "JwtConfiguration",
        )
        return None
    scopes: tuple[str, ...] = ()
    if "AuthorizationScopes" in raw:
        listed = _strings(raw["AuthorizationScopes"])
        if listed is None:
            context.add(
                sub_path(where, "AuthorizationScopes"), "AuthorizationScopes must be a list of strings"
            )
            return None
        scopes = tuple(listed)
    if context.http:
        made = (
            _http_jwt(name, raw, where, context)
            if "JwtConfiguration" in raw
            else _http_lambda(name, raw, where, context)
        )
    elif "UserPoolArn" in raw:
        made = _cognito(name, raw, where, context)
    else:
        made = _rest_lambda(name, raw, where, context)
    if made is None:
        return None
    scheme, places = made
    for key in _PORTWAY_KEYS:
        if key in raw:
            scheme[key] = raw[key]
    authorizer = Authorizer(name, scheme, where)
    problems: list[tuple[str, str]] = []
    _, found = lambda_authorizers.parse(authorizer, http_api=context.http)
    problems.extend(found)
    _, found = jwt_authorizers.parse(
        authorizer, context.http, base_dir=context.file.parent, stage_variables=context.stage_variables
    )
    problems.extend(found)
    for path, message in problems:
        context.add(_relocate(path, where, places), message)
    return _Built(authorizer, scopes) if not problems else None


def _relocate(path: str, where: str, places: Mapping[str, str]) -> str:
    """A problem's path in the scheme SAM writes → the SAM property it came from."""
    prefix = f"{where}.{AUTHORIZER_KEY}"
    if not path.startswith(prefix):
        return path  # x-portway-*: written in the template as they are
    match = re.match(r"\.([A-Za-z]+)(.*)$", path[len(prefix) :])
    if match is None or match.group(1) not in places:
        return where
    place = places[match.group(1)]
    return where + (place[:-1] + match.group(2) if place.endswith("*") else place)


def _identity(
    raw: Mapping[str, Any], where: str, known: tuple[str, ...], context: _Context
) -> Mapping[str, Any] | None:
    identity = raw.get("Identity", {})
    if identity is None:
        return {}
    if not isinstance(identity, Mapping):
        context.add(sub_path(where, "Identity"), "Identity must be a mapping (" + ", ".join(known) + ")")
        return None
    _unknown(identity, known, sub_path(where, "Identity"), context.add)
    return identity


def _identity_sources(identity: Mapping[str, Any], where: str, context: _Context) -> list[str] | None:
    """A Lambda authorizer's identity sources, as SAM lists them: headers, query strings, stage variables,
    context variables."""
    sources: list[str] = []
    ok = True
    for key, rest_prefix, http_prefix in _SOURCE_KINDS:
        value = identity.get(key)
        if value is None:
            continue
        names = _strings(value)
        if names is None:
            context.add(sub_path(where, "Identity", key), "must be a list of names")
            ok = False
            continue
        sources.extend((http_prefix if context.http else rest_prefix) + item for item in names)
    return sources if ok else None


def _function_uri(raw: Mapping[str, Any], where: str, context: _Context) -> str | None:
    """The authorizerUri SAM writes for FunctionArn, once it is known to name a function Portway runs."""
    arn = raw.get("FunctionArn")
    here = sub_path(where, "FunctionArn")
    if arn is None:
        context.add(here, "a Lambda authorizer needs FunctionArn (!GetAtt AuthorizerFunction.Arn)")
        return None
    match = _FUNCTION_ARN.match(arn) if isinstance(arn, str) else None
    if match is None:
        context.add(here, f"{arn!r} is not a Lambda function ARN: use !GetAtt AuthorizerFunction.Arn")
        return None
    region, function = match.groups()
    entry = context.functions.get(function)
    if raw.get(HANDLER_KEY) is None:
        if entry is None:
            context.add(
                here,
                f"function {function!r} is not one of this template's functions: Portway runs those (or give "
                f"{HANDLER_KEY}: module.function beside FunctionArn)",
            )
            return None
        if entry.unsupported is not None:
            context.add(here, f"function {function!r} cannot run here: {entry.unsupported}")
            return None
    return f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"


def _ttl(identity: Mapping[str, Any]) -> Any:
    return identity.get("ReauthorizeEvery")


def _rest_lambda(
    name: str, raw: Mapping[str, Any], where: str, context: _Context
) -> tuple[dict[str, Any], Mapping[str, str]] | None:
    _unknown(raw, _REST_LAMBDA_KEYS, where, context.add)
    payload = raw.get("FunctionPayloadType")
    if payload not in (None, "TOKEN", "REQUEST"):
        context.add(
            sub_path(where, "FunctionPayloadType"),
            f"{name} Authorizer has invalid 'FunctionPayloadType': {payload!r} (TOKEN or REQUEST)",
        )
        return None
    request = payload == "REQUEST"
    identity = _identity(raw, where, _REQUEST_IDENTITY if request else _TOKEN_IDENTITY, context)
    uri = _function_uri(raw, where, context)
    if identity is None or uri is None:
        return None
    settings: dict[str, Any] = {"type": "request" if request else "token", "authorizerUri": uri}
    if _ttl(identity) is not None:
        settings["authorizerResultTtlInSeconds"] = _ttl(identity)
    if raw.get("FunctionInvokeRole") not in (None, NONE):
        settings["authorizerCredentials"] = raw["FunctionInvokeRole"]
    header = "Authorization"
    if request:
        sources = _identity_sources(identity, where, context)
        if sources is None:
            return None
        if not sources and _reauthorizes(_ttl(identity)):
            context.add(
                sub_path(where, "Identity"),
                f"{name} Authorizer must specify Identity with at least one of Headers, QueryStrings, "
                "StageVariables, or Context",
            )
            return None
        if sources:
            settings["identitySource"] = ", ".join(sources)
        header = "Unused"
    else:
        if identity.get("Header") is not None:
            header = identity["Header"]
        if identity.get("ValidationExpression"):
            settings["identityValidationExpression"] = identity["ValidationExpression"]
    scheme = {
        "type": "apiKey",
        "name": header,
        "in": "header",
        AUTHTYPE_KEY: "custom",
        AUTHORIZER_KEY: settings,
    }
    places = dict(_REST_LAMBDA_PLACES)
    if not request:
        places["identitySource"] = ".Identity.Header"
    return scheme, places


def _reauthorizes(ttl: Any) -> bool:
    """Whether ReauthorizeEvery leaves the result cache on (SAM then wants identity sources, its key)."""
    try:
        return int(ttl) > 0
    except (TypeError, ValueError):
        return True


def _cognito(
    name: str, raw: Mapping[str, Any], where: str, context: _Context
) -> tuple[dict[str, Any], Mapping[str, str]] | None:
    if "FunctionArn" in raw:
        context.add(
            sub_path(where, "FunctionArn"), "give UserPoolArn (Cognito) or FunctionArn (Lambda), not both"
        )
        return None
    _unknown(raw, _COGNITO_KEYS, where, context.add)
    identity = _identity(raw, where, _TOKEN_IDENTITY, context)
    if identity is None:
        return None
    pools = raw["UserPoolArn"]
    settings: dict[str, Any] = {
        "type": "cognito_user_pools",
        "providerARNs": pools if isinstance(pools, list) else [pools],
    }
    if identity.get("ValidationExpression"):
        settings["identityValidationExpression"] = identity["ValidationExpression"]
    scheme = {
        "type": "apiKey",
        "name": identity.get("Header") or "Authorization",
        "in": "header",
        AUTHTYPE_KEY: "cognito_user_pools",
        AUTHORIZER_KEY: settings,
    }
    listed = {**_COGNITO_PLACES, "providerARNs": ".UserPoolArn*"}  # a list: the problem's index too
    return scheme, listed if isinstance(pools, list) else _COGNITO_PLACES


def _http_jwt(
    name: str, raw: Mapping[str, Any], where: str, context: _Context
) -> tuple[dict[str, Any], Mapping[str, str]] | None:
    for key in _HTTP_LAMBDA_KEYS:
        if key in raw:
            context.add(sub_path(where, key), f"{key} must be defined only for Lambda Authorizer")
            return None
    _unknown(raw, _JWT_KEYS, where, context.add)
    conf = raw["JwtConfiguration"]
    conf_where = sub_path(where, "JwtConfiguration")
    if not isinstance(conf, Mapping):
        context.add(conf_where, "must be a mapping with issuer and audience")
        return None
    for key in conf:
        if key not in ("issuer", "audience"):
            hint = f" (write it {str(key).lower()!r})" if str(key).lower() in ("issuer", "audience") else ""
            context.add(
                sub_path(conf_where, str(key)),
                f"unknown field{hint}: JwtConfiguration takes issuer, audience",
            )
            return None
    source = raw.get("IdentitySource")
    if not source:
        context.add(where, f"{name} OAuth2 Authorizer must define 'IdentitySource'")
        return None
    scheme = {
        "type": "oauth2",
        AUTHORIZER_KEY: {"jwtConfiguration": dict(conf), "identitySource": source, "type": "jwt"},
    }
    return scheme, _JWT_PLACES


def _http_lambda(
    name: str, raw: Mapping[str, Any], where: str, context: _Context
) -> tuple[dict[str, Any], Mapping[str, str]] | None:
    for key in ("IdentitySource", "AuthorizationScopes", ISSUER_KEY, JWKS_KEY):
        if key in raw:
            context.add(sub_path(where, key), f"{key} must be defined only for OAuth2 Authorizer")
            return None
    _unknown(raw, _HTTP_LAMBDA_KEYS, where, context.add)
    identity = _identity(raw, where, _REQUEST_IDENTITY, context)
    uri = _function_uri(raw, where, context)
    if identity is None or uri is None:
        return None
    version = raw.get("AuthorizerPayloadFormatVersion")
    if version is None:
        context.add(where, f"{name} Lambda Authorizer must define 'AuthorizerPayloadFormatVersion'")
        return None
    settings: dict[str, Any] = {
        "type": "request",
        "authorizerUri": uri,
        "authorizerPayloadFormatVersion": str(version) if isinstance(version, int | float) else version,
    }
    if raw.get("FunctionInvokeRole") not in (None, NONE):
        settings["authorizerCredentials"] = raw["FunctionInvokeRole"]
    if _ttl(identity) is not None:
        settings["authorizerResultTtlInSeconds"] = _ttl(identity)
    if "Identity" in raw:
        sources = _identity_sources(identity, where, context)
        if sources is None:
            return None
        settings["identitySource"] = sources
    simple = raw.get("EnableSimpleResponses")
    if simple is not None:
        flag = _flag(simple)
        if flag is None:
            context.add(sub_path(where, "EnableSimpleResponses"), "must be true or false")
            return None
        if flag:
            settings["enableSimpleResponses"] = True
    scheme = {"type": "apiKey", "name": "Unused", "in": "header", AUTHORIZER_KEY: settings}
    return scheme, _HTTP_LAMBDA_PLACES


# --- CORS --------------------------------------------------------------------------------------------------


def _rest_cors(sources: list[Source], out: Protected, context: _Context) -> None:
    """SAM's Cors: a mock OPTIONS method on every path that has none."""
    found = _merged(sources, "Cors")
    if found is None or not found[0]:
        return
    raw, where = found
    settings: dict[str, Any]
    if isinstance(raw, str):
        settings = {"AllowOrigin": raw}
    elif isinstance(raw, Mapping):
        settings = dict(raw)
        bad = [key for key in settings if key not in _REST_CORS_KEYS]
        for key in bad:
            context.add(sub_path(where, str(key)), f"unknown field (known: {', '.join(_REST_CORS_KEYS)})")
        if bad:
            return
    else:
        context.add(
            where, "must be the allowed origin (\"'https://example.com'\") or a mapping (AllowOrigin …)"
        )
        return
    settings.setdefault("AllowOrigin", _ANY_ORIGIN)
    headers: dict[str, str] = {}
    ok = True
    for key, header in (
        ("AllowOrigin", "Access-Control-Allow-Origin"),
        ("AllowHeaders", "Access-Control-Allow-Headers"),
        ("AllowMethods", "Access-Control-Allow-Methods"),
        ("MaxAge", "Access-Control-Max-Age"),
    ):
        value = settings.get(key)
        if value is None or (value == "" and key != "AllowOrigin"):
            continue
        here = where if isinstance(raw, str) else sub_path(where, key)
        try:
            if not isinstance(value, str):
                raise TemplateError(f"{value!r} is not a static value in single quotes")
            static_header_value(value)
        except TemplateError as exc:
            example = "'600'" if key == "MaxAge" else "'*'" if key == "AllowOrigin" else "'GET,POST'"
            context.add(here, f'{exc}: API Gateway reads header values in quotes, like "{example}"')
            ok = False
            continue
        headers[header] = value
    credentials = False
    if "AllowCredentials" in settings:
        flag = _flag(settings["AllowCredentials"])
        if flag is None:
            context.add(sub_path(where, "AllowCredentials"), "must be true or false")
            ok = False
        credentials = bool(flag)
    if credentials and headers.get("Access-Control-Allow-Origin") == _ANY_ORIGIN:
        context.add(
            sub_path(where, "AllowCredentials"),
            "Unable to add Cors configuration because 'AllowCredentials' can not be true when "
            "'AllowOrigin' is \"'*'\" or not set",
        )
        ok = False
    if not ok:
        return
    if credentials:
        headers["Access-Control-Allow-Credentials"] = "'true'"
    methods: dict[str, list[str]] = {}
    for op in out.operations:
        methods.setdefault(op.resource, []).append(op.method)
    for resource, present in methods.items():
        if "OPTIONS" in present:
            continue  # SAM leaves a path's own OPTIONS method alone
        allowed = dict(headers)
        if "Access-Control-Allow-Methods" not in allowed:
            names = _ALL_METHODS if ANY_METHOD in present else (*present, "OPTIONS")
            allowed["Access-Control-Allow-Methods"] = "'" + ",".join(sorted(set(names))) + "'"
        ordered = {name: allowed[name] for name in _CORS_HEADER_ORDER if name in allowed}
        integration = Integration(
            type=IntegrationType.MOCK,
            request_templates={"application/json": _CORS_REQUEST_TEMPLATE},
            responses=(
                IntegrationResponse(
                    selection_pattern="default",
                    status_code=200,
                    response_templates={"application/json": "{}\n"},
                    response_parameters={f"method.response.header.{k}": v for k, v in ordered.items()},
                ),
            ),
            where=where,
        )
        out.operations.append(
            Operation(
                method="OPTIONS", resource=resource, integration=integration, operation_id=None, where=where
            )
        )


def _http_cors(sources: list[Source], out: Protected, context: _Context) -> None:
    """CorsConfiguration as x-amazon-apigateway-cors, over the definition body's (field by field)."""
    found = _merged(sources, "CorsConfiguration")
    if found is None:
        return
    raw, where = found
    flag = _flag(raw)
    if flag is False or raw is None:
        return
    converted: dict[str, Any]
    if flag is True:
        converted = {"allowOrigins": ["*"]}
    elif isinstance(raw, Mapping):
        bad = [key for key in raw if key not in _HTTP_CORS_KEYS]
        for key in bad:
            context.add(sub_path(where, str(key)), f"unknown field (known: {', '.join(_HTTP_CORS_KEYS)})")
        if bad:
            return
        converted = {}
        for key, value in raw.items():
            if key == "MaxAge" and isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            elif key == "AllowCredentials" and _flag(value) is not None:
                value = _flag(value)
            converted[key[:1].lower() + key[1:]] = value
    else:
        context.add(where, "must be true or a mapping (AllowOrigins, AllowMethods, AllowHeaders …)")
        return
    _, problems = parse_cors(converted)
    prefix = json_path(CORS_EXTENSION)
    for path, message in problems:
        match = re.match(r"\.([A-Za-z]+)(.*)$", path[len(prefix) :]) if path.startswith(prefix) else None
        if match is None:
            context.add(where, message)
        else:  # allowOrigins[0] -> AllowOrigins[0]
            context.add(
                sub_path(where, match.group(1)[:1].upper() + match.group(1)[1:]) + match.group(2), message
            )
    if problems:
        return
    out.cors = {**(out.cors or {}), **converted}


# --- gateway responses -------------------------------------------------------------------------------------


def _gateway_responses(sources: list[Source], out: Protected, context: _Context) -> None:
    """GatewayResponses as x-amazon-apigateway-gateway-responses, each checked as the gateway reads it."""
    found = _merged(sources, "GatewayResponses")
    if found is None or not found[0]:
        return
    raw, where = found
    if not isinstance(raw, Mapping):
        context.add(where, "must be a mapping of response types (DEFAULT_4XX, UNAUTHORIZED …) to responses")
        return
    for response_type, response in raw.items():
        here = sub_path(where, str(response_type))
        converted = _gateway_response(response, here, context)
        if converted is None:
            continue
        entry, places = converted
        _, problems = parse_gateway_responses({response_type: entry}, REST_RESPONSES, http_api=False)
        base = json_path(RESPONSES_EXTENSION, str(response_type))
        for path, message in problems:
            context.add(places.get(path[len(base) :], here) if path.startswith(base) else here, message)
        if not problems:
            out.gateway_responses[str(response_type)] = entry


def _gateway_response(
    response: Any, where: str, context: _Context
) -> tuple[dict[str, Any], dict[str, str]] | None:
    """One GatewayResponse in the extension's shape, and where each of its problems would lie."""
    if not isinstance(response, Mapping):
        context.add(where, "must be a mapping (StatusCode, ResponseParameters, ResponseTemplates)")
        return None
    bad = [key for key in response if key not in _GATEWAY_RESPONSE_KEYS]
    for key in bad:
        context.add(sub_path(where, str(key)), f"unknown field (known: {', '.join(_GATEWAY_RESPONSE_KEYS)})")
    if bad:
        return None
    entry: dict[str, Any] = {}
    places: dict[str, str] = {".statusCode": sub_path(where, "StatusCode")}
    status = response.get("StatusCode")
    if status is not None:
        if isinstance(status, bool) or not re.fullmatch(r"[0-9]{1,3}", str(status)):
            context.add(sub_path(where, "StatusCode"), "Property 'StatusCode' must be numeric")
            return None
        entry["statusCode"] = str(status)
    parameters = response.get("ResponseParameters") or {}
    if not isinstance(parameters, Mapping):
        context.add(sub_path(where, "ResponseParameters"), "must be a mapping (Headers, Paths, QueryStrings)")
        return None
    targets: dict[str, Any] = {}
    for kind, values in parameters.items():
        here = sub_path(where, "ResponseParameters", str(kind))
        if kind not in _RESPONSE_PARAMETER_KINDS:
            context.add(here, f"Invalid gateway response parameter {kind!r} (Headers, Paths, QueryStrings)")
            return None
        if not isinstance(values, Mapping):
            context.add(here, "must be a mapping of names to values")
            return None
        for name, value in values.items():
            target = f"gatewayresponse.{_RESPONSE_PARAMETER_KINDS[kind]}.{name}"
            targets[target] = value
            places[f".responseParameters['{target}']"] = sub_path(here, str(name))
    if targets:
        entry["responseParameters"] = targets
    templates = response.get("ResponseTemplates")
    if templates is not None:
        if not isinstance(templates, Mapping):
            context.add(
                sub_path(where, "ResponseTemplates"), "must be a mapping of content types to templates"
            )
            return None
        entry["responseTemplates"] = dict(templates)
        for content_type in templates:
            places[f".responseTemplates['{content_type}']"] = sub_path(
                where, "ResponseTemplates", str(content_type)
            )
    return entry, places


# --- request validation ------------------------------------------------------------------------------------


def _validator_name(body: bool, parameters: bool) -> str:
    """The name SAM gives the validator an event asks for."""
    if body and parameters:
        return "body-and-params"
    if body:
        return "body-only"
    return "params-only" if parameters else "no-validation"


def _request_validation(
    own: Source | None, by_route: Mapping[tuple[str, str], EventProtection], out: Protected, context: _Context
) -> None:
    """Models, and each event's RequestModel and RequestParameters: body schemas, parameters, validators."""
    models: Mapping[str, Any] = {}
    if own is not None and own[0].get("Models") is not None:
        raw, models_where = own[0]["Models"], sub_path(own[1], "Models")
        if not isinstance(raw, Mapping):
            context.add(
                models_where, "Invalid value for 'Models' property: a mapping of names to JSON schemas"
            )
        else:
            for name, schema in raw.items():
                if not isinstance(schema, Mapping):
                    context.add(
                        sub_path(models_where, str(name)),
                        "Invalid value for 'Models' property: a JSON schema",
                    )
                elif not schema.get("type"):
                    context.add(sub_path(models_where, str(name)), "'Models' schema is missing 'type'")
            models = raw
            document = dict(out.document)
            document["Resources"] = {context.logical_id: {"Properties": {"Models": dict(raw)}}}
            out.document = document
    operations: list[Operation] = []
    for op in out.operations:
        event = by_route.get((op.method, op.resource))
        if event is not None and event.request_model is not None:
            op = _request_model(op, event, models, out, context)
        if event is not None and event.request_parameters is not None:
            op = _request_parameters(op, event, context)
        operations.append(op)
    out.operations = operations


def _request_model(
    op: Operation,
    event: EventProtection,
    models: Mapping[str, Any],
    out: Protected,
    context: _Context,
) -> Operation:
    raw = event.request_model
    where = f"{event.where}.RequestModel"
    route = f"on API method [{op.method.lower()}] for path [{op.resource}]"

    def add(path: str, message: str) -> None:
        context.report(event.owner, path, message)

    if not isinstance(raw, Mapping):
        add(where, "RequestModel must be a mapping (Model, Required, ValidateBody, ValidateParameters)")
        return op
    _unknown(raw, _REQUEST_MODEL_KEYS, where, add)
    model = raw.get("Model")
    if not model:
        add(where, "needs Model: the name of one of the API's Models")
        return op
    if not models:
        add(
            f"{where}.Model",
            f"Unable to set RequestModel [{model}] {route} because the related API does not define any "
            "Models",
        )
        return op
    if not isinstance(model, str) or model not in models:
        add(
            f"{where}.Model",
            f"Unable to set RequestModel [{model}] {route} because it wasn't defined in the API's Models",
        )
        return op
    if "Required" in raw and _flag(raw["Required"]) is None:
        add(f"{where}.Required", "must be true or false")
    pointer = "/".join(
        part.replace("~", "~0").replace("/", "~1")
        for part in ("Resources", context.logical_id, "Properties", "Models", model)
    )
    op = replace(op, body_schemas={"application/json": {"$ref": f"#/{pointer}"}})
    body, parameters = raw.get("ValidateBody"), raw.get("ValidateParameters")
    if body is None and parameters is None:
        return op  # the model documents the body; nothing validates it
    body = False if body is None else body
    parameters = False if parameters is None else parameters
    if not isinstance(body, bool) or not isinstance(parameters, bool):
        add(
            where,
            f"Unable to set Validator to RequestModel [{model}] {route}: ValidateBody and "
            "ValidateParameters must be a boolean type, strings or intrinsics are not supported",
        )
        return op
    name = _validator_name(body, parameters)
    out.request_validators.setdefault(name, RequestValidator(name, body, parameters, where))
    return replace(op, request_validator=name)


def _request_parameters(op: Operation, event: EventProtection, context: _Context) -> Operation:
    raw = event.request_parameters
    where = f"{event.where}.RequestParameters"

    def add(path: str, message: str) -> None:
        context.report(event.owner, path, message)

    if not isinstance(raw, list):
        add(
            where,
            "must be a list of method.request.(querystring|path|header).NAME, each alone or with settings",
        )
        return op
    parameters = list(op.parameters)
    cached: list[str] = []
    cached_at: list[str] = []
    for index, item in enumerate(raw):
        here = f"{where}[{index}]"
        settings: Any = {}
        if isinstance(item, Mapping) and len(item) == 1:
            ((name, settings),) = item.items()
            here = sub_path(here, str(name))
        elif isinstance(item, str):
            name = item
        else:
            add(here, "Invalid value for 'RequestParameters' property: a name, or one name with its settings")
            continue
        match = _REQUEST_PARAMETER.match(str(name))
        if match is None:
            add(
                here,
                "Invalid value for 'RequestParameters' property. Keys must be in the format "
                "'method.request.[querystring|path|header].{value}', "
                "e.g 'method.request.header.Authorization'",
            )
            continue
        if not isinstance(settings, Mapping) or any(key not in _PARAMETER_SETTINGS for key in settings):
            add(
                here,
                "Invalid value for 'RequestParameters' property. Values must be an object, "
                "e.g { Required: true, Caching: false }",
            )
            continue
        flags: dict[str, bool] = {}
        for key in _PARAMETER_SETTINGS:
            value = _flag(settings.get(key, False))
            if value is None:
                add(sub_path(here, key), "must be true or false")
            flags[key] = bool(value)
        location, parameter = _LOCATIONS[match.group(1)], match.group(2)
        parameters = [p for p in parameters if (p.name, p.location) != (parameter, location)]
        parameters.append(Parameter(parameter, location, flags["Required"], here))
        if flags["Caching"]:
            cached.append(str(name))
            cached_at.append(here)
    keys, problems = parse_cache_key_parameters([*op.cache_key_parameters, *cached], where)
    for path, message in problems:
        index = int(path[len(where) + 1 : -1]) - len(op.cache_key_parameters)
        add(cached_at[index] if 0 <= index < len(cached_at) else where, message)
    return replace(op, parameters=tuple(parameters), cache_key_parameters=keys)
