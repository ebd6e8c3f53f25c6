"""The monitor's cores without sockets: histograms, per-route numbers, the dashboard's series, daily usage
(saved to and read back from every store backend), and the Prometheus text they render to."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from portway.observability.exchange import ApiIdentity
from portway.observability.histogram import BOUNDS_MS, Histogram, percentile, percentiles
from portway.observability.metrics import Monitor
from portway.observability.series import ALL_ROUTES
from portway.observability.usage import DailyUsage, day_date, day_number, group_usage, read_usage
from portway.pipeline.context import RequestContext
from portway.state.store import Store
from tests.clock import ManualClock
from tests.state.test_contract import OpenStore, open_backend  # noqa: F401 - the parametrized fixture

API = ApiIdentity(api_id="abc123", api_name="Shop", stage="prod", kind="REST")
T0 = float(int(time.time()) // 86_400 * 86_400 + 3_600)  # 01:00 UTC today


def context(path: str = "/items", key_id: str | None = None) -> RequestContext:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    ctx = RequestContext(scope, receive, path, "prod", path, {}, {})
    ctx.api_key_id = key_id
    return ctx


# -- histograms ----------------------------------------------------------------------------------------


def test_observations_land_in_the_first_bucket_that_holds_them() -> None:
    h = Histogram()
    for ms in (0.1, 0.11, 5.0, 5.01, 40_000.0):
        h.observe(ms)
    cumulative = dict(h.cumulative())
    assert cumulative["0.1"] == 1  # le is inclusive
    assert cumulative["0.2"] == 2
    assert cumulative["5.0"] == 3
    assert cumulative["7.5"] == 4
    assert cumulative["30000.0"] == 4
    assert cumulative["+Inf"] == 5
    assert h.count == 5
    assert h.sum == pytest.approx(40_010.22)
    assert len(cumulative) == len(BOUNDS_MS) + 1


def test_percentiles_interpolate_inside_the_bucket() -> None:
    h = Histogram()
    for _ in range(100):
        h.observe(12.0)  # all in (10, 15]
    assert percentile(h.counts, 0.5) == pytest.approx(12.5)
    assert percentile(h.counts, 0.99) == pytest.approx(14.95)
    assert percentiles([0] * (len(BOUNDS_MS) + 1)) == {"p50": None, "p90": None, "p99": None}
    slow = Histogram()
    slow.observe(60_000)
    assert percentile(slow.counts, 0.5) == BOUNDS_MS[-1]


# -- the monitor -------------------------------------------------------------------------------------------


def test_record_counts_errors_cache_and_usage() -> None:
    clock = ManualClock(T0)
    monitor = Monitor(clock=clock)
    items = monitor.route(API, "GET", "/items", "GET /items")
    assert monitor.route(API, "GET", "/items", "GET /items") is items  # the same after a reload
    ok = context(key_id="k1")
    ok.integration_latency_ms = 3.0
    ok.cache_status = "miss"
    ok.request_time_ns = int(T0 * 1e9)
    monitor.record(items, ok, 200, 4.0, 11, None)
    hit = context(key_id="k1")
    hit.cache_status = "hit"
    hit.request_time_ns = int(T0 * 1e9)
    monitor.record(items, hit, 200, 0.5, 11, None)
    refused = context()
    refused.request_time_ns = int(T0 * 1e9)
    monitor.record(items, refused, 429, 0.2, 30, "THROTTLED")
    monitor.record(monitor.unrouted(API), None, 403, 0.1, 42, "MISSING_AUTHENTICATION_TOKEN")
    assert (items.count, items.errors_4xx, items.errors_5xx) == (3, 1, 0)
    assert (items.cache_hits, items.cache_misses) == (1, 1)
    assert items.integration.count == 1  # only what reached the integration
    assert items.latency.count == 3
    assert items.data_processed == 52
    assert items.responses == {"THROTTLED": 1}
    summary = monitor.summary()
    assert summary["totals"]["count"] == 4
    assert summary["totals"]["throttled"] == 1
    assert summary["keys"] == [{"key_id": "k1", "count": 2, "4xx": 0, "5xx": 0, "latency_avg_ms": 2.25}]
    rows = monitor.usage.rows(day_number_of(T0), day_number_of(T0))
    assert {(r.key_id, r.route, r.count) for r in rows} == {
        ("k1", "GET /items", 2),
        ("", "GET /items", 1),
        ("", "-", 1),
    }


def day_number_of(t: float) -> int:
    return int(t // 86_400)


def test_prometheus_text_names_and_labels() -> None:
    monitor = Monitor(clock=ManualClock(T0))
    stats = monitor.route(API, "GET", "/items/{id}", "GET /items/{id}")
    for status in (200, 200, 404, 503):
        monitor.record(stats, None, status, 7.0, 0, None)
    text = generate_latest(monitor.registry).decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    labels = {
        "api_name": "Shop",
        "api_id": "abc123",
        "stage": "prod",
        "method": "GET",
        "resource": "/items/{id}",
        "route": "GET /items/{id}",
    }
    count = families["apigateway_count"]
    assert count.type == "counter"
    assert [(s.name, s.labels, s.value) for s in count.samples if s.name.endswith("_total")] == [
        ("apigateway_count_total", labels, 4.0)
    ]
    assert families["apigateway_4xxerror"].samples[0].value == 1
    assert families["apigateway_5xxerror"].samples[0].value == 1
    latency = families["apigateway_latency_milliseconds"]
    assert latency.type == "histogram"
    by_le = {s.labels["le"]: s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert by_le["5.0"] == 0
    assert by_le["7.5"] == 4
    assert "portway_access_log_dropped_lines" in families


# -- the series ----------------------------------------------------------------------------------------------


def test_series_points_per_second_and_per_minute() -> None:
    clock = ManualClock(T0)
    monitor = Monitor(clock=clock)
    a = monitor.route(API, "GET", "/a", "GET /a")
    b = monitor.route(API, "GET", "/b", "GET /b")
    monitor.sample()  # a first point: nothing yet
    for second in range(1, 121):
        clock.advance(1)
        for _ in range(second % 3):  # 0, 1 or 2 requests a second on /a
            monitor.record(a, None, 200, 2.0, 0, None)
        if second == 30:
            monitor.record(b, None, 500, 120.0, 0, None)
        monitor.sample()
    recent = monitor.series.query(300, now=clock())
    assert recent["step_s"] == 1
    assert len(recent["t"]) == 300
    assert recent["t"][-1] == int(clock())
    assert sum(recent["count"]) == 120 + 1
    assert sum(recent["5xx"]) == 1
    at_30 = recent["t"].index(int(T0) + 30)
    assert recent["count"][at_30] == 1  # 30 % 3 == 0 on /a, plus the one on /b
    assert recent["latency_p50"][at_30] is not None
    assert recent["latency_p50"][at_30] > 100
    assert recent["latency_p50"][at_30 + 1] == pytest.approx(1.5)  # /a only: in (1, 2]
    only_b = monitor.series.query(300, "GET /b", now=clock())
    assert sum(only_b["count"]) == 1
    assert only_b["latency_p99"].count(None) == 299
    hours = monitor.series.query(3600, ALL_ROUTES, now=clock())
    assert hours["step_s"] == 60
    assert len(hours["t"]) == 60
    assert sum(hours["count"]) == 121  # finished minutes plus the one in progress
    assert max(p or 0 for p in hours["latency_p99"]) > 100  # the minute with /b's slow request


# -- usage ------------------------------------------------------------------------------------------------


@pytest.fixture
def usage_days() -> tuple[int, int]:
    today = day_number_of(T0)
    return today - 1, today


async def test_usage_saved_by_two_nodes_adds_up_in_every_store(
    open_backend: OpenStore,  # noqa: F811
    usage_days: tuple[int, int],
) -> None:
    store: Store = await open_backend()
    yesterday, today = usage_days
    first, second = DailyUsage(), DailyUsage()
    first.add(yesterday, "k1", "GET /a", 0, 10.0)
    first.add(today, "k1", "GET /a", 1, 20.0)
    first.add(today, "", "GET /b", 2, 30.0)
    second.add(today, "k1", "GET /a", 0, 30.0)
    assert await first.persist(store, "node-1") == 2
    assert await second.persist(store, "node-2") == 1
    first.add(today, "k1", "GET /a", 0, 10.0)  # more, written again over node-1's own record
    assert await first.persist(store, "node-1") == 1
    rows = await read_usage(store, day_date(today), day_date(today))
    got = {(r.key_id, r.route): (r.count, r.errors_4xx, r.errors_5xx, r.latency_avg_ms) for r in rows}
    assert got == {("k1", "GET /a"): (3, 1, 0, 20.0), ("", "GET /b"): (1, 0, 1, 30.0)}
    both = await read_usage(store, day_date(yesterday), day_date(today))
    assert group_usage(both, "key") == [
        {
            "day": day_date(yesterday).isoformat(),
            "key": "k1",
            "count": 1,
            "4xx": 0,
            "5xx": 0,
            "latency_avg_ms": 10.0,
        },
        {
            "day": day_date(today).isoformat(),
            "key": "k1",
            "count": 3,
            "4xx": 1,
            "5xx": 0,
            "latency_avg_ms": 20.0,
        },
    ]
    # A record another version wrote, or garbage: skipped, never fatal.
    await store.put_record("traffic-usage", "bad", {"day": "nope", "rows": 3})
    assert len(await read_usage(store, day_date(today), day_date(today))) == 2


def test_old_days_leave_memory_once_saved() -> None:
    usage = DailyUsage()
    for day in range(10, 16):
        usage.add(day, "", "GET /a", 0, 1.0)
    assert len(usage.days) >= 4  # unsaved days stay until written
    assert day_number(day_date(12)) == 12
