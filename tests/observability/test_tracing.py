"""Tracing end to end: real routes and stages, spans exported over OTLP/HTTP to a real receiver."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from portway.gateway import Route
from portway.observability.exchange import ApiIdentity, Exchange
from portway.observability.tracing import Tracing, TracingUnavailable
from portway.pipeline.context import RequestContext
from portway.types import Message, Response
from tests.observability.otlp_receiver import OtlpReceiver, ReceivedSpan

API = ApiIdentity(api_id="a1b2c3d4e5", api_name="Products", stage="dev", kind="REST")
RESOURCE = "/items/{id}"
CLIENT_IP = "203.0.113.7"
XRAY_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
INCOMING_TRACE = "0af7651916cd43dd8448eb211c80319c"
INCOMING_PARENT = "b7ad6b7169203331"


# --- the pieces a route is made of --------------------------------------------------------------------------


def current_span_id() -> str:
    """OpenTelemetry's current span, as a stage or an integration sees it ("" when there is none)."""
    context = trace.get_current_span().get_span_context()
    return f"{context.span_id:016x}" if context.is_valid else ""


class RecordingStage:
    """A stage that logs what ran; it may answer early or fail, and its response hook adds a header."""

    needs_body = False

    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        responds: bool = True,
        answer: int | None = None,
        fail: Exception | None = None,
        delay: float = 0.0,
    ) -> None:
        self.name = name
        self.log = log
        self.responds = responds
        self.answer = answer
        self.fail = fail
        self.delay = delay
        self.span_ids: list[str] = []  # the current span while on_request ran

    async def on_request(self, ctx: RequestContext) -> Response | None:
        await asyncio.sleep(self.delay)
        self.span_ids.append(current_span_id())
        self.log.append(f"{self.name} request")
        if self.fail is not None:
            raise self.fail
        if self.answer is not None:
            return Response(self.answer, [(b"content-type", b"application/json")], b'{"message":"no"}')
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        self.log.append(f"{self.name} response")
        response.headers.append((b"x-stage", self.name.encode()))
        return response


class EchoIntegration:
    """The terminal step: answers 200, remembering the trace headers it would send upstream."""

    needs_body = False

    def __init__(
        self,
        tracing: Tracing | None,
        log: list[str],
        *,
        fail: Exception | None = None,
        error: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.tracing = tracing
        self.log = log
        self.fail = fail
        self.error = error
        self.delay = delay
        self.upstream: dict[str, list[tuple[str, str]]] = {}  # request id → upstream trace headers
        self.span_ids: dict[str, str] = {}  # request id → current span id

    async def __call__(self, ctx: RequestContext) -> Response:
        await asyncio.sleep(self.delay)
        self.log.append("integration")
        if self.tracing is not None:
            self.upstream[ctx.request_id] = self.tracing.upstream_headers()
        self.span_ids[ctx.request_id] = current_span_id()
        if self.fail is not None:
            raise self.fail
        if self.error is not None:
            ctx.integration_error = self.error
            return Response(502, body=b'{"message": "Internal server error"}')
        return Response(200, [(b"content-type", b"text/plain")], b"item 42")

    def describe(self) -> str:
        return "echo (test)"


def make_route(
    tracing: Tracing | None,
    log: list[str],
    *stages: RecordingStage,
    fail: Exception | None = None,
    error: str | None = None,
    delay: float = 0.0,
) -> tuple[Route, EchoIntegration]:
    echo = EchoIntegration(tracing, log, fail=fail, error=error, delay=delay)
    return Route("GET", RESOURCE, echo, stages), echo


def three_stages(
    log: list[str], *, delay: float = 0.0, answer: int | None = None, fail: Exception | None = None
) -> tuple[RecordingStage, ...]:
    """api_key → throttle → validate; the throttle (which never changes a response) may answer or fail."""
    return (
        RecordingStage("api_key", log, delay=delay),
        RecordingStage("throttle", log, responds=False, delay=delay, answer=answer, fail=fail),
        RecordingStage("validate", log, delay=delay),
    )


async def _empty_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def make_ctx(path: str = "/items/42", headers: list[tuple[bytes, bytes]] | None = None) -> RequestContext:
    full = f"/dev{path}"
    scope = {
        "type": "http",
        "method": "GET",
        "path": full.replace("%20", " "),
        "raw_path": full.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"api.example"),
            (b"user-agent", b"curl/8.5.0"),
            (b"x-amzn-trace-id", f"Root={XRAY_ROOT};Parent=53995c3f42cd8ad8;Sampled=1".encode()),
            *(headers or []),
        ],
        "client": (CLIENT_IP, 50123),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "http_version": "1.1",
    }
    return RequestContext(scope, _empty_body, path, "dev", RESOURCE, {"id": "42"}, {})


async def serve(tracing: Tracing, route: Route, ctx: RequestContext, route_name: str = RESOURCE) -> Response:
    """What the gateway does with tracing on: start, run (a failure costs a 500), send, end."""
    request = tracing.start_request(ctx, API, route_name)
    error_type = None
    try:
        response = await tracing.run_route(route, ctx, request)
    except Exception:
        error_type = "API_CONFIGURATION_ERROR"
        response = Response(500, body=b'{"message": null}', error_type=error_type)
    if response.status == 429:
        error_type = "THROTTLED"
    tracing.end_request(
        request, Exchange(ctx, API, None, response.status, len(response.body), 1.5, error_type)
    )
    return response


# --- fixtures and helpers -----------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def tracing(receiver: OtlpReceiver) -> Iterator[Tracing]:
    configured = Tracing.configure(receiver.url, environ={})
    assert configured is not None
    yield configured
    configured.shutdown()


def exported(tracing: Tracing, receiver: OtlpReceiver, count: int) -> list[ReceivedSpan]:
    """Flush everything (shutdown sends what is queued), then what the receiver got: exactly ``count``."""
    tracing.shutdown()
    spans = receiver.wait_for(count)
    assert len(spans) == count, [s.name for s in spans]
    return spans


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [s for s in spans if s.name == name]
    return span


def by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    traces: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span)
    return traces


def sampled(traceparent: str) -> bool:
    """The W3C sampled flag (a new trace also has level 2's random-trace-id flag: "03")."""
    return bool(int(traceparent.rsplit("-", 1)[1], 16) & 0x01)


def no_current_span() -> bool:
    return not trace.get_current_span().get_span_context().is_valid


# --- one request --------------------------------------------------------------------------------------------


async def test_a_request_is_one_trace_of_server_stage_and_integration_spans(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    log: list[str] = []
    stages = three_stages(log)
    route, echo = make_route(tracing, log, *stages)
    ctx = make_ctx("/items/a%20b")

    response = await serve(tracing, route, ctx)

    assert response.status == 200
    assert no_current_span()  # nothing leaks into the caller's context
    spans = exported(tracing, receiver, 5)
    assert len(by_trace(spans)) == 1
    server = named(spans, "GET /items/{id}")  # the route template, never the raw path
    assert (server.kind, server.parent_id, server.status) == ("SERVER", "", "UNSET")
    assert server.attributes == {
        "http.request.method": "GET",
        "url.path": "/dev/items/a%20b",
        "url.scheme": "http",
        "http.route": "/items/{id}",
        "client.address": CLIENT_IP,
        "user_agent.original": "curl/8.5.0",
        "aws.request_id": ctx.request_id,
        "aws.xray.trace_id": XRAY_ROOT,
        "aws.api_id": "a1b2c3d4e5",
        "aws.stage": "dev",
        "http.response.status_code": 200,
    }
    assert server.resource["service.name"] == "portway"
    assert server.scope == "portway"
    for stage in stages:
        span = named(spans, f"stage {stage.name}")
        assert (span.kind, span.parent_id, span.status) == ("INTERNAL", server.span_id, "UNSET")
        assert span.attributes == {}
        assert stage.span_ids == [span.span_id]  # the stage ran inside its own span
    integration = named(spans, "integration")
    assert (integration.kind, integration.parent_id) == ("CLIENT", server.span_id)
    assert integration.attributes == {"portway.integration": "echo (test)", "http.response.status_code": 200}
    assert echo.span_ids == {ctx.request_id: integration.span_id}
    [(name, value)] = echo.upstream[ctx.request_id]
    assert name == "traceparent"
    assert value.startswith(f"00-{server.trace_id}-{integration.span_id}-")
    assert sampled(value)


async def test_run_route_answers_exactly_as_route_run(tracing: Tracing) -> None:
    traced_log: list[str] = []
    plain_log: list[str] = []
    traced_route, _ = make_route(tracing, traced_log, *three_stages(traced_log))
    plain_route, _ = make_route(None, plain_log, *three_stages(plain_log))

    ctx = make_ctx()
    request = tracing.start_request(ctx, API, RESOURCE)
    traced = await tracing.run_route(traced_route, ctx, request)
    plain = await plain_route.run(make_ctx())

    assert traced == plain
    assert traced.headers[-2:] == [(b"x-stage", b"validate"), (b"x-stage", b"api_key")]
    assert (
        traced_log
        == plain_log
        == [
            "api_key request",
            "throttle request",
            "validate request",
            "integration",
            "validate response",  # the throttle never changes a response: its hook is skipped
            "api_key response",
        ]
    )


async def test_a_route_without_stages_has_only_the_integration_span(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    route, _ = make_route(tracing, [])

    await serve(tracing, route, make_ctx())

    spans = exported(tracing, receiver, 2)
    assert named(spans, "integration").parent_id == named(spans, "GET /items/{id}").span_id


async def test_a_stage_that_answers_early_ends_the_trace_there(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    log: list[str] = []
    route, echo = make_route(tracing, log, *three_stages(log, answer=429))

    response = await serve(tracing, route, make_ctx())

    assert response.status == 429
    assert response.headers[-1] == (b"x-stage", b"api_key")  # the stages that ran still unwound
    assert log == ["api_key request", "throttle request", "api_key response"]
    assert echo.upstream == {}
    spans = exported(tracing, receiver, 3)  # no span for the stage after it, none for the integration
    assert sorted(s.name for s in spans) == ["GET /items/{id}", "stage api_key", "stage throttle"]
    throttle = named(spans, "stage throttle")
    assert throttle.attributes == {
        "portway.answered": True,
        "http.response.status_code": 429,
    }
    assert "portway.answered" not in named(spans, "stage api_key").attributes
    server = named(spans, "GET /items/{id}")
    assert server.status == "UNSET"  # a 4xx is the client's, not the server's, error
    assert server.attributes["http.response.status_code"] == 429
    assert server.attributes["portway.error_type"] == "THROTTLED"


async def test_a_failing_stage_records_the_exception_and_the_request_ends_in_error(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    log: list[str] = []
    route, _ = make_route(tracing, log, *three_stages(log, fail=RuntimeError("store unreachable")))
    ctx = make_ctx()

    request = tracing.start_request(ctx, API, RESOURCE)
    with pytest.raises(RuntimeError, match="store unreachable"):
        await tracing.run_route(route, ctx, request)
    assert no_current_span()
    tracing.end_request(request, Exchange(ctx, API, None, 500, 17, 1.0, "API_CONFIGURATION_ERROR"))

    spans = exported(tracing, receiver, 3)
    throttle = named(spans, "stage throttle")
    assert (throttle.status, throttle.status_message) == ("ERROR", "RuntimeError: store unreachable")
    assert throttle.attributes["error.type"] == "RuntimeError"
    [(event, attributes)] = throttle.events
    assert event == "exception"
    assert attributes["exception.type"] == "RuntimeError"
    assert attributes["exception.message"] == "store unreachable"
    server = named(spans, "GET /items/{id}")
    assert server.status == "ERROR"
    assert server.attributes["error.type"] == "RuntimeError"
    assert server.attributes["portway.error_type"] == "API_CONFIGURATION_ERROR"
    assert server.attributes["http.response.status_code"] == 500


async def test_a_failing_integration_records_the_exception(tracing: Tracing, receiver: OtlpReceiver) -> None:
    log: list[str] = []
    route, _ = make_route(tracing, log, *three_stages(log), fail=ConnectionResetError("upstream gone"))

    response = await serve(tracing, route, make_ctx())

    assert response.status == 500
    assert no_current_span()
    spans = exported(tracing, receiver, 5)
    integration = named(spans, "integration")
    assert integration.status == "ERROR"
    assert integration.events[0][1]["exception.type"] == "ConnectionResetError"
    assert named(spans, "GET /items/{id}").status == "ERROR"
    assert {named(spans, f"stage {n}").status for n in ("api_key", "throttle", "validate")} == {"UNSET"}


async def test_an_integration_error_marks_its_span(tracing: Tracing, receiver: OtlpReceiver) -> None:
    route, _ = make_route(tracing, [], error="Lambda.FunctionError")

    response = await serve(tracing, route, make_ctx())

    assert response.status == 502
    integration = named(exported(tracing, receiver, 2), "integration")
    assert (integration.status, integration.status_message) == ("ERROR", "Lambda.FunctionError")
    assert integration.attributes["http.response.status_code"] == 502


async def test_an_unrouted_request_is_named_by_its_method(tracing: Tracing, receiver: OtlpReceiver) -> None:
    ctx = make_ctx("/nowhere")
    request = tracing.start_request(ctx, API, "")
    tracing.end_request(request, Exchange(ctx, API, None, 403, 42, 0.2, "MISSING_AUTHENTICATION_TOKEN"))

    [span] = exported(tracing, receiver, 1)
    assert span.name == "GET"
    assert "http.route" not in span.attributes
    assert span.attributes["url.path"] == "/dev/nowhere"


# --- trace context from and to other services ---------------------------------------------------------------


async def test_an_incoming_traceparent_continues_the_callers_trace(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    log: list[str] = []
    route, echo = make_route(tracing, log, *three_stages(log))
    ctx = make_ctx(
        headers=[
            (b"traceparent", f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01".encode()),
            (b"tracestate", b"congo=t61rcWkgMzE"),
        ]
    )

    await serve(tracing, route, ctx)

    spans = exported(tracing, receiver, 5)
    assert {s.trace_id for s in spans} == {INCOMING_TRACE}
    server = named(spans, "GET /items/{id}")
    assert server.parent_id == INCOMING_PARENT
    integration = named(spans, "integration")
    assert echo.upstream[ctx.request_id] == [
        ("traceparent", f"00-{INCOMING_TRACE}-{integration.span_id}-01"),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]


async def test_an_unsampled_caller_gets_no_spans_but_its_trace_goes_upstream(
    tracing: Tracing, receiver: OtlpReceiver
) -> None:
    log: list[str] = []
    route, echo = make_route(tracing, log, *three_stages(log))
    unsampled = make_ctx(headers=[(b"traceparent", f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-00".encode())])
    sampled = make_ctx()

    await serve(tracing, route, unsampled)
    await serve(tracing, route, sampled)

    spans = exported(tracing, receiver, 5)  # the sampled request's only
    assert named(spans, "GET /items/{id}").attributes["aws.request_id"] == sampled.request_id
    [(name, value)] = echo.upstream[unsampled.request_id]
    version, trace_id, parent_id, flags = value.split("-")
    assert (name, version, trace_id, flags) == ("traceparent", "00", INCOMING_TRACE, "00")
    assert parent_id not in (INCOMING_PARENT, "0" * 16)


async def test_a_sampler_that_drops_requests_still_runs_them_and_propagates(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")  # the SDK reads its sampler from the process
    tracing = Tracing.configure(receiver.url, environ={})
    assert tracing is not None
    log: list[str] = []
    route, echo = make_route(tracing, log, *three_stages(log))
    ctx = make_ctx()

    response = await serve(tracing, route, ctx)

    assert response.status == 200
    assert log[-2:] == ["validate response", "api_key response"]
    assert no_current_span()
    [(name, value)] = echo.upstream[ctx.request_id]
    assert name == "traceparent"
    assert not sampled(value)
    assert exported(tracing, receiver, 0) == []


@pytest.mark.parametrize(
    "traceparent",
    [b"garbage", b"00-00000000000000000000000000000000-b7ad6b7169203331-01", b"00-0af765-b7ad-01"],
)
async def test_an_invalid_traceparent_starts_a_new_trace(
    tracing: Tracing, receiver: OtlpReceiver, traceparent: bytes
) -> None:
    route, _ = make_route(tracing, [])

    await serve(tracing, route, make_ctx(headers=[(b"traceparent", traceparent)]))

    server = named(exported(tracing, receiver, 2), "GET /items/{id}")
    assert server.parent_id == ""
    assert server.trace_id not in (INCOMING_TRACE, "0" * 32)


def test_there_are_no_upstream_headers_outside_a_span(tracing: Tracing) -> None:
    assert tracing.upstream_headers() == []


# --- concurrency --------------------------------------------------------------------------------------------


async def test_concurrent_requests_make_separate_traces(tracing: Tracing, receiver: OtlpReceiver) -> None:
    log: list[str] = []
    # Different delays interleave the requests' stages and integrations on the loop.
    routes = [
        make_route(tracing, log, *three_stages(log, delay=(i % 4) * 0.002), delay=(3 - i % 4) * 0.002)
        for i in range(20)
    ]
    contexts = [make_ctx(f"/items/{i}") for i in range(20)]

    responses = await asyncio.gather(
        *(serve(tracing, route, ctx) for (route, _), ctx in zip(routes, contexts, strict=True))
    )

    assert [r.status for r in responses] == [200] * 20
    assert no_current_span()
    spans = exported(tracing, receiver, 100)
    traces = by_trace(spans)
    assert len(traces) == 20
    seen_requests = set()
    for (_, echo), ctx in zip(routes, contexts, strict=True):
        [trace_spans] = [
            t for t in traces.values() if any(s.attributes.get("aws.request_id") == ctx.request_id for s in t)
        ]
        server = named(trace_spans, "GET /items/{id}")
        assert server.attributes["url.path"] == f"/dev{ctx.path}"
        assert server.parent_id == ""
        children = [s for s in trace_spans if s is not server]
        assert sorted(s.name for s in children) == [
            "integration",
            "stage api_key",
            "stage throttle",
            "stage validate",
        ]
        assert {s.parent_id for s in children} == {server.span_id}
        integration = named(trace_spans, "integration")
        [(_, value)] = echo.upstream[ctx.request_id]
        assert value.startswith(f"00-{server.trace_id}-{integration.span_id}-")
        seen_requests.add(ctx.request_id)
    assert len(seen_requests) == 20
    span_ids = {s.span_id for s in spans}
    assert len(span_ids) == 100
    assert {s.parent_id for s in spans} - span_ids == {""}  # no span points into another request's trace


# --- configuration ------------------------------------------------------------------------------------------


def test_tracing_is_off_without_an_endpoint() -> None:
    assert Tracing.configure(None, environ={}) is None
    assert Tracing.configure("", environ={"OTEL_SERVICE_NAME": "shop"}) is None


def test_tracing_is_off_when_the_sdk_is_disabled(receiver: OtlpReceiver) -> None:
    environ = {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
    assert Tracing.configure(None, environ=environ) is None
    assert Tracing.configure(receiver.url, environ=environ) is None


def request_through(tracing: Tracing) -> None:
    ctx = make_ctx()
    request = tracing.start_request(ctx, API, RESOURCE)
    tracing.end_request(request, Exchange(ctx, API, None, 200, 7, 0.3))


@pytest.mark.parametrize("suffix", ["", "/", "/v1/traces", "/v1/traces/"])
def test_an_endpoint_is_a_base_url_or_the_traces_url(receiver: OtlpReceiver, suffix: str) -> None:
    tracing = Tracing.configure(receiver.url + suffix, environ={})
    assert tracing is not None
    assert tracing.endpoint == f"{receiver.url}/v1/traces"
    request_through(tracing)
    exported(tracing, receiver, 1)
    assert receiver.paths == ["/v1/traces"]


def test_the_endpoint_comes_from_the_environment(receiver: OtlpReceiver) -> None:
    tracing = Tracing.configure(
        None, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": f"{receiver.url}/", "OTEL_SERVICE_NAME": "shop"}
    )
    assert tracing is not None
    request_through(tracing)
    [span] = exported(tracing, receiver, 1)
    assert receiver.paths == ["/v1/traces"]
    assert span.resource["service.name"] == "shop"


def test_the_traces_endpoint_variable_is_used_as_it_is(receiver: OtlpReceiver) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/collector/traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",  # the signal's own variable wins
    }
    tracing = Tracing.configure(None, service_name="orders", environ=environ)
    assert tracing is not None
    request_through(tracing)
    [span] = exported(tracing, receiver, 1)
    assert receiver.paths == ["/collector/traces"]
    assert span.resource["service.name"] == "orders"


def test_an_explicit_endpoint_wins_over_the_environment(receiver: OtlpReceiver) -> None:
    tracing = Tracing.configure(
        receiver.url, environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1"}
    )
    assert tracing is not None
    assert tracing.endpoint == f"{receiver.url}/v1/traces"
    tracing.shutdown()


@pytest.mark.parametrize("endpoint", ["localhost:4318", "ftp://collector/v1/traces", "http:///v1/traces"])
def test_an_endpoint_must_be_an_http_url(endpoint: str) -> None:
    with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
        Tracing.configure(endpoint, environ={})
    with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
        Tracing.configure(None, environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint})


def test_without_the_otel_extra_configuring_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # What a missing package looks like to `import`: a None in sys.modules stops the import.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(TracingUnavailable, match=r"pip install 'portway\[otel\]'"):
        Tracing.configure("http://127.0.0.1:4318", environ={})


def test_shutdown_twice_is_harmless(receiver: OtlpReceiver) -> None:
    tracing = Tracing.configure(receiver.url, environ={})
    assert tracing is not None
    request_through(tracing)
    tracing.shutdown()
    tracing.shutdown()
    assert len(receiver.wait_for(1)) == 1
