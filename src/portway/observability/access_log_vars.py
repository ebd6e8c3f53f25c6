"""The ``$context`` variables of API Gateway access logs, as Portway reads them from an :class:`Exchange`.

Sources (API Gateway developer guide): *Variables for access logging for API Gateway* (REST APIs; formerly the
"$context Variables for access logging only" table of the mapping template reference) and *Customize HTTP API
access logs*. A format may use any variable of either list: where the two kinds of API differ, the reader
looks at ``exchange.api.kind``:

- ``requestId``: a REST API's UUID (``x-amzn-RequestId``); an HTTP API's short id (``apigw-requestid``), which
  AWS also prints for ``extendedRequestId`` ("Equivalent to $context.requestId").
- ``resourceId``, ``resourcePath`` and ``xrayTraceId`` are REST-only (not in the HTTP API list): "-" on
  HTTP APIs. ``routeKey`` is HTTP-only: "-" on REST APIs (as AWS logs it). ``dataProcessed`` is HTTP-only.
- ``authorizer.PROPERTY`` reads a REST Lambda authorizer's context (flattened into
  ``requestContext.authorizer`` beside ``principalId``), or an HTTP API payload 2.0 authorizer's ``lambda``
  map; ``authorizer.claims.NAME`` reads Cognito's ``claims`` or an HTTP API JWT authorizer's ``jwt.claims``.

Values Portway never has, so they always print "-" (:data:`ALWAYS_MISSING` lists them): everything IAM,
Cognito identity pool, mutual TLS and private endpoint (``identity.accountId``, ``caller``, ``user``,
``userArn``, ``accessKey``, ``principalOrgId``, ``cognito*``, ``clientCert.*``, ``vpcId``, ``vpceId``), the
AWS endpoint request ids (``awsEndpointRequestId``, ``awsEndpointRequestId2``, ``integration.requestId``,
``authorizer.requestId``), the separate authorization and authentication steps (``authorize.*``,
``authenticate.*``: Portway's authorizer stage reports on ``authorizer.*``), ``authorizer.integrationStatus``,
``waf.error``, ``waf.latency``, ``webaclArn``, ``customDomain.basePathMatched``, ``isCanaryRequest`` (no
canary releases) and the mapping-template overrides (``requestOverride.*``, ``responseOverride.*``).

Latencies are whole milliseconds (rounded), as AWS prints them.

A variable's value is a Python expression (:attr:`Variable.source`) that
:class:`~portway.observability.access_log.AccessLogFormat` compiles, with every other variable of the
format, into one function per format.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from portway.integrations.events import request_time, stable_id
from portway.observability.exchange import Exchange
from portway.pipeline.context import RequestContext
from portway.pipeline.gateway_responses import value_text

__all__ = ["ALWAYS_MISSING", "NAMESPACE", "VARIABLES", "Kind", "Variable", "lookup"]


class Kind(enum.Enum):
    """What a value can look like, which decides how a JSON format embeds it."""

    SAFE = "safe"  # text Portway makes (ids, times, methods): never a quote, backslash or control character
    TEXT = "text"  # anything: header values, messages, paths, authorizer values
    NUMBER = "number"  # an integer
    JSON = "json"  # already a JSON string literal ($context.error.messageString)


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``$context`` variable: how to read it (None: Portway never has a value) and its kind.

    ``source`` is a Python expression giving the value for one exchange, a ``str``, or None (or "") when it
    has none, which the log prints as "-". It reads ``ex`` (the :class:`Exchange`), ``c`` (``ex.ctx``) and
    ``a`` (``ex.api``), and the helpers of :data:`NAMESPACE`; it is made here only, never from format text.
    """

    source: str | None
    kind: Kind


# --- readers ----------------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """An authorizer value as AWS prints it (as gateway response templates do), None when absent."""
    return None if value is None else value_text(value)


def _ms(value: float | None) -> str | None:
    return None if value is None else str(round(value))


def _int(value: int | None) -> str | None:
    return None if value is None else str(value)


def _user_agent(ctx: RequestContext) -> str | None:
    value = ctx.header(b"user-agent")
    return None if value is None else value.decode("latin-1")


def _domain_name(ex: Exchange) -> str:
    # The Host header, as the Lambda events carry it; the execute-api name when a client sent none.
    host = ex.ctx.header(b"host")
    if host:
        return host.decode("latin-1")
    return f"{ex.api.api_id}.execute-api.{ex.api.region}.amazonaws.com"


def _domain_prefix(ex: Exchange) -> str:
    return _domain_name(ex).split(".", 1)[0]


_RESOURCE_IDS: dict[str, str] = {}


def _resource_id(ex: Exchange) -> str | None:
    """The id the Lambda event's ``resourceId`` carries: derived from the resource template (REST only)."""
    resource = ex.ctx.resource
    if not resource or ex.api.kind == "HTTP":
        return None
    found = _RESOURCE_IDS.get(resource)
    if found is None:
        found = stable_id(resource, 6)
        if len(_RESOURCE_IDS) < 4096:  # an API's resources are few; a bound keeps a misuse from growing it
            _RESOURCE_IDS[resource] = found
    return found


def _xray_trace_id(ex: Exchange) -> str | None:
    """The trace header's Root (``1-5e1b4151-…``); REST APIs only (HTTP APIs do not support X-Ray)."""
    if ex.api.kind == "HTTP":
        return None
    for part in ex.ctx.trace_id.split(";"):
        part = part.strip()
        if part.startswith("Root="):
            return part[5:]
    return None


def _data_processed(ex: Exchange) -> str | None:
    """HTTP APIs: the request body's declared length plus the response body's (AWS: "the amount of data
    processed in bytes"); REST APIs do not have it."""
    if ex.api.kind != "HTTP":
        return None
    length = ex.ctx.header(b"content-length")
    received = int(length) if length is not None and length.isdigit() else 0
    return str(received + ex.response_length)


def _error_message_string(message: str | None) -> str | None:
    return None if message is None else orjson.dumps(message).decode()


# The web ACL's decision as $context.waf.status (the status AWS WAF answered) and $context.wafResponseCode.
_WAF_STATUS = {"ALLOW": "200", "COUNT": "200", "BLOCK": "403"}
_WAF_RESPONSE_CODE = {"ALLOW": "WAF_ALLOW", "COUNT": "WAF_ALLOW", "BLOCK": "WAF_BLOCK"}


def _authorizer_value(authorizer: Mapping[str, Any] | None, name: str) -> str | None:
    """``$context.authorizer.NAME``: a key of the Lambda authorizer's context (HTTP API payload 2.0: of its
    ``lambda`` map; REST and payload 1.0: flattened beside ``principalId``)."""
    if not authorizer:
        return None
    source = authorizer.get("lambda")
    if not isinstance(source, Mapping):
        source = authorizer
    return _text(source.get(name))


def _claim(authorizer: Mapping[str, Any] | None, name: str) -> str | None:
    """``$context.authorizer.claims.NAME``: Cognito's ``claims`` (REST), a JWT authorizer's ``jwt.claims``
    (HTTP API payload 2.0) or ``claims`` (payload 1.0)."""
    if not authorizer:
        return None
    claims = authorizer.get("claims")
    if not isinstance(claims, Mapping):
        jwt = authorizer.get("jwt")
        claims = jwt.get("claims") if isinstance(jwt, Mapping) else None
        if not isinstance(claims, Mapping):
            return None
    return _text(claims.get(name))


def _principal_id(authorizer: Mapping[str, Any] | None) -> str | None:
    return None if not authorizer else _text(authorizer.get("principalId"))


# What a variable's source may call, besides builtins.
NAMESPACE: Mapping[str, object] = {
    "request_time": request_time,
    "_authorizer_value": _authorizer_value,
    "_claim": _claim,
    "_data_processed": _data_processed,
    "_domain_name": _domain_name,
    "_domain_prefix": _domain_prefix,
    "_error_message_string": _error_message_string,
    "_int": _int,
    "_ms": _ms,
    "_principal_id": _principal_id,
    "_resource_id": _resource_id,
    "_user_agent": _user_agent,
    "_WAF_RESPONSE_CODE": _WAF_RESPONSE_CODE,
    "_WAF_STATUS": _WAF_STATUS,
    "_xray_trace_id": _xray_trace_id,
}

_S, _T, _N, _J = Kind.SAFE, Kind.TEXT, Kind.NUMBER, Kind.JSON

# Name (after "$context.") → (source, kind): the source reads ex (the Exchange), c (ex.ctx) and a (ex.api).
# None: Portway has no such value (see the module docstring).
_TABLE: dict[str, tuple[str | None, Kind]] = {
    "accountId": ("a.account_id", _T),
    "apiId": ("a.api_id", _T),
    "authorize.error": (None, _T),
    "authorize.latency": (None, _N),
    "authorize.status": (None, _N),
    "authenticate.error": (None, _T),
    "authenticate.latency": (None, _N),
    "authenticate.status": (None, _N),
    "authorizer.claims": (None, _T),  # AWS: "Calling $context.authorizer.claims returns null."
    "authorizer.error": ("c.authorizer_error", _T),
    # REST: beside principalId
    "authorizer.integrationLatency": ("_authorizer_value(c.authorizer, 'integrationLatency')", _T),
    "authorizer.integrationStatus": (None, _N),
    "authorizer.latency": ("_ms(c.authorizer_latency_ms)", _N),
    "authorizer.principalId": ("_principal_id(c.authorizer)", _T),
    "authorizer.requestId": (None, _T),
    "authorizer.status": ("_int(c.authorizer_status)", _N),
    "awsEndpointRequestId": (None, _T),
    "awsEndpointRequestId2": (None, _T),
    "customDomain.basePathMatched": (None, _T),
    "dataProcessed": ("_data_processed(ex)", _N),
    "deploymentId": ("a.deployment_id", _T),
    "domainName": ("_domain_name(ex)", _T),
    "domainPrefix": ("_domain_prefix(ex)", _T),
    "error.message": ("ex.error_message", _T),
    "error.messageString": ("_error_message_string(ex.error_message)", _J),
    "error.responseType": ("ex.error_type", _S),
    "error.validationErrorString": ("c.validation_error", _T),
    "extendedRequestId": ("c.extended_request_id", _S),
    "httpMethod": ("c.method", _S),
    "identity.accessKey": (None, _T),
    "identity.accountId": (None, _T),
    "identity.apiKey": ("c.api_key", _T),
    "identity.apiKeyId": ("c.api_key_id", _T),
    "identity.caller": (None, _T),
    "identity.clientCert.clientCertPem": (None, _T),
    "identity.clientCert.issuerDN": (None, _T),
    "identity.clientCert.serialNumber": (None, _T),
    "identity.clientCert.subjectDN": (None, _T),
    "identity.clientCert.validity.notAfter": (None, _T),
    "identity.clientCert.validity.notBefore": (None, _T),
    "identity.cognitoAuthenticationProvider": (None, _T),
    "identity.cognitoAuthenticationType": (None, _T),
    "identity.cognitoIdentityId": (None, _T),
    "identity.cognitoIdentityPoolId": (None, _T),
    "identity.principalOrgId": (None, _T),
    # Text, not SAFE: behind a proxy the server may take the client's address from X-Forwarded-For.
    "identity.sourceIp": ("c.client_ip", _T),
    "identity.user": (None, _T),
    "identity.userAgent": ("_user_agent(c)", _T),
    "identity.userArn": (None, _T),
    "identity.vpcId": (None, _T),
    "identity.vpceId": (None, _T),
    "integration.error": ("c.integration_error", _T),
    "integration.integrationStatus": ("_int(c.integration_status)", _N),
    "integration.latency": ("_ms(c.integration_latency_ms)", _N),
    "integration.requestId": (None, _T),
    # AWS: "Equivalent to $context.integrationStatus"; Portway keeps one integration status.
    "integration.status": ("_int(c.integration_status)", _N),
    "integrationErrorMessage": ("c.integration_error", _T),
    "integrationLatency": ("_ms(c.integration_latency_ms)", _N),
    "integrationStatus": ("_int(c.integration_status)", _N),
    "isCanaryRequest": (None, _T),
    "path": ("c.scope_path()", _T),  # with the stage: /dev/items/1
    "protocol": ("'HTTP/' + c.http_version", _S),
    # An HTTP API's request id is its short one, the apigw-requestid header's.
    "requestId": ("c.extended_request_id if a.kind == 'HTTP' else c.request_id", _S),
    "requestTime": ("request_time(c.request_time_ns)", _S),
    "requestTimeEpoch": ("str(c.request_time_ns // 1_000_000)", _N),
    "resourceId": ("_resource_id(ex)", _S),
    "resourcePath": ("None if a.kind == 'HTTP' else c.resource", _T),
    "responseLatency": ("str(round(ex.response_latency_ms))", _N),
    "responseLength": ("str(ex.response_length)", _N),
    "responseOverride.status": (None, _N),
    "routeKey": ("ex.route_key", _T),
    "stage": ("a.stage", _T),
    "status": ("str(ex.status)", _N),
    "waf.error": (None, _T),
    "waf.latency": (None, _N),
    "waf.status": ("_WAF_STATUS.get(c.waf_status)", _N),
    "wafResponseCode": ("_WAF_RESPONSE_CODE.get(c.waf_status)", _S),
    "webaclArn": (None, _T),
    "xrayTraceId": ("_xray_trace_id(ex)", _T),
}

VARIABLES: Mapping[str, Variable] = {name: Variable(source, kind) for name, (source, kind) in _TABLE.items()}

# Families with a name at the end (``requestOverride.header.NAME``): never a value in Portway.
_MISSING_FAMILIES = (
    "requestOverride.header.",
    "requestOverride.path.",
    "requestOverride.querystring.",
    "responseOverride.header.",
)

ALWAYS_MISSING: frozenset[str] = frozenset(
    [name for name, variable in VARIABLES.items() if variable.source is None]
    + [family + "NAME" for family in _MISSING_FAMILIES]
)

_MISSING_TEXT = Variable(None, Kind.TEXT)


def lookup(name: str) -> Variable | None:
    """The variable ``$context.NAME`` (``name`` without ``context.``), or None when AWS has no such variable.

    >>> lookup("requestId").kind
    <Kind.SAFE: 'safe'>
    >>> lookup("authorizer.claims.sub").kind, lookup("nope") is None
    (<Kind.TEXT: 'text'>, True)
    """
    found = VARIABLES.get(name)
    if found is not None:
        return found
    if name.startswith("authorizer.claims."):
        claim = name.removeprefix("authorizer.claims.")
        return Variable(f"_claim(c.authorizer, {claim!r})", Kind.TEXT) if "." not in claim else None
    if name.startswith("authorizer."):
        key = name.removeprefix("authorizer.")
        return Variable(f"_authorizer_value(c.authorizer, {key!r})", Kind.TEXT) if "." not in key else None
    for family in _MISSING_FAMILIES:
        if name.startswith(family) and "." not in name.removeprefix(family):
            return _MISSING_TEXT
    return None
