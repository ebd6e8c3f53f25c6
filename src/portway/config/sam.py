"""AWS SAM templates → the same model an OpenAPI definition gives: `portway serve template.yaml`.

What is read: ``AWS::Serverless::Function`` (Handler, CodeUri, Runtime, Timeout, MemorySize, FunctionName,
Environment.Variables, with ``Globals.Function`` merged in) and its events of type ``Api`` (the implicit REST
API, stage ``Prod`` as SAM names it) and ``HttpApi`` (the implicit HTTP API, its ``$default`` stage); the
template's Parameters (``--parameter-overrides``), Conditions and Mappings through the intrinsics evaluator.
Resources Portway does not run are listed as not emulated, and a ``!Ref`` to one gives its logical id.

Not read yet (each refused with a message naming the resource): explicit ``AWS::Serverless::Api`` /
``AWS::Serverless::HttpApi`` resources and events bound to them (``RestApiId`` / ``ApiId``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portway.config.cfn import ResolveError, Resolver
from portway.config.errors import DefinitionErrors, Problem, json_path
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

__all__ = ["is_sam", "parse_sam"]

FUNCTION = "AWS::Serverless::Function"
EXPLICIT_APIS = ("AWS::Serverless::Api", "AWS::Serverless::HttpApi")
IMPLICIT_REST_STAGE = "Prod"  # what SAM names the implicit REST API's stage
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
    operations: dict[str, list[Operation]] = {"REST": [], "HTTP": []}
    not_emulated: list[str] = []
    for logical_id, resource in resources.items():
        where = json_path("Resources", str(logical_id))
        if not isinstance(resource, Mapping) or not isinstance(resource.get("Type"), str):
            problems.append(Problem(file, where, "a resource must be a mapping with a Type"))
            continue
        kind = resource["Type"]
        if kind in EXPLICIT_APIS:
            problems.append(
                Problem(
                    file,
                    f"{where}.Type",
                    f"{logical_id}: {kind} resources are not supported yet; "
                    "use the implicit API (events without RestApiId/ApiId) or serve its OpenAPI definition",
                )
            )
            continue
        if kind != FUNCTION:
            not_emulated.append(f"{logical_id} ({kind})")
            continue
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
        _events(logical_id, entry.name, props, file, where, region, operations, problems)
    served = [kind for kind, ops in operations.items() if ops]
    if len(served) > 1:
        problems.append(
            Problem(
                file,
                "$.Resources",
                "events make both a REST API (Api) and an HTTP API (HttpApi): "
                "Portway serves one API per process; keep one kind of event per template for now",
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
    kind = served[0]
    title = str(document.get("Description") or file.stem).strip().splitlines()[0]
    return ApiDefinition(
        kind=kind,
        title=title,
        source=file,
        operations=tuple(operations[kind]),
        deployment=Deployment(source=file, functions=functions),
        default_stage=IMPLICIT_REST_STAGE if kind == "REST" else "$default",
        not_emulated=tuple(not_emulated),
    )


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
    operations: dict[str, list[Operation]],
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
        if explicit is not None:
            problems.append(
                Problem(file, here, f"{logical_id}: events bound to an explicit API are not supported yet")
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
        operations["HTTP" if http_api else "REST"].append(
            Operation(method=method, resource=path, integration=integration, operation_id=None, where=here)
        )
