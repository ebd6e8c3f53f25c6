"""Optional OpenTelemetry tracing: one SERVER span per request, a child per stage and one for the integration,
exported over OTLP/HTTP (protobuf) in batches from a background thread.

Off unless configured: :meth:`Tracing.configure` answers None when no endpoint is given or set in the
environment, and the gateway then holds None and never calls in here. Nothing of OpenTelemetry is imported
until tracing is configured; it comes with the ``otel`` extra (``pip install 'portway[otel]'``).

What one request looks like::

    GET /items/{id}          SERVER    http.request.method, url.path, http.route, aws.request_id …
    ├── stage api_key        INTERNAL
    ├── stage throttle       INTERNAL
    └── integration          CLIENT    portway.integration="http_proxy GET https://…"

A stage that answers early (a throttle's 429) gets ``portway.answered=True`` and
``http.response.status_code``, and the stages after it and the integration get no span at all.

How the gateway drives it (``tracing`` is None when off)::

    request = tracing.start_request(ctx, api, route.resource)
    response = await tracing.run_route(route, ctx, request)   # instead of route.run(ctx)
    …send the response…
    tracing.end_request(request, exchange)

Spans use their own TracerProvider: the process-wide (global) OpenTelemetry provider and propagator are
never touched. A request is a root span unless it carries a W3C ``traceparent`` header; it never inherits an
ambient current span, so concurrent requests cannot be linked to each other. The ``OTEL_*`` variables the SDK
reads by itself (sampler, exporter headers and timeout, resource attributes) come from the process
environment; the endpoint may also come from the ``environ`` mapping given to :meth:`Tracing.configure`.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

    from portway.gateway import Route
    from portway.observability.exchange import ApiIdentity, Exchange
    from portway.pipeline.context import RequestContext
    from portway.types import Response

__all__ = ["RequestSpan", "Tracing", "TracingUnavailable"]

TRACES_PATH = "/v1/traces"  # OTLP/HTTP's path for traces under a collector's base URL
SHUTDOWN_TIMEOUT_S = 5.0

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"  # a base URL: /v1/traces is appended
TRACES_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"  # the traces URL, used as it is
SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
SDK_DISABLED_ENV = "OTEL_SDK_DISABLED"

ERR_NOT_INSTALLED = (
    "OpenTelemetry tracing needs the 'otel' extra, which is not installed ({missing}): "
    "pip install 'portway[otel]'"
)
ERR_ENDPOINT = "OTLP endpoint {endpoint!r} is not an http:// or https:// URL with a host"


class TracingUnavailable(RuntimeError):
    """Tracing was asked for, but the OpenTelemetry packages (the ``otel`` extra) are not installed."""


class RequestSpan:
    """One request's SERVER span, and the OpenTelemetry context its children start from."""

    __slots__ = ("context", "span")

    def __init__(self, span: Span, context: Context) -> None:
        self.span = span
        self.context = context


class Tracing:
    """Makes spans for requests and sends them to one OTLP/HTTP endpoint. Build it with :meth:`configure`."""

    def __init__(self, provider: TracerProvider, endpoint: str) -> None:
        # Imported here, not at module level: a gateway without tracing never loads OpenTelemetry.
        from opentelemetry import context as otel_context
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.endpoint = endpoint  # the traces URL spans are posted to
        self._provider = provider
        self._tracer = provider.get_tracer("portway")
        self._attach = otel_context.attach
        self._detach = otel_context.detach
        self._empty = otel_context.Context()
        self._with_span = otel_trace.set_span_in_context
        self._current_span = otel_trace.get_current_span
        self._propagator = TraceContextTextMapPropagator()
        self._server = SpanKind.SERVER
        self._internal = SpanKind.INTERNAL
        self._client = SpanKind.CLIENT
        self._error = StatusCode.ERROR
        self._status = Status
        self._shutdown_lock = threading.Lock()
        self._shut = False
        # Queued spans still go out when the process ends without shutdown(), in bounded time (the SDK's
        # own exit hook, turned off in configure, may wait 30 s on an unreachable collector).
        atexit.register(self.shutdown)

    @classmethod
    def configure(
        cls,
        endpoint: str | None,
        *,
        service_name: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Tracing | None:
        """Tracing to ``endpoint``, or None (tracing off) when there is none.

        ``endpoint`` is a collector's OTLP/HTTP base URL (``http://host:4318``; ``/v1/traces`` is appended)
        or its traces URL (a path ending in ``/v1/traces``, used as it is). Without one, the standard
        variables in ``environ`` are read: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the traces URL as it is),
        else ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL). ``OTEL_SDK_DISABLED=true`` turns tracing off.
        ``service_name`` defaults to ``OTEL_SERVICE_NAME``, else ``portway``.

        Raises :class:`TracingUnavailable` when OpenTelemetry is not installed, ValueError for an endpoint
        that is not an http(s) URL.

        >>> Tracing.configure(None, environ={}) is None
        True
        """
        if environ.get(SDK_DISABLED_ENV, "").strip().lower() == "true":
            return None
        if endpoint:
            url = _traces_url(endpoint)
        elif environ.get(TRACES_ENDPOINT_ENV):
            url = _checked(environ[TRACES_ENDPOINT_ENV])
        elif environ.get(ENDPOINT_ENV):
            url = _checked(environ[ENDPOINT_ENV].rstrip("/") + TRACES_PATH)
        else:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailable(ERR_NOT_INSTALLED.format(missing=exc.name or exc)) from exc
        name = service_name or environ.get(SERVICE_NAME_ENV) or "portway"
        provider = TracerProvider(resource=Resource.create({"service.name": name}), shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
        return cls(provider, url)

    def start_request(self, ctx: RequestContext, api: ApiIdentity, route_name: str) -> RequestSpan:
        """Open the request's SERVER span, named ``"{method} {route_name}"`` (``route_name`` is the resource
        template, e.g. ``/items/{id}``, or ``$default``; "" when no route took the request, and the name is
        then the method alone). Its parent is the caller's, when the request has a W3C ``traceparent``."""
        method = ctx.method
        user_agent = traceparent = tracestate = None
        for header, value in ctx.headers:
            if header == b"user-agent":
                user_agent = value
            elif header == b"traceparent":
                traceparent = value
            elif header == b"tracestate":
                tracestate = value
        parent = self._empty
        if traceparent is not None:
            carrier = {"traceparent": traceparent.decode("latin-1")}
            if tracestate is not None:
                carrier["tracestate"] = tracestate.decode("latin-1")
            parent = self._propagator.extract(carrier, parent)  # an invalid traceparent leaves a root span
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": ctx.scope_path(),
            "url.scheme": ctx.scheme,
            "client.address": ctx.client_ip,
            "aws.request_id": ctx.request_id,
            "aws.xray.trace_id": _xray_root(ctx.trace_id),
            "aws.api_id": api.api_id,
            "aws.stage": api.stage,
        }
        if route_name:
            attributes["http.route"] = route_name
        if user_agent is not None:
            attributes["user_agent.original"] = user_agent.decode("latin-1")
        span = self._tracer.start_span(
            f"{method} {route_name}" if route_name else method, parent, self._server, attributes
        )
        return RequestSpan(span, self._with_span(span, parent))

    async def run_route(self, route: Route, ctx: RequestContext, request: RequestSpan) -> Response:
        """What :meth:`Route.run` does, with a span for each stage's ``on_request`` and one for the
        integration. Inside each, that span is OpenTelemetry's current one (so :meth:`upstream_headers`
        names it); the response hooks run under the request's span. Exceptions are recorded on the span
        they left (status ERROR) and propagate, as from :meth:`Route.run`."""
        start = self._tracer.start_span
        attach = self._attach
        detach = self._detach
        with_span = self._with_span
        parent = request.context
        outer = attach(parent)
        try:
            if not request.span.is_recording():
                # Not sampled: no child would be recorded either, so spare making them. Upstream still
                # gets the request span's traceparent (flagged not sampled), so the services behind agree.
                return await route.run(ctx)
            stages = route.stages
            ran = 0
            response: Response | None = None
            for stage in stages:
                ran += 1
                span = start(f"stage {stage.name}", parent, self._internal)
                token = attach(with_span(span, parent))
                try:
                    response = await stage.on_request(ctx)
                    if response is not None:
                        span.set_attributes(
                            {"portway.answered": True, "http.response.status_code": response.status}
                        )
                except Exception as exc:
                    self._failed(span, exc)
                    raise
                finally:
                    detach(token)
                    span.end()
                if response is not None:
                    break
            if response is None:
                integration = route.integration
                span = start(
                    "integration", parent, self._client, {"portway.integration": integration.describe()}
                )
                token = attach(with_span(span, parent))
                try:
                    response = await integration(ctx)
                    span.set_attribute("http.response.status_code", response.status)
                    if ctx.integration_error is not None:
                        span.set_status(self._status(self._error, ctx.integration_error))
                except Exception as exc:
                    self._failed(span, exc)
                    raise
                finally:
                    detach(token)
                    span.end()
            responders = route.responders
            while ran:  # as Route.run: unwind the stages that ran, last first, only those that respond
                ran -= 1
                if responders[ran]:
                    response = await stages[ran].on_response(ctx, response)
            return response
        except Exception as exc:
            request.span.set_attribute("error.type", type(exc).__qualname__)
            raise
        finally:
            detach(outer)

    def end_request(self, request: RequestSpan, exchange: Exchange) -> None:
        """Close the request's span with what was sent: its status (5xx is an error; 4xx, the client's
        mistake, is not) and the gateway response type when the gateway answered."""
        span = request.span
        status = exchange.status
        span.set_attribute("http.response.status_code", status)
        if exchange.error_type is not None:
            span.set_attribute("portway.error_type", exchange.error_type)
        if status >= 500:
            span.set_status(self._status(self._error, exchange.error_type))
        span.end()

    def upstream_headers(self) -> list[tuple[str, str]]:
        """W3C ``traceparent`` (and ``tracestate``) naming the current span, for an integration to send
        upstream; called inside :meth:`run_route`'s integration span, they name it. Empty outside any span.
        The upstream's own trace headers from the client should be replaced by these, not kept beside."""
        span_context = self._current_span().get_span_context()
        if not span_context.is_valid:
            return []
        headers = [
            (
                "traceparent",
                f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}",
            )
        ]
        state = span_context.trace_state
        if state:
            headers.append(("tracestate", state.to_header()))
        return headers

    def shutdown(self) -> None:
        """Send the spans still queued and stop the exporter; waits at most :data:`SHUTDOWN_TIMEOUT_S`
        seconds (blocking: from async code, call it in a thread). Later calls do nothing."""
        with self._shutdown_lock:
            if self._shut:
                return
            self._shut = True
        atexit.unregister(self.shutdown)
        # The SDK's own shutdown may wait up to 30 s on a slow collector: bound it from outside.
        stopper = threading.Thread(target=self._provider.shutdown, name="portway-otel-shutdown", daemon=True)
        stopper.start()
        stopper.join(SHUTDOWN_TIMEOUT_S)

    def _failed(self, span: Span, exc: Exception) -> None:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(self._status(self._error, f"{type(exc).__name__}: {exc}"))


def _xray_root(header: str) -> str:
    """The trace id in an X-Ray trace header.

    >>> _xray_root("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    '1-5759e988-bd862e3fe1be46a994272793'
    """
    for part in header.split(";"):
        part = part.strip()
        if part.startswith("Root="):
            return part[5:]
    return header


def _traces_url(endpoint: str) -> str:
    """The traces URL for an endpoint given as a base URL or as the traces URL itself.

    >>> _traces_url("http://collector:4318"), _traces_url("https://otel.example/v1/traces")
    ('http://collector:4318/v1/traces', 'https://otel.example/v1/traces')
    """
    url = endpoint.rstrip("/")
    if not url.endswith(TRACES_PATH):
        url += TRACES_PATH
    return _checked(url)


def _checked(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(ERR_ENDPOINT.format(endpoint=url))
    return url
