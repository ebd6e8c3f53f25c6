"""AWS SAM templates → the same model an OpenAPI definition gives: `portway serve template.yaml`.

What is read: ``AWS::Serverless::Function`` (Handler, CodeUri, Runtime, Timeout, MemorySize, FunctionName,
Environment.Variables, with ``Globals.Function`` merged in) and its events of type ``Api`` (the implicit REST
API, stage ``Prod`` as SAM names it) and ``HttpApi`` (the implicit HTTP API, its ``$default`` stage); the
template's Parameters (``--parameter-overrides``), Conditions and Mappings through the intrinsics evaluator.
Resources Portway does not run are listed as not emulated, and a ``!Ref`` to one gives its logical id.

Explicit ``AWS::Serverless::Api`` / ``AWS::Serverless::HttpApi`` resources are read too (StageName, Variables,
DefinitionBody with its intrinsics resolved, or a local DefinitionUri), with the events bound to them through
``RestApiId`` / ``ApiId`` added to their routes. One API is served per process: a template making several is
refused, naming them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.config.cfn import ResolveError, Resolver, load_template
from portway.config.errors import DefinitionError, DefinitionErrors, Problem, json_path
from portway.config.model import (
    ANY_METHOD,
    DEFAULT_ROUTE,
    HTTP_METHODS,
    ApiDefinition,
    Deployment,
    FunctionEntry,
    Integration,
    IntegrationType,
    Operation,
)
from portway.config.openapi import parse_openapi

__all__ = ["is_sam", "parse_sam"]

FUNCTION = "AWS::Serverless::Function"
EXPLICIT_APIS = ("AWS::Serverless::Api", "AWS::Serverless::HttpApi")
SAM_TYPES = frozenset(
    {
        FUNCTION,
        *EXPLICIT_APIS,
        "AWS::Serverless::SimpleTable",
        "AWS::Serverless::LayerVersion",
        "AWS::Serverless::Application",
        "AWS::Serverless::StateMachine",
        "AWS::Serverless::Connector",
        "AWS::Serverless::GraphQLApi",
    }
)
# AWS::Service::Resource (and Alexa's), or a custom resource; anything else is not a CloudFormation type.
_RESOURCE_TYPE = re.compile(r"^((AWS|Alexa)::[A-Za-z0-9]+::[A-Za-z0-9]+|Custom::[A-Za-z0-9_@-]+)$")
IMPLICIT_REST_STAGE = "Prod"  # what SAM names the implicit REST API's stage
IMPLICIT_REST = "ServerlessRestApi"  # SAM's logical ids for the APIs it makes from events
IMPLICIT_HTTP = "ServerlessHttpApi"
DEFAULT_TIMEOUT_S = 3
DEFAULT_MEMORY_MB = 128


def is_sam(document: Any) -> bool:
    if not isinstance(document, Mapping) or not isinstance(document.get("Resources"), Mapping):
        return False
    transform = document.get("Transform")
    transforms = transform if isinstance(transform, list) else [transform]
    return "AWS::Serverless-2016-10-31" in transforms or any(
        isinstance(r, Mapping) and str(r.get("Type", "")).startswith("AWS::Serverless::")
        for r in document["Resources"].values()
    )


def _unknown_type(kind: str) -> bool:
    return not _RESOURCE_TYPE.match(kind) or (kind.startswith("AWS::Serverless::") and kind not in SAM_TYPES)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Globals under a function's own properties: maps merge (Environment.Variables too), others replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_sam(
    document: Mapping[str, Any],
    file: Path,
    parameter_overrides: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> ApiDefinition:
    """The API a SAM template's functions' events make (with its functions and stage), or every problem."""
    problems: list[Problem] = []
    resources: Mapping[str, Any] = document["Resources"]
    globals_ = document.get("Globals") or {}
    global_function = globals_.get("Function") or {} if isinstance(globals_, Mapping) else {}

    def properties_of(logical_id: str) -> dict[str, Any]:
        resource = resources[logical_id]
        own = resource.get("Properties") or {} if isinstance(resource, Mapping) else {}
        return _merge(global_function, own) if isinstance(own, Mapping) else {}

    def ref_of(logical_id: str, resolver: Resolver) -> Any:
        resource = resources[logical_id]
        if isinstance(resource, Mapping) and resource.get("Type") == FUNCTION:
            name = properties_of(logical_id).get("FunctionName")
            if name is not None:
                return resolver.resolve(name, f"$.Resources.{logical_id}.Properties.FunctionName")
        return logical_id

    def attribute_of(logical_id: str, attribute: str, resolver: Resolver) -> Any:
        if attribute == "Arn" and resources[logical_id].get("Type") == FUNCTION:
            return f"arn:aws:lambda:{region}:123456789012:function:{ref_of(logical_id, resolver)}"
        return f"arn:aws:portway:{region}:123456789012:{logical_id}/{attribute}"

    resolver = Resolver(
        document,
        parameter_overrides=parameter_overrides,
        region=region,
        ref_of=ref_of,
        attribute_of=attribute_of,
    )
    functions: dict[str, FunctionEntry] = {}
    apis: dict[str, _Api] = {}
    not_emulated: list[str] = []
    for logical_id, resource in resources.items():
        where = json_path("Resources", str(logical_id))
        if not isinstance(resource, Mapping) or not isinstance(resource.get("Type"), str):
            problems.append(Problem(file, where, "a resource must be a mapping with a Type"))
            continue
        kind = resource["Type"]
        if kind in EXPLICIT_APIS:
            api = _explicit_api(logical_id, kind, resource, resolver, file, where, problems)
            if api is not None:
                apis[logical_id] = api
        elif _unknown_type(kind):
            problems.append(Problem(file, f"{where}.Type", f"{logical_id}: unknown resource type {kind!r}"))
        elif kind != FUNCTION:
            not_emulated.append(f"{logical_id} ({kind})")
    for logical_id, resource in resources.items():
        if not isinstance(resource, Mapping) or resource.get("Type") != FUNCTION:
            continue
        where = json_path("Resources", str(logical_id))
        try:
            props = resolver.resolve(properties_of(logical_id), f"{where}.Properties")
            name = ref_of(logical_id, resolver)
        except ResolveError as exc:
            problems.append(Problem(file, exc.path, exc.message))
            continue
        entry = _function(logical_id, name, props, file, where, problems)
        if entry is None:
            continue
        functions[entry.name] = entry
        _events(logical_id, entry.name, props, file, where, region, apis, problems)
    served = {api_id: api for api_id, api in apis.items() if api.operations}
    if len(served) > 1:
        listed = ", ".join(f"{api_id} ({api.kind})" for api_id, api in served.items())
        problems.append(
            Problem(
                file,
                "$.Resources",
                f"this template makes {len(served)} APIs ({listed}): Portway serves one API per process; "
                "keep one API per template for now",
            )
        )
    if not served and not problems:
        problems.append(
            Problem(
                file, "$.Resources", "SAM template: no function has an Api or HttpApi event, nothing to serve"
            )
        )
    if problems:
        raise DefinitionErrors(problems)
    (api,) = served.values()
    title = str(document.get("Description") or file.stem).strip().splitlines()[0]
    return ApiDefinition(
        kind=api.kind,
        title=title,
        source=file,
        operations=tuple(api.operations),
        binary_media_types=api.binary_media_types,
        deployment=Deployment(source=file, functions=functions, stage_variables={api.stage: api.variables}),
        default_stage=api.stage,
        not_emulated=tuple(not_emulated),
    )


@dataclass(slots=True)
class _Api:
    """One API the template makes: implicit (from events) or an explicit Serverless::Api / HttpApi."""

    kind: str  # "REST" or "HTTP"
    stage: str
    variables: dict[str, str] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)
    binary_media_types: tuple[str, ...] = ()


def _explicit_api(
    logical_id: str,
    kind: str,
    resource: Mapping[str, Any],
    resolver: Resolver,
    file: Path,
    where: str,
    problems: list[Problem],
) -> _Api | None:
    http_api = kind == "AWS::Serverless::HttpApi"
    try:
        props = resolver.resolve(resource.get("Properties") or {}, f"{where}.Properties")
    except ResolveError as exc:
        problems.append(Problem(file, exc.path, exc.message))
        return None
    stage = props.get("StageName", "$default" if http_api else None)
    if not isinstance(stage, str):
        problems.append(Problem(file, f"{where}.Properties.StageName", f"{logical_id}: needs a StageName"))
        return None
    variables = props.get("Variables") or props.get("StageVariables") or {}
    api = _Api("HTTP" if http_api else "REST", stage, {str(k): str(v) for k, v in variables.items()})
    body, uri = props.get("DefinitionBody"), props.get("DefinitionUri")
    source, document, prefix = file, body, f"{where}.Properties.DefinitionBody"
    if body is None and isinstance(uri, str):
        source = file.parent / uri
        try:
            document = load_template(source)
        except DefinitionError as exc:
            problems.append(exc.problem)
            return None
        prefix = ""
    elif body is None and uri is not None:
        problems.append(Problem(file, f"{where}.Properties.DefinitionUri", "must be a local file path"))
        return None
    if document is not None:
        try:
            definition = parse_openapi(document, source, http_api=http_api)
        except DefinitionErrors as exc:
            for problem in exc.problems:
                path = prefix + problem.path[1:] if prefix else problem.path
                problems.append(Problem(problem.file, path, problem.message))
            return None
        api.operations.extend(definition.operations)
        api.binary_media_types = definition.binary_media_types
    return api


def _function(
    logical_id: str, name: Any, props: Mapping[str, Any], file: Path, where: str, problems: list[Problem]
) -> FunctionEntry | None:
    handler, code_uri, runtime = props.get("Handler"), props.get("CodeUri", "."), props.get("Runtime")
    # A function Portway cannot run does not refuse the template: its routes answer 502, saying why.
    unsupported = None
    if not (isinstance(runtime, str) and runtime.startswith("python3")):
        unsupported = f"runtime {runtime!r}: Portway runs Python (python3.x) functions only"
    ok = True
    if not isinstance(handler, str) or "." not in handler:
        problems.append(
            Problem(file, f"{where}.Properties.Handler", f"{logical_id}: needs Handler: module.function")
        )
        ok = False
    if not isinstance(code_uri, str):
        problems.append(
            Problem(file, f"{where}.Properties.CodeUri", f"{logical_id}: CodeUri must be a local folder")
        )
        ok = False
    elif unsupported is None and not (file.parent / code_uri).is_dir():
        problems.append(
            Problem(
                file, f"{where}.Properties.CodeUri", f"{logical_id}: CodeUri folder {code_uri!r} not found"
            )
        )
        ok = False
    variables = ((props.get("Environment") or {}).get("Variables")) or {}
    if not isinstance(variables, Mapping):
        problems.append(Problem(file, f"{where}.Properties.Environment.Variables", "must be a mapping"))
        ok = False
    if not ok:
        return None
    assert isinstance(handler, str)
    assert isinstance(code_uri, str)
    folder = code_uri.rstrip("/")
    module_file = (file.parent / folder).joinpath(*handler.rpartition(".")[0].split("."))
    if unsupported is None and not (
        module_file.with_suffix(".py").is_file() or (module_file / "__init__.py").is_file()
    ):
        problems.append(
            Problem(
                file,
                f"{where}.Properties.Handler",
                f"{logical_id}: handler file {module_file.with_suffix('.py')} not found",
            )
        )
        return None
    return FunctionEntry(
        name=str(name),
        handler=f"{folder}/{handler}" if folder not in ("", ".") else handler,
        base_dir=file.parent,
        timeout_s=float(props.get("Timeout", DEFAULT_TIMEOUT_S)),
        memory_mb=int(props.get("MemorySize", DEFAULT_MEMORY_MB)),
        environment={str(k): str(v) for k, v in variables.items()},
        where=f"{where}.Properties.Handler",
        unsupported=unsupported,
    )


def _events(
    logical_id: str,
    function: str,
    props: Mapping[str, Any],
    file: Path,
    where: str,
    region: str,
    apis: dict[str, _Api],
    problems: list[Problem],
) -> None:
    events = props.get("Events") or {}
    uri = (
        f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{region}:123456789012:function:{function}/invocations"
    )
    for event_id, event in events.items() if isinstance(events, Mapping) else ():
        here = f"{where}.Properties.Events.{event_id}"
        if not isinstance(event, Mapping) or event.get("Type") not in ("Api", "HttpApi"):
            continue  # S3, SQS, Schedule… events are not HTTP: nothing to serve
        settings = event.get("Properties") or {}
        http_api = event["Type"] == "HttpApi"
        explicit = settings.get("ApiId" if http_api else "RestApiId")
        api_id = explicit if explicit is not None else (IMPLICIT_HTTP if http_api else IMPLICIT_REST)
        api = apis.get(api_id) if isinstance(api_id, str) else None
        if api is None and explicit is None:
            api = apis[api_id] = _Api(
                "HTTP" if http_api else "REST", "$default" if http_api else IMPLICIT_REST_STAGE
            )
        if api is None or api.kind != ("HTTP" if http_api else "REST"):
            wanted = "an AWS::Serverless::HttpApi" if http_api else "an AWS::Serverless::Api"
            problems.append(
                Problem(
                    file, f"{here}.Properties", f"{logical_id}: {explicit!r} is not {wanted} of this template"
                )
            )
            continue
        path = settings.get("Path")
        method = str(settings.get("Method", "ANY" if http_api else "")).upper()
        if method == "ANY" or method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
            method = ANY_METHOD
        if http_api and path is None:
            path, method = DEFAULT_ROUTE, ANY_METHOD  # an HttpApi event without a path is the $default route
        if not isinstance(path, str) or not (path.startswith("/") or path == DEFAULT_ROUTE):
            problems.append(
                Problem(file, f"{here}.Properties.Path", f"{logical_id}: needs a Path like /items")
            )
            continue
        if method not in (*HTTP_METHODS, ANY_METHOD):
            problems.append(
                Problem(file, f"{here}.Properties.Method", f"{logical_id}: unknown method {method!r}")
            )
            continue
        payload = str(settings.get("PayloadFormatVersion", "2.0")) if http_api else "1.0"
        integration = Integration(
            type=IntegrationType.AWS_PROXY,
            uri=uri,
            http_method="POST",
            timeout_ms=30_000 if http_api else 29_000,
            payload_format=payload,
            where=here,
        )
        if any((op.method, op.resource) == (method, path) for op in api.operations):
            continue  # the API's own definition has the route already
        api.operations.append(
            Operation(method=method, resource=path, integration=integration, operation_id=None, where=here)
        )
