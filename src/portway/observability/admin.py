"""The admin listener: Prometheus metrics, the dashboard and its JSON API, on a port of its own.

Off the public port on purpose: nothing here is API Gateway's, and none of it should be reachable by the
API's callers. Bound to loopback it is open; bound anywhere else it needs a token (``--admin-token`` or
``PORTWAY_ADMIN_TOKEN``), sent as ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``, which the
dashboard page passes on to its own requests).

========================  ====================================================================
``GET /``                 the dashboard (``observability/dashboard/index.html``)
``GET /static/FILE``      its scripts, styles and the vendored chart library
``GET /metrics``          Prometheus text format (metrics.py names every family)
``GET /api/summary``      totals, per-route figures, top API keys, Lambda worker pools
``GET /api/series``       ``?window=SECONDS&route=ROUTE``: counts and percentiles over time
``GET /api/usage``        ``?from=YYYY-MM-DD&to=YYYY-MM-DD&by=route|key``: this node's daily usage
``GET /healthz``          ``{"status": "ok"}``
========================  ====================================================================

aiohttp serves it on the gateway's own event loop (never on the request path), so every read sees the
numbers as the loop left them, without locks.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from portway.observability.metrics import Monitor
from portway.observability.series import ALL_ROUTES
from portway.observability.usage import day_number, group_usage

__all__ = ["DASHBOARD", "AdminServer", "admin_app", "needs_token"]

DASHBOARD = Path(__file__).parent / "dashboard"
WINDOWS = (300, 900, 3600, 86400)  # the windows the dashboard offers, in seconds
_MAX_USAGE_DAYS = 366
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def needs_token(host: str) -> bool:
    """A listener on anything but loopback must be protected."""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to anything


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"message": message}, status)


def admin_app(
    monitor: Monitor, *, token: str | None = None, title: Callable[[], str] = lambda: ""
) -> web.Application:
    """The admin application over ``monitor``; ``title`` names the API and stage on the page."""

    @web.middleware
    async def guard(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if token is not None:
            sent = request.headers.get("Authorization", "")
            given = sent[7:] if sent.startswith("Bearer ") else request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "Unauthorized")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _error(exc.status, exc.reason)
            raise

    async def page(request: web.Request) -> web.Response:
        text = (DASHBOARD / "index.html").read_text(encoding="utf-8")
        text = text.replace("{{TITLE}}", html.escape(title()))
        return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["path"]
        root = DASHBOARD.resolve()
        file = (root / name).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            return _error(404, "Not Found")
        return web.FileResponse(file)

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(monitor.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def summary(request: web.Request) -> web.Response:
        return _json(monitor.summary())

    async def series(request: web.Request) -> web.Response:
        try:
            window = int(request.query.get("window", "300"))
        except ValueError:
            return _error(400, "window: expected a number of seconds")
        if window not in WINDOWS:
            return _error(400, f"window: expected one of {', '.join(map(str, WINDOWS))}")
        route = request.query.get("route", ALL_ROUTES)
        if route != ALL_ROUTES and route not in {stats.name for stats in monitor.routes()}:
            return _error(404, f"no route {route!r}")
        return _json(monitor.series.query(window, route, now=monitor.clock()))

    async def usage(request: web.Request) -> web.Response:
        today = datetime.fromtimestamp(monitor.clock(), UTC).date()
        try:
            first = date.fromisoformat(request.query.get("from", today.isoformat()))
            last = date.fromisoformat(request.query.get("to", today.isoformat()))
        except ValueError:
            return _error(400, "from/to: expected YYYY-MM-DD")
        if last < first or (last - first).days >= _MAX_USAGE_DAYS:
            return _error(400, f"from/to: a range of 1 to {_MAX_USAGE_DAYS} days, from before to")
        by = request.query.get("by", "route")
        if by not in ("route", "key"):
            return _error(400, "by: expected route or key")
        rows = monitor.usage.rows(day_number(first), day_number(last))
        return _json(
            {"from": first.isoformat(), "to": last.isoformat(), "by": by, "items": group_usage(rows, by)}
        )

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", page)
    app.router.add_get("/static/{path:.+}", static)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/summary", summary)
    app.router.add_get("/api/series", series)
    app.router.add_get("/api/usage", usage)
    app.router.add_get("/healthz", healthz)
    return app


class AdminServer:
    """The admin application on its own listener, on the running event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> int:
        """Start listening; the port bound (``port`` 0 picks a free one)."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break
        return self.port

    async def close(self) -> None:
        await self._runner.cleanup()
