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

The API's stage settings become the stage's, as a functions file's ``stages.NAME`` would set them: a REST
API's ``MethodSettings`` (CloudFormation's list, ``ResourcePath: /*`` with ``HttpMethod: '*'`` for every
method), ``CacheClusterEnabled`` / ``CacheClusterSize``, ``MinimumCompressionSize``, ``ApiKeySourceType`` and
``Auth.ApiKeyRequired`` (an ``Api`` event's own ``Auth.ApiKeyRequired`` wins for its method); an HTTP API's
``DefaultRouteSettings`` / ``RouteSettings`` and its events' ``RouteSettings``. ``Globals.Api`` /
``Globals.HttpApi`` supply them too (the implicit APIs have no other place for them), under the resource's
own: maps merge, settings for the same method merge field by field. ``Auth.UsagePlan`` makes nothing: the
resources SAM would create are listed as not emulated (plans and keys are made with ``portway usage-plans``
and ``portway keys``).

Its protection settings become what the same API's OpenAPI definition would carry, as SAM writes them into
it (:mod:`portway.config.sam_protection`): ``Auth.Authorizers`` (Lambda, Cognito, JWT), ``DefaultAuthorizer``
and the events' ``Auth.Authorizer`` / ``AuthorizationScopes``; a REST API's ``Cors`` (mock OPTIONS methods),
``GatewayResponses``, ``Models`` and its events' ``RequestModel`` / ``RequestParameters``; an HTTP API's
``CorsConfiguration``. A DefinitionBody's own security schemes, validators, gateway responses and CORS are
kept beneath them. ``!Ref`` / ``!GetAtt`` of an ``AWS::Cognito::UserPool`` give a pool id and ARN of the
template's region (its tokens come from a local issuer: ``x-portway-issuer`` / ``x-portway-jwks``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from portway.config.cfn import NO_VALUE, ResolveError, Resolver, load_template
from portway.config.errors import DefinitionError, DefinitionErrors, Problem, json_path
from portway.config.functions import (
    IGNORED_METHOD_KEYS,
    IGNORED_ROUTE_KEYS,
    Add,
    access_log_settings,
    cache_cluster,
    method_setting,
    method_settings_key,
)
from portway.config.model import (
    ALL_METHODS_KEY,
    ANY_METHOD,
    DEFAULT_ROUTE,
    HTTP_METHODS,
    ApiDefinition,
    Deployment,
    FunctionEntry,
    Integration,
    IntegrationType,
    MethodSetting,
    Operation,
    StageSettings,
)
from portway.config.openapi import COMPRESSION_MAX, parse_openapi
from portway.config.sam_protection import EventProtection, Protected, Source, pick, protect, sub_path

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
# The stage settings read from an API (and from Globals.Api / Globals.HttpApi), by the API's kind.
_SETTINGS_PROPERTIES = {
    "REST": (
        "MethodSettings",
        "CacheClusterEnabled",
        "CacheClusterSize",
        "MinimumCompressionSize",
        "ApiKeySourceType",
        "Auth",
        "Cors",
        "GatewayResponses",
        "AccessLogSetting",
    ),
    "HTTP": ("DefaultRouteSettings", "RouteSettings", "Auth", "CorsConfiguration", "AccessLogSettings"),
}
_GLOBALS_SECTION = {"REST": "Api", "HTTP": "HttpApi"}
# CloudFormation's MethodSetting (Stage.MethodSettings) and an HTTP API's RouteSettings, as the functions file
# names them: the cache-control settings API Gateway has are not CloudFormation properties.
_SAM_METHOD_KEYS = frozenset(
    {
        "throttlingRateLimit",
        "throttlingBurstLimit",
        "cachingEnabled",
        "cacheTtlInSeconds",
        *IGNORED_METHOD_KEYS,
    }
)
_SAM_ROUTE_KEYS = frozenset({"throttlingRateLimit", "throttlingBurstLimit", *IGNORED_ROUTE_KEYS})
# A parameter's value is a string: CloudFormation converts it to the property's type, and so does Portway.
_INTEGER_PROPERTIES = frozenset({"ThrottlingBurstLimit", "CacheTtlInSeconds", "MinimumCompressionSize"})
_NUMBER_PROPERTIES = frozenset({"ThrottlingRateLimit"})
_BOOLEAN_PROPERTIES = frozenset(
    {
        "CachingEnabled",
        "CacheDataEncrypted",
        "MetricsEnabled",
        "DataTraceEnabled",
        "DetailedMetricsEnabled",
        "CacheClusterEnabled",
        "ApiKeyRequired",
        "AddApiKeyRequiredToCorsPreflight",
    }
)
USAGE_PLAN_CHOICES = ("PER_API", "SHARED", "NONE")
USER_POOL = "AWS::Cognito::UserPool"


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
        if isinstance(resource, Mapping) and resource.get("Type") == USER_POOL:
            return f"{region}_{logical_id}"  # a user pool id: REGION_ID
        return logical_id

    def attribute_of(logical_id: str, attribute: str, resolver: Resolver) -> Any:
        kind = resources[logical_id].get("Type")
        if attribute == "Arn" and kind == FUNCTION:
            return f"arn:aws:lambda:{region}:123456789012:function:{ref_of(logical_id, resolver)}"
        if kind == USER_POOL and attribute in ("Arn", "ProviderName", "ProviderURL"):
            # Its tokens' issuer does not exist: x-portway-issuer / x-portway-jwks name a local one.
            pool = ref_of(logical_id, resolver)
            return {
                "Arn": f"arn:aws:cognito-idp:{region}:123456789012:userpool/{pool}",
                "ProviderName": f"cognito-idp.{region}.amazonaws.com/{pool}",
                "ProviderURL": f"https://cognito-idp.{region}.amazonaws.com/{pool}",
            }[attribute]
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
    api_globals = {kind: _api_globals(globals_, kind, resolver, file, problems) for kind in _GLOBALS_SECTION}
    for logical_id, resource in resources.items():
        where = json_path("Resources", str(logical_id))
        if not isinstance(resource, Mapping) or not isinstance(resource.get("Type"), str):
            problems.append(Problem(file, where, "a resource must be a mapping with a Type"))
            continue
        kind = resource["Type"]
        if kind in EXPLICIT_APIS:
            api = _explicit_api(logical_id, kind, resource, resolver, file, where, api_globals, problems)
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
        _events(logical_id, entry.name, props, file, where, region, apis, api_globals, problems)
    served = {api_id: api for api_id, api in apis.items() if api.operations}
    for api in served.values():
        _protect(api, functions, file, problems)
    stage_settings = {
        api_id: _apply_settings(api, file, problems, not_emulated) for api_id, api in served.items()
    }
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
        raise DefinitionErrors(dict.fromkeys(problems))  # a Globals problem is found once per API
    ((api_id, api),) = served.items()
    settings = stage_settings[api_id]
    title = str(document.get("Description") or file.stem).strip().splitlines()[0]
    return ApiDefinition(
        kind=api.kind,
        title=title,
        source=file,
        operations=tuple(api.operations),
        binary_media_types=api.binary_media_types,
        api_key_source=api.api_key_source,
        minimum_compression_size=api.minimum_compression_size,
        authorizers=api.protected.authorizers,
        request_validators=api.protected.request_validators,
        gateway_responses=api.protected.gateway_responses,
        cors=api.protected.cors,
        document=api.protected.document,
        deployment=Deployment(
            source=file,
            functions=functions,
            stage_variables={api.stage: api.variables},
            stage_settings={api.stage: settings} if settings is not None else {},
        ),
        default_stage=api.stage,
        not_emulated=tuple(dict.fromkeys(not_emulated)),
    )


@dataclass(slots=True)
class _Api:
    """One API the template makes: implicit (from events) or an explicit Serverless::Api / HttpApi."""

    kind: str  # "REST" or "HTTP"
    stage: str
    logical_id: str
    variables: dict[str, str] = field(default_factory=dict)
    operations: list[Operation] = field(default_factory=list)
    binary_media_types: tuple[str, ...] = ()
    api_key_source: str = "HEADER"
    minimum_compression_size: int | None = None
    # Where its stage settings are read, lowest precedence first: Globals.Api / Globals.HttpApi, then its own.
    sources: list[Source] = field(default_factory=list)
    # Api events' Auth.ApiKeyRequired, by (METHOD, resource): over the API's Auth.ApiKeyRequired.
    key_overrides: dict[tuple[str, str], bool] = field(default_factory=dict)
    # HttpApi events' RouteSettings: (route key, settings, JSON path, the function's logical id).
    event_route_settings: list[tuple[str, Any, str, str]] = field(default_factory=list)
    own: Source | None = None  # an explicit API's own properties (Models are read there alone)
    inline: bool = True  # False: its definition is a DefinitionUri, which SAM adds nothing to
    events: list[EventProtection] = field(default_factory=list)  # its events' Auth, RequestModel …
    # What its definition body gave (authorizers, CORS …), then with the protection settings applied.
    protected: Protected = field(default_factory=lambda: Protected(operations=[]))


def _api_globals(globals_: Any, kind: str, resolver: Resolver, file: Path, problems: list[Problem]) -> Source:
    """``Globals.Api`` (REST) or ``Globals.HttpApi``: the stage settings it gives every API of its kind."""
    where = f"$.Globals.{_GLOBALS_SECTION[kind]}"
    section = globals_.get(_GLOBALS_SECTION[kind]) if isinstance(globals_, Mapping) else None
    found: dict[str, Any] = {}
    if not isinstance(section, Mapping):
        return found, where
    for key in _SETTINGS_PROPERTIES[kind]:
        if key not in section:
            continue
        try:
            value = resolver.resolve(section[key], f"{where}.{key}")
        except ResolveError as exc:
            problems.append(Problem(file, exc.path, exc.message))
            continue
        if value is not NO_VALUE:
            found[key] = value
    return found, where


def _explicit_api(
    logical_id: str,
    kind: str,
    resource: Mapping[str, Any],
    resolver: Resolver,
    file: Path,
    where: str,
    api_globals: Mapping[str, Source],
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
    api_kind = "HTTP" if http_api else "REST"
    api = _Api(
        api_kind,
        stage,
        logical_id,
        {str(k): str(v) for k, v in variables.items()},
        sources=[api_globals[api_kind], (props, f"{where}.Properties")],
        own=(props, f"{where}.Properties"),
    )
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
        api.inline = False
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
        api.api_key_source = definition.api_key_source
        api.minimum_compression_size = definition.minimum_compression_size
        api.protected = Protected(
            operations=[],
            # Its security schemes, named where they are in the template (the stages report problems there).
            authorizers={
                name: replace(auth, where=prefix + auth.where[1:] if prefix else auth.where)
                for name, auth in definition.authorizers.items()
            },
            request_validators=dict(definition.request_validators),
            gateway_responses=dict(definition.gateway_responses),
            cors=definition.cors,
            document=definition.document,
        )
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
    api_globals: Mapping[str, Source],
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
            kind = "HTTP" if http_api else "REST"
            api = apis[api_id] = _Api(
                kind,
                "$default" if http_api else IMPLICIT_REST_STAGE,
                str(api_id),
                sources=[api_globals[kind]],
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
        if http_api and settings.get("RouteSettings") is not None:
            route_key = DEFAULT_ROUTE if path == DEFAULT_ROUTE else f"{method} {path}"
            api.event_route_settings.append(
                (route_key, settings["RouteSettings"], f"{here}.Properties.RouteSettings", logical_id)
            )
        elif not http_api and settings.get("Auth") is not None:
            required = _event_api_key(settings["Auth"], f"{here}.Properties.Auth", logical_id, file, problems)
            if required is not None:
                api.key_overrides[(method, path)] = required
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
        api.events.append(
            EventProtection(
                method,
                path,
                logical_id,
                f"{here}.Properties",
                auth=settings.get("Auth"),
                request_model=settings.get("RequestModel"),
                request_parameters=settings.get("RequestParameters"),
            )
        )


def _protect(api: _Api, functions: Mapping[str, FunctionEntry], file: Path, problems: list[Problem]) -> None:
    """The API's authorizers, CORS, gateway responses and request validation (sam_protection.py)."""

    def report(logical_id: str, where: str, message: str) -> None:
        problems.append(Problem(file, where, f"{logical_id}: {message}"))

    body = replace(api.protected, operations=api.operations)
    api.protected = protect(
        api.kind,
        api.logical_id,
        api.sources,
        api.own,
        api.inline,
        body,
        api.events,
        functions,
        api.variables,
        file,
        report,
    )
    api.operations = api.protected.operations


# --- stage settings ---------------------------------------------------------------------------------------


def _event_api_key(
    auth: Any, where: str, logical_id: str, file: Path, problems: list[Problem]
) -> bool | None:
    """An Api event's ``Auth.ApiKeyRequired``, or None when it does not say (or says it wrong)."""
    if not isinstance(auth, Mapping):
        problems.append(
            Problem(file, where, f"{logical_id}: Auth must be a mapping (ApiKeyRequired, Authorizer …)")
        )
        return None
    if "ApiKeyRequired" not in auth:
        return None
    required = _typed("ApiKeyRequired", auth["ApiKeyRequired"])
    if not isinstance(required, bool):
        problems.append(Problem(file, f"{where}.ApiKeyRequired", f"{logical_id}: must be true or false"))
        return None
    return required


def _access_log(api: _Api, name: str, add: Add) -> tuple[str | None, str]:
    """``AccessLogSetting`` (REST) / ``AccessLogSettings`` (HTTP): its Format; DestinationArn is not used."""
    found = pick(api.sources, name)
    if found is None:
        return None, ""
    return access_log_settings(found[0], found[1], add, format_key="Format")


def _typed(name: str, value: Any) -> Any:
    """A value as CloudFormation reads it: a parameter's "5" or "true" for an Integer or Boolean property."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if name in _BOOLEAN_PROPERTIES and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if name in _INTEGER_PROPERTIES and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if name in _NUMBER_PROPERTIES:
        try:
            return float(text)
        except ValueError:
            return value
    return value


def _typed_all(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _typed(str(key), value) for key, value in raw.items()}


def _capitalised(name: str) -> str:
    """The functions file's ``throttlingRateLimit`` as CloudFormation writes it: ``ThrottlingRateLimit``."""
    return name[:1].upper() + name[1:]


def _apply_settings(
    api: _Api, file: Path, problems: list[Problem], not_emulated: list[str]
) -> StageSettings | None:
    """The API's stage settings (None when it sets none), and its API key source, minimum compression size
    and which methods need an API key, from its properties, its Globals and its events."""

    def reporter(logical_id: str) -> Add:
        def add(path: str, message: str) -> None:
            problems.append(Problem(file, path, f"{logical_id}: {message}"))

        return add

    add = reporter(api.logical_id)
    method_settings: dict[tuple[str, str], MethodSetting] = {}

    def layer(key: tuple[str, str], setting: MethodSetting | None) -> None:
        """Settings for the same method, later over earlier, field by field."""
        if setting is not None:
            below = method_settings.get(key)
            method_settings[key] = setting.over(below) if below is not None else setting

    if api.kind == "HTTP":
        for props, where in api.sources:
            if "DefaultRouteSettings" in props:
                layer(
                    ALL_METHODS_KEY,
                    _route_setting(props["DefaultRouteSettings"], f"{where}.DefaultRouteSettings", add),
                )
            routes = props.get("RouteSettings")
            if routes is not None and not isinstance(routes, Mapping):
                add(
                    f"{where}.RouteSettings",
                    "must be a mapping of route keys ('GET /items', '$default') to settings",
                )
            elif routes is not None:
                for route_key, raw in routes.items():
                    here = sub_path(where, "RouteSettings", str(route_key))
                    layer((str(route_key), "*"), _route_setting(raw, here, add))
        for route_key, raw, where, owner in api.event_route_settings:  # an event's own, over the API's
            layer((route_key, "*"), _route_setting(raw, where, reporter(owner)))
        log_format, log_where = _access_log(api, "AccessLogSettings", add)
        return (
            StageSettings(
                method_settings=method_settings,
                access_log_format=log_format,
                access_log_where=log_where,
                where=api.sources[-1][1],
            )
            if method_settings or log_format
            else None
        )

    for props, where in api.sources:
        raw_list = props.get("MethodSettings")
        if raw_list is None:
            continue
        if not isinstance(raw_list, list):
            add(
                f"{where}.MethodSettings",
                "must be a list of settings, each with a ResourcePath and an HttpMethod",
            )
            continue
        for index, item in enumerate(raw_list):
            here = f"{where}.MethodSettings[{index}]"
            if not isinstance(item, Mapping):
                add(here, "must be a mapping: ResourcePath, HttpMethod and settings (ThrottlingRateLimit …)")
                continue
            key = _method_key(item, here, add)
            rest = {k: v for k, v in item.items() if k not in ("ResourcePath", "HttpMethod")}
            setting = method_setting(_typed_all(rest), here, add, known=_SAM_METHOD_KEYS, spell=_capitalised)
            if key is not None:
                layer(key, setting)
    enabled = pick(api.sources, "CacheClusterEnabled")
    size = pick(api.sources, "CacheClusterSize")
    home = f"{api.sources[-1][1]}"
    cache_on, size_gb = cache_cluster(
        _typed("CacheClusterEnabled", enabled[0]) if enabled is not None else False,
        size[0] if size is not None else "0.5",
        enabled[1] if enabled is not None else f"{home}.CacheClusterEnabled",
        size[1] if size is not None else f"{home}.CacheClusterSize",
        add,
    )
    compression = pick(api.sources, "MinimumCompressionSize")
    if compression is not None:
        value = _typed("MinimumCompressionSize", compression[0])
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COMPRESSION_MAX:
            add(compression[1], f"must be a whole number of bytes from 0 to {COMPRESSION_MAX}")
        else:
            api.minimum_compression_size = value
    source = pick(api.sources, "ApiKeySourceType")
    if source is not None:
        if source[0] not in ("HEADER", "AUTHORIZER"):
            add(source[1], "must be HEADER or AUTHORIZER")
        else:
            api.api_key_source = source[0]
    _apply_auth(api, add, not_emulated)
    log_format, log_where = _access_log(api, "AccessLogSetting", add)
    if not method_settings and enabled is None and size is None and log_format is None:
        return None
    return StageSettings(
        method_settings=method_settings,
        cache_cluster_enabled=cache_on,
        cache_cluster_size_gb=size_gb,
        access_log_format=log_format,
        access_log_where=log_where,
        where=home,
    )


def _route_setting(raw: Any, where: str, add: Add) -> MethodSetting | None:
    """One HTTP API route's settings (DefaultRouteSettings, or a RouteSettings entry)."""
    typed = _typed_all(raw) if isinstance(raw, Mapping) else raw
    return method_setting(typed, where, add, known=_SAM_ROUTE_KEYS, spell=_capitalised)


def _method_key(item: Mapping[str, Any], where: str, add: Add) -> tuple[str, str] | None:
    """A MethodSetting's ResourcePath and HttpMethod as a methodSettings key: ``/~1items~1{id}`` and ``GET``
    → ("/items/{id}", "GET"); ``/*`` and ``*`` → every method's default."""
    resource, method = item.get("ResourcePath"), item.get("HttpMethod")
    if not isinstance(resource, str) or not isinstance(method, str):
        add(where, "needs a ResourcePath and an HttpMethod ('/*' and '*': every method's default)")
        return None
    if method.upper() not in {*HTTP_METHODS, ANY_METHOD, "*"}:
        add(f"{where}.HttpMethod", f"{method!r}: must be an HTTP method, ANY or '*'")
        return None
    if not resource.startswith("/"):
        add(f"{where}.ResourcePath", f"{resource!r}: must start with '/', like '/~1items~1{{id}}' or '/*'")
        return None
    path = resource  # "/" (the root), or a path written unescaped: "/items/{id}"
    if resource == "/*":
        path = "*"
    elif resource.startswith("/~1"):  # CloudFormation's escaped form: "/~1items~1{id}"
        path = resource[1:].replace("~1", "/")
    key = method_settings_key(f"{path}/{method}")
    if key is None:
        add(where, f"ResourcePath {resource!r} goes with HttpMethod '*' (every method's default)")
    return key


def _apply_auth(api: _Api, add: Add, not_emulated: list[str]) -> None:
    """``Auth.ApiKeyRequired`` (every method, unless its event says otherwise; OPTIONS ones unless
    ``AddApiKeyRequiredToCorsPreflight: false``) and ``Auth.UsagePlan``."""
    for props, where in api.sources:
        for key, what in (("Auth", "ApiKeyRequired, UsagePlan …"), ("UsagePlan", "CreateUsagePlan …")):
            holder = props.get("Auth") if key == "UsagePlan" else props
            if isinstance(holder, Mapping) and key in holder and not isinstance(holder[key], Mapping):
                add(
                    f"{where}.Auth" if key == "Auth" else f"{where}.Auth.UsagePlan",
                    f"must be a mapping ({what})",
                )
    default = False
    found = pick(api.sources, "Auth", "ApiKeyRequired")
    if found is not None:
        value = _typed("ApiKeyRequired", found[0])
        if isinstance(value, bool):
            default = value
        else:
            add(found[1], "must be true or false")
    preflight = True
    found = pick(api.sources, "Auth", "AddApiKeyRequiredToCorsPreflight")
    if found is not None:
        value = _typed("AddApiKeyRequiredToCorsPreflight", found[0])
        if isinstance(value, bool):
            preflight = value
        else:
            add(found[1], "must be true or false")

    def required(op: Operation) -> bool:
        if op.method == "OPTIONS" and default and not preflight:
            return False  # SAM takes the API's key requirement off every OPTIONS method, the events' too
        return api.key_overrides.get((op.method, op.resource), op.api_key_required or default)

    api.operations = [replace(op, api_key_required=required(op)) for op in api.operations]
    plan = pick(api.sources, "Auth", "UsagePlan")
    if plan is None or not isinstance(plan[0], Mapping):
        return
    create = pick(api.sources, "Auth", "UsagePlan", "CreateUsagePlan")
    if create is None or create[0] not in USAGE_PLAN_CHOICES:
        add(
            create[1] if create is not None else plan[1],
            f"CreateUsagePlan must be one of {', '.join(USAGE_PLAN_CHOICES)}",
        )
    elif create[0] != "NONE":
        # SAM would make a plan and a key; Portway's are made with `portway usage-plans` and `portway keys`.
        prefix = api.logical_id if create[0] == "PER_API" else "Serverless"
        not_emulated.extend(
            f"{prefix}{name} (AWS::ApiGateway::{name})" for name in ("UsagePlan", "ApiKey", "UsagePlanKey")
        )
