"""The admin listener's live dashboard in a real headless browser: known traffic through a real gateway, then
the page's charts drawn with data, its tables matching what was sent, and a screenshot left for people."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.cli_runner import portway_json
from tests.conftest import RunningGateway, start_gateway
from tests.e2e.browser import ARTIFACTS, launch_browser, png_size

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"
TOKEN = "s3cret"
CHARTS = ("requests", "errors", "latency", "integration", "blocked")
WAIT_MS = 20_000  # every wait on the page is bounded by this
START_TIMEOUT_S = 10.0
ROUNDS = 4
ROUND_GAP_S = 1.0

# Drawn once the page refreshed with data: every chart has points, <body> says when.
DRAWN = """() => {
  const charts = [...document.querySelectorAll('.chart[data-chart]')];
  return document.body.dataset.updated !== undefined
    && charts.length > 0
    && charts.every(c => Number(c.dataset.points) > 0);
}"""

# The route table as {route: {column: value}}, read from its cells' data-col / data-value.
ROUTE_TABLE = """() => Object.fromEntries([...document.querySelectorAll('#routes tr[data-route]')].map(tr => [
  tr.dataset.route,
  Object.fromEntries(
    [...tr.querySelectorAll('td[data-value]')].map(td => [td.dataset.col, td.dataset.value])
  ),
]))"""

CHART_STATE = """() => Object.fromEntries([...document.querySelectorAll('.chart[data-chart]')].map(c => [
  c.dataset.chart, {points: Number(c.dataset.points), max: Number(c.dataset.max)},
]))"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    yield page
    context.close()
    assert problems == [], f"the page threw: {problems}"


def admin_url(gw: RunningGateway) -> str:
    """The admin listener's address, once it accepts connections (it starts with the server, just after
    ``start_gateway`` returns)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        url = gw.service.admin_url
        admin = gw.service.admin
        if url is not None and admin is not None and admin.port:
            try:
                socket.create_connection((admin.host, admin.port), timeout=1).close()
            except OSError:
                pass
            else:
                return url
        assert time.monotonic() < deadline, "the admin listener did not come up"
        time.sleep(0.02)


def drive(gw: RunningGateway, api_key: str | None = None) -> Counter[tuple[str, int]]:
    """Known traffic over a few seconds (so the charts draw lines, not dots): a Mock route, a route refused
    without a key (403), a throttled route (429 past its burst of 3, in one burst) and a Lambda route.
    Counts by (route, status)."""
    sent: Counter[tuple[str, int]] = Counter()
    with httpx.Client(base_url=gw.base, timeout=10) as client:

        def get(route: str, path: str, times: int = 1, **kwargs: Any) -> None:
            for _ in range(times):
                sent[route, client.get(path, **kwargs).status_code] += 1

        for round_ in range(ROUNDS):
            if round_:
                time.sleep(ROUND_GAP_S)
            get("GET /open", "/open", 3)  # 12 in all
            if round_ < 3:
                get("GET /keyed", "/keyed")  # no key: 403, 3 in all
            if api_key is not None:
                get("GET /keyed", "/keyed", 2 if round_ == 0 else 1, headers={"x-api-key": api_key})  # 5
            get("GET /echo/{id}", f"/echo/{round_}")  # 4 in all
            if round_ == 1:
                get("GET /limited", "/limited", 6)
    return sent


def open_dashboard(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None
    assert response.status == 200
    page.wait_for_function(DRAWN, timeout=WAIT_MS)
    assert page.locator("#error").is_hidden()


def test_the_dashboard_draws_live_traffic(tmp_path: Path, page: Page) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(state, "usage-plans", "create", "--name", "basic", "--stage", "Traffic API:dev")
    key = portway_json(state, "keys", "create", "--name", "alice", "--plan", plan["id"])
    gw = start_gateway(API, FUNCTIONS, stage="dev", keys_state=state, admin_port=0)
    try:
        sent = drive(gw, api_key=key["value"])
        assert sent["GET /open", 200] == 12
        assert sent["GET /keyed", 403] == 3
        assert sent["GET /keyed", 200] == 5
        assert sent["GET /limited", 429] >= 1  # a burst of 3, refilled at 1/s
        assert sent["GET /echo/{id}", 200] == 4

        open_dashboard(page, admin_url(gw) + "/")
        charts = page.evaluate(CHART_STATE)
        assert set(charts) == set(CHARTS)
        assert charts["requests"]["max"] > 0
        assert charts["errors"]["max"] > 0  # the 403s and 429s
        assert charts["blocked"]["max"] > 0  # the 429s
        assert charts["latency"]["max"] > 0
        assert charts["integration"]["max"] > 0

        table = page.evaluate(ROUTE_TABLE)
        for route in ("GET /open", "GET /keyed", "GET /limited", "GET /echo/{id}"):
            count = sum(n for (name, _), n in sent.items() if name == route)
            errors = sum(n for (name, status), n in sent.items() if name == route and 400 <= status < 500)
            assert table[route]["count"] == str(count), route
            assert table[route]["4xx"] == str(errors), route
            assert table[route]["5xx"] == "0", route
        assert table["GET /limited"]["throttled"] == str(sent["GET /limited", 429])

        keys = page.locator(f'#keys tr[data-key="{key["id"]}"] td[data-col="count"]')
        assert keys.get_attribute("data-value") == "5"
        invocations = page.locator('#lambda tr[data-function="counter"] td[data-col="invocations"]')
        assert invocations.get_attribute("data-value") == "4"
        assert "Traffic API" in page.title()

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        width, height = png_size(data)
        assert width >= 1000
        assert height >= 900
        assert len(data) > 30_000  # charts and tables, not a blank page

        # One route's charts: the route's name travels URL-encoded ("GET /echo/{id}").
        before = int(page.evaluate("document.body.dataset.updated"))
        page.select_option("#route", "GET /echo/{id}")
        page.wait_for_function(
            f"Number(document.body.dataset.updated) > {before} && location.search.includes('route=')",
            timeout=WAIT_MS,
        )
        page.wait_for_function(DRAWN, timeout=WAIT_MS)
        assert page.locator("#error").is_hidden()
        assert page.evaluate(CHART_STATE)["integration"]["max"] > 0
    finally:
        gw.stop()


def test_a_protected_admin_listener_needs_the_token(page: Page) -> None:
    gw = start_gateway(API, FUNCTIONS, stage="dev", admin_port=0, admin_token=TOKEN)
    try:
        url = admin_url(gw)
        drive(gw)
        assert httpx.get(f"{url}/api/summary", timeout=10).status_code == 401
        refused = httpx.get(f"{url}/api/summary", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert refused.status_code == 401
        allowed = httpx.get(f"{url}/api/summary", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert allowed.status_code == 200

        bare = page.goto(url + "/")
        assert bare is not None
        assert bare.status == 401

        open_dashboard(page, f"{url}/?token={TOKEN}")
        assert page.evaluate(ROUTE_TABLE)["GET /open"]["count"] == "12"
    finally:
        gw.stop()


def test_a_failed_refresh_shows_the_banner(page: Page) -> None:
    gw = start_gateway(API, FUNCTIONS, stage="dev", admin_port=0)
    try:
        drive(gw)
        open_dashboard(page, admin_url(gw) + "/")
        updated = page.evaluate("document.body.dataset.updated")
        gw.stop()  # the admin listener goes with it: the next refresh fails
        banner = page.locator("#error")
        banner.wait_for(state="visible", timeout=WAIT_MS)
        assert "cannot be reached" in banner.inner_text()
        assert page.evaluate("document.body.dataset.updated") == updated  # no refresh succeeded since
    finally:
        gw.stop()
