"""The compiled gateway: immutable, built once per definition and swapped whole on reload."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from portway.config.model import DEFAULT_ROUTE
from portway.integrations import Integration
from portway.integrations.events import ApiInfo
from portway.pipeline.context import BodyTooLarge, RequestContext
from portway.pipeline.gateway_responses import CURRENT_REQUEST, table_reads_request
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.pipeline.stage import Stage
from portway.routing import BadPath, Match, Router, decode_segment
from portway.types import Receive, Response, Scope, Send

if TYPE_CHECKING:
    from portway.config.compile import FunctionOrigin
    from portway.config.model import ApiDefinition
    from portway.lambdas.spec import FunctionSpec
    from portway.observability.metrics import RouteStats
    from portway.observability.observer import Observer
    from portway.stages.cors import CorsPolicy

__all__ = ["DEFAULT_STAGE", "Gateway", "Route"]

DEFAULT_STAGE = "$default"  # an HTTP API's default stage: served at the root, no stage in the path

log = logging.getLogger("portway.gateway")
_clock = time.perf_counter


@dataclass(frozen=True, slots=True)
class Route:
    """One method on one resource: its stages in order, then its integration."""

    method: str
    resource: str
    integration: Integration
    stages: tuple[Stage, ...] = ()
    where: str = ""
    name: str = ""  # "GET /items/{id}" (REST), the route key (HTTP APIs): how metrics and traces name it
    stats: RouteStats | None = None  # its metrics, when the gateway is monitored
    responders: tuple[bool, ...] = field(init=False)  # per stage: does its on_response change anything

    def __post_init__(self) -> None:
        object.__setattr__(self, "responders", tuple(stage.responds for stage in self.stages))

    async def run(self, ctx: RequestContext) -> Response:
        stages = self.stages
        ran = 0
        response: Response | None = None
        for stage in stages:
            ran += 1
            response = await stage.on_request(ctx)
            if response is not None:
                break
        if response is None:
            started = _clock()
            response = await self.integration(ctx)
            ctx.integration_latency_ms = (_clock() - started) * 1000
        responders = self.responders
        while ran:  # unwind the stages that ran, last first, skipping those that never change a response
            ran -= 1
            if responders[ran]:
                response = await stages[ran].on_response(ctx, response)
        return response

    def describe_stages(self) -> str:
        return " → ".join([*(s.name for s in self.stages), "integration"])


def _check_query(query: bytes) -> None:
    """Reject malformed percent-encoding in the query string up front, as API Gateway answers 400."""
    for piece in query.decode("latin-1").split("&"):
        decode_segment(piece)


@dataclass(frozen=True, slots=True)
class Gateway:
    api: ApiDefinition
    api_info: ApiInfo
    stage: str
    stage_variables: Mapping[str, str]
    router: Router[Route]
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)
    function_origins: Mapping[str, FunctionOrigin] = field(default_factory=dict)
    default_route: Route | None = None  # an HTTP API's $default route: what no other route takes
    responses: ResponseTable = field(default_factory=lambda: REST_RESPONSES)
    cors: CorsPolicy | None = None  # an HTTP API's CORS configuration: answers preflights no route takes
    observer: Observer | None = None  # metrics, access log and tracing; None: none of them

    prefix: str = field(init=False)  # "/dev": the stage's part of every path ("" for the $default stage)
    prefix_slash: str = field(init=False)
    rest_api: bool = field(init=False)
    reads_request: bool = field(init=False)  # some gateway answer prints something of the request

    def __post_init__(self) -> None:
        prefix = "" if self.stage == DEFAULT_STAGE else f"/{self.stage}"
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "prefix_slash", f"{prefix}/")
        object.__setattr__(self, "rest_api", self.api.kind == "REST")
        object.__setattr__(self, "reads_request", table_reads_request(self.responses))

    def routes(self) -> tuple[Route, ...]:
        routes = tuple(target for _, _, target in self.router.routes)
        return (*routes, self.default_route) if self.default_route is not None else routes

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        observer = self.observer
        started = _clock() if observer is not None else 0.0
        raw_path: bytes | None = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        method: str = scope["method"]
        ctx: RequestContext | None = None
        early: RequestContext | None = None  # a request answered before routing, when its answer reads it
        route: Route | None = None
        span = None
        table = self.responses
        if path == self.prefix or path.startswith(self.prefix_slash):
            rest = path[len(self.prefix) :]
            try:
                query: bytes = scope.get("query_string", b"")
                if b"%" in query:
                    _check_query(query)
                match = self.router.match(method, rest or "/")
                if match is None and self.default_route is not None:
                    match = Match(self.default_route, DEFAULT_ROUTE, {})
            except BadPath:
                response, early = self._unrouted(ResponseType.BAD_REQUEST, scope, receive, rest)
            else:
                if match is None:
                    cors = self.cors
                    preflight = cors.preflight(method, scope["headers"]) if cors is not None else None
                    if preflight is not None:
                        response = preflight
                        if observer is not None and observer.wants_context:
                            early = self._early(scope, receive, rest)
                    else:
                        response, early = self._unrouted(
                            ResponseType.MISSING_AUTHENTICATION_TOKEN, scope, receive, rest
                        )
                        if cors is not None:
                            cors.apply(method, scope["headers"], response)
                else:
                    route = match.target
                    ctx = RequestContext(
                        scope,
                        receive,
                        rest,
                        self.stage,
                        match.resource,
                        match.path_parameters,
                        self.stage_variables,
                    )
                    token = CURRENT_REQUEST.set(ctx) if self.reads_request else None
                    try:
                        # The body is read when a stage or the integration first asks (ctx.body()): a
                        # route answered early (throttled, cached) never waits for it.
                        if observer is not None and observer.tracing is not None:
                            span = observer.tracing.start_request(ctx, observer.api, route.resource)
                            response = await observer.tracing.run_route(route, ctx, span)
                        elif route.stages:
                            response = await route.run(ctx)
                        else:
                            integration_started = _clock()
                            response = await route.integration(ctx)
                            ctx.integration_latency_ms = (_clock() - integration_started) * 1000
                    except BodyTooLarge:
                        response = gateway_response(ResponseType.REQUEST_TOO_LARGE, table)
                    except BadPath:
                        response = gateway_response(ResponseType.BAD_REQUEST, table)
                    except Exception:
                        # The gateway's own bug must cost one request, never the process.
                        log.exception(
                            "[%s] internal error while handling %s %s", ctx.request_id, method, rest
                        )
                        response = gateway_response(ResponseType.API_CONFIGURATION_ERROR, table)
                    if token is not None:
                        CURRENT_REQUEST.reset(token)
        else:
            # An unknown stage is, to API Gateway, just another path with no resource.
            response, early = self._unrouted(ResponseType.MISSING_AUTHENTICATION_TOKEN, scope, receive, path)
        headers = response.headers
        if self.rest_api:
            if ctx is None:
                request_id = early.request_id if early is not None else RequestContext.new_request_id()
                extended_id = None
            else:
                request_id, extended_id = ctx.request_id, ctx.extended_request_id
            headers.append((b"x-amzn-RequestId", request_id.encode()))
            if extended_id is not None:
                headers.append((b"x-amz-apigw-id", extended_id.encode()))
        else:
            # An HTTP API's request id is the short one (also the event's requestContext.requestId).
            known = ctx or early
            request_id = known.extended_request_id if known is not None else RequestContext.new_short_id()
            headers.append((b"apigw-requestid", request_id.encode()))
        status = response.status
        length = 0
        try:
            if response.stream is not None:
                length = await _stream(send, response, request_id)
            else:
                length = len(response.body)
                if status not in _NO_BODY_STATUS and status >= 200:
                    headers.append((b"content-length", b"%d" % length))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": response.body})
        finally:  # a cut stream is still a request: counted, logged, its span ended
            if observer is not None:
                observer.finish(ctx or early, route, response, length, (_clock() - started) * 1000, span)

    def _early(self, scope: Scope, receive: Receive, path: str) -> RequestContext:
        """The context of a request no route took (for what its answer or its log line prints)."""
        return RequestContext(scope, receive, path, self.stage, "", {}, self.stage_variables)

    def _unrouted(
        self, kind: ResponseType, scope: Scope, receive: Receive, path: str
    ) -> tuple[Response, RequestContext | None]:
        """The gateway's answer to a request no route takes; and the request, when that answer (customised
        by the definition) prints something of it, so the response headers carry the same request id."""
        observer = self.observer
        if not (self.reads_request or (observer is not None and observer.wants_context)):
            return gateway_response(kind, self.responses), None
        early = self._early(scope, receive, path)
        token = CURRENT_REQUEST.set(early)
        try:
            return gateway_response(kind, self.responses), early
        finally:
            CURRENT_REQUEST.reset(token)


_NO_BODY_STATUS = frozenset({204, 304})


async def _stream(send: Send, response: Response, request_id: str) -> int:
    """Send a streamed response (an upstream's body) chunk by chunk; the body's length."""
    assert response.stream is not None
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    length = 0
    try:
        async for chunk in response.stream:
            length += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except Exception as exc:
        # Headers are gone already: the only honest signal left is to cut the connection.
        log.error("[%s] response stream failed: %s: %s", request_id, type(exc).__name__, exc)
        raise
    await send({"type": "http.response.body", "body": b""})
    return length
