"""One log line when a state store becomes unreachable and one when it is back, never one per request."""

from __future__ import annotations

import logging
import time

__all__ = ["StoreOutage"]


class StoreOutage:
    """Shared by every route of a stateful feature, so an outage is reported once for all of them.

    >>> outage = StoreOutage("throttle", "letting requests through")
    >>> outage.down_since is None
    True
    """

    __slots__ = ("consequence", "down_since", "log", "what")

    def __init__(self, what: str, consequence: str, logger: logging.Logger | None = None) -> None:
        self.what = what
        self.consequence = consequence
        self.log = logger or logging.getLogger("portway.state")
        self.down_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            self.log.error(
                "%s: state store unavailable (%s); %s until it is back", self.what, exc, self.consequence
            )

    def recovered(self) -> None:
        if self.down_since is not None:
            self.log.warning(
                "%s: state store back after %.1f s", self.what, time.monotonic() - self.down_since
            )
            self.down_since = None
