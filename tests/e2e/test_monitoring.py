"""Monitoring end to end: known traffic in, then the admin listener's metrics, summary, series and usage
read back."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from portway.service import AdminTokenRequired, Service, ServiceOptions
from tests.cli_runner import portway_json
from tests.conftest import (
    GatewayFactory,
    GatewayStartError,
    RunningApp,
    RunningGateway,
    run_asgi,
    start_gateway,
)
from tests.e2e.upstream import upstream_app

HERE = Path(__file__).parent / "monitoring"
API = HERE / "api.yaml"
FUNCTIONS = HERE / "functions.yaml"
LABELS = {"api_name": "Monitored API", "stage": "dev"}


def metric_samples(admin_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, by (sample name, labels)."""
    text = httpx.get(f"{admin_url}/metrics", timeout=10).text
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (0 when there is none)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, f"{name} {labels}: {len(found)} samples"
    return found[0] if found else 0.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningApp]:
    app = run_asgi(upstream_app)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def monitored(upstream: RunningApp) -> Iterator[RunningGateway]:
    gw = start_gateway(
        API,
        FUNCTIONS,
        stage="dev",
        stage_variables={"upstreamPort": str(upstream.port)},
        admin_port=0,
        account_limit=None,
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def traffic(monitored: RunningGateway) -> dict[str, list[int]]:
    """Known traffic, once for the module: the statuses each request got, by request."""
    got: dict[str, list[int]] = {}
    with httpx.Client(base_url=monitored.base, timeout=15) as client:

        def call(path: str, times: int = 1, **headers: str) -> None:
            for _ in range(times):
                got.setdefault(path, []).append(client.get(path, headers=headers).status_code)

        call("/ok", 5)
        call("/items/1", 3)
        call("/items/2")
        call("/gone", 2)
        call("/nowhere")
        call("/limited", 4)
        call("/fail")
        call("/cached", 3)
        call("/keyed")
    # Three at once on a function with one warm worker: two of them start a new worker (cold starts).
    statuses: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: statuses.append(httpx.get(f"{monitored.base}/slow", timeout=15).status_code)
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    got["/slow"] = statuses
    return got


def test_the_traffic_got_the_answers_it_should(traffic: dict[str, list[int]]) -> None:
    assert traffic["/ok"] == [200] * 5
    assert traffic["/gone"] == [404, 404]
    assert traffic["/nowhere"] == [403]
    assert traffic["/limited"] == [200, 200, 429, 429]
    assert traffic["/fail"] == [502]
    assert traffic["/cached"] == [200] * 3
    assert traffic["/keyed"] == [403]
    assert traffic["/slow"] == [200] * 3


def test_counts_and_errors_per_route_template(
    monitored: RunningGateway, traffic: dict[str, list[int]]
) -> None:
    assert monitored.service.admin_url is not None
    samples = metric_samples(monitored.service.admin_url)
    count = "apigateway_count_total"
    assert value(samples, count, route="GET /ok", method="GET", resource="/ok", **LABELS) == 5
    # Per route template, never per raw path: /items/1 and /items/2 are one series.
    assert value(samples, count, route="GET /items/{id}", resource="/items/{id}") == 4
    assert not any("/items/1" in dict(ls).get("resource", "") for _, ls in samples)
    assert value(samples, count, route="GET /gone") == 2
    assert value(samples, "apigateway_4xxerror_total", route="GET /gone") == 2
    assert value(samples, "apigateway_5xxerror_total", route="GET /gone") == 0
    # A request no route took: counted, under "-".
    assert value(samples, count, route="-", method="-", resource="-") == 1
    assert value(samples, "apigateway_4xxerror_total", route="-") == 1
    assert (
        value(
            samples,
            "portway_gateway_responses_total",
            route="-",
            response_type="MISSING_AUTHENTICATION_TOKEN",
        )
        == 1
    )
    # Throttling: two admitted, two refused.
    assert value(samples, count, route="GET /limited") == 4
    assert value(samples, "apigateway_4xxerror_total", route="GET /limited") == 2
    assert value(samples, "portway_throttled_requests_total", route="GET /limited") == 2
    assert (
        value(samples, "portway_gateway_responses_total", route="GET /limited", response_type="THROTTLED")
        == 2
    )
    # A failing Lambda function: a 5XX for the route, an error for the function.
    assert value(samples, "apigateway_5xxerror_total", route="GET /fail") == 1
    assert value(samples, "lambda_invocations_total", function_name="fail") == 1
    assert value(samples, "lambda_errors_total", function_name="fail") == 1
    # The cache: a miss, then hits.
    assert value(samples, "apigateway_cache_miss_count_total", route="GET /cached") == 1
    assert value(samples, "apigateway_cache_hit_count_total", route="GET /cached") == 2
    assert value(samples, "apigateway_4xxerror_total", route="GET /keyed") == 1
    assert (
        value(samples, "portway_gateway_responses_total", route="GET /keyed", response_type="INVALID_API_KEY")
        == 1
    )


def test_latency_histograms_hold_the_observed_latencies(
    monitored: RunningGateway, traffic: dict[str, list[int]]
) -> None:
    assert monitored.service.admin_url is not None
    samples = metric_samples(monitored.service.admin_url)
    for name in ("apigateway_latency_milliseconds", "apigateway_integration_latency_milliseconds"):
        # The slow handler sleeps 400 ms: nothing of it is at or under 300 ms, all of it is by 30 s.
        assert value(samples, f"{name}_count", route="GET /slow") == 3
        assert value(samples, f"{name}_bucket", route="GET /slow", le="300.0") == 0
        assert value(samples, f"{name}_bucket", route="GET /slow", le="+Inf") == 3
        assert value(samples, f"{name}_sum", route="GET /slow") >= 3 * 400
    # Every request of a route is in its latency histogram; buckets are cumulative.
    assert value(samples, "apigateway_latency_milliseconds_count", route="GET /ok") == 5
    buckets = sorted(
        (float(dict(ls)["le"]), v)
        for (n, ls), v in samples.items()
        if n == "apigateway_latency_milliseconds_bucket" and dict(ls)["route"] == "GET /ok"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1][1] == 5
    # The Mock route answers without an integration call elsewhere: its integration latency is tiny.
    assert (
        value(samples, "apigateway_integration_latency_milliseconds_bucket", route="GET /ok", le="5.0") == 5
    )
    # Lambda: three invocations of slow, two of which had to start a worker; none running now.
    assert value(samples, "lambda_invocations_total", function_name="slow") == 3
    assert value(samples, "lambda_cold_starts_total", function_name="slow") == 2
    assert value(samples, "lambda_concurrent_executions", function_name="slow") == 0
    assert value(samples, "lambda_duration_milliseconds_bucket", function_name="slow", le="300.0") == 0
    assert value(samples, "lambda_workers", function_name="slow", state="idle") == 3


def test_summary_and_series(monitored: RunningGateway, traffic: dict[str, list[int]]) -> None:
    admin = monitored.service.admin_url
    summary = httpx.get(f"{admin}/api/summary", timeout=10).json()
    assert summary["api"]["name"] == "Monitored API"
    assert summary["api"]["stage"] == "dev"
    totals = summary["totals"]
    sent = sum(len(statuses) for statuses in traffic.values())
    assert totals["count"] == sent
    assert totals["throttled"] == 2
    assert totals["cache_hits"] == 2
    assert totals["5xx"] == 1
    routes = {row["route"]: row for row in summary["routes"]}
    assert routes["GET /items/{id}"]["count"] == 4
    assert routes["GET /slow"]["latency"]["p50"] >= 300
    slow = next(row for row in summary["lambda"] if row["function"] == "slow")
    assert slow["invocations"] == 3
    assert slow["cold_starts"] == 2
    # The series: one point a second; within a couple of seconds every request is in it.
    deadline = time.monotonic() + 5
    while True:
        series = httpx.get(f"{admin}/api/series", params={"window": 300}, timeout=10).json()
        if sum(series["count"]) == sent or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert series["step_s"] == 1
    assert len(series["t"]) == 300
    assert sum(series["count"]) == sent
    assert sum(series["throttled"]) == 2
    assert sum(series["5xx"]) == 1
    assert any(p is not None and p >= 300 for p in series["latency_p99"])
    one = httpx.get(f"{admin}/api/series", params={"window": 900, "route": "GET /gone"}, timeout=10).json()
    assert sum(one["count"]) == 2
    assert sum(one["4xx"]) == 2
    hours = httpx.get(f"{admin}/api/series", params={"window": 3600}, timeout=10).json()
    assert hours["step_s"] == 60
    assert len(hours["t"]) == 60
    assert sum(hours["count"]) == sent  # the minute in progress is included
    unknown = httpx.get(f"{admin}/api/series", params={"route": "GET /nope"}, timeout=10)
    assert unknown.status_code == 404
    assert httpx.get(f"{admin}/api/series", params={"window": 7}, timeout=10).status_code == 400
    assert httpx.get(f"{admin}/healthz", timeout=10).json() == {"status": "ok"}


def test_usage_by_route_from_the_admin_api(monitored: RunningGateway, traffic: dict[str, list[int]]) -> None:
    usage = httpx.get(f"{monitored.service.admin_url}/api/usage", params={"by": "route"}, timeout=10).json()
    rows = {row["route"]: row for row in usage["items"]}
    assert rows["GET /gone"]["count"] == 2
    assert rows["GET /gone"]["4xx"] == 2
    assert rows["GET /fail"]["5xx"] == 1
    assert rows["GET /slow"]["latency_avg_ms"] >= 300
    bad = httpx.get(f"{monitored.service.admin_url}/api/usage", params={"from": "yesterday"}, timeout=10)
    assert bad.status_code == 400


def test_the_trace_reaches_the_lambda_and_the_upstream(monitored: RunningGateway) -> None:
    with httpx.Client(base_url=monitored.base, timeout=15) as client:
        made = client.get("/traced").json()
        assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", made["env"])
        assert made["header"] == made["env"]  # the event's header is the environment's trace
        sent = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
        kept = client.get("/traced", headers={"X-Amzn-Trace-Id": sent}).json()
        assert kept["env"] == sent
        assert kept["header"] == sent
        relayed = client.get("/upstream/echo", headers={"X-Amzn-Trace-Id": sent}).json()
        headers = [value for name, value in relayed["headers"] if name == "x-amzn-trace-id"]
        assert headers == [sent]
        fresh = client.get("/upstream/echo").json()
        made_up = [value for name, value in fresh["headers"] if name == "x-amzn-trace-id"]
        assert len(made_up) == 1
        assert made_up[0].startswith("Root=1-")


def test_usage_per_key_is_saved_and_read_by_portway_usage(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(state, "usage-plans", "create", "--name", "basic", "--stage", "Monitored API:dev")
    key = portway_json(state, "keys", "create", "--name", "alice", "--plan", plan["id"])
    gw = gateway_factory(API, FUNCTIONS, keys_state=state, admin_port=0, account_limit=None)
    with httpx.Client(base_url=gw.base, timeout=15) as client:
        for _ in range(3):
            assert client.get("/keyed", headers={"x-api-key": key["value"]}).status_code == 200
        assert client.get("/keyed", headers={"x-api-key": "wrong"}).status_code == 403
    keys = httpx.get(f"{gw.service.admin_url}/api/summary", timeout=10).json()["keys"]
    assert keys == [
        {"key_id": key["id"], "count": 3, "4xx": 0, "5xx": 0, "latency_avg_ms": keys[0]["latency_avg_ms"]}
    ]
    gw.stop()  # a stopping gateway writes what it counted
    today = time.strftime("%Y-%m-%d", time.gmtime())
    by_key = portway_json(state, "usage", "--by", "key", "--from", today, "--to", today)
    assert [(row["key"], row["count"]) for row in by_key["items"]] == [(key["id"], 3)]
    by_route = portway_json(state, "usage", "--by", "route", "--from", today, "--to", today)
    assert {row["route"]: row["count"] for row in by_route["items"]}["GET /keyed"] == 4
    # A second process (a restart, or another node) adds its own record; readers add them up.
    again = gateway_factory(API, FUNCTIONS, keys_state=state, account_limit=None)
    assert (
        httpx.get(f"{again.base}/keyed", headers={"x-api-key": key["value"]}, timeout=15).status_code == 200
    )
    again.stop()
    by_key = portway_json(state, "usage", key["id"], "--by", "route", "--from", today, "--to", today)
    assert [(row["route"], row["count"]) for row in by_key["items"]] == [("GET /keyed", 4)]


def test_access_log_lines_follow_the_stage_format(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    log = tmp_path / "logs" / "access.log"
    gw = gateway_factory(API, FUNCTIONS, stage="logged", access_log=str(log), metrics=False)
    ids = []
    with httpx.Client(base_url=gw.base, timeout=15) as client:
        for path in ("/ok", "/items/7", "/nowhere"):
            ids.append(client.get(path).headers["x-amzn-RequestId"])
    gw.stop()
    lines = log.read_text().splitlines()
    assert lines == [
        f"{ids[0]} GET /ok 200 -",
        f"{ids[1]} GET /items/{{id}} 200 -",
        f"{ids[2]} GET - 403 -",
    ]


def test_a_bad_access_log_format_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(GatewayStartError) as caught:
        start_gateway(API, FUNCTIONS, stage="badlog", access_log=str(tmp_path / "a.log"))
    text = str(caught.value)
    assert "stages.badlog.accessLogSettings.format" in text
    assert "nosuchthing" in text


def test_the_admin_listener_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(AdminTokenRequired, match="token"):
        Service(ServiceOptions(definition=API, functions=FUNCTIONS, admin_host="0.0.0.0", admin_port=0))


def test_a_token_guards_every_admin_path(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, admin_port=0, admin_token="s3cret")
    admin = gw.service.admin_url
    for path in ("/metrics", "/api/summary", "/", "/static/dashboard.js"):
        refused = httpx.get(f"{admin}{path}", timeout=10)
        assert refused.status_code == 401, path
        assert refused.json() == {"message": "Unauthorized"}
        wrong = httpx.get(f"{admin}{path}", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
    assert (
        httpx.get(f"{admin}/metrics", headers={"Authorization": "Bearer s3cret"}, timeout=10).status_code
        == 200
    )
    assert httpx.get(f"{admin}/api/summary", params={"token": "s3cret"}, timeout=10).status_code == 200


def test_metrics_off_means_no_monitor(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, metrics=False, admin_port=0)
    assert gw.service.resources.monitor is None
    assert gw.service.admin_url is None
    assert gw.service.app is not None
    assert gw.gateway.observer is None
    assert httpx.get(f"{gw.base}/ok", timeout=10).status_code == 200
