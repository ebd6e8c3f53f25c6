"""Which loader reads a definition file, and where its functions file is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from portway.config.cfn import load_template
from portway.config.errors import DefinitionError
from portway.config.functions import load_functions
from portway.config.model import ApiDefinition, Deployment
from portway.config.openapi import is_openapi, parse_openapi
from portway.config.sam import is_sam, parse_sam
from portway.websocket.cfn import is_websocket_template, parse_websocket_template
from portway.websocket.definition import is_websocket, parse_websocket
from portway.websocket.model import WebSocketApi

__all__ = ["DEFAULT_FUNCTIONS_FILE", "find_functions_file", "load_api", "load_definition", "load_deployment"]

DEFAULT_FUNCTIONS_FILE = "functions.yaml"


def load_definition(file: Path, parameter_overrides: Mapping[str, str] | None = None) -> ApiDefinition:
    """Read a REST or HTTP API definition: OpenAPI 3 / Swagger 2 with API Gateway extensions, or a SAM
    template."""
    api = load_api(file, parameter_overrides)
    if isinstance(api, WebSocketApi):
        raise DefinitionError(file, "", "a WebSocket API: this command works on REST and HTTP APIs")
    return api


def load_api(
    file: Path, parameter_overrides: Mapping[str, str] | None = None
) -> ApiDefinition | WebSocketApi:
    """Read any API definition: OpenAPI (REST, HTTP), a SAM or CloudFormation template (REST, HTTP, or a
    WebSocket API of ``AWS::ApiGatewayV2`` resources), or Portway's native WebSocket API document."""
    document = load_template(file)
    if is_websocket(document):
        return parse_websocket(document, file)
    if is_openapi(document):
        return parse_openapi(document, file)
    if is_websocket_template(document):
        return parse_websocket_template(document, file, parameter_overrides)
    if is_sam(document):
        return parse_sam(document, file, parameter_overrides)
    if isinstance(document, Mapping) and ("Resources" in document or "AWSTemplateFormatVersion" in document):
        raise DefinitionError(
            file, "", "a CloudFormation template without AWS::Serverless resources: nothing Portway can serve"
        )
    raise DefinitionError(file, "$", "not an OpenAPI 3 or Swagger 2 document (no 'openapi' or 'swagger' key)")


def find_functions_file(definition: Path, explicit: Path | None) -> Path | None:
    """``--functions FILE`` if given, else a ``functions.yaml`` beside the definition, if there is one."""
    if explicit is not None:
        return explicit
    candidate = definition.parent / DEFAULT_FUNCTIONS_FILE
    return candidate if candidate.is_file() else None


def load_deployment(file: Path | None) -> Deployment:
    return load_functions(file) if file is not None else Deployment()
