"""Usage patterns: requests, errors and latency per day, per API key and per route.

The gateway adds every request to today's row of its (key, route) pair (:meth:`DailyUsage.add`, a dict
lookup and four additions). Every node writes its own rows to the keys store as one record per day and node
(:meth:`DailyUsage.persist`): a record is only ever replaced by the node that owns it, so nodes never race,
and a restarted process starts a new record beside its previous one. Readers (``portway usage --by``, the
admin API) add the records of every node together (:func:`read_usage`).

>>> usage = DailyUsage()
>>> usage.add(20000, "key1", "GET /items", 0, 12.0)
>>> usage.add(20000, "key1", "GET /items", 2, 30.0)
>>> [(r.key_id, r.route, r.count, r.errors_5xx, r.latency_avg_ms) for r in usage.rows(20000, 20000)]
[('key1', 'GET /items', 2, 1, 21.0)]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from portway.state.store import Store

__all__ = ["USAGE_RECORD", "DailyUsage", "UsageRow", "day_date", "day_number", "group_usage", "read_usage"]

USAGE_RECORD = "traffic-usage"  # the store's record kind: one record per day and node
KEPT_DAYS = 3  # days a node keeps in memory (older ones are in the store)
_EPOCH = date(1970, 1, 1)


def day_number(day: date) -> int:
    return (day - _EPOCH).days


def day_date(number: int) -> date:
    return _EPOCH + timedelta(days=number)


@dataclass(frozen=True, slots=True)
class UsageRow:
    day: date
    key_id: str  # "" for requests without an API key
    route: str
    count: int
    errors_4xx: int
    errors_5xx: int
    latency_sum_ms: float

    @property
    def latency_avg_ms(self) -> float | None:
        return round(self.latency_sum_ms / self.count, 3) if self.count else None

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "key_id": self.key_id or None,
            "route": self.route,
            "count": self.count,
            "4xx": self.errors_4xx,
            "5xx": self.errors_5xx,
            "latency_avg_ms": self.latency_avg_ms,
        }


class DailyUsage:
    """This node's rows of the last :data:`KEPT_DAYS` days: ``{day: {(key_id, route): [count, 4xx, 5xx,
    latency sum]}}``."""

    def __init__(self) -> None:
        self.days: dict[int, dict[tuple[str, str], list[float]]] = {}
        self._today = -1
        self._rows: dict[tuple[str, str], list[float]] = {}
        self._dirty: set[int] = set()

    def add(self, day: int, key_id: str, route: str, error: int, latency_ms: float) -> None:
        """One request: ``error`` 0 (none), 1 (4xx) or 2 (5xx)."""
        if day != self._today:
            self._roll(day)
        row = self._rows.get((key_id, route))
        if row is None:
            row = self._rows[(key_id, route)] = [0, 0, 0, 0.0]
        row[0] += 1
        if error:
            row[error] += 1
        row[3] += latency_ms

    def _roll(self, day: int) -> None:
        self._dirty.add(self._today)  # the day just ended: written once more, complete
        rows = self.days.get(day)
        if rows is None:
            rows = self.days[day] = {}
            for old in sorted(self.days)[:-KEPT_DAYS]:
                if old not in self._dirty:
                    del self.days[old]
        self._today, self._rows = day, rows

    def rows(self, first: int, last: int) -> list[UsageRow]:
        return _rows((number, pairs) for number, pairs in self.days.items() if first <= number <= last)

    def top_keys(self, day: int, limit: int) -> list[dict[str, Any]]:
        """Today's busiest API keys: requests, errors and mean latency over all their routes."""
        keys: dict[str, list[float]] = {}
        for (key_id, _), row in self.days.get(day, {}).items():
            if key_id:
                total = keys.setdefault(key_id, [0, 0, 0, 0.0])
                for index in range(4):
                    total[index] += row[index]
        ranked = sorted(keys.items(), key=lambda item: (-item[1][0], item[0]))[:limit]
        return [
            {
                "key_id": key_id,
                "count": int(row[0]),
                "4xx": int(row[1]),
                "5xx": int(row[2]),
                "latency_avg_ms": round(row[3] / row[0], 3) if row[0] else None,
            }
            for key_id, row in ranked
        ]

    async def persist(self, store: Store, node: str) -> int:
        """Write this node's record of every day that changed since the last call; the number written.
        Raises what the store raises (the caller logs it and tries again next time)."""
        changed = self._dirty | {self._today}
        written = 0
        for number in sorted(changed):
            pairs = self.days.get(number)
            if not pairs:
                continue
            day = day_date(number).isoformat()
            rows = [[key_id, route, *row] for (key_id, route), row in sorted(pairs.items())]
            await store.put_record(USAGE_RECORD, f"{day}/{node}", {"day": day, "node": node, "rows": rows})
            written += 1
        self._dirty.clear()
        for old in sorted(self.days)[:-KEPT_DAYS]:
            del self.days[old]
        return written


def _rows(days: Iterable[tuple[int, dict[tuple[str, str], list[float]]]]) -> list[UsageRow]:
    summed: dict[tuple[int, str, str], list[float]] = {}
    for number, pairs in days:
        for (key_id, route), row in pairs.items():
            total = summed.setdefault((number, key_id, route), [0, 0, 0, 0.0])
            for index in range(4):
                total[index] += row[index]
    return [
        UsageRow(day_date(number), key_id, route, int(row[0]), int(row[1]), int(row[2]), row[3])
        for (number, key_id, route), row in sorted(summed.items())
    ]


async def read_usage(store: Store, first: date, last: date) -> list[UsageRow]:
    """Every node's rows from ``first`` to ``last`` (UTC days, both included), added together."""
    days: list[tuple[int, dict[tuple[str, str], list[float]]]] = []
    for record in await store.list_records(USAGE_RECORD):
        try:
            day = date.fromisoformat(record["day"])
            if not first <= day <= last:
                continue
            pairs = {(str(r[0]), str(r[1])): [float(v) for v in r[2:6]] for r in record["rows"]}
        except (KeyError, TypeError, ValueError, IndexError):
            continue  # a record this version cannot read: skipped, never fatal
        days.append((day_number(day), pairs))
    return _rows(days)


def group_usage(rows: Iterable[UsageRow], by: str) -> list[dict[str, Any]]:
    """Rows summed per day and route (``by="route"``) or per day and API key (``by="key"``; requests
    without a key are left out), as ``portway usage --by`` and the admin API report them."""
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        name = row.route if by == "route" else row.key_id
        if not name:
            continue
        total = groups.setdefault((row.day.isoformat(), name), [0, 0, 0, 0.0])
        total[0] += row.count
        total[1] += row.errors_4xx
        total[2] += row.errors_5xx
        total[3] += row.latency_sum_ms
    return [
        {
            "day": day,
            by: name,
            "count": int(total[0]),
            "4xx": int(total[1]),
            "5xx": int(total[2]),
            "latency_avg_ms": round(total[3] / total[0], 3) if total[0] else None,
        }
        for (day, name), total in sorted(groups.items())
    ]
