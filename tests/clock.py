"""A clock tests move by hand, for everything that takes ``clock: Callable[[], float]``."""

from __future__ import annotations

import time


class ManualClock:
    """Says ``now`` until moved; starts at ``now`` (default: the real time, which a Redis store may compare
    with its own)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
