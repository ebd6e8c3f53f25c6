"""Model → compiled :class:`~portway.gateway.Gateway`; every problem raised here, with file and JSON path."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.config.errors import DefinitionErrors, Problem
from portway.config.model import (
    ALL_METHODS_KEY,
    DEFAULT_ROUTE,
    HTTP_METHODS,
    ApiDefinition,
    Deployment,
    IntegrationType,
    MethodSetting,
    Operation,
    StageSettings,
)
from portway.gateway import DEFAULT_STAGE, Gateway, Route
from portway.integrations import Integration as IntegrationStage
from portway.integrations.events import ApiInfo, stable_id
from portway.integrations.http_proxy import HttpProxyIntegration, ParameterSource, UpstreamPools
from portway.integrations.lambda_proxy import LambdaProxyIntegration, UnavailableFunction
from portway.integrations.mock import (
    MockIntegration,
    MockResponse,
    TemplateError,
    static_header_value,
    static_status,
)
from portway.lambdas.runtime import LambdaRuntime
from portway.lambdas.spec import FunctionSpec, parse_handler
from portway.observability.access_log import AccessLogWriter, format_named, preset
from portway.observability.exchange import ApiIdentity
from portway.observability.metrics import Monitor
from portway.observability.observer import Observer
from portway.observability.tracing import Tracing
from portway.pipeline.build import StageBuild
from portway.pipeline.gateway_responses import parse_gateway_responses
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES, ResponseTable
from portway.pipeline.stage import Stage
from portway.routing import DuplicateRoute, Router
from portway.stages import authorizer, cors, jwt, validate, waf
from portway.stages.api_key import ApiKeyStage
from portway.stages.cache import DEFAULT_TTL_S, SUCCEED_WITH_RESPONSE_HEADER, CacheSettings, CacheStage
from portway.stages.compress import CompressionStage
from portway.stages.throttle import ACCOUNT_BURST, ACCOUNT_LIMIT, ACCOUNT_RATE, Limit, ThrottleStage
from portway.state.memory import MemoryStore
from portway.state.outage import StoreOutage
from portway.state.store import Bucket, Store
from portway.usage_plans import KeyCache

__all__ = ["FunctionOrigin", "Resources", "compile_gateway", "resolve_functions"]

STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_LAMBDA_URI = re.compile(
    r"^arn:aws[a-z-]*:apigateway:([a-z0-9-]+):lambda:path/2015-03-31/functions/(.+)/invocations$"
)
_REQUEST_PARAMETER = re.compile(r"^integration\.request\.(path|querystring|header)\.(.+)$")
_METHOD_PARAMETER = re.compile(r"^method\.request\.(path|querystring|header)\.(.+)$")


def _memory_keys() -> Callable[[], Store]:
    """Keys kept in memory, for gateways compiled without a Service (tests, `portway routes`)."""
    store = MemoryStore()
    return lambda: store


@dataclass(slots=True)
class Resources:
    """What outlives a compiled gateway (reloads swap the gateway, not these)."""

    runtime: LambdaRuntime
    pools: UpstreamPools = field(default_factory=UpstreamPools)
    store: Store = field(default_factory=MemoryStore)  # token buckets and cache entries
    account_limit: Limit | None = ACCOUNT_LIMIT  # None: no account-level throttle
    clock: Callable[[], float] = time.time
    # API keys, usage plans and quota counters: opened on first use (a SQLite file or the Redis store).
    keys_store: Callable[[], Store] = field(default_factory=_memory_keys)
    key_cache: KeyCache | None = None  # made when a route first requires an API key; shared by all
    lasting: dict[str, Any] = field(default_factory=dict)  # what stages keep across reloads (key sets …)
    # One outage report per feature, shared by its every route:
    quota_outage: StoreOutage = field(
        default_factory=lambda: StoreOutage("quotas", "letting requests through uncounted")
    )
    throttle_outage: StoreOutage = field(
        default_factory=lambda: StoreOutage("throttle", "letting requests through unthrottled")
    )
    cache_outage: StoreOutage = field(
        default_factory=lambda: StoreOutage("response cache", "answering from the integration")
    )
    # Monitoring (observability/): each None when off.
    monitor: Monitor | None = None  # metrics, the dashboard's series, usage
    access_log: AccessLogWriter | None = None  # where access log lines go
    access_log_format: str | None = None  # a preset's name or a format: wins over the stage's own
    tracing: Tracing | None = None  # OpenTelemetry spans, exported by OTLP

    def keys(self) -> KeyCache:
        if self.key_cache is None:
            self.key_cache = KeyCache(self.keys_store(), clock=self.clock)
        return self.key_cache


@dataclass(slots=True)
class _Problems:
    items: list[Problem] = field(default_factory=list)

    def add(self, file: Path, path: str, message: str) -> None:
        self.items.append(Problem(file, path, message))


def _substitute_stage_variables(
    text: str, variables: Mapping[str, str], file: Path, where: str, stage: str, problems: _Problems
) -> str | None:
    missing = [name for name in _STAGE_VARIABLE.findall(text) if name not in variables]
    if missing:
        problems.add(
            file,
            where,
            f"stage variable {missing[0]!r} is not defined for stage {stage!r} (set it with "
            f"--stage-variable {missing[0]}=VALUE or under stages.{stage}.variables in the functions file)",
        )
        return None
    return _STAGE_VARIABLE.sub(lambda m: variables[m.group(1)], text)


def _function_name(uri: str) -> tuple[str, str] | None:
    """(function name, region) from a Lambda integration uri, or None when it is not one."""
    match = _LAMBDA_URI.match(uri)
    if match is None:
        return None
    region, function = match.group(1), match.group(2)
    if function.startswith("arn:"):
        parts = function.split(":")
        if len(parts) < 7 or parts[5] != "function":
            return None
        return parts[6], region
    if ":function:" in function:
        return function.split(":function:", 1)[1].split(":", 1)[0], region
    return function.split(":", 1)[0], region


def _handler_name(handler: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", handler)[:64]


def _check_handler_file(spec: FunctionSpec) -> str | None:
    base = spec.code_dir.joinpath(*spec.module.split("."))
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return None
    if not spec.code_dir.is_dir():
        return f"handler folder {spec.code_dir} not found"
    return f"handler file {base.with_suffix('.py')} not found"


@dataclass(frozen=True, slots=True)
class FunctionOrigin:
    """Where a function's handler was named, so a later problem (an import error) can point there."""

    file: Path
    where: str


def resolve_functions(
    api: ApiDefinition,
    deployment: Deployment,
    stage: str,
    stage_variables: Mapping[str, str],
    problems: _Problems | None = None,
) -> tuple[
    dict[str, FunctionSpec],
    dict[tuple[str, str], str],
    dict[str, FunctionOrigin],
    dict[tuple[str, str], tuple[str, str]],
]:
    """Every Lambda function the routes use, which function each (method, resource) calls, where each
    function's handler was named, and the routes whose function Portway cannot run (function, why)."""
    out = problems if problems is not None else _Problems()
    registry = FunctionRegistry(api.source, deployment, stage, stage_variables, out)
    by_route: dict[tuple[str, str], str] = {}
    unavailable: dict[tuple[str, str], tuple[str, str]] = {}
    for op in api.operations:
        integration = op.integration
        if integration.type is not IntegrationType.AWS_PROXY:
            continue
        found = registry.resolve(
            integration.uri,
            integration.handler,
            label=f"{op.method} {op.resource}",
            uri_where=f"{integration.where}.uri",
            handler_where=f"{op.where}.x-portway-handler",
        )
        if isinstance(found, Unavailable):
            unavailable[(op.method, op.resource)] = (found.function, found.why)
        elif found is not None:
            by_route[(op.method, op.resource)] = found
    return registry.specs, by_route, registry.origins, unavailable


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A function named by the definition that Portway cannot run (a non-Python runtime), and why."""

    function: str
    why: str


class FunctionRegistry:
    """Lambda functions named by integrations and authorizers → local handlers (FunctionSpecs), each checked
    once; problems are reported where the function was named."""

    def __init__(
        self,
        file: Path,
        deployment: Deployment,
        stage: str,
        stage_variables: Mapping[str, str],
        out: _Problems,
    ) -> None:
        self.file = file
        self.deployment = deployment
        self.stage = stage
        self.stage_variables = stage_variables
        self.out = out
        self.specs: dict[str, FunctionSpec] = {}
        self.origins: dict[str, FunctionOrigin] = {}

    def resolve(
        self, uri: str | None, handler: str | None, *, label: str, uri_where: str, handler_where: str
    ) -> str | Unavailable | None:
        """The name of the function a Lambda ``uri`` (or an ``x-portway-handler``, which wins) names, its
        spec registered; an :class:`Unavailable` one; or None after reporting why it cannot be run."""
        file, deployment, out = self.file, self.deployment, self.out
        name: str | None = None
        region = "us-east-1"
        if uri is not None:
            resolved = _substitute_stage_variables(
                uri, self.stage_variables, file, uri_where, self.stage, out
            )
            if resolved is None:
                return None
            parsed = _function_name(resolved)
            if parsed is None:
                out.add(
                    file,
                    uri_where,
                    f"{label}: not a Lambda invocation uri "
                    "(arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations)",
                )
                return None
            name, region = parsed
        entry = deployment.functions.get(name) if name is not None else None
        if entry is not None and entry.unsupported is not None and handler is None:
            return Unavailable(entry.name, entry.unsupported)
        if handler is not None:
            try:
                code_dir, module, attribute = parse_handler(file.parent, handler)
            except ValueError as exc:
                out.add(file, handler_where, str(exc))
                return None
            name = name or _handler_name(handler)
            spec = FunctionSpec(
                name=name,
                code_dir=code_dir,
                module=module,
                attribute=attribute,
                timeout_s=entry.timeout_s if entry else 3.0,
                memory_mb=entry.memory_mb if entry else 128,
                environment=dict(entry.environment) if entry else {},
                concurrency=entry.concurrency if entry else 4,
                region=region,
            )
            where, where_file = handler_where, file
        elif entry is not None:
            try:
                code_dir, module, attribute = parse_handler(entry.base_dir, entry.handler)
            except ValueError as exc:
                out.add(deployment.source or file, f"{entry.where}.handler", str(exc))
                return None
            spec = FunctionSpec(
                name=entry.name,
                code_dir=code_dir,
                module=module,
                attribute=attribute,
                timeout_s=entry.timeout_s,
                memory_mb=entry.memory_mb,
                environment=dict(entry.environment),
                concurrency=entry.concurrency,
                region=region,
            )
            where, where_file = f"{entry.where}.handler", deployment.source or file
        else:
            hint = (
                f"add it to the functions file ({deployment.source})"
                if deployment.source
                else "pass --functions FILE naming it, or put x-portway-handler: module.function beside it"
            )
            out.add(file, uri_where, f"{label}: Lambda function {name!r} has no local handler: {hint}")
            return None
        previous = self.specs.get(spec.name)
        if previous is not None and (previous.module, previous.attribute, previous.code_dir) != (
            spec.module,
            spec.attribute,
            spec.code_dir,
        ):
            out.add(where_file, where, f"function {spec.name!r} is bound to two different handlers")
            return None
        if previous is None:
            missing = _check_handler_file(spec)
            if missing is not None:
                out.add(where_file, where, f"function {spec.name!r}: {missing}")
                return None
            self.specs[spec.name] = spec
            self.origins[spec.name] = FunctionOrigin(where_file, where)
        return spec.name


def _mock(op: Operation, file: Path, out: _Problems, table: ResponseTable) -> MockIntegration | None:
    integration = op.integration
    ok = True
    statuses: dict[str, int | None] = {}
    for content_type, template in integration.request_templates.items():
        try:
            statuses[content_type.lower()] = static_status(template)
        except TemplateError as exc:
            out.add(
                file,
                f"{integration.where}.requestTemplates['{content_type}']",
                f"{op.method} {op.resource}: {exc}",
            )
            ok = False
    responses: list[MockResponse] = []
    for response in integration.responses:
        headers: list[tuple[bytes, bytes]] = []
        for target, source in response.response_parameters.items():
            where = (
                f"{integration.where}.responses['{response.selection_pattern}']"
                f".responseParameters['{target}']"
            )
            if not target.startswith("method.response.header."):
                out.add(file, where, "only method.response.header.NAME can be set")
                ok = False
                continue
            try:
                value = static_header_value(source)
            except TemplateError as exc:
                out.add(file, where, f"{exc}: only static values are supported for mock integrations for now")
                ok = False
                continue
            headers.append(
                (target.removeprefix("method.response.header.").encode("latin-1"), value.encode("latin-1"))
            )
        pattern = None if response.selection_pattern == "default" else re.compile(response.selection_pattern)
        responses.append(
            MockResponse(
                pattern=pattern,
                status=response.status_code,
                templates={k.lower(): v.encode("utf-8") for k, v in response.response_templates.items()},
                headers=tuple(headers),
            )
        )
    if not ok:
        return None
    return MockIntegration(
        statuses=statuses,
        passthrough_behavior=integration.passthrough_behavior,
        responses=tuple(responses),
        table=table,
    )


def _http_proxy(
    op: Operation,
    file: Path,
    stage: str,
    variables: Mapping[str, str],
    pools: UpstreamPools,
    out: _Problems,
    table: ResponseTable,
    tracing: Tracing | None = None,
) -> HttpProxyIntegration | None:
    integration = op.integration
    assert integration.uri is not None
    uri = _substitute_stage_variables(
        integration.uri, variables, file, f"{integration.where}.uri", stage, out
    )
    if uri is None:
        return None
    sources: dict[str, dict[str, ParameterSource]] = {"path": {}, "querystring": {}, "header": {}}
    ok = True
    for target, source in integration.request_parameters.items():
        where = f"{integration.where}.requestParameters['{target}']"
        target_match = _REQUEST_PARAMETER.match(target)
        if target_match is None:
            out.add(file, where, "expected integration.request.(path|querystring|header).NAME")
            ok = False
            continue
        method_match = _METHOD_PARAMETER.match(source)
        variable = re.fullmatch(r"stageVariables\.([A-Za-z0-9_]+)", source)
        if method_match is not None:
            parameter = ParameterSource(method_match.group(1), method_match.group(2))
        elif variable is not None and variable.group(1) in variables:
            parameter = ParameterSource("static", variables[variable.group(1)])
        else:
            try:
                parameter = ParameterSource("static", static_header_value(source))
            except TemplateError:
                out.add(
                    file,
                    where,
                    f"{source!r}: supported sources are method.request.(path|querystring|header).NAME, "
                    "stageVariables.NAME and 'static values'",
                )
                ok = False
                continue
        sources[target_match.group(1)][target_match.group(2)] = parameter
    if not ok:
        return None
    return HttpProxyIntegration(
        uri=uri,
        method=integration.http_method,
        timeout_s=integration.timeout_ms / 1000,
        pools=pools,
        path_parameters=sources["path"],
        headers=sources["header"],
        query=sources["querystring"],
        table=table,
        tracing=tracing,
    )


@dataclass(frozen=True, slots=True)
class _StageContext:
    """What every route's stages are built from: the shared resources, and what the feature modules'
    build_stage functions are given (the API, its stage's settings, the response table)."""

    resources: Resources
    features: StageBuild

    @property
    def api(self) -> ApiDefinition:
        return self.features.api

    @property
    def api_info(self) -> ApiInfo:
        return self.features.api_info

    @property
    def stage(self) -> str:
        return self.features.stage

    @property
    def settings(self) -> StageSettings:
        return self.features.settings

    @property
    def table(self) -> ResponseTable:
        return self.features.table


def _route_stages(op: Operation, build: _StageContext) -> tuple[Stage, ...]:
    """The route's pipeline, in API Gateway's order; a feature the route does not use has no stage."""
    stages: list[Stage] = []
    setting, own = _method_settings(op, build)
    # Protection first, in API Gateway's order: the web ACL, CORS, then who the caller is.
    for protect in (waf.build_stage, cors.build_stage, authorizer.build_stage, jwt.build_stage):
        stage = protect(op, build.features)
        if stage is not None:
            stages.append(stage)
    buckets: list[Bucket] = []
    resources = build.resources
    if op.api_key_required:
        keys = resources.keys()
        stages.append(
            ApiKeyStage(
                build.api_info.api_id,
                build.api.title,
                build.stage,
                op.method,
                op.resource,
                build.table,
                keys.store,
                resources.clock,
                source=build.api.api_key_source,
                keys=keys,
                quota_outage=resources.quota_outage,
            )
        )
    if resources.account_limit is not None:
        buckets.append(resources.account_limit.bucket("throttle:account"))
    if setting.throttling_rate_limit is not None or setting.throttling_burst_limit is not None:
        limit = Limit(
            setting.throttling_rate_limit if setting.throttling_rate_limit is not None else ACCOUNT_RATE,
            setting.throttling_burst_limit if setting.throttling_burst_limit is not None else ACCOUNT_BURST,
        )
        # Stage-level limits apply to each method on its own: one bucket per method.
        buckets.append(
            limit.bucket(f"throttle:{build.api_info.api_id}:{build.stage}:{op.method} {op.resource}")
        )
    if buckets or op.api_key_required:  # a key's usage plan brings buckets of its own
        stages.append(
            ThrottleStage(
                tuple(buckets),
                resources.store,
                table=build.table,
                clock=resources.clock,
                outage=resources.throttle_outage,
            )
        )
    if build.api.kind == "REST" or build.api.minimum_compression_size is not None:
        # REST APIs decode compressed request bodies whether or not response compression is on.
        stages.append(CompressionStage(build.api.minimum_compression_size, build.table))
    validator = validate.build_stage(op, build.features)  # after decoding: it checks the decoded body
    if validator is not None:
        stages.append(validator)
    cache = _cache_settings(op, build, setting, own)
    if cache is not None:
        stages.append(
            CacheStage(
                cache,
                resources.store,
                resources.clock,
                cache_prefix(build.api_info.api_id, build.stage),
                build.table,
                outage=resources.cache_outage,
            )
        )
    return tuple(stages)


def cache_prefix(api_id: str, stage: str) -> str:
    """Every cache key of one API stage starts with this: ``portway cache flush`` drops them."""
    return f"cache:{api_id}:{stage}:"


def _method_settings(op: Operation, build: _StageContext) -> tuple[MethodSetting, MethodSetting | None]:
    """The route's settings (its own entry over the stage's ``*/*`` default), and its own entry if any.

    REST APIs key their methodSettings by resource and method; HTTP APIs key routeSettings by route key."""
    entries = build.settings.method_settings
    default = entries.get(ALL_METHODS_KEY, MethodSetting())
    if build.api.kind == "HTTP":
        own = entries.get((_route_key(op), "*"))
    else:
        own = entries.get((op.resource, op.method)) or entries.get((op.resource, "*"))
    return (own.over(default) if own is not None else default), own


def _cache_settings(
    op: Operation, build: _StageContext, setting: MethodSetting, own: MethodSetting | None
) -> CacheSettings | None:
    """The route's cache, when the stage has a cache cluster and the method's settings enable caching."""
    if (
        not build.settings.cache_cluster_enabled
        or op.resource == DEFAULT_ROUTE
        or not setting.caching_enabled
    ):
        return None
    ttl = setting.cache_ttl_s if setting.cache_ttl_s is not None else DEFAULT_TTL_S
    if ttl == 0:
        return None
    # API Gateway caches GET answers; another method only when its own settings enable caching.
    if own is not None and own.caching_enabled:
        methods = frozenset(HTTP_METHODS) if op.method == "ANY" else frozenset({op.method})
    elif op.method in ("GET", "ANY"):
        methods = frozenset({"GET"})
    else:
        return None
    return CacheSettings(
        ttl_s=ttl,
        require_authorization=(
            setting.require_authorization_for_cache_control
            if setting.require_authorization_for_cache_control is not None
            else True
        ),
        unauthorized_strategy=(
            setting.unauthorized_cache_control_header_strategy or SUCCEED_WITH_RESPONSE_HEADER
        ),
        key_parameters=op.cache_key_parameters,
        methods=methods,
    )


def _check_method_settings(api: ApiDefinition, settings: StageSettings, file: Path, out: _Problems) -> None:
    """Every methodSettings / routeSettings key must name a route of the API."""
    http_api = api.kind == "HTTP"
    routes = {(op.resource, op.method) for op in api.operations}
    resources = {op.resource for op in api.operations}
    route_keys = {_route_key(op) for op in api.operations}
    for (resource, method), setting in settings.method_settings.items():
        if (resource, method) == ALL_METHODS_KEY:
            continue
        if http_api:
            known = resource in route_keys
        else:
            known = (resource, method) in routes or (method == "*" and resource in resources)
        if not known:
            what = resource if http_api else f"{resource}/{method}"
            out.add(file, setting.where, f"{what}: no such route in {api.source.name}")


def compile_gateway(
    api: ApiDefinition,
    deployment: Deployment,
    resources: Resources,
    *,
    stage: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> Gateway:
    """Build the immutable gateway for one stage, or raise :class:`DefinitionErrors` with every problem.

    Without a ``stage``, a REST API is served as stage ``dev`` (under ``/dev``) and an HTTP API as its
    ``$default`` stage, at the root.
    """
    out = _Problems()
    file = api.source
    http_api = api.kind == "HTTP"
    if stage is None:
        stage = api.default_stage or (DEFAULT_STAGE if http_api else "dev")
    if not (STAGE_NAME.match(stage) or (http_api and stage == DEFAULT_STAGE)):
        out.add(file, "", f"stage name {stage!r}: use 1-128 letters, digits, '-' or '_'")
    # Every gateway-made answer comes from one table, which the definition may customise.
    table, response_problems = parse_gateway_responses(
        api.gateway_responses, HTTP_RESPONSES if http_api else REST_RESPONSES, http_api
    )
    for where, message in response_problems:
        out.add(file, where, message)
    variables = {**deployment.stage_variables.get(stage, {}), **(stage_variables or {})}
    functions, by_route, origins, unavailable = resolve_functions(api, deployment, stage, variables, out)
    api_info = ApiInfo(
        api_id=stable_id(f"{api.title}|{file.resolve()}"),
        region=next((f.region for f in functions.values()), "us-east-1"),
        deployment_id=stable_id(f"{file.resolve()}|{stage}", 6),
    )
    settings = deployment.stage_settings.get(stage, StageSettings())
    _check_method_settings(api, settings, deployment.source or file, out)
    if settings.cache_cluster_enabled:
        # The stage's cache cluster size is the cache's bound (AWS sizes it in GB of memory).
        resources.store.cache_bytes = int(settings.cache_cluster_size_gb * 2**30)
    registry = FunctionRegistry(file, deployment, stage, variables, out)
    registry.specs, registry.origins = functions, origins  # authorizers add theirs to the same maps

    def resolve_function(
        uri: str | None, handler: str | None, label: str, uri_where: str, handler_where: str
    ) -> str | None:
        found = registry.resolve(uri, handler, label=label, uri_where=uri_where, handler_where=handler_where)
        if isinstance(found, Unavailable):
            out.add(file, uri_where, f"{label}: function {found.function} cannot run here: {found.why}")
            return None
        return found

    features = StageBuild(
        api=api,
        api_info=api_info,
        stage=stage,
        stage_variables=variables,
        settings=settings,
        table=table,
        runtime=resources.runtime,
        store=resources.store,
        clock=resources.clock,
        problem=lambda where, message: out.add(file, where, message),
        settings_problem=lambda where, message: out.add(deployment.source or file, where, message),
        function=resolve_function,
        lasting=resources.lasting,
    )
    build = _StageContext(resources, features)
    identity = ApiIdentity(
        api_id=api_info.api_id,
        api_name=api.title,
        stage=stage,
        kind=api.kind,
        account_id=api_info.account_id,
        region=api_info.region,
        deployment_id=api_info.deployment_id,
    )
    monitor = resources.monitor
    observer = _observer(identity, settings, resources, deployment.source or file, out)
    routes: list[tuple[str, str, Route]] = []
    default_route: Route | None = None
    for op in api.operations:
        integration: IntegrationStage | None = None
        kind = op.integration.type
        if kind is IntegrationType.AWS_PROXY and (op.method, op.resource) in unavailable:
            function, why = unavailable[(op.method, op.resource)]
            integration = UnavailableFunction(function, why)
        elif kind is IntegrationType.AWS_PROXY:
            name = by_route.get((op.method, op.resource))
            if name is not None:
                spec = functions[name]
                integration = LambdaProxyIntegration(
                    function=name,
                    handler=f"{spec.module}.{spec.attribute}",
                    runtime=resources.runtime,
                    timeout_s=op.integration.timeout_ms / 1000,
                    api=api_info,
                    resource_id=stable_id(op.resource, 6),
                    binary_media_types=api.binary_media_types,
                    payload_format=op.integration.payload_format,
                    route_key=_route_key(op) if http_api else None,
                    responses=table,
                )
        elif kind is IntegrationType.MOCK:
            integration = _mock(op, file, out, table)
        else:
            integration = _http_proxy(
                op, file, stage, variables, resources.pools, out, table, resources.tracing
            )
        if integration is None:
            continue
        name = _route_key(op) if http_api else f"{op.method} {op.resource}"
        route = Route(
            op.method,
            op.resource,
            integration,
            stages=_route_stages(op, build),
            where=op.where,
            name=name,
            stats=monitor.route(identity, op.method, op.resource, name) if monitor is not None else None,
        )
        if op.resource == DEFAULT_ROUTE:
            default_route = route
        else:
            routes.append((op.method, op.resource, route))
    where_by_route = {(op.method, op.resource): op.where for op in api.operations}

    def conflict(method: str, resource: str, exc: DuplicateRoute) -> None:
        out.add(file, where_by_route.get((method, resource), ""), str(exc))

    router = Router(routes, on_conflict=conflict, method_aware=http_api)
    cors_policy = cors.policy(features)  # answers preflights no route takes (HTTP APIs)
    if out.items:
        raise DefinitionErrors(out.items)
    return Gateway(
        api=api,
        api_info=api_info,
        stage=stage,
        stage_variables=variables,
        router=router,
        functions=functions,
        function_origins=origins,
        default_route=default_route,
        responses=table,
        cors=cors_policy,
        observer=observer,
    )


def _observer(
    identity: ApiIdentity, settings: StageSettings, resources: Resources, file: Path, out: _Problems
) -> Observer | None:
    """The gateway's monitoring: metrics, access log (the CLI's format, else the stage's
    ``accessLogSettings.format``, else the JSON preset) and tracing; None when all are off."""
    if resources.monitor is None and resources.access_log is None and resources.tracing is None:
        return None
    log_format = None
    if resources.access_log is not None:
        text = resources.access_log_format or settings.access_log_format
        try:
            log_format = format_named(text, identity.kind) if text else preset("json", identity.kind)
        except ValueError as exc:
            where = "" if resources.access_log_format else settings.access_log_where
            out.add(file, where, f"access log format: {exc}")
    return Observer(
        identity,
        monitor=resources.monitor,
        log_format=log_format,
        access_log=resources.access_log,
        tracing=resources.tracing,
    )


def _route_key(op: Operation) -> str:
    """An HTTP API's name for a route: ``GET /items/{id}``, ``ANY /{proxy+}`` or ``$default``."""
    return DEFAULT_ROUTE if op.resource == DEFAULT_ROUTE else f"{op.method} {op.resource}"
