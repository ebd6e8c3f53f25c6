"""WebSocket API model → a served :class:`~portway.websocket.gateway.WebSocketGateway`; every problem raised
here with its file and JSON path, as the HTTP side's compiler does."""

from __future__ import annotations

from collections.abc import Mapping

from portway.config.compile import STAGE_NAME, FunctionRegistry, Resources, _Problems
from portway.config.errors import DefinitionErrors
from portway.config.model import Deployment
from portway.observability.exchange import ApiIdentity
from portway.observability.metrics import UNROUTED, RouteStats
from portway.stages.throttle import ACCOUNT_BURST, ACCOUNT_RATE, Limit
from portway.state.store import Bucket
from portway.websocket.gateway import ConnectionHub, WebSocketGateway
from portway.websocket.model import CONNECT, DISCONNECT, WebSocketApi, WsLambda

__all__ = ["DEFAULT_WEBSOCKET_STAGE", "compile_websocket"]

DEFAULT_WEBSOCKET_STAGE = "dev"


def compile_websocket(
    api: WebSocketApi,
    deployment: Deployment,
    resources: Resources,
    hub: ConnectionHub,
    *,
    stage: str | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> WebSocketGateway:
    """Resolve every route's and authorizer's function to a local handler, for one stage (the one asked
    for, else the definition's, else ``dev``); stage variables from the definition, then the functions
    file's ``stages.STAGE.variables``, then the command line."""
    out = _Problems()
    file = api.source
    stage = stage or api.stage or DEFAULT_WEBSOCKET_STAGE
    if not STAGE_NAME.match(stage):
        out.add(file, "", f"stage name {stage!r}: use 1-128 letters, digits, '-' or '_'")
    variables = {
        **api.stage_variables,
        **deployment.stage_variables.get(stage, {}),
        **(stage_variables or {}),
    }
    registry = FunctionRegistry(file, deployment, stage, variables, out)
    targets: dict[str, str] = {}
    authorizers: dict[str, str] = {}
    for key, route in api.routes.items():
        integration = route.integration
        if isinstance(integration, WsLambda):
            found = registry.resolve(
                integration.uri,
                None,
                label=f"route {key}",
                uri_where=integration.where or route.where,
                handler_where=integration.where or route.where,
            )
            if isinstance(found, str):
                targets[key] = found
            elif found is not None:
                out.add(
                    file, route.where, f"route {key}: function {found.function} cannot run here: {found.why}"
                )
        if route.authorizer is not None:
            authorizer = route.authorizer
            found = registry.resolve(
                authorizer.uri,
                None,
                label=f"authorizer {authorizer.name}",
                uri_where=authorizer.where,
                handler_where=authorizer.where,
            )
            if isinstance(found, str):
                authorizers[key] = found
            elif found is not None:
                out.add(file, authorizer.where, f"authorizer {authorizer.name}: {found.why}")
    if out.items:
        raise DefinitionErrors(out.items)
    region = next((spec.region for spec in registry.specs.values()), "us-east-1")
    settings = api.stage_settings or deployment.stage_settings.get(stage)
    throttles: dict[str, tuple[Bucket, ...]] = {}
    if settings is not None:
        for key in {CONNECT, *api.routes}:
            setting = settings.for_method("*", key)
            rate, burst = setting.throttling_rate_limit, setting.throttling_burst_limit
            if rate is not None or burst is not None:
                # A rate without a burst (or the other way round) keeps AWS's default for the other half.
                limit = Limit(
                    rate if rate is not None else ACCOUNT_RATE, burst if burst is not None else ACCOUNT_BURST
                )
                throttles[key] = (limit.bucket(f"ws:{api.api_id}:{stage}:{key}"),)
    monitor = resources.monitor
    stats: dict[str, RouteStats] = {}
    if monitor is not None:
        identity = ApiIdentity(
            api_id=api.api_id, api_name=api.name, stage=stage, kind="WEBSOCKET", region=region
        )
        for key in {CONNECT, DISCONNECT, *api.routes}:
            event_type = "CONNECT" if key == CONNECT else "DISCONNECT" if key == DISCONNECT else "MESSAGE"
            stats[key] = monitor.route(identity, event_type, key, key)
        stats[UNROUTED] = monitor.route(identity, "MESSAGE", UNROUTED, UNROUTED)
    return WebSocketGateway(
        api=api,
        stage=stage,
        stage_variables=variables,
        runtime=resources.runtime,
        hub=hub,
        functions=registry.specs,
        function_origins=registry.origins,
        targets=targets,
        authorizers=authorizers,
        region=region,
        monitor=monitor,
        stats=stats,
        access_log=resources.access_log,
        store=resources.store,
        throttles=throttles,
    )
