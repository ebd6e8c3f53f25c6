"""Latency histograms: fixed millisecond buckets, one list increment per observation.

Bucket bounds are upper bounds, inclusive (Prometheus's ``le``); the last slot counts what is above every
bound. Percentiles are read back by linear interpolation inside the bucket that holds them, which is what
Prometheus's ``histogram_quantile`` does with the same buckets.

>>> h = Histogram()
>>> for ms in (0.3, 0.4, 8.0, 40.0):
...     h.observe(ms)
>>> h.count, round(h.sum, 1)
(4, 48.7)
>>> percentile(h.counts, 0.5)
0.5
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

__all__ = ["BOUNDS_MS", "Histogram", "percentile", "percentiles"]

# From a tenth of a millisecond (a Mock route on this gateway) to API Gateway's 29 s integration timeout.
BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.2, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 10000, 20000, 30000,
)  # fmt: skip


class Histogram:
    """Observations per bucket; updated on the event loop's thread only (no lock: nothing else writes)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.sum = 0.0

    def observe(self, value_ms: float) -> None:
        self.counts[bisect_left(BOUNDS_MS, value_ms)] += 1
        self.sum += value_ms

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (le, observations ≤ le), ending with "+Inf"; ``le`` spelled as the client
        library spells it ("5.0")."""
        total = 0
        out: list[tuple[str, int]] = []
        for bound, count in zip((*BOUNDS_MS, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q ≤ 1) of bucket ``counts`` in ms, interpolated in its bucket; None when empty.
    Values above the last bound are reported as the last bound."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index >= len(BOUNDS_MS):
                return BOUNDS_MS[-1]
            low = BOUNDS_MS[index - 1] if index else 0.0
            high = BOUNDS_MS[index]
            return round(low + (high - low) * (rank - seen) / count, 3)
        seen += count
    return BOUNDS_MS[-1]  # pragma: no cover - rank ≤ total always lands in a bucket


def percentiles(counts: Sequence[int]) -> dict[str, float | None]:
    """p50, p90 and p99 of bucket ``counts``."""
    return {"p50": percentile(counts, 0.5), "p90": percentile(counts, 0.9), "p99": percentile(counts, 0.99)}
