"""OpenAPI 3.0/3.1 and Swagger 2.0 documents with Amazon API Gateway extensions → :class:`ApiDefinition`.

Every problem is collected with its JSON path, so one run of ``portway check`` shows them all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portway.config.errors import DefinitionErrors, Problem, json_path
from portway.config.model import (
    ANY_METHOD,
    DEFAULT_ROUTE,
    ApiDefinition,
    Authorizer,
    Integration,
    IntegrationResponse,
    IntegrationType,
    Operation,
    Parameter,
    RequestValidator,
)
from portway.stages.cache import parse_cache_key_parameters

__all__ = ["is_openapi", "parse_openapi"]

INTEGRATION_KEY = "x-amazon-apigateway-integration"
ANY_METHOD_KEY = "x-amazon-apigateway-any-method"
BINARY_TYPES_KEY = "x-amazon-apigateway-binary-media-types"
HANDLER_KEY = "x-portway-handler"
API_KEY_SOURCE_KEY = "x-amazon-apigateway-api-key-source"
COMPRESSION_KEY = "x-amazon-apigateway-minimum-compression-size"
COMPRESSION_MAX = 10_485_760
API_KEY_HEADER = "x-api-key"
AUTHORIZER_KEY = "x-amazon-apigateway-authorizer"
AUTHTYPE_KEY = "x-amazon-apigateway-authtype"
VALIDATORS_KEY = "x-amazon-apigateway-request-validators"
VALIDATOR_KEY = "x-amazon-apigateway-request-validator"
GATEWAY_RESPONSES_KEY = "x-amazon-apigateway-gateway-responses"
CORS_KEY = "x-amazon-apigateway-cors"
_PARAMETER_LOCATIONS = {"query", "header", "path"}

_METHOD_KEYS = {
    "get": "GET",
    "put": "PUT",
    "post": "POST",
    "delete": "DELETE",
    "options": "OPTIONS",
    "head": "HEAD",
    "patch": "PATCH",
    ANY_METHOD_KEY: ANY_METHOD,
}
# Keys a path item may hold besides operations.
_PATH_ITEM_OTHER_KEYS = {"parameters", "summary", "description", "servers", "$ref", "trace"}
_LATER_TYPES = {
    "aws": "the 'aws' integration (Lambda custom / AWS service integration with mapping templates)",
    "http": "the 'http' integration (HTTP custom integration with mapping templates)",
}
_PARAM_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")
_STATUS = re.compile(r"^[1-5][0-9][0-9]$")
TIMEOUT_MIN_MS, TIMEOUT_MAX_MS = 50, 29_000
HTTP_API_TIMEOUT_MAX_MS = 30_000  # HTTP APIs allow a second more
IMPORT_EXPORT_KEY = "x-amazon-apigateway-importexport-version"  # only HTTP API exports carry it
PAYLOAD_FORMATS = ("1.0", "2.0")


def is_openapi(document: Any) -> bool:
    return isinstance(document, Mapping) and ("openapi" in document or "swagger" in document)


class _Collector:
    def __init__(self, file: Path, http_api: bool = False) -> None:
        self.file = file
        self.http_api = http_api  # the document describes an HTTP API (v2), not a REST API
        self.problems: list[Problem] = []
        self.api_key_schemes: frozenset[str] = frozenset()
        self.default_security: Any = None  # the document's top-level security requirements
        self.authorizers: dict[str, Authorizer] = {}
        self.validators: dict[str, RequestValidator] = {}
        self.default_validator: Any = None
        self.document: Mapping[str, Any] = {}

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path, message))


def parse_openapi(document: Any, file: Path, http_api: bool | None = None) -> ApiDefinition:
    """Build the model of a REST or HTTP API from an OpenAPI/Swagger document, or raise every problem at once.

    An HTTP API is recognised as API Gateway exports one: ``x-amazon-apigateway-importexport-version`` at the
    top, a ``/$default`` route, or integrations that name their ``payloadFormatVersion``; or as the caller
    says (``http_api``), when the document comes from a SAM template's AWS::Serverless::HttpApi.
    """
    if not isinstance(document, Mapping):
        out = _Collector(file)
        out.add("$", "the document must be a mapping with 'openapi' or 'swagger' at its top")
        raise DefinitionErrors(out.problems)
    out = _Collector(file, http_api=is_http_api(document) if http_api is None else http_api)
    key = "openapi" if "openapi" in document else "swagger"
    version = str(document.get(key, ""))
    if key == "openapi" and not re.match(r"^3\.[01](\.\d+)?$", version):
        out.add(json_path(key), f"unsupported version {version!r}: 'openapi' must be 3.0 or 3.1")
    elif key == "swagger" and version != "2.0":
        out.add(json_path(key), f"unsupported version {version!r}: 'swagger' must be 2.0")
    info = document.get("info")
    title = str(info.get("title", file.stem)) if isinstance(info, Mapping) else file.stem
    binary = _binary_media_types(document, out)
    key_source = document.get(API_KEY_SOURCE_KEY, "HEADER")
    if key_source not in ("HEADER", "AUTHORIZER"):
        out.add(json_path(API_KEY_SOURCE_KEY), "must be HEADER or AUTHORIZER")
    compression = document.get(COMPRESSION_KEY)
    if compression is not None and (
        isinstance(compression, bool)
        or not isinstance(compression, int)
        or not 0 <= compression <= COMPRESSION_MAX
    ):
        out.add(json_path(COMPRESSION_KEY), f"must be a whole number of bytes from 0 to {COMPRESSION_MAX}")
        compression = None
    out.api_key_schemes = _api_key_schemes(document)
    out.authorizers = _authorizers(document)
    out.default_security = document.get("security")
    out.validators = _request_validators(document, out)
    default_validator = document.get(VALIDATOR_KEY)
    if default_validator is not None and default_validator not in out.validators:
        out.add(
            json_path(VALIDATOR_KEY), f"no request validator named {default_validator!r} in {VALIDATORS_KEY}"
        )
        default_validator = None
    out.default_validator = default_validator
    out.document = document
    operations = _operations(document, out)
    gateway_responses = document.get(GATEWAY_RESPONSES_KEY) or {}
    if not isinstance(gateway_responses, Mapping):
        out.add(json_path(GATEWAY_RESPONSES_KEY), "must be a mapping of gateway response types to responses")
        gateway_responses = {}
    cors = document.get(CORS_KEY)
    if cors is not None and not isinstance(cors, Mapping):
        out.add(json_path(CORS_KEY), "must be a mapping (allowOrigins, allowMethods, allowHeaders …)")
        cors = None
    if out.problems:
        raise DefinitionErrors(out.problems)
    return ApiDefinition(
        kind="HTTP" if out.http_api else "REST",
        title=title,
        source=file,
        operations=tuple(operations),
        binary_media_types=binary,
        api_key_source=str(key_source),
        minimum_compression_size=compression,
        authorizers=out.authorizers,
        request_validators=out.validators,
        gateway_responses=gateway_responses,
        cors=cors,
        document=document,
    )


def _security_schemes(document: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    components = document.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, Mapping) else None
    if isinstance(schemes, Mapping):
        return schemes, "$.components.securitySchemes"
    schemes = document.get("securityDefinitions")  # Swagger 2
    if isinstance(schemes, Mapping):
        return schemes, "$.securityDefinitions"
    return {}, ""


def _authorizers(document: Mapping[str, Any]) -> dict[str, Authorizer]:
    """Security schemes that are authorizers (Lambda, JWT, Cognito user pools), as written."""
    schemes, where = _security_schemes(document)
    return {
        str(name): Authorizer(str(name), scheme, f"{where}['{name}']")
        for name, scheme in schemes.items()
        if isinstance(scheme, Mapping) and (AUTHORIZER_KEY in scheme or AUTHTYPE_KEY in scheme)
    }


def _request_validators(document: Mapping[str, Any], out: _Collector) -> dict[str, RequestValidator]:
    raw = document.get(VALIDATORS_KEY)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        out.add(json_path(VALIDATORS_KEY), "must be a mapping of validator names to settings")
        return {}
    validators: dict[str, RequestValidator] = {}
    for name, spec in raw.items():
        where = f"{json_path(VALIDATORS_KEY)}['{name}']"
        if not isinstance(spec, Mapping):
            out.add(where, "must be a mapping with validateRequestBody and validateRequestParameters")
            continue
        body = spec.get("validateRequestBody", False)
        parameters = spec.get("validateRequestParameters", False)
        if not isinstance(body, bool) or not isinstance(parameters, bool):
            out.add(where, "validateRequestBody and validateRequestParameters must be true or false")
            continue
        validators[str(name)] = RequestValidator(str(name), body, parameters, where)
    return validators


def _resolve_ref(document: Mapping[str, Any], node: Any) -> Any:
    """Follow a local ``$ref`` (``#/components/...``) once; anything else comes back as it is."""
    if isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = document
        for part in node["$ref"][2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                return node
            target = target[part]
        return target
    return node


def _parameters(
    document: Mapping[str, Any], raw_lists: list[tuple[Any, str]], out: _Collector
) -> tuple[tuple[Parameter, ...], dict[str, Any]]:
    """Declared query/header/path parameters (later lists win by name and place), and a Swagger 2 ``in:
    body`` parameter's schema."""
    found: dict[tuple[str, str], Parameter] = {}
    body: dict[str, Any] = {}
    for raw, where in raw_lists:
        if raw is None:
            continue
        if not isinstance(raw, list):
            out.add(where, "must be a list of parameters")
            continue
        for index, item in enumerate(raw):
            item = _resolve_ref(document, item)
            here = f"{where}[{index}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                out.add(here, "a parameter needs a name and 'in'")
                continue
            location = item.get("in")
            if location == "body":
                body["application/json"] = item.get("schema", {})
                continue
            if location not in _PARAMETER_LOCATIONS:
                continue  # cookie / formData: not validated by API Gateway
            required = bool(item.get("required", location == "path"))
            found[(item["name"], location)] = Parameter(item["name"], location, required, here)
    return tuple(found.values()), body


def _body_schemas(document: Mapping[str, Any], op: Mapping[str, Any]) -> dict[str, Any]:
    request_body = _resolve_ref(document, op.get("requestBody"))
    if not isinstance(request_body, Mapping):
        return {}
    content = request_body.get("content")
    if not isinstance(content, Mapping):
        return {}
    return {
        str(media).lower(): spec["schema"]
        for media, spec in content.items()
        if isinstance(spec, Mapping) and "schema" in spec
    }


def _authorizer_of(
    security: Any, authorizers: Mapping[str, Authorizer]
) -> tuple[str | None, tuple[str, ...]]:
    """The authorizer a security requirement list names (the first that names one), and its scopes."""
    if not isinstance(security, list):
        return None, ()
    for requirement in security:
        if isinstance(requirement, Mapping):
            for name, scopes in requirement.items():
                if name in authorizers:
                    listed = tuple(str(s) for s in scopes) if isinstance(scopes, list) else ()
                    return str(name), listed
    return None, ()


def _api_key_schemes(document: Mapping[str, Any]) -> frozenset[str]:
    """Security schemes that are API Gateway's API key: an ``apiKey`` in the ``x-api-key`` header with no
    Lambda authorizer behind it (those come with the authorizers)."""
    components = document.get("components")
    schemes = components.get("securitySchemes") if isinstance(components, Mapping) else None
    if schemes is None:
        schemes = document.get("securityDefinitions")  # Swagger 2
    if not isinstance(schemes, Mapping):
        return frozenset()
    return frozenset(
        str(name)
        for name, scheme in schemes.items()
        if isinstance(scheme, Mapping)
        and scheme.get("type") == "apiKey"
        and str(scheme.get("name", "")).lower() == API_KEY_HEADER
        and scheme.get("in") == "header"
        and "x-amazon-apigateway-authorizer" not in scheme
        and "x-amazon-apigateway-authtype" not in scheme
    )


def _requires_api_key(security: Any, schemes: frozenset[str]) -> bool:
    if not isinstance(security, list):
        return False
    return any(isinstance(req, Mapping) and any(name in schemes for name in req) for req in security)


def is_http_api(document: Mapping[str, Any]) -> bool:
    if IMPORT_EXPORT_KEY in document:
        return True
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return False
    if f"/{DEFAULT_ROUTE}" in paths:
        return True
    for item in paths.values():
        if isinstance(item, Mapping):
            for op in item.values():
                integration = op.get(INTEGRATION_KEY) if isinstance(op, Mapping) else None
                if isinstance(integration, Mapping) and "payloadFormatVersion" in integration:
                    return True
    return False


def _binary_media_types(document: Mapping[str, Any], out: _Collector) -> tuple[str, ...]:
    raw = document.get(BINARY_TYPES_KEY)
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        out.add(json_path(BINARY_TYPES_KEY), "must be a list of media types such as 'image/png' or '*/*'")
        return ()
    # The AWS API escapes '/' as '~1' (JSON Patch style); exports sometimes carry it through.
    return tuple(t.replace("~1", "/").lower() for t in raw)


def _operations(document: Mapping[str, Any], out: _Collector) -> list[Operation]:
    paths = document.get("paths")
    if paths is None:
        out.add("$", "no 'paths': the API defines no routes")
        return []
    if not isinstance(paths, Mapping):
        out.add(json_path("paths"), "must be a mapping of resource paths to path items")
        return []
    operations: list[Operation] = []
    for resource, item in paths.items():
        where = json_path("paths", str(resource))
        if not isinstance(resource, str):
            out.add(where, f"a resource path must be a string starting with '/', got {resource!r}")
            continue
        if out.http_api and resource == f"/{DEFAULT_ROUTE}":
            resource = DEFAULT_ROUTE
        elif not _check_resource(resource, where, out):
            continue
        if not isinstance(item, Mapping):
            out.add(where, "must be a mapping of methods to operations")
            continue
        for key, op in item.items():
            method = _METHOD_KEYS.get(str(key).lower()) if isinstance(key, str) else None
            op_where = json_path("paths", resource, str(key))
            if method is None:
                if not (isinstance(key, str) and (key in _PATH_ITEM_OTHER_KEYS or key.startswith("x-"))):
                    out.add(op_where, f"unknown method {key!r}")
                continue
            if str(key) != str(key).lower() and key != ANY_METHOD_KEY:
                out.add(op_where, f"method keys are lower-case in OpenAPI: use {str(key).lower()!r}")
                continue
            if resource == DEFAULT_ROUTE and method != ANY_METHOD:
                out.add(op_where, f"the {DEFAULT_ROUTE} route takes every method: use {ANY_METHOD_KEY}")
                continue
            operation = _operation(method, resource, op, op_where, out)
            if operation is not None:
                operations.append(operation)
    return operations


def _check_resource(resource: str, where: str, out: _Collector) -> bool:
    if not resource.startswith("/"):
        out.add(where, "a resource path must start with '/'")
        return False
    if resource != "/" and resource.endswith("/"):
        out.add(where, "a resource path must not end with '/'")
        return False
    segments = resource.split("/")[1:] if resource != "/" else []
    names: set[str] = set()
    for i, segment in enumerate(segments):
        if segment == "":
            out.add(where, "a resource path must not contain an empty segment ('//')")
            return False
        if segment.startswith("{") or segment.endswith("}"):
            if not (segment.startswith("{") and segment.endswith("}")):
                out.add(where, f"path part {segment!r}: a variable must be a whole segment, like '{{id}}'")
                return False
            name = segment[1:-1]
            greedy = name.endswith("+")
            if greedy:
                name = name[:-1]
                if i != len(segments) - 1:
                    out.add(where, f"greedy variable {segment!r} must be the last path part")
                    return False
            if not _PARAM_NAME.match(name):
                out.add(where, f"path variable {segment!r} has an invalid name")
                return False
            if name in names:
                out.add(where, f"path variable {name!r} appears twice")
                return False
            names.add(name)
        elif "{" in segment or "}" in segment:
            out.add(where, f"path part {segment!r}: a variable must be a whole segment, like '{{id}}'")
            return False
    return True


def _operation(method: str, resource: str, op: Any, where: str, out: _Collector) -> Operation | None:
    if not isinstance(op, Mapping):
        out.add(where, "an operation must be a mapping")
        return None
    raw = op.get(INTEGRATION_KEY)
    integration_where = f"{where}.{INTEGRATION_KEY}"
    if raw is None:
        out.add(where, f"{method} {resource}: no {INTEGRATION_KEY}: API Gateway needs one for every method")
        return None
    integration = _integration(raw, method, resource, integration_where, op.get(HANDLER_KEY), out)
    if integration is None:
        return None
    operation_id = op.get("operationId")
    security = op.get("security", out.default_security)
    authorizer, scopes = _authorizer_of(security, out.authorizers)
    validator = op.get(VALIDATOR_KEY, out.default_validator)
    if validator is not None and validator not in out.validators:
        out.add(f"{where}.{VALIDATOR_KEY}", f"no request validator named {validator!r} in {VALIDATORS_KEY}")
        validator = None
    path_item_where = where.rsplit(".", 1)[0] if "." in where else where
    path_item = out.document.get("paths", {}).get(resource) if resource != DEFAULT_ROUTE else None
    parameters, swagger_body = _parameters(
        out.document,
        [
            (
                path_item.get("parameters") if isinstance(path_item, Mapping) else None,
                f"{path_item_where}.parameters",
            ),
            (op.get("parameters"), f"{where}.parameters"),
        ],
        out,
    )
    body_schemas = _body_schemas(out.document, op) or swagger_body
    cache_keys = _cache_key_parameters(
        raw.get("cacheKeyParameters"),
        f"{integration_where}.cacheKeyParameters",
        integration.request_parameters,
        out,
    )
    return Operation(
        method=method,
        resource=resource,
        integration=integration,
        operation_id=str(operation_id) if operation_id is not None else None,
        where=where,
        api_key_required=_requires_api_key(security, out.api_key_schemes),
        cache_key_parameters=cache_keys,
        authorizer=authorizer,
        authorization_scopes=scopes,
        parameters=parameters,
        body_schemas=body_schemas,
        request_validator=validator,
    )


def _cache_key_parameters(
    raw: Any, where: str, integration_parameters: Mapping[str, str], out: _Collector
) -> tuple[str, ...]:
    keys, problems = parse_cache_key_parameters(raw, where, integration_parameters)
    for path, message in problems:
        out.add(path, message)
    return keys


def _string_map(raw: Any, where: str, out: _Collector) -> dict[str, str] | None:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        out.add(where, "must be a mapping of strings to strings")
        return None
    return dict(raw)


def _integration(
    raw: Any, method: str, resource: str, where: str, handler: Any, out: _Collector
) -> Integration | None:
    route = f"{method} {resource}"
    if not isinstance(raw, Mapping):
        out.add(where, f"{route}: must be a mapping")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str):
        out.add(f"{where}.type", f"{route}: missing integration type (aws_proxy, http_proxy or mock)")
        return None
    lowered = kind.lower()
    if lowered in _LATER_TYPES:
        out.add(
            f"{where}.type",
            f"{route}: {_LATER_TYPES[lowered]} is not supported yet; use aws_proxy, http_proxy or mock",
        )
        return None
    try:
        itype = IntegrationType(lowered)
    except ValueError:
        out.add(f"{where}.type", f"{route}: unknown integration type {kind!r} (aws_proxy, http_proxy, mock)")
        return None
    ok = True
    uri = raw.get("uri")
    if uri is not None and not isinstance(uri, str):
        out.add(f"{where}.uri", f"{route}: must be a string")
        ok = False
    if handler is not None and not (isinstance(handler, str) and "." in handler):
        out.add(
            f"{where.rsplit('.', 1)[0]}.{HANDLER_KEY}", f"{route}: must be 'module.function', got {handler!r}"
        )
        ok = False
    http_method = raw.get("httpMethod")
    if http_method is not None and not isinstance(http_method, str):
        out.add(f"{where}.httpMethod", f"{route}: must be a string")
        ok = False
    if itype is IntegrationType.AWS_PROXY:
        if uri is None and handler is None:
            out.add(f"{where}.uri", f"{route}: an aws_proxy integration needs a Lambda function uri")
            ok = False
        if isinstance(http_method, str) and http_method.upper() != "POST":
            out.add(
                f"{where}.httpMethod",
                f"{route}: Lambda is invoked with POST; httpMethod {http_method!r} fails on API Gateway",
            )
            ok = False
    elif itype is IntegrationType.HTTP_PROXY and (
        not isinstance(uri, str) or not re.match(r"^https?://[^/]+", uri)
    ):
        out.add(f"{where}.uri", f"{route}: an http_proxy integration needs an http(s):// uri")
        ok = False
    timeout_max = HTTP_API_TIMEOUT_MAX_MS if out.http_api else TIMEOUT_MAX_MS
    timeout = raw.get("timeoutInMillis", timeout_max)
    if isinstance(timeout, str) and timeout.isdigit():
        timeout = int(timeout)
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not (TIMEOUT_MIN_MS <= timeout <= timeout_max)
    ):
        out.add(
            f"{where}.timeoutInMillis",
            f"{route}: must be a whole number of milliseconds from {TIMEOUT_MIN_MS} to {timeout_max}",
        )
        ok = False
    payload_format = str(raw.get("payloadFormatVersion", "2.0" if out.http_api else "1.0"))
    if payload_format not in PAYLOAD_FORMATS or (payload_format != "1.0" and not out.http_api):
        allowed = "'1.0' or '2.0'" if out.http_api else "'1.0' (a REST API sends payload 1.0)"
        out.add(f"{where}.payloadFormatVersion", f"{route}: must be {allowed}, got {payload_format!r}")
        ok = False
    request_templates = _string_map(raw.get("requestTemplates"), f"{where}.requestTemplates", out)
    request_parameters = _string_map(raw.get("requestParameters"), f"{where}.requestParameters", out)
    responses = _responses(raw.get("responses"), f"{where}.responses", route, out)
    passthrough = raw.get("passthroughBehavior", "WHEN_NO_MATCH")
    if not isinstance(passthrough, str) or passthrough.upper() not in {
        "WHEN_NO_MATCH",
        "WHEN_NO_TEMPLATES",
        "NEVER",
    }:
        out.add(f"{where}.passthroughBehavior", f"{route}: must be WHEN_NO_MATCH, WHEN_NO_TEMPLATES or NEVER")
        ok = False
    if not ok or request_templates is None or request_parameters is None or responses is None:
        return None
    assert isinstance(timeout, int)
    return Integration(
        type=itype,
        uri=uri,
        http_method=http_method.upper() if isinstance(http_method, str) else None,
        timeout_ms=timeout,
        request_templates=request_templates,
        request_parameters=request_parameters,
        responses=responses,
        passthrough_behavior=str(passthrough).upper(),
        handler=handler,
        payload_format=payload_format,
        where=where,
    )


def _responses(raw: Any, where: str, route: str, out: _Collector) -> tuple[IntegrationResponse, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        out.add(where, f"{route}: must be a mapping of selection patterns to responses")
        return None
    result: list[IntegrationResponse] = []
    for pattern, spec in raw.items():
        here = f"{where}['{pattern}']"
        if not isinstance(spec, Mapping):
            out.add(here, f"{route}: must be a mapping with statusCode")
            return None
        status = str(spec.get("statusCode", ""))
        if not _STATUS.match(status):
            out.add(f"{here}.statusCode", f"{route}: must be an HTTP status code like '200'")
            return None
        if pattern != "default":
            try:
                re.compile(str(pattern))
            except re.error as exc:
                out.add(here, f"{route}: selection pattern is not a valid regular expression: {exc}")
                return None
        templates = _string_map(spec.get("responseTemplates"), f"{here}.responseTemplates", out)
        parameters = _string_map(spec.get("responseParameters"), f"{here}.responseParameters", out)
        if templates is None or parameters is None:
            return None
        result.append(
            IntegrationResponse(
                selection_pattern=str(pattern),
                status_code=int(status),
                response_templates=templates,
                response_parameters=parameters,
            )
        )
    # The default response is the fallback: try every pattern first.
    result.sort(key=lambda r: r.selection_pattern == "default")
    return tuple(result)
