"""OpenTelemetry spans of a served gateway, exported over OTLP/HTTP to a real receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import GatewayFactory, RunningApp, run_asgi
from tests.e2e.test_monitoring import API, FUNCTIONS
from tests.e2e.upstream import upstream_app
from tests.observability.otlp_receiver import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def upstream() -> Iterator[RunningApp]:
    app = run_asgi(upstream_app)
    yield app
    app.stop()


def test_spans_from_gateway_to_stages_to_integration(
    gateway_factory: GatewayFactory, receiver: OtlpReceiver, upstream: RunningApp
) -> None:
    gw = gateway_factory(
        API,
        FUNCTIONS,
        stage_variables={"upstreamPort": str(upstream.port)},
        otlp_endpoint=receiver.url,
    )
    parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_span = "00f067aa0ba902b7"
    with httpx.Client(base_url=gw.base, timeout=15) as client:
        relayed = client.get(
            "/upstream/echo", headers={"traceparent": f"00-{parent_trace}-{parent_span}-01"}
        ).json()
        assert client.get("/limited").status_code == 200
    gw.stop()  # flushes the exporter
    spans = receiver.wait_for(1)
    servers = {span.name: span for span in spans if span.kind == "SERVER"}
    proxied = servers["GET /upstream/{proxy+}"]
    assert proxied.trace_id == parent_trace  # continued from the caller's traceparent
    assert proxied.parent_id == parent_span
    assert proxied.attributes["http.route"] == "/upstream/{proxy+}"
    assert proxied.attributes["http.response.status_code"] == 200
    children = [span for span in spans if span.parent_id == proxied.span_id]
    names = sorted(span.name for span in children)
    assert "integration" in names
    assert any(name.startswith("stage ") for name in names)  # the account throttle, at least
    integration = next(span for span in children if span.name == "integration")
    # The upstream got the integration span as its parent, and the caller's trace.
    sent = dict((name, value) for name, value in relayed["headers"])
    assert sent["traceparent"].split("-")[1] == parent_trace
    assert sent["traceparent"].split("-")[2] == integration.span_id
    assert sent["x-amzn-trace-id"].startswith("Root=1-")
    limited = servers["GET /limited"]
    assert limited.trace_id != parent_trace  # a new trace for a request without a parent
