"""What the user wrote, as frozen data: the loaders produce it, the compiler reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ANY_METHOD",
    "DEFAULT_ROUTE",
    "HTTP_METHODS",
    "ApiDefinition",
    "Authorizer",
    "Deployment",
    "FunctionEntry",
    "Integration",
    "IntegrationResponse",
    "IntegrationType",
    "MethodSetting",
    "Operation",
    "Parameter",
    "RequestValidator",
    "StageSettings",
]

T = TypeVar("T")

ANY_METHOD = "ANY"
DEFAULT_ROUTE = "$default"  # an HTTP API's catch-all route (the path "/$default" in its OpenAPI export)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class IntegrationType(StrEnum):
    AWS_PROXY = "aws_proxy"
    HTTP_PROXY = "http_proxy"
    MOCK = "mock"


@dataclass(frozen=True, slots=True)
class IntegrationResponse:
    """One entry of ``x-amazon-apigateway-integration.responses``."""

    selection_pattern: str  # the map key: "default" or a regular expression
    status_code: int
    response_templates: Mapping[str, str] = field(default_factory=dict)
    response_parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Integration:
    type: IntegrationType
    uri: str | None = None
    http_method: str | None = None
    timeout_ms: int = 29_000
    request_templates: Mapping[str, str] = field(default_factory=dict)
    request_parameters: Mapping[str, str] = field(default_factory=dict)
    responses: tuple[IntegrationResponse, ...] = ()
    passthrough_behavior: str = "WHEN_NO_MATCH"
    handler: str | None = None  # x-portway-handler: "module.function" beside the definition
    payload_format: str = "1.0"  # Lambda proxy payload: "1.0" (REST APIs, and HTTP APIs that ask) or "2.0"
    where: str = ""  # JSON path of the integration object


@dataclass(frozen=True, slots=True)
class Parameter:
    """A declared request parameter (OpenAPI ``parameters``): what a request validator checks."""

    name: str
    location: str  # "query", "header" or "path"
    required: bool
    where: str = ""


@dataclass(frozen=True, slots=True)
class RequestValidator:
    """One entry of ``x-amazon-apigateway-request-validators``."""

    name: str
    body: bool  # validateRequestBody
    parameters: bool  # validateRequestParameters
    where: str = ""


@dataclass(frozen=True, slots=True)
class Authorizer:
    """A security scheme that is an API Gateway authorizer, as written: the stage modules read ``scheme``
    (its ``x-amazon-apigateway-authorizer``, ``x-amazon-apigateway-authtype``, ``x-portway-handler`` …)."""

    name: str
    scheme: Mapping[str, Any]
    where: str  # JSON path of the security scheme


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # one of HTTP_METHODS or ANY_METHOD
    resource: str  # the resource path template, e.g. "/products/{id}"; DEFAULT_ROUTE on an HTTP API
    integration: Integration
    operation_id: str | None
    where: str  # JSON path of the operation
    api_key_required: bool = False  # security names an apiKey scheme (x-api-key in the header)
    cache_key_parameters: tuple[str, ...] = ()  # method.request.(querystring|header|path).NAME
    authorizer: str | None = None  # the name of the authorizer security scheme protecting it, if any
    authorization_scopes: tuple[str, ...] = ()  # the scopes its security requirement lists
    parameters: tuple[Parameter, ...] = ()  # path-item and operation parameters, the operation's winning
    body_schemas: Mapping[str, Any] = field(default_factory=dict)  # content type -> JSON schema (raw, $refs)
    request_validator: str | None = None  # the validator's name (the operation's, else the API's default)


@dataclass(frozen=True, slots=True)
class ApiDefinition:
    kind: str  # "REST" or "HTTP" (WebSocket APIs come with their own issue)
    title: str
    source: Path
    operations: tuple[Operation, ...]
    binary_media_types: tuple[str, ...] = ()
    api_key_source: str = "HEADER"  # x-amazon-apigateway-api-key-source: HEADER or AUTHORIZER
    minimum_compression_size: int | None = None  # x-amazon-apigateway-minimum-compression-size; None: off
    authorizers: Mapping[str, Authorizer] = field(default_factory=dict)
    request_validators: Mapping[str, RequestValidator] = field(default_factory=dict)
    gateway_responses: Mapping[str, Any] = field(
        default_factory=dict
    )  # x-amazon-apigateway-gateway-responses
    cors: Mapping[str, Any] | None = None  # x-amazon-apigateway-cors (HTTP APIs)
    document: Mapping[str, Any] = field(default_factory=dict)  # the whole document, for schema $refs
    # Set by a SAM template, which names its functions and its stage itself:
    deployment: Deployment | None = None
    default_stage: str | None = None
    not_emulated: tuple[str, ...] = ()  # resources Portway does not run, "Logical (Type)"


@dataclass(frozen=True, slots=True)
class FunctionEntry:
    """One function of the functions file: a Lambda function name bound to a local handler."""

    name: str
    handler: str  # "path/to/module.function", relative to base_dir
    base_dir: Path
    timeout_s: float = 3.0
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 4
    where: str = ""
    unsupported: str | None = None  # why Portway cannot run it (a non-Python runtime): its routes answer 502


@dataclass(frozen=True, slots=True)
class MethodSetting:
    """One entry of a stage's ``methodSettings`` (HTTP APIs: ``routeSettings``); None: not set here."""

    throttling_rate_limit: float | None = None
    throttling_burst_limit: int | None = None
    caching_enabled: bool | None = None
    cache_ttl_s: int | None = None
    require_authorization_for_cache_control: bool | None = None
    unauthorized_cache_control_header_strategy: str | None = None
    where: str = ""

    def over(self, default: MethodSetting) -> MethodSetting:
        """This method's settings, falling back field by field to the stage's default (``*/*``)."""

        def pick(mine: T | None, theirs: T | None) -> T | None:
            return mine if mine is not None else theirs

        return MethodSetting(
            pick(self.throttling_rate_limit, default.throttling_rate_limit),
            pick(self.throttling_burst_limit, default.throttling_burst_limit),
            pick(self.caching_enabled, default.caching_enabled),
            pick(self.cache_ttl_s, default.cache_ttl_s),
            pick(
                self.require_authorization_for_cache_control, default.require_authorization_for_cache_control
            ),
            pick(
                self.unauthorized_cache_control_header_strategy,
                default.unauthorized_cache_control_header_strategy,
            ),
            where=self.where or default.where,
        )


ALL_METHODS_KEY = ("*", "*")  # the "*/*" key: every method's default


@dataclass(frozen=True, slots=True)
class StageSettings:
    """A stage's settings beyond its variables, named as API Gateway's Stage resource names them."""

    # (resource, METHOD) -> setting; ("*", "*") is every method's default. HTTP APIs: (route key, "*"),
    # their defaultRouteSettings under ("*", "*").
    method_settings: Mapping[tuple[str, str], MethodSetting] = field(default_factory=dict)
    cache_cluster_enabled: bool = False
    cache_cluster_size_gb: float = 0.5
    web_acl: Mapping[str, Any] | None = None  # Portway's web ACL for the stage, as written (stages/waf.py)
    # accessLogSettings.format: the stage's access log line, with $context variables (or a preset's name)
    access_log_format: str | None = None
    access_log_where: str = ""
    where: str = ""

    def for_method(self, method: str, resource: str) -> MethodSetting:
        default = self.method_settings.get(ALL_METHODS_KEY, MethodSetting())
        own = self.method_settings.get((resource, method)) or self.method_settings.get((resource, "*"))
        return own.over(default) if own is not None else default


@dataclass(frozen=True, slots=True)
class Deployment:
    """The functions file: functions by name, and stage variables and settings by stage name."""

    source: Path | None = None
    functions: Mapping[str, FunctionEntry] = field(default_factory=dict)
    stage_variables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stage_settings: Mapping[str, StageSettings] = field(default_factory=dict)
