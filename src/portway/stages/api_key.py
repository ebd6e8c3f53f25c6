"""API keys on routes that require one, with their usage plans' quotas, as API Gateway applies them.

A route marked as requiring a key (``security`` naming an ``apiKey`` scheme, or ``apiKeyRequired``) gets this
stage. Where the key comes from is the API's ``x-amazon-apigateway-api-key-source``:

- ``HEADER`` (the default): the ``X-API-Key`` request header, its name in any case;
- ``AUTHORIZER``: the ``usageIdentifierKey`` a Lambda authorizer returned. The authorizer stage, which runs
  before this one, puts it in ``ctx.api_key``; with no such value the request is refused like a missing key.

Answers, as AWS gives them (developer guide, *Choose an API key source*: "Otherwise, it throws an
InvalidKeyParameter exception. As a result, the caller receives a 403 Forbidden response"):

- no key, an unknown or disabled key, or a key in no usage plan that covers this API stage → 403
  ``INVALID_API_KEY`` ``{"message":"Forbidden"}``;
- the key's plan has a quota and this request would pass it → 429 ``QUOTA_EXCEEDED``
  ``{"message":"Limit Exceeded"}``; the refused request is not counted;
- otherwise the request is counted (quota and the day's usage, see :mod:`portway.usage_plans`), and
  ``ctx.api_key`` (the value, ``requestContext.identity.apiKey``), ``ctx.api_key_id``
  (``identity.apiKeyId``) and ``ctx.usage_buckets`` (the plan's token buckets for this key and method, for
  the throttle stage) are set.

When the state store cannot be reached: keys and plans are answered from the last known state (see
:class:`~portway.usage_plans.KeyCache`; a key never seen before is refused as unknown), and quotas fail open:
the request goes on uncounted. Both are logged once per outage, and end by themselves. Never a 500.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from portway.pipeline.context import RequestContext
from portway.pipeline.responses import ResponseTable, ResponseType, gateway_response
from portway.state.outage import StoreOutage
from portway.state.store import Store, StoreError
from portway.types import Response
from portway.usage_plans import KeyCache, count_request

__all__ = ["API_KEY_HEADER", "ApiKeySource", "ApiKeyStage"]

API_KEY_HEADER = b"x-api-key"


class ApiKeySource(StrEnum):
    """``x-amazon-apigateway-api-key-source``."""

    HEADER = "HEADER"
    AUTHORIZER = "AUTHORIZER"


class ApiKeyStage:
    """Requires a valid API key in a usage plan for this API stage, and enforces the plan's quota.

    ``keys`` is the gateway's one :class:`KeyCache` (shared by every route, so a key is read once for all
    of them); one is made for the stage when none is given.
    """

    name = "api_key"
    needs_body = False
    responds = False

    def __init__(
        self,
        api_id: str,
        api_title: str,
        stage: str,
        method: str,
        resource: str,
        table: ResponseTable,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        source: ApiKeySource | str = ApiKeySource.HEADER,
        keys: KeyCache | None = None,
        quota_outage: StoreOutage | None = None,
    ) -> None:
        self.api_id = api_id
        self.api_title = api_title
        self.stage = stage
        self.method = method
        self.resource = resource
        self.table = table
        self.store = store
        self.clock = clock
        self.source = ApiKeySource(source)
        self.keys = keys if keys is not None else KeyCache(store, clock=clock)
        self.quota_outage = quota_outage or StoreOutage("quotas", "letting requests through uncounted")

    async def on_request(self, ctx: RequestContext) -> Response | None:
        value = self._presented(ctx)
        if not value:
            return self._refuse(ResponseType.INVALID_API_KEY)
        resolved = await self.keys.resolve(value)
        if resolved is None or not resolved.key.enabled:
            return self._refuse(ResponseType.INVALID_API_KEY)
        grant = resolved.grant_for(self.api_id, self.api_title, self.stage)
        if grant is None:
            return self._refuse(ResponseType.INVALID_API_KEY)
        try:
            admitted = await count_request(self.store, grant.plan, grant.key.id, self.clock())
        except StoreError as exc:
            self.quota_outage.failed(exc)
            admitted = True
        else:
            self.quota_outage.recovered()
        if not admitted:
            return self._refuse(ResponseType.QUOTA_EXCEEDED)
        ctx.api_key = value
        ctx.api_key_id = grant.key.id
        ctx.usage_buckets = grant.buckets(self.resource, self.method)
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response

    def _presented(self, ctx: RequestContext) -> str | None:
        if self.source is ApiKeySource.AUTHORIZER:
            return ctx.api_key
        found: bytes | None = None
        for name, value in ctx.headers:  # ASGI servers lower-case names; compare without relying on it
            if len(name) == len(API_KEY_HEADER) and name.lower() == API_KEY_HEADER:
                found = value
        return found.decode("latin-1").strip() if found is not None else None

    def _refuse(self, kind: ResponseType) -> Response:
        return gateway_response(kind, self.table)
