"""Throttling as API Gateway applies it: token buckets at account, stage/method and usage-plan level.

Every request takes one token from each bucket that applies to it, all or none; the strictest bucket
decides. Which buckets apply is fixed per route at compile time (the account's, the method's from the stage's
``methodSettings``), plus the usage-plan buckets the ``api_key`` stage found for the caller's key
(``ctx.usage_buckets``). A refused request gets 429 ``{"message":"Too Many Requests"}`` and a ``Retry-After``
header (whole seconds, rounded up), which API Gateway does not send but well-behaved clients use to back off.

When the store cannot be reached, throttling fails open (the request goes on) and says so loudly in the log,
once per outage; it recovers by itself on the store's first good answer.

Settings, as API Gateway names them:

- ``throttlingRateLimit`` (requests per second, ≥ 0) and ``throttlingBurstLimit`` (bucket size, ≥ 0), in a
  stage's ``methodSettings`` (REST: keyed ``/resource/METHOD``, ``*/*`` for the default of every method) or
  ``defaultRouteSettings`` / ``routeSettings`` (HTTP APIs: keyed by route key). A limit set at stage level
  applies to each method on its own (each method has its own bucket), as AWS documents.
- the account level: ``--account-rate`` / ``--account-burst`` (AWS's default 10,000 / 5,000), one bucket for
  every route of the process — or of every node, with a shared Redis store.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.state.memory import MemoryStore
from portway.state.outage import StoreOutage
from portway.state.store import Bucket, Store, StoreUnavailable
from portway.types import Response

__all__ = [
    "ACCOUNT_BURST",
    "ACCOUNT_LIMIT",
    "ACCOUNT_RATE",
    "Limit",
    "ThrottleStage",
]

log = logging.getLogger("portway.throttle")

ACCOUNT_RATE = 10_000.0  # API Gateway's default account-level steady rate per region (requests/s)
ACCOUNT_BURST = 5_000


@dataclass(frozen=True, slots=True)
class Limit:
    """A steady rate (requests per second) and a burst (the bucket's size)."""

    rate: float
    burst: int

    def bucket(self, key: str) -> Bucket:
        return Bucket(key, self.rate, self.burst)


ACCOUNT_LIMIT = Limit(ACCOUNT_RATE, ACCOUNT_BURST)


class ThrottleStage:
    """Takes a token from the route's buckets (and the caller's usage-plan buckets) for every request."""

    name = "throttle"
    needs_body = False
    responds = False

    def __init__(
        self,
        buckets: tuple[Bucket, ...],
        store: Store,
        *,
        table: ResponseTable = REST_RESPONSES,
        clock: Callable[[], float] = time.time,
        outage: StoreOutage | None = None,
    ) -> None:
        self.buckets = buckets
        self.store = store
        self.table = table
        self.clock = clock
        # The in-process store answers without awaiting: call it directly, one coroutine less per request.
        self._local = store if isinstance(store, MemoryStore) else None
        self._outage = outage or StoreOutage("throttle", "letting requests through unthrottled", log)

    async def on_request(self, ctx: RequestContext) -> Response | None:
        buckets = self.buckets + ctx.usage_buckets if ctx.usage_buckets else self.buckets
        if not buckets:
            return None
        now = self.clock()
        if self._local is not None:
            retry_after = self._local.admit_now(buckets, now)
            if retry_after is None:
                return None
        else:
            try:
                admission = await self.store.take(buckets, now)
            except StoreUnavailable as exc:
                self._outage.failed(exc)
                return None
            if self._outage.down_since is not None:
                self._outage.recovered()
            if admission.allowed:
                return None
            retry_after = admission.retry_after
        response = gateway_response(ResponseType.THROTTLED, self.table)
        if math.isfinite(retry_after):
            response.headers.append((b"retry-after", b"%d" % max(1, math.ceil(retry_after))))
        return response

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response
