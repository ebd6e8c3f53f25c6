"""The dashboard's time series: per-second points for the last 15 minutes, per-minute for the last day.

Once a second :meth:`Series.sample` reads every route's running totals and keeps what changed since the last
sample, reduced to the counts and latency percentiles of that second (for each route that had requests, and
for all routes together). Minutes are made from the same deltas, their histograms summed before the
percentiles are taken, so a minute's p99 is a real p99 and not an average of per-second ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from portway.observability.histogram import percentile

if TYPE_CHECKING:
    from portway.observability.metrics import RouteStats

__all__ = ["ALL_ROUTES", "Series"]

ALL_ROUTES = ""  # the point of every route together
SECONDS = 900  # per-second points kept: 15 minutes
MINUTES = 1440  # per-minute points kept: 24 hours

_THROTTLED = frozenset({"THROTTLED", "QUOTA_EXCEEDED"})
_WAF = frozenset({"WAF_FILTERED"})

# A point: count, 4xx, 5xx, throttled, waf_blocked, then p50, p90, p99 of latency and of integration latency.
Point = tuple[
    int,
    int,
    int,
    int,
    int,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
]
_FIELDS = ("count", "4xx", "5xx", "throttled", "waf_blocked")
_PERCENTILES = (
    "latency_p50",
    "latency_p90",
    "latency_p99",
    "integration_p50",
    "integration_p90",
    "integration_p99",
)


class _Delta:
    """What changed in one route (or all) over one interval: counts and histogram bucket counts."""

    __slots__ = ("counts", "integration", "latency")

    def __init__(self, width: int) -> None:
        self.counts = [0, 0, 0, 0, 0]
        self.latency = [0] * width
        self.integration = [0] * width

    def add(self, other: _Delta) -> None:
        _add(self.counts, other.counts)
        _add(self.latency, other.latency)
        _add(self.integration, other.integration)

    def point(self) -> Point:
        lat, integ = self.latency, self.integration
        c = self.counts
        return (
            c[0], c[1], c[2], c[3], c[4],
            percentile(lat, 0.5), percentile(lat, 0.9), percentile(lat, 0.99),
            percentile(integ, 0.5), percentile(integ, 0.9), percentile(integ, 0.99),
        )  # fmt: skip


def _add(into: list[int], values: Sequence[int]) -> None:
    for index, value in enumerate(values):
        if value:
            into[index] += value


class Series:
    def __init__(self, seconds: int = SECONDS, minutes: int = MINUTES) -> None:
        self.seconds: deque[tuple[int, dict[str, Point]]] = deque(maxlen=seconds)
        self.minutes: deque[tuple[int, dict[str, Point]]] = deque(maxlen=minutes)
        self._last: dict[int, tuple[list[int], list[int], list[int]]] = {}  # per RouteStats: totals seen
        self._minute: int | None = None
        self._minute_deltas: dict[str, _Delta] = {}

    def sample(self, now: float, routes: Iterable[RouteStats]) -> None:
        second = int(now)
        deltas: dict[str, _Delta] = {}
        total: _Delta | None = None
        for stats in routes:
            counts = [
                stats.count,
                stats.errors_4xx,
                stats.errors_5xx,
                stats.of_types(_THROTTLED),
                stats.of_types(_WAF),
            ]
            before = self._last.get(id(stats))
            latency, integration = stats.latency.counts, stats.integration.counts
            self._last[id(stats)] = (counts, list(latency), list(integration))
            if before is None:
                before = ([0] * 5, [0] * len(latency), [0] * len(integration))
            if counts[0] == before[0][0]:
                continue  # no request on this route in the interval
            delta = _Delta(len(latency))
            delta.counts = [a - b for a, b in zip(counts, before[0], strict=True)]
            delta.latency = [a - b for a, b in zip(latency, before[1], strict=True)]
            delta.integration = [a - b for a, b in zip(integration, before[2], strict=True)]
            if total is None:
                total = _Delta(len(latency))
            total.add(delta)
            deltas[stats.name] = _merge(deltas.get(stats.name), delta)
        if total is not None:
            deltas[ALL_ROUTES] = total
        self.seconds.append((second, {name: delta.point() for name, delta in deltas.items()}))
        minute = second // 60 * 60
        if self._minute is not None and minute != self._minute:
            self.minutes.append(
                (self._minute, {name: delta.point() for name, delta in self._minute_deltas.items()})
            )
            self._minute_deltas = {}
        self._minute = minute
        for name, delta in deltas.items():
            self._minute_deltas[name] = _merge(self._minute_deltas.get(name), delta)

    def query(self, window_s: float, route: str = ALL_ROUTES, now: float | None = None) -> dict[str, Any]:
        """The points of the last ``window_s`` seconds for ``route`` (all routes by default), one list per
        field, every step present (no request: counts 0, percentiles None)."""
        if window_s <= (self.seconds.maxlen or SECONDS):
            step, points = 1, self.seconds
            pending: dict[str, _Delta] = {}
        else:
            step, points = 60, self.minutes
            pending = self._minute_deltas
        last = int(now) if now is not None else (points[-1][0] if points else 0)
        if step == 60:
            last = last // 60 * 60
        steps = max(1, math.ceil(window_s / step))
        by_time = {t: values for t, values in points}
        if step == 60 and self._minute is not None and pending:
            by_time[self._minute] = {name: delta.point() for name, delta in pending.items()}
        out: dict[str, Any] = {"step_s": step, "t": []}
        for name in (*_FIELDS, *_PERCENTILES):
            out[name] = []
        for t in range(last - (steps - 1) * step, last + 1, step):
            out["t"].append(t)
            point = by_time.get(t, {}).get(route)
            for index, name in enumerate((*_FIELDS, *_PERCENTILES)):
                out[name].append(point[index] if point is not None else (0 if index < 5 else None))
        return out


def _merge(into: _Delta | None, delta: _Delta) -> _Delta:
    if into is None:
        merged = _Delta(len(delta.latency))
        merged.add(delta)
        return merged
    into.add(delta)
    return into
