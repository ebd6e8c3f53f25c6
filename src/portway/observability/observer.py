"""What a compiled gateway does once an answer is sent: metrics, the access log line, the request's span."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portway.observability.exchange import ApiIdentity, Exchange

if TYPE_CHECKING:
    from portway.gateway import Route
    from portway.observability.access_log import AccessLogFormat, AccessLogWriter
    from portway.observability.metrics import Monitor, RouteStats
    from portway.observability.tracing import Tracing
    from portway.pipeline.context import RequestContext
    from portway.types import Response

__all__ = ["Observer"]


class Observer:
    """One gateway's monitoring, decided when it is compiled; each part None when off."""

    __slots__ = (
        "access_log",
        "api",
        "http_api",
        "log_format",
        "monitor",
        "tracing",
        "unrouted",
        "wants_context",
    )

    def __init__(
        self,
        api: ApiIdentity,
        *,
        monitor: Monitor | None = None,
        log_format: AccessLogFormat | None = None,
        access_log: AccessLogWriter | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.api = api
        self.monitor = monitor
        self.unrouted: RouteStats | None = monitor.unrouted(api) if monitor is not None else None
        self.log_format = log_format if access_log is not None else None
        self.access_log = access_log
        self.tracing = tracing
        self.http_api = api.kind == "HTTP"  # route keys are an HTTP API's ($context.routeKey)
        # The access log and spans describe every request, those no route took too: they need its context.
        self.wants_context = self.log_format is not None or tracing is not None

    def finish(
        self,
        ctx: RequestContext | None,
        route: Route | None,
        response: Response,
        length: int,
        latency_ms: float,
        span: Any,
    ) -> None:
        monitor = self.monitor
        if monitor is not None:
            stats = route.stats if route is not None else self.unrouted
            if stats is not None:
                monitor.record(stats, ctx, response.status, latency_ms, length, response.error_type)
        if ctx is None or not self.wants_context:
            return
        route_key = None
        if self.http_api:
            route_key = route.name if route is not None else "-"
        exchange = Exchange(
            ctx,
            self.api,
            route_key,
            response.status,
            length,
            latency_ms,
            response.error_type,
            response.error_message,
        )
        if span is not None and self.tracing is not None:
            self.tracing.end_request(span, exchange)
        if self.log_format is not None and self.access_log is not None:
            self.access_log.write(self.log_format.render(exchange))
