"""API Gateway's CloudWatch metrics, kept per route as plain numbers and shown in Prometheus's text format.

What a request adds is a handful of integer increments and two histogram observations on objects bound to its
route when the gateway is compiled (:class:`RouteStats`), so the hot path never looks labels up. The
Prometheus client library renders them at scrape time through a custom collector over the same numbers.

Names follow CloudWatch's ``AWS/ApiGateway`` metrics in Prometheus's style (as the CloudWatch exporters
spell them), with the dimensions as labels:

========================================  =================================  ==========================
Prometheus                                 CloudWatch (REST / HTTP APIs)       kind
========================================  =================================  ==========================
``apigateway_count_total``                 ``Count``                           counter
``apigateway_4xxerror_total``              ``4XXError`` / ``4xx``              counter
``apigateway_5xxerror_total``              ``5XXError`` / ``5xx``              counter
``apigateway_latency_milliseconds``        ``Latency``                         histogram
``apigateway_integration_latency_…``       ``IntegrationLatency``              histogram
``apigateway_cache_hit_count_total``       ``CacheHitCount``                   counter
``apigateway_cache_miss_count_total``      ``CacheMissCount``                  counter
``apigateway_data_processed_bytes_total``  ``DataProcessed`` (HTTP APIs)       counter
========================================  =================================  ==========================

Labels: ``api_name``, ``api_id``, ``stage``, ``method``, ``resource`` (REST's dimensions) and ``route`` (an
HTTP API's route key; ``METHOD /resource`` on REST APIs). Only route templates ever become labels, never raw
paths: a request no route takes is counted under ``method``/``resource``/``route`` ``-``. Portway adds the
gateway answers by type (``portway_gateway_responses_total``: throttled, WAF-blocked, authorizer-denied …),
the Lambda functions' own metrics (``lambda_*``, named after ``AWS/Lambda``), the web ACLs' (``waf_*``, after
``AWS/WAFV2``) and the access log's dropped lines.
"""

from __future__ import annotations

import os
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from portway.observability.exchange import ApiIdentity
from portway.observability.histogram import BOUNDS_MS, Histogram, percentiles
from portway.observability.series import Series
from portway.observability.usage import DailyUsage

if TYPE_CHECKING:
    from portway.gateway import Gateway
    from portway.lambdas.runtime import LambdaRuntime
    from portway.pipeline.context import RequestContext

__all__ = ["LABELS", "Monitor", "RouteStats"]

LABELS = ("api_name", "api_id", "stage", "method", "resource", "route")
UNROUTED = "-"  # method, resource and route of a request no route took

# Gateway response types as the dashboard and the named counters group them.
THROTTLED_TYPES = frozenset({"THROTTLED", "QUOTA_EXCEEDED"})
WAF_TYPES = frozenset({"WAF_FILTERED"})
AUTHORIZER_DENIED_TYPES = frozenset({"UNAUTHORIZED", "ACCESS_DENIED", "EXPIRED_TOKEN", "INVALID_SIGNATURE"})
# The summary's totals: each the sum of the per-route rows' own figure.
_TOTALS = (
    "count",
    "4xx",
    "5xx",
    "throttled",
    "waf_blocked",
    "authorizer_denied",
    "cache_hits",
    "cache_misses",
)


class RouteStats:
    """One route's numbers since the process started (kept across reloads while the route exists)."""

    __slots__ = (
        "api",
        "cache_hits",
        "cache_misses",
        "count",
        "data_processed",
        "errors_4xx",
        "errors_5xx",
        "integration",
        "labels",
        "latency",
        "method",
        "name",
        "resource",
        "responses",
    )

    def __init__(self, api: ApiIdentity, method: str, resource: str, name: str) -> None:
        self.api = api
        self.method = method
        self.resource = resource
        self.name = name  # "GET /items/{id}" (REST), the route key (HTTP), "-" for unrouted requests
        self.labels = (api.api_name, api.api_id, api.stage, method, resource, name)
        self.count = 0
        self.errors_4xx = 0
        self.errors_5xx = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.data_processed = 0
        self.latency = Histogram()
        self.integration = Histogram()
        self.responses: dict[str, int] = {}  # gateway answers by response type ("THROTTLED": 3)

    def of_types(self, types: frozenset[str]) -> int:
        return sum(count for kind, count in self.responses.items() if kind in types)


class Monitor:
    """Every route's numbers, the time series behind the dashboard and the daily usage; outlives reloads.

    :meth:`record` is called once per request, after its answer went out, on the event loop's thread.
    """

    def __init__(
        self,
        runtime: LambdaRuntime | None = None,
        *,
        clock: Callable[[], float] = time.time,
        node: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.started = clock()
        self.node = node or f"{socket.gethostname()}-{os.getpid()}-{int(self.started * 1000)}"
        self._routes: dict[tuple[str, ...], RouteStats] = {}
        self.series = Series()
        self.usage = DailyUsage()
        self.gateway: Callable[[], Gateway | None] = lambda: None  # the gateway served now (for WAF stats)
        self.access_log_dropped: Callable[[], int] = lambda: 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def route(self, api: ApiIdentity, method: str, resource: str, name: str) -> RouteStats:
        """The stats of one route, made on first use; the same object after a reload."""
        key = (api.api_name, api.api_id, api.stage, method, resource, name)
        stats = self._routes.get(key)
        if stats is None:
            stats = self._routes[key] = RouteStats(api, method, resource, name)
        return stats

    def unrouted(self, api: ApiIdentity) -> RouteStats:
        return self.route(api, UNROUTED, UNROUTED, UNROUTED)

    def routes(self) -> list[RouteStats]:
        return list(self._routes.values())

    def record(
        self,
        stats: RouteStats,
        ctx: RequestContext | None,
        status: int,
        latency_ms: float,
        length: int,
        error_type: str | None,
        integration_ms: float | None = None,
    ) -> None:
        """One finished request (or WebSocket event: ``ctx`` None, its ``integration_ms`` given)."""
        stats.count += 1
        error = 0
        if status >= 400:
            if status >= 500:
                stats.errors_5xx += 1
                error = 2
            else:
                stats.errors_4xx += 1
                error = 1
        histogram = stats.latency  # Histogram.observe, inlined: this runs on every request
        histogram.counts[bisect_left(BOUNDS_MS, latency_ms)] += 1
        histogram.sum += latency_ms
        stats.data_processed += length
        if error_type is not None:
            stats.responses[error_type] = stats.responses.get(error_type, 0) + 1
        key_id = None
        if ctx is not None:
            integration_ms = ctx.integration_latency_ms
            if integration_ms is not None:
                histogram = stats.integration
                histogram.counts[bisect_left(BOUNDS_MS, integration_ms)] += 1
                histogram.sum += integration_ms
            cache = ctx.cache_status
            if cache is not None:
                if cache == "hit":
                    stats.cache_hits += 1
                else:
                    stats.cache_misses += 1
            body = ctx.buffered_body
            if body:
                stats.data_processed += len(body)
            key_id = ctx.api_key_id
            day = ctx.request_time_ns // 86_400_000_000_000
        else:
            if integration_ms is not None:
                stats.integration.observe(integration_ms)
            day = int(self.clock() // 86_400)
        self.usage.add(day, key_id or "", stats.name, error, latency_ms)

    def sample(self) -> None:
        """Take one time-series point (once a second, from :meth:`run_sampler`)."""
        self.series.sample(self.clock(), self._routes.values())

    def summary(self) -> dict[str, Any]:
        """Totals, per-route figures, today's top API keys and the Lambda pools: the admin API's summary."""
        routes = []
        totals = dict.fromkeys(_TOTALS, 0)
        for stats in self._routes.values():
            row = route_row(stats)
            for name in _TOTALS:
                totals[name] += row[name]
            if stats.count:
                routes.append(row)
        routes.sort(key=lambda row: (-row["count"], row["route"]))
        gateway = self.gateway()
        if gateway is not None and gateway.observer is not None:
            api: ApiIdentity | None = gateway.observer.api
        else:
            api = next(iter(self._routes.values())).api if self._routes else None
        return {
            "api": None
            if api is None
            else {"id": api.api_id, "name": api.api_name, "kind": api.kind, "stage": api.stage},
            "uptime_s": round(self.clock() - self.started, 3),
            "now": self.clock(),
            "totals": totals,
            "routes": routes,
            "keys": self.usage.top_keys(int(self.clock() // 86_400), 10),
            "lambda": self.lambda_rows(),
        }

    def lambda_rows(self) -> list[dict[str, Any]]:
        runtime = self.runtime
        if runtime is None:
            return []
        workers = runtime.worker_counts()
        busy = runtime.busy_counts()
        rows = []
        for name, stats in sorted(runtime.stats.items()):
            total, idle = workers.get(name, (0, 0))
            rows.append(
                {
                    "function": name,
                    "workers": total,
                    "idle": idle,
                    "busy": busy.get(name, 0),
                    "invocations": stats.invocations,
                    "errors": stats.errors,
                    "timeouts": stats.timeouts,
                    "cold_starts": stats.cold_starts,
                    "concurrent": stats.running,
                    "duration": percentiles(stats.duration.counts),
                }
            )
        return rows


def route_row(stats: RouteStats) -> dict[str, Any]:
    return {
        "route": stats.name,
        "method": stats.method,
        "resource": stats.resource,
        "count": stats.count,
        "4xx": stats.errors_4xx,
        "5xx": stats.errors_5xx,
        "throttled": stats.of_types(THROTTLED_TYPES),
        "waf_blocked": stats.of_types(WAF_TYPES),
        "authorizer_denied": stats.of_types(AUTHORIZER_DENIED_TYPES),
        "cache_hits": stats.cache_hits,
        "cache_misses": stats.cache_misses,
        "latency": percentiles(stats.latency.counts),
        "integration_latency": percentiles(stats.integration.counts),
    }


class _Collector(Collector):
    """Renders the monitor's numbers as Prometheus metric families at scrape time."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        routes = self.monitor.routes()
        yield from _route_families(routes)
        yield from _lambda_families(self.monitor)
        gateway = self.monitor.gateway()
        if gateway is not None:
            yield from _waf_families(gateway)
        dropped = CounterMetricFamily(
            "portway_access_log_dropped_lines", "Access log lines dropped because the writer fell behind"
        )
        dropped.add_metric([], self.monitor.access_log_dropped())
        yield dropped


def _route_families(routes: list[RouteStats]) -> Iterable[Metric]:
    counters: list[tuple[str, str, Callable[[RouteStats], int]]] = [
        ("apigateway_count", "Requests (CloudWatch Count)", lambda s: s.count),
        ("apigateway_4xxerror", "Client-side errors (CloudWatch 4XXError / 4xx)", lambda s: s.errors_4xx),
        ("apigateway_5xxerror", "Server-side errors (CloudWatch 5XXError / 5xx)", lambda s: s.errors_5xx),
        (
            "apigateway_cache_hit_count",
            "Requests served from the cache (CacheHitCount)",
            lambda s: s.cache_hits,
        ),
        (
            "apigateway_cache_miss_count",
            "Requests the cache missed (CacheMissCount)",
            lambda s: s.cache_misses,
        ),
        (
            "apigateway_data_processed_bytes",
            "Request and response body bytes (DataProcessed)",
            lambda s: s.data_processed,
        ),
        (
            "portway_throttled_requests",
            "Requests refused by throttling or a quota (429)",
            lambda s: s.of_types(THROTTLED_TYPES),
        ),
        ("portway_waf_blocked_requests", "Requests blocked by the web ACL", lambda s: s.of_types(WAF_TYPES)),
        (
            "portway_authorizer_denied_requests",
            "Requests an authorizer refused (401/403)",
            lambda s: s.of_types(AUTHORIZER_DENIED_TYPES),
        ),
    ]
    for name, text, value in counters:
        family = CounterMetricFamily(name, text, labels=LABELS)
        for stats in routes:
            family.add_metric(stats.labels, value(stats))
        yield family
    sockets = [stats for stats in routes if stats.api.kind == "WEBSOCKET"]
    if sockets:
        yield from _websocket_families(sockets)
    for name, text, pick in (
        ("apigateway_latency_milliseconds", "Request to response, in ms (Latency)", _latency),
        (
            "apigateway_integration_latency_milliseconds",
            "Request relayed to the integration until its answer, in ms (IntegrationLatency)",
            _integration,
        ),
    ):
        histogram = HistogramMetricFamily(name, text, labels=LABELS)
        for stats in routes:
            observed = pick(stats)
            histogram.add_metric(stats.labels, observed.cumulative(), observed.sum)
        yield histogram
    responses = CounterMetricFamily(
        "portway_gateway_responses",
        "Answers the gateway made itself, by API Gateway response type",
        labels=(*LABELS, "response_type"),
    )
    for stats in routes:
        for kind, count in sorted(stats.responses.items()):
            responses.add_metric((*stats.labels, kind), count)
    yield responses


def _websocket_families(routes: list[RouteStats]) -> Iterable[Metric]:
    """A WebSocket API's own CloudWatch metrics, per route: ConnectCount ($connect's attempts), MessageCount
    (messages, answered or not), ClientError (4xx: refused handshakes, messages no route takes),
    IntegrationError (the integration failed) and ExecutionError (the gateway's own 5xx)."""
    families: list[tuple[str, str, Callable[[RouteStats], int]]] = [
        ("apigateway_connect_count", "Connection attempts (ConnectCount)", _connects),
        ("apigateway_message_count", "Messages received (MessageCount)", _messages),
        ("apigateway_client_error", "4xx answers (ClientError)", _client_errors),
        ("apigateway_integration_error", "Integration failures (IntegrationError)", _integration_errors),
        ("apigateway_execution_error", "Gateway failures (ExecutionError)", _execution_errors),
    ]
    for name, text, value in families:
        family = CounterMetricFamily(name, text, labels=LABELS)
        for stats in routes:
            family.add_metric(stats.labels, value(stats))
        yield family


def _connects(stats: RouteStats) -> int:
    return stats.count if stats.method == "CONNECT" else 0


def _messages(stats: RouteStats) -> int:
    return stats.count if stats.method == "MESSAGE" else 0


def _client_errors(stats: RouteStats) -> int:
    return stats.errors_4xx


def _integration_errors(stats: RouteStats) -> int:
    return stats.responses.get("INTEGRATION_FAILURE", 0)


def _execution_errors(stats: RouteStats) -> int:
    return stats.errors_5xx - stats.responses.get("INTEGRATION_FAILURE", 0)


def _latency(stats: RouteStats) -> Histogram:
    return stats.latency


def _integration(stats: RouteStats) -> Histogram:
    return stats.integration


def _lambda_families(monitor: Monitor) -> Iterable[Metric]:
    runtime = monitor.runtime
    if runtime is None:
        return
    labels = ("function_name",)
    invocations = CounterMetricFamily(
        "lambda_invocations", "Invocations (AWS/Lambda Invocations)", labels=labels
    )
    errors = CounterMetricFamily("lambda_errors", "Failed invocations (Errors)", labels=labels)
    timeouts = CounterMetricFamily(
        "lambda_timeouts", "Invocations stopped at the function timeout", labels=labels
    )
    cold = CounterMetricFamily("lambda_cold_starts", "Invocations that started a new worker", labels=labels)
    running = GaugeMetricFamily(
        "lambda_concurrent_executions", "Invocations running now (ConcurrentExecutions)", labels=labels
    )
    workers = GaugeMetricFamily("lambda_workers", "Warm worker processes", labels=(*labels, "state"))
    duration = HistogramMetricFamily(
        "lambda_duration_milliseconds", "Invocation duration (Duration)", labels=labels
    )
    counts = runtime.worker_counts()
    for name, stats in sorted(runtime.stats.items()):
        invocations.add_metric([name], stats.invocations)
        errors.add_metric([name], stats.errors)
        timeouts.add_metric([name], stats.timeouts)
        cold.add_metric([name], stats.cold_starts)
        running.add_metric([name], stats.running)
        total, idle = counts.get(name, (0, 0))
        workers.add_metric([name, "idle"], idle)
        workers.add_metric([name, "busy"], total - idle)
        duration.add_metric([name], stats.duration.cumulative(), stats.duration.sum)
    yield from (invocations, errors, timeouts, cold, running, workers, duration)


def _waf_families(gateway: Gateway) -> Iterable[Metric]:
    from portway.stages.waf import WafStage

    labels = ("web_acl", "rule")
    families = {
        metric: CounterMetricFamily(f"waf_{snake}", f"Web ACL {metric} (AWS/WAFV2)", labels=labels)
        for metric, snake in (
            ("AllowedRequests", "allowed_requests"),
            ("BlockedRequests", "blocked_requests"),
            ("CountedRequests", "counted_requests"),
        )
    }
    seen: set[int] = set()
    for route in gateway.routes():
        for stage in route.stages:
            if isinstance(stage, WafStage) and id(stage.stats) not in seen:
                seen.add(id(stage.stats))
                acl = gateway.stage  # a stage has one web ACL
                for rule, values in stage.stats.snapshot().items():
                    for metric, value in values.items():
                        families[metric].add_metric((acl, rule), value)
    yield from families.values()
