"""API keys and usage plans, as API Gateway has them: records over any :class:`~portway.state.store.Store`,
quota windows as plain functions, and the cached key lookup the ``api_key`` stage uses per request.

What is kept, and where (record kinds of the store):

- ``apikey`` — one record per key, by id: ``id``, ``name``, ``description``, ``enabled``, ``createdDate``,
  ``lastUpdatedDate``, ``hint`` (the value's last 4 characters, to tell keys apart), ``valueSha256`` and
  ``planIds``. The value itself is never stored: it is shown once when generated (or given on import), and
  afterwards only its SHA-256 digest is known. Key values are long random strings (40 characters from 62,
  about 238 bits when generated), so an unsalted digest is as good as a password hash here, and it lets a
  presented value be found with one lookup.
- ``apikey-sha256`` — the index from a value's digest to its key id (``{"keyId": …}``).
- ``usageplan`` — one record per plan, by id: ``id``, ``name``, ``description``, ``apiStages``
  (``[{"api", "stage", "throttle": {"/path/{id}/GET": {"rateLimit", "burstLimit"}}}]``), ``throttle``
  (``{"rateLimit", "burstLimit"}``), ``quota`` (``{"limit", "offset", "period"}``), ``createdDate``.

Which plan covers a request: a plan's ``apiStages[].api`` names an API by Portway's API id (the
``requestContext.apiId`` its events carry) *or* by the API's title (``info.title``), compared exactly; the
stage by name. A key belongs to at most one plan per API stage (AWS: "a given API key can only be associated
with one usage plan for each stage of the API", developer guide, *Usage plans and API keys*); adding it to a
second plan naming the same ``api`` and ``stage`` is refused. (A plan naming the API by id and another by
title cannot be told apart here; should both match, the plan with the smaller id wins.)

Throttling and quotas apply per key, summed over every API stage of the plan (AWS: "Throttling and quota
limits apply to requests for individual API keys that are aggregated across all API stages within a usage
plan", same page). So the token buckets and quota counters are keyed by plan and key id; a method's own
throttle (``apiStages[].throttle``, keyed ``/resource/METHOD`` as AWS keys it) is a further bucket.

Quota windows (all UTC): ``DAY`` from midnight to midnight; ``WEEK`` from Sunday 00:00 to the next Sunday
(older AWS SDK references, e.g. the Ruby aws-sdk-apigateway 1.73, describe QuotaSettings.offset as "with a
time period of WEEK, an offset of 0 starts on Sunday": so a week starts on Sunday); ``MONTH`` the calendar
month (an answer on AWS re:Post: "Monthly quotas only reset on the 1st of every month"). ``offset`` follows
the current API reference ("the number of requests subtracted from the given limit in the initial time
period", QuotaSettings): for Portway the *initial* time period is the quota window that contains the
plan's creation; in it the limit is ``limit - offset``, and in every later window ``limit``.

Usage (GetUsage): every request admitted under a plan is counted per key per UTC day, kept
:data:`USAGE_RETENTION_DAYS` days. With a ``DAY`` quota that daily counter *is* the quota counter (one store
call per request); with ``WEEK``/``MONTH`` the quota has its own counter per window and the day's counter is
added only once the quota admitted the request (two calls). A refused request counts nowhere.

>>> import asyncio
>>> from portway.state.memory import MemoryStore
>>> plans = UsagePlans(MemoryStore(), clock=lambda: 1_700_000_000.0)
>>> created = asyncio.run(plans.create_key(name="alice"))
>>> len(created.value), created.key.hint == created.value[-4:]
(40, True)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from enum import StrEnum
from typing import Any

from portway.state.outage import StoreOutage
from portway.state.store import Bucket, Store, StoreError

__all__ = [
    "GENERATED_VALUE_LENGTH",
    "KEY_HASH_KIND",
    "KEY_KIND",
    "PLAN_KIND",
    "USAGE_RETENTION_DAYS",
    "ApiKey",
    "ApiStage",
    "Conflict",
    "CreatedKey",
    "DayUsage",
    "Grant",
    "InvalidInput",
    "KeyCache",
    "KeyUsage",
    "NotFound",
    "Period",
    "QuotaSettings",
    "ResolvedKey",
    "StoreOutage",
    "ThrottleSettings",
    "UsagePlan",
    "UsagePlanError",
    "UsagePlans",
    "count_request",
    "hash_key_value",
    "method_key",
    "quota_window",
    "usage_counter_key",
    "validate_key_value",
]

log = logging.getLogger("portway.usage_plans")

KEY_KIND = "apikey"
KEY_HASH_KIND = "apikey-sha256"
PLAN_KIND = "usageplan"

KEY_VALUE_MIN = 20  # AWS: "an alphanumeric string between 20 and 128 characters"
KEY_VALUE_MAX = 128
GENERATED_VALUE_LENGTH = 40  # what API Gateway generates
NAME_MAX = 1024  # AWS: "The name cannot exceed 1024 characters"
KEY_ID_LENGTH = 10  # API Gateway key ids look like "ru3mpjgse6"
PLAN_ID_LENGTH = 6  # and usage plan ids like "c7y23b"
HINT_LENGTH = 4
USAGE_RETENTION_DAYS = 90  # how long daily usage counters are kept for usage reports (Portway's choice)
DAY_S = 86_400.0

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
_ALNUM = re.compile(r"[A-Za-z0-9]+")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_VALUE_ALPHABET = string.ascii_letters + string.digits


# ---------------------------------------------------------------------------------------------- errors


class UsagePlanError(Exception):
    """A refused operation on keys or plans; the message names what was wrong, fit for one line."""


class NotFound(UsagePlanError):
    """No key or plan with that id."""


class Conflict(UsagePlanError):
    """The operation clashes with what exists (a duplicate value, a second plan for a stage …)."""


class InvalidInput(UsagePlanError):
    """A value outside what API Gateway accepts."""


# ------------------------------------------------------------------------------------------- settings


class Period(StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """A steady ``rate_limit`` (requests per second) and a ``burst_limit`` (the token bucket's size)."""

    rate_limit: float
    burst_limit: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_limit) and self.rate_limit >= 0):
            raise InvalidInput(f"rateLimit {self.rate_limit!r}: expected a number ≥ 0")
        if (
            isinstance(self.burst_limit, bool)
            or not isinstance(self.burst_limit, int)
            or self.burst_limit < 0
        ):
            raise InvalidInput(f"burstLimit {self.burst_limit!r}: expected a whole number ≥ 0")

    def to_json(self) -> dict[str, Any]:
        return {"rateLimit": self.rate_limit, "burstLimit": self.burst_limit}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ThrottleSettings:
        return cls(float(data["rateLimit"]), int(data["burstLimit"]))

    def bucket(self, key: str) -> Bucket:
        return Bucket(key, self.rate_limit, self.burst_limit)


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    """At most ``limit`` requests per ``period``; ``offset`` fewer in the plan's initial window."""

    limit: int
    period: Period
    offset: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0:
            raise InvalidInput(f"quota limit {self.limit!r}: expected a whole number ≥ 0")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise InvalidInput(f"quota offset {self.offset!r}: expected a whole number ≥ 0")
        if self.offset > self.limit:
            raise InvalidInput(f"quota offset {self.offset} is more than the limit {self.limit}")

    def limit_in(self, window: tuple[float, float], plan_created: float) -> int:
        """The limit for one window: ``limit - offset`` in the window the plan was created in."""
        start, end = window
        return self.limit - self.offset if start <= plan_created < end else self.limit

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "offset": self.offset, "period": self.period.value}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuotaSettings:
        return cls(int(data["limit"]), _period(data["period"]), int(data.get("offset", 0)))


def _period(text: object) -> Period:
    try:
        return Period(str(text).upper())
    except ValueError:
        raise InvalidInput(f"quota period {text!r}: expected DAY, WEEK or MONTH") from None


def method_key(resource: str, method: str) -> str:
    """How a usage plan's per-method throttle names a method: ``/pets/{id}/GET``."""
    return f"{resource.rstrip('/')}/{method.upper()}" if resource != "/" else f"//{method.upper()}"


def _check_method_key(text: str) -> None:
    path, _, method = text.rpartition("/")
    if not text.startswith("/") or not path or method not in HTTP_METHODS:
        raise InvalidInput(
            f"method throttle key {text!r}: expected /resource/METHOD "
            "(e.g. /pets/{id}/GET, //GET for the root)"
        )


@dataclass(frozen=True, slots=True)
class ApiStage:
    """An API stage a plan covers: ``api`` is the API's id or its title; ``throttle`` per method key."""

    api: str
    stage: str
    throttle: Mapping[str, ThrottleSettings] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.api:
            raise InvalidInput("api stage: the API (its id or title) is empty")
        if not self.stage:
            raise InvalidInput(f"api stage {self.api}: the stage name is empty")
        for key in self.throttle:
            _check_method_key(key)

    @property
    def label(self) -> str:
        return f"{self.api}:{self.stage}"

    def matches(self, api_id: str, api_title: str, stage: str) -> bool:
        return self.stage == stage and (self.api == api_id or self.api == api_title)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"api": self.api, "stage": self.stage}
        if self.throttle:
            out["throttle"] = {key: value.to_json() for key, value in sorted(self.throttle.items())}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiStage:
        throttle = data.get("throttle") or {}
        return cls(
            str(data.get("api", data.get("apiId", ""))),
            str(data["stage"]),
            {str(k): ThrottleSettings.from_json(v) for k, v in throttle.items()},
        )


# -------------------------------------------------------------------------------------------- records


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class UsagePlan:
    id: str
    name: str
    description: str = ""
    api_stages: tuple[ApiStage, ...] = ()
    throttle: ThrottleSettings | None = None
    quota: QuotaSettings | None = None
    created: float = 0.0  # seconds since the epoch

    def stage_for(self, api_id: str, api_title: str, stage: str) -> ApiStage | None:
        for api_stage in self.api_stages:
            if api_stage.matches(api_id, api_title, stage):
                return api_stage
        return None

    def shares_stage_with(self, other: UsagePlan) -> ApiStage | None:
        """A stage (same ``api`` text and stage name) both plans cover, if any."""
        mine = {(s.api, s.stage) for s in self.api_stages}
        return next((s for s in other.api_stages if (s.api, s.stage) in mine), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "apiStages": [s.to_json() for s in self.api_stages],
            "createdDate": _iso(self.created),
        }
        if self.throttle is not None:
            out["throttle"] = self.throttle.to_json()
        if self.quota is not None:
            out["quota"] = self.quota.to_json()
        return out

    to_record = to_json

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> UsagePlan:
        throttle = data.get("throttle")
        quota = data.get("quota")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            description=str(data.get("description", "")),
            api_stages=tuple(ApiStage.from_json(s) for s in data.get("apiStages", ())),
            throttle=ThrottleSettings.from_json(throttle) if throttle else None,
            quota=QuotaSettings.from_json(quota) if quota else None,
            created=_epoch(data["createdDate"]) if "createdDate" in data else 0.0,
        )


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: everything but its value."""

    id: str
    name: str
    value_sha256: str
    hint: str
    description: str = ""
    enabled: bool = True
    created: float = 0.0
    updated: float = 0.0
    plan_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """What may be shown: the record without the digest."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "enabled": self.enabled,
            "createdDate": _iso(self.created),
            "lastUpdatedDate": _iso(self.updated),
            "hint": self.hint,
            "planIds": list(self.plan_ids),
        }

    def to_record(self) -> dict[str, Any]:
        return {**self.to_json(), "valueSha256": self.value_sha256}

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            value_sha256=str(data["valueSha256"]),
            hint=str(data.get("hint", "")),
            description=str(data.get("description", "")),
            enabled=bool(data.get("enabled", True)),
            created=_epoch(data["createdDate"]) if "createdDate" in data else 0.0,
            updated=_epoch(data["lastUpdatedDate"]) if "lastUpdatedDate" in data else 0.0,
            plan_ids=tuple(str(p) for p in data.get("planIds", ())),
        )


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its value: the only time the value is known to Portway after the call returns."""

    key: ApiKey
    value: str


def hash_key_value(value: str) -> str:
    """The SHA-256 hex digest a key value is stored and looked up by."""
    return hashlib.sha256(value.encode()).hexdigest()


def validate_key_value(value: str) -> None:
    """API Gateway's rule for key values: alphanumeric, 20 to 128 characters (developer guide)."""
    if not KEY_VALUE_MIN <= len(value) <= KEY_VALUE_MAX:
        raise InvalidInput(
            f"--value: an API key value has {KEY_VALUE_MIN} to {KEY_VALUE_MAX} characters, "
            f"this one {len(value)}"
        )
    if not _ALNUM.fullmatch(value):
        raise InvalidInput("--value: an API key value has only letters A-Z, a-z and digits 0-9")


def _new_value() -> str:
    return "".join(secrets.choice(_VALUE_ALPHABET) for _ in range(GENERATED_VALUE_LENGTH))


def _new_id(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


# ------------------------------------------------------------------------------------- quota windows


def _day_of(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def _midnight(day: date) -> float:
    return datetime.combine(day, dtime(), tzinfo=UTC).timestamp()


def quota_window(period: Period, now: float) -> tuple[float, float]:
    """The quota window (start, end) holding ``now``, in epoch seconds; windows are in UTC, end excluded.

    >>> quota_window(Period.DAY, 86_400 * 3 + 5)
    (259200.0, 345600.0)
    >>> [_day_of(t).isoformat() for t in quota_window(Period.WEEK, _midnight(date(2024, 3, 6)))]
    ['2024-03-03', '2024-03-10']
    >>> [_day_of(t).isoformat() for t in quota_window(Period.MONTH, _midnight(date(2024, 2, 29)) + 1)]
    ['2024-02-01', '2024-03-01']
    """
    day = _day_of(now)
    if period is Period.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is Period.WEEK:
        start = day - timedelta(days=(day.weekday() + 1) % 7)  # weekday(): Monday 0 … Sunday 6
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
    return _midnight(start), _midnight(end)


def usage_counter_key(plan_id: str, key_id: str, day: date) -> str:
    """The store counter holding one key's admitted requests under one plan on one UTC day."""
    return f"usage:{plan_id}:{key_id}:{day.isoformat()}"


def _quota_counter_key(plan_id: str, key_id: str, period: Period, window_start: float) -> str:
    return f"quota:{plan_id}:{key_id}:{period.value}:{_day_of(window_start).isoformat()}"


async def count_request(store: Store, plan: UsagePlan, key_id: str, now: float) -> bool:
    """Count one request of ``key_id`` under ``plan``: False (and nothing counted) when over the quota.

    Raises :class:`~portway.state.store.StoreUnavailable` when the store cannot be reached.
    """
    day = _day_of(now)
    usage_key = usage_counter_key(plan.id, key_id, day)
    keep_until = _midnight(day) + DAY_S * (USAGE_RETENTION_DAYS + 1)
    quota = plan.quota
    if quota is None:
        await store.count(usage_key, 1, None, keep_until, now)
        return True
    window = quota_window(quota.period, now)
    limit = quota.limit_in(window, plan.created)
    if quota.period is Period.DAY:  # the day's usage counter is the quota counter
        return (await store.count(usage_key, 1, limit, keep_until, now)).allowed
    counted = await store.count(
        _quota_counter_key(plan.id, key_id, quota.period, window[0]), 1, limit, window[1], now
    )
    if not counted.allowed:
        return False
    await store.count(usage_key, 1, None, keep_until, now)
    return True


@dataclass(frozen=True, slots=True)
class DayUsage:
    day: date
    used: int
    remaining: int | None  # quota left at the end of the day; None when the plan has no quota


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """One key's daily usage under one plan, as GetUsage reports it."""

    plan_id: str
    key_id: str
    start: date
    end: date
    days: tuple[DayUsage, ...]

    def to_get_usage(self) -> dict[str, Any]:
        """GetUsage's output: ``items`` (so the SDKs name it; the REST reference says ``values``) maps the
        key id to ``[[used, remaining], …]``, one pair per day from ``startDate`` to ``endDate``."""
        return {
            "usagePlanId": self.plan_id,
            "startDate": self.start.isoformat(),
            "endDate": self.end.isoformat(),
            "items": {self.key_id: [[d.used, d.remaining] for d in self.days]},
        }


# ------------------------------------------------------------------------------------------ operations


class UsagePlans:
    """Create, read and delete API keys and usage plans in a store; report a key's usage.

    Every operation raises :class:`UsagePlanError` (NotFound, Conflict, InvalidInput) with a one-line
    message, or lets the store's :class:`~portway.state.store.StoreError` through. The store offers no
    transactions: two administrators changing the same key at the same moment can lose one change.
    """

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    # keys

    async def create_key(
        self,
        *,
        name: str | None = None,
        description: str = "",
        value: str | None = None,
        enabled: bool = True,
        plan_ids: Sequence[str] = (),
    ) -> CreatedKey:
        """A new key with a generated 40-character value, or the ``value`` given (an import)."""
        if value is not None:
            validate_key_value(value)
        else:
            value = _new_value()
        if name is not None and len(name) > NAME_MAX:
            raise InvalidInput(f"--name: at most {NAME_MAX} characters")
        digest = hash_key_value(value)
        existing = await self.store.get_record(KEY_HASH_KIND, digest)
        if existing is not None:
            raise Conflict(f"--value: an API key with this value exists already ({existing['keyId']})")
        plans = [await self.get_plan(plan_id) for plan_id in dict.fromkeys(plan_ids)]
        _check_one_plan_per_stage(plans)
        key_id = await self._unused_id(KEY_KIND, KEY_ID_LENGTH)
        now = self.clock()
        key = ApiKey(
            id=key_id,
            name=name or key_id,
            value_sha256=digest,
            hint=value[-HINT_LENGTH:],
            description=description,
            enabled=enabled,
            created=now,
            updated=now,
            plan_ids=tuple(p.id for p in plans),
        )
        await self.store.put_record(KEY_KIND, key.id, key.to_record())
        await self.store.put_record(KEY_HASH_KIND, digest, {"keyId": key.id})
        return CreatedKey(key, value)

    async def list_keys(self) -> list[ApiKey]:
        return [ApiKey.from_record(r) for r in await self.store.list_records(KEY_KIND)]

    async def get_key(self, key_id: str) -> ApiKey:
        record = await self.store.get_record(KEY_KIND, key_id)
        if record is None:
            raise NotFound(f"no API key {key_id!r}")
        return ApiKey.from_record(record)

    async def set_enabled(self, key_id: str, enabled: bool) -> ApiKey:
        key = replace(await self.get_key(key_id), enabled=enabled, updated=self.clock())
        await self.store.put_record(KEY_KIND, key.id, key.to_record())
        return key

    async def enable_key(self, key_id: str) -> ApiKey:
        return await self.set_enabled(key_id, True)

    async def disable_key(self, key_id: str) -> ApiKey:
        return await self.set_enabled(key_id, False)

    async def delete_key(self, key_id: str) -> None:
        key = await self.get_key(key_id)
        await self.store.delete_record(KEY_HASH_KIND, key.value_sha256)
        await self.store.delete_record(KEY_KIND, key.id)

    async def find_key(self, value: str) -> ApiKey | None:
        """The key with this value, or None."""
        index = await self.store.get_record(KEY_HASH_KIND, hash_key_value(value))
        if index is None:
            return None
        record = await self.store.get_record(KEY_KIND, str(index["keyId"]))
        return ApiKey.from_record(record) if record is not None else None

    # plans

    async def create_plan(
        self,
        *,
        name: str,
        description: str = "",
        api_stages: Iterable[ApiStage] = (),
        throttle: ThrottleSettings | None = None,
        quota: QuotaSettings | None = None,
    ) -> UsagePlan:
        if not name:
            raise InvalidInput("--name: a usage plan needs a name")
        if len(name) > NAME_MAX:
            raise InvalidInput(f"--name: at most {NAME_MAX} characters")
        stages = tuple(api_stages)
        seen: set[tuple[str, str]] = set()
        for api_stage in stages:
            if (api_stage.api, api_stage.stage) in seen:
                raise InvalidInput(f"--stage {api_stage.label}: named twice")
            seen.add((api_stage.api, api_stage.stage))
        plan = UsagePlan(
            id=await self._unused_id(PLAN_KIND, PLAN_ID_LENGTH),
            name=name,
            description=description,
            api_stages=stages,
            throttle=throttle,
            quota=quota,
            created=float(int(self.clock())),
        )
        await self.store.put_record(PLAN_KIND, plan.id, plan.to_record())
        return plan

    async def list_plans(self) -> list[UsagePlan]:
        return [UsagePlan.from_record(r) for r in await self.store.list_records(PLAN_KIND)]

    async def get_plan(self, plan_id: str) -> UsagePlan:
        record = await self.store.get_record(PLAN_KIND, plan_id)
        if record is None:
            raise NotFound(f"no usage plan {plan_id!r}")
        return UsagePlan.from_record(record)

    async def delete_plan(self, plan_id: str) -> None:
        """Delete a plan; its keys stay, without it."""
        plan = await self.get_plan(plan_id)
        for key in await self.plan_keys(plan.id):
            await self._save_plans(key, tuple(p for p in key.plan_ids if p != plan.id))
        await self.store.delete_record(PLAN_KIND, plan.id)

    async def plan_keys(self, plan_id: str) -> list[ApiKey]:
        return [key for key in await self.list_keys() if plan_id in key.plan_ids]

    async def add_key(self, plan_id: str, key_id: str) -> ApiKey:
        """Put a key in a plan; refused when the key is in it already or in another plan for one of its
        stages."""
        plan = await self.get_plan(plan_id)
        key = await self.get_key(key_id)
        if plan.id in key.plan_ids:
            raise Conflict(f"API key {key.id} is in usage plan {plan.id} already")
        others = [await self.store.get_record(PLAN_KIND, p) for p in key.plan_ids]
        _check_one_plan_per_stage([plan, *(UsagePlan.from_record(r) for r in others if r is not None)])
        return await self._save_plans(key, (*key.plan_ids, plan.id))

    async def remove_key(self, plan_id: str, key_id: str) -> ApiKey:
        key = await self.get_key(key_id)
        if plan_id not in key.plan_ids:
            await self.get_plan(plan_id)  # an unknown plan says so first
            raise NotFound(f"API key {key.id} is not in usage plan {plan_id}")
        return await self._save_plans(key, tuple(p for p in key.plan_ids if p != plan_id))

    async def _save_plans(self, key: ApiKey, plan_ids: tuple[str, ...]) -> ApiKey:
        key = replace(key, plan_ids=plan_ids, updated=self.clock())
        await self.store.put_record(KEY_KIND, key.id, key.to_record())
        return key

    # usage

    async def usage(self, key_id: str, start: date, end: date, plan_id: str | None = None) -> KeyUsage:
        """A key's requests per UTC day from ``start`` to ``end`` (both included), with the quota left at
        the end of each day. ``plan_id`` may be left out when the key is in exactly one plan."""
        if end < start:
            raise InvalidInput(f"--to {end.isoformat()} is before --from {start.isoformat()}")
        if (end - start).days >= 366:
            raise InvalidInput("--from/--to: at most 366 days at once")
        key = await self.get_key(key_id)
        if plan_id is None:
            if len(key.plan_ids) != 1:
                listed = ", ".join(key.plan_ids) or "none"
                raise InvalidInput(
                    f"API key {key.id} is in {len(key.plan_ids)} usage plans ({listed}): name one with --plan"
                )
            plan_id = key.plan_ids[0]
        plan = await self.get_plan(plan_id)
        now = self.clock()
        quota = plan.quota
        first = _day_of(quota_window(quota.period, _midnight(start))[0]) if quota is not None else start
        used: dict[date, int] = {}
        day = first
        while day <= end:
            used[day] = await self.store.counter(usage_counter_key(plan.id, key.id, day), now)
            day += timedelta(days=1)
        days: list[DayUsage] = []
        day = start
        while day <= end:
            remaining: int | None = None
            if quota is not None:
                window = quota_window(quota.period, _midnight(day))
                window_day = _day_of(window[0])
                spent = sum(n for d, n in used.items() if window_day <= d <= day)
                remaining = max(0, quota.limit_in(window, plan.created) - spent)
            days.append(DayUsage(day, used[day], remaining))
            day += timedelta(days=1)
        return KeyUsage(plan.id, key.id, start, end, tuple(days))

    async def _unused_id(self, kind: str, length: int) -> str:
        while True:
            candidate = _new_id(length)
            if await self.store.get_record(kind, candidate) is None:
                return candidate


def _check_one_plan_per_stage(plans: Sequence[UsagePlan]) -> None:
    for i, plan in enumerate(plans):
        for other in plans[i + 1 :]:
            shared = plan.shares_stage_with(other)
            if shared is not None:
                raise Conflict(
                    f"usage plans {plan.id} and {other.id} both cover {shared.label}: an API key can be in "
                    "one usage plan per API stage"
                )


# ------------------------------------------------------------------------------------- hot-path lookup


@dataclass(frozen=True, slots=True)
class Grant:
    """What a key may do on one API stage: its plan there, and the token buckets that throttle it."""

    key: ApiKey
    plan: UsagePlan
    api_stage: ApiStage

    def buckets(self, resource: str, method: str) -> tuple[Bucket, ...]:
        """The plan's buckets for this key, plan-wide first, then the method's own when it has one.

        Bucket keys carry the plan and key id: AWS throttles each key on its own, summed over the plan's
        stages; the method bucket is further keyed by API stage and method.
        """
        out: list[Bucket] = []
        base = f"plan:{self.plan.id}:{self.key.id}"
        if self.plan.throttle is not None:
            out.append(self.plan.throttle.bucket(base))
        name = method_key(resource, method)
        own = self.api_stage.throttle.get(name)
        if own is not None:
            out.append(own.bucket(f"{base}:{self.api_stage.api}:{self.api_stage.stage}:{name}"))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A key as last read from the store, with the plans it is in (ordered by id)."""

    key: ApiKey
    plans: tuple[UsagePlan, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "plans", tuple(sorted(self.plans, key=lambda p: p.id)))

    def grant_for(self, api_id: str, api_title: str, stage: str) -> Grant | None:
        """The key's plan for this API stage (the smallest plan id, should several match), or None."""
        for plan in self.plans:
            api_stage = plan.stage_for(api_id, api_title, stage)
            if api_stage is not None:
                return Grant(self.key, plan, api_stage)
        return None


@dataclass(slots=True)
class _Entry:
    answer: ResolvedKey | None
    fetched: float


class KeyCache:
    """Maps a presented key value to its key and plans, reading the store at most every ``ttl_s`` per key.

    - a known key is re-read after ``ttl_s`` (default 5 s): enabling, disabling or re-planning a key takes
      effect on every gateway node within that time;
    - an unknown value is remembered as unknown for ``negative_ttl_s`` (default 1 s), so one caller
      repeating a wrong key costs one store read a second, not one per request; concurrent lookups of the
      same value share one read;
    - at most ``max_entries`` values are remembered (least recently read dropped first), so random keys
      cannot grow it without bound;
    - when the store cannot be reached, the last known answer stands (a value never seen is unknown) and
      the outage is logged once; the next successful read ends it.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = 5.0,
        negative_ttl_s: float = 1.0,
        max_entries: int = 100_000,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ttl_s = ttl_s
        self.negative_ttl_s = negative_ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._plans: dict[str, tuple[UsagePlan | None, float]] = {}
        self._loading: dict[str, asyncio.Task[ResolvedKey | None]] = {}
        self.outage = StoreOutage("api keys", "answering with the last known keys and usage plans")

    async def resolve(self, value: str) -> ResolvedKey | None:
        """The key with this value and its plans, or None when no key has it."""
        digest = hash_key_value(value)
        entry = self._entries.get(digest)
        if entry is not None:
            ttl = self.ttl_s if entry.answer is not None else self.negative_ttl_s
            if self.clock() - entry.fetched < ttl:
                return entry.answer
        task = self._loading.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._refresh(digest, entry))
            self._loading[digest] = task
            task.add_done_callback(lambda _: self._loading.pop(digest, None))
        return await asyncio.shield(task)

    def forget(self) -> None:
        """Drop everything remembered (e.g. after a change made in this process)."""
        self._entries.clear()
        self._plans.clear()

    async def preload(self) -> int:
        """Read every key and plan now (e.g. at start, so that a store outage right after still knows
        them); the number of keys read."""
        now = self.clock()
        plans = {r["id"]: UsagePlan.from_record(r) for r in await self.store.list_records(PLAN_KIND)}
        for plan_id, plan in plans.items():
            self._plans[plan_id] = (plan, now)
        keys = [ApiKey.from_record(r) for r in await self.store.list_records(KEY_KIND)]
        for key in keys:
            answer = ResolvedKey(key, tuple(plans[p] for p in key.plan_ids if p in plans))
            self._remember(key.value_sha256, answer, now)
        return len(keys)

    async def _refresh(self, digest: str, stale: _Entry | None) -> ResolvedKey | None:
        now = self.clock()
        try:
            answer = await self._load(digest, now)
        except StoreError as exc:
            self.outage.failed(exc)
            answer = stale.answer if stale is not None else None
        else:
            self.outage.recovered()
        self._remember(digest, answer, now)
        return answer

    async def _load(self, digest: str, now: float) -> ResolvedKey | None:
        index = await self.store.get_record(KEY_HASH_KIND, digest)
        if index is None:
            return None
        record = await self.store.get_record(KEY_KIND, str(index["keyId"]))
        if record is None:
            return None
        key = ApiKey.from_record(record)
        if key.value_sha256 != digest:
            return None
        plans: list[UsagePlan] = []
        for plan_id in key.plan_ids:
            plan = await self._plan(plan_id, now)
            if plan is not None:
                plans.append(plan)
        return ResolvedKey(key, tuple(plans))

    async def _plan(self, plan_id: str, now: float) -> UsagePlan | None:
        cached = self._plans.get(plan_id)
        if cached is not None and now - cached[1] < self.ttl_s:
            return cached[0]
        record = await self.store.get_record(PLAN_KIND, plan_id)
        plan = UsagePlan.from_record(record) if record is not None else None
        self._plans[plan_id] = (plan, now)
        return plan

    def _remember(self, digest: str, answer: ResolvedKey | None, now: float) -> None:
        self._entries[digest] = _Entry(answer, now)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
