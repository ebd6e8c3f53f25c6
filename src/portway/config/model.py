"""What the user wrote, as frozen data: the loaders produce it, the compiler reads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

__all__ = [
    "ANY_METHOD",
    "DEFAULT_ROUTE",
    "HTTP_METHODS",
    "ApiDefinition",
    "Deployment",
    "FunctionEntry",
    "Integration",
    "IntegrationResponse",
    "IntegrationType",
    "Operation",
]

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
class Operation:
    method: str  # one of HTTP_METHODS or ANY_METHOD
    resource: str  # the resource path template, e.g. "/products/{id}"; DEFAULT_ROUTE on an HTTP API
    integration: Integration
    operation_id: str | None
    where: str  # JSON path of the operation


@dataclass(frozen=True, slots=True)
class ApiDefinition:
    kind: str  # "REST" or "HTTP" (WebSocket APIs come with their own issue)
    title: str
    source: Path
    operations: tuple[Operation, ...]
    binary_media_types: tuple[str, ...] = ()
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
class Deployment:
    """The functions file: functions by name, and stage variables by stage name."""

    source: Path | None = None
    functions: Mapping[str, FunctionEntry] = field(default_factory=dict)
    stage_variables: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
