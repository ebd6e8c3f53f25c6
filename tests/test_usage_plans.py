"""API keys and usage plans on real stores: records, AWS's rules, quota windows, usage, the cached lookup."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from portway.state.memory import MemoryStore
from portway.state.sqlite import SQLiteStore
from portway.state.store import Store
from portway.usage_plans import (
    KEY_HASH_KIND,
    KEY_KIND,
    PLAN_KIND,
    ApiStage,
    Conflict,
    InvalidInput,
    KeyCache,
    NotFound,
    Period,
    QuotaSettings,
    ThrottleSettings,
    UsagePlan,
    UsagePlans,
    count_request,
    hash_key_value,
    method_key,
    quota_window,
)
from tests.clock import ManualClock as Clock
from tests.flaky_store import FlakyStore


def ts(text: str) -> float:
    """Epoch seconds of an ISO date-time, read as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


NOW = ts("2024-05-15T12:00:00")  # a Wednesday
VALID_VALUE = "abcdefghij0123456789"  # 20 characters, the shortest AWS accepts


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "state.db")
    yield store
    await store.close()


@pytest.fixture
def plans() -> UsagePlans:
    return UsagePlans(MemoryStore(), clock=Clock(NOW))


# ------------------------------------------------------------------------------------------------ keys


async def test_created_key_has_a_generated_40_character_value_and_aws_like_id(plans: UsagePlans) -> None:
    created = await plans.create_key(name="alice", description="first customer")
    assert re.fullmatch(r"[A-Za-z0-9]{40}", created.value)
    assert re.fullmatch(r"[a-z0-9]{10}", created.key.id)
    assert created.key.hint == created.value[-4:]
    assert (created.key.name, created.key.description, created.key.enabled) == (
        "alice",
        "first customer",
        True,
    )
    assert created.key.to_json()["createdDate"] == "2024-05-15T12:00:00Z"
    assert await plans.get_key(created.key.id) == created.key
    other = await plans.create_key()
    assert other.value != created.value
    assert other.key.name == other.key.id  # no name given: the id
    assert [k.id for k in await plans.list_keys()] == sorted([created.key.id, other.key.id])


@pytest.mark.parametrize("value", [VALID_VALUE, "A" * 128, "Zz9" * 10])
async def test_imported_values_of_20_to_128_letters_and_digits_are_taken(
    plans: UsagePlans, value: str
) -> None:
    created = await plans.create_key(value=value)
    assert created.value == value
    found = await plans.find_key(value)
    assert found is not None
    assert found.id == created.key.id


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a" * 19, "20 to 128 characters, this one 19"),
        ("a" * 129, "20 to 128 characters, this one 129"),
        ("", "this one 0"),
        ("abcdefghij-123456789", "only letters A-Z, a-z and digits 0-9"),
        ("abcdefghij 123456789", "only letters"),
        ("abcdefghijé123456789", "only letters"),
    ],
)
async def test_imported_values_outside_aws_rules_are_refused(plans: UsagePlans, value: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why) as caught:
        await plans.create_key(value=value)
    assert str(caught.value).startswith("--value: ")
    assert await plans.list_keys() == []


async def test_a_value_can_belong_to_one_key_only(plans: UsagePlans) -> None:
    first = await plans.create_key(value=VALID_VALUE)
    with pytest.raises(Conflict, match=f"exists already \\({first.key.id}\\)"):
        await plans.create_key(value=VALID_VALUE, name="again")
    assert len(await plans.list_keys()) == 1


async def test_the_value_is_stored_nowhere_only_its_digest(tmp_path: Path, sqlite_store: SQLiteStore) -> None:
    plans = UsagePlans(sqlite_store, clock=Clock(NOW))
    plan = await plans.create_plan(name="basic", api_stages=[ApiStage("Shop", "dev")])
    created = await plans.create_key(name="alice", plan_ids=[plan.id])
    await plans.disable_key(created.key.id)
    await plans.enable_key(created.key.id)
    records = [
        *await sqlite_store.list_records(KEY_KIND),
        *await sqlite_store.list_records(KEY_HASH_KIND),
        *await sqlite_store.list_records(PLAN_KIND),
    ]
    assert len(records) == 3
    dumped = orjson.dumps(records)
    assert created.value.encode() not in dumped
    assert created.value[:-4].encode() not in dumped
    assert (await sqlite_store.get_record(KEY_KIND, created.key.id) or {})["valueSha256"] == hash_key_value(
        created.value
    )
    await sqlite_store.close()
    files = await asyncio.to_thread(lambda: {p.name: p.read_bytes() for p in tmp_path.iterdir()})
    assert "state.db" in files
    for name, data in files.items():  # the database and its WAL: not a trace of the value
        assert created.value.encode() not in data, name
    assert "valueSha256" not in created.key.to_json()


async def test_enable_disable_and_delete(plans: UsagePlans) -> None:
    created = await plans.create_key(name="bob", enabled=False)
    assert not created.key.enabled
    assert (await plans.enable_key(created.key.id)).enabled
    disabled = await plans.disable_key(created.key.id)
    assert not disabled.enabled
    assert not (await plans.get_key(created.key.id)).enabled
    await plans.delete_key(created.key.id)
    assert await plans.find_key(created.value) is None
    assert await plans.list_keys() == []
    for operation in (plans.get_key, plans.enable_key, plans.delete_key):
        with pytest.raises(NotFound, match=f"no API key '{created.key.id}'"):
            await operation(created.key.id)


async def test_a_deleted_value_can_be_imported_again(plans: UsagePlans) -> None:
    first = await plans.create_key(value=VALID_VALUE)
    await plans.delete_key(first.key.id)
    again = await plans.create_key(value=VALID_VALUE)
    assert again.key.id != first.key.id
    found = await plans.find_key(VALID_VALUE)
    assert found is not None
    assert found.id == again.key.id


# ----------------------------------------------------------------------------------------------- plans


async def test_plan_crud(plans: UsagePlans) -> None:
    plan = await plans.create_plan(
        name="gold",
        description="for the best",
        api_stages=[
            ApiStage("Shop", "prod", {"/items/{id}/GET": ThrottleSettings(5.0, 10)}),
            ApiStage("a1b2c3d4e5", "dev"),
        ],
        throttle=ThrottleSettings(100.0, 200),
        quota=QuotaSettings(10_000, Period.MONTH, 500),
    )
    assert re.fullmatch(r"[a-z0-9]{6}", plan.id)
    assert plan.to_json() == {
        "id": plan.id,
        "name": "gold",
        "description": "for the best",
        "apiStages": [
            {
                "api": "Shop",
                "stage": "prod",
                "throttle": {"/items/{id}/GET": {"rateLimit": 5.0, "burstLimit": 10}},
            },
            {"api": "a1b2c3d4e5", "stage": "dev"},
        ],
        "throttle": {"rateLimit": 100.0, "burstLimit": 200},
        "quota": {"limit": 10_000, "offset": 500, "period": "MONTH"},
        "createdDate": "2024-05-15T12:00:00Z",
    }
    assert await plans.get_plan(plan.id) == plan
    bare = await plans.create_plan(name="bare")
    assert (bare.throttle, bare.quota, bare.api_stages) == (None, None, ())
    assert {p.id for p in await plans.list_plans()} == {plan.id, bare.id}
    key = await plans.create_key(plan_ids=[plan.id, bare.id])
    await plans.delete_plan(plan.id)
    assert (await plans.get_key(key.key.id)).plan_ids == (bare.id,)  # the key stays, without the plan
    with pytest.raises(NotFound, match=f"no usage plan '{plan.id}'"):
        await plans.get_plan(plan.id)
    assert [p.id for p in await plans.list_plans()] == [bare.id]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ThrottleSettings(-1.0, 1), "rateLimit -1.0: expected a number ≥ 0"),
        (lambda: ThrottleSettings(float("nan"), 1), "rateLimit nan"),
        (lambda: ThrottleSettings(1.0, -1), "burstLimit -1"),
        (lambda: QuotaSettings(-5, Period.DAY), "quota limit -5"),
        (lambda: QuotaSettings(10, Period.DAY, 11), "quota offset 11 is more than the limit 10"),
        (lambda: QuotaSettings(10, Period.DAY, -1), "quota offset -1"),
        (lambda: QuotaSettings.from_json({"limit": 1, "period": "YEAR"}), "quota period 'YEAR'"),
        (lambda: ApiStage("", "dev"), "the API \\(its id or title\\) is empty"),
        (lambda: ApiStage("Shop", ""), "the stage name is empty"),
        (lambda: ApiStage("Shop", "dev", {"/items": ThrottleSettings(1, 1)}), "expected /resource/METHOD"),
        (lambda: ApiStage("Shop", "dev", {"items/GET": ThrottleSettings(1, 1)}), "expected /resource/METHOD"),
        (
            lambda: ApiStage("Shop", "dev", {"/items/FETCH": ThrottleSettings(1, 1)}),
            "expected /resource/METHOD",
        ),
    ],
)
def test_settings_outside_aws_rules_are_refused(build: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build()


async def test_plan_names_and_stages_are_checked(plans: UsagePlans) -> None:
    with pytest.raises(InvalidInput, match="needs a name"):
        await plans.create_plan(name="")
    with pytest.raises(InvalidInput, match="at most 1024"):
        await plans.create_plan(name="x" * 1025)
    with pytest.raises(InvalidInput, match="Shop:dev: named twice"):
        await plans.create_plan(name="twice", api_stages=[ApiStage("Shop", "dev"), ApiStage("Shop", "dev")])
    assert await plans.list_plans() == []


async def test_a_key_is_in_one_plan_per_api_stage(plans: UsagePlans) -> None:
    dev = await plans.create_plan(name="dev", api_stages=[ApiStage("Shop", "dev")])
    prod = await plans.create_plan(
        name="prod", api_stages=[ApiStage("Shop", "prod"), ApiStage("Blog", "dev")]
    )
    other_dev = await plans.create_plan(name="dev too", api_stages=[ApiStage("Shop", "dev")])
    key = (await plans.create_key()).key
    await plans.add_key(dev.id, key.id)
    assert (await plans.add_key(prod.id, key.id)).plan_ids == (dev.id, prod.id)  # other stages: fine
    with pytest.raises(Conflict, match=f"{other_dev.id} and {dev.id} both cover Shop:dev"):
        await plans.add_key(other_dev.id, key.id)
    with pytest.raises(Conflict, match=r"is in usage plan \w+ already"):
        await plans.add_key(dev.id, key.id)
    with pytest.raises(Conflict, match="one usage plan per API stage"):
        await plans.create_key(plan_ids=[dev.id, other_dev.id])
    second = (await plans.create_key()).key
    await plans.add_key(other_dev.id, second.id)  # the rule is per key: another key may be in that plan
    assert [k.id for k in await plans.plan_keys(dev.id)] == [key.id]
    assert (await plans.remove_key(dev.id, key.id)).plan_ids == (prod.id,)
    await plans.add_key(other_dev.id, key.id)  # out of the first plan, into the other one
    with pytest.raises(NotFound, match="is not in usage plan"):
        await plans.remove_key(dev.id, key.id)
    with pytest.raises(NotFound, match="no usage plan 'nope00'"):
        await plans.remove_key("nope00", key.id)
    with pytest.raises(NotFound, match="no usage plan 'nope00'"):
        await plans.add_key("nope00", key.id)
    with pytest.raises(NotFound, match="no API key 'nokey'"):
        await plans.add_key(dev.id, "nokey")
    with pytest.raises(NotFound, match="no usage plan 'nope00'"):
        await plans.create_key(plan_ids=["nope00"])


# -------------------------------------------------------------------------------------- quota windows


def window(period: Period, at: str) -> tuple[str, str]:
    start, end = quota_window(period, ts(at))
    return iso(start), iso(end)


def test_a_day_runs_from_utc_midnight_to_midnight() -> None:
    assert window(Period.DAY, "2024-05-15T00:00:00") == ("2024-05-15T00:00:00", "2024-05-16T00:00:00")
    assert window(Period.DAY, "2024-05-15T23:59:59.999") == ("2024-05-15T00:00:00", "2024-05-16T00:00:00")
    assert window(Period.DAY, "2024-12-31T23:00:00") == ("2024-12-31T00:00:00", "2025-01-01T00:00:00")
    assert window(Period.DAY, "2024-02-28T10:00:00") == ("2024-02-28T00:00:00", "2024-02-29T00:00:00")


@pytest.mark.parametrize(
    ("at", "start", "end"),
    [
        ("2024-05-12T00:00:00", "2024-05-12T00:00:00", "2024-05-19T00:00:00"),  # a Sunday starts a week
        ("2024-05-15T12:00:00", "2024-05-12T00:00:00", "2024-05-19T00:00:00"),  # Wednesday
        ("2024-05-18T23:59:59", "2024-05-12T00:00:00", "2024-05-19T00:00:00"),  # Saturday's last second
        ("2024-05-19T00:00:00", "2024-05-19T00:00:00", "2024-05-26T00:00:00"),  # the next Sunday
        ("2024-01-01T08:00:00", "2023-12-31T00:00:00", "2024-01-07T00:00:00"),  # across a new year
        ("2024-03-01T00:00:00", "2024-02-25T00:00:00", "2024-03-03T00:00:00"),  # across Feb 29
    ],
)
def test_a_week_runs_from_sunday_to_sunday_utc(at: str, start: str, end: str) -> None:
    assert window(Period.WEEK, at) == (start, end)


@pytest.mark.parametrize(
    ("at", "start", "end"),
    [
        ("2024-01-31T23:59:59", "2024-01-01T00:00:00", "2024-02-01T00:00:00"),
        ("2024-02-01T00:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
        ("2024-02-29T12:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),  # leap year: 29 days
        ("2023-02-28T23:59:59", "2023-02-01T00:00:00", "2023-03-01T00:00:00"),  # not a leap year: 28
        ("2100-02-28T00:00:00", "2100-02-01T00:00:00", "2100-03-01T00:00:00"),  # 2100 is no leap year
        ("2024-04-30T23:59:59", "2024-04-01T00:00:00", "2024-05-01T00:00:00"),  # 30 days
        ("2024-12-31T23:59:59", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),  # December into January
        ("2025-01-01T00:00:00", "2025-01-01T00:00:00", "2025-02-01T00:00:00"),
    ],
)
def test_a_month_is_the_utc_calendar_month(at: str, start: str, end: str) -> None:
    assert window(Period.MONTH, at) == (start, end)


def test_the_offset_lowers_the_limit_of_the_window_the_plan_was_made_in_only() -> None:
    quota = QuotaSettings(100, Period.MONTH, 30)
    created = ts("2024-05-20T10:00:00")
    assert quota.limit_in(quota_window(Period.MONTH, ts("2024-05-31T23:59:59")), created) == 70
    assert quota.limit_in(quota_window(Period.MONTH, ts("2024-05-01T00:00:00")), created) == 70
    assert quota.limit_in(quota_window(Period.MONTH, ts("2024-06-01T00:00:00")), created) == 100
    assert quota.limit_in(quota_window(Period.MONTH, ts("2024-04-30T00:00:00")), created) == 100
    assert QuotaSettings(100, Period.MONTH).limit_in(quota_window(Period.MONTH, created), created) == 100


# ------------------------------------------------------------------------------- counting and usage


async def test_a_quota_refuses_what_passes_it_and_counts_only_what_it_admits() -> None:
    store = MemoryStore()
    plan = UsagePlan("p1", "weekly", quota=QuotaSettings(3, Period.WEEK), created=ts("2024-01-01T00:00:00"))
    saturday = ts("2024-05-18T23:00:00")
    assert [await count_request(store, plan, "k1", saturday) for _ in range(4)] == [True, True, True, False]
    assert await count_request(store, plan, "k2", saturday)  # every key has its own quota
    assert await count_request(store, plan, "k1", ts("2024-05-19T00:00:00"))  # Sunday: a new week
    plans = UsagePlans(store, clock=Clock(saturday))
    await store.put_record(PLAN_KIND, "p1", plan.to_record())
    await store.put_record(
        KEY_KIND,
        "k1",
        {
            "id": "k1",
            "name": "k1",
            "valueSha256": "x",
            "planIds": ["p1"],
            "createdDate": "2024-01-01T00:00:00Z",
        },
    )
    usage = await plans.usage("k1", date(2024, 5, 17), date(2024, 5, 20))
    assert usage.to_get_usage() == {
        "usagePlanId": "p1",
        "startDate": "2024-05-17",
        "endDate": "2024-05-20",
        "items": {"k1": [[0, 3], [3, 0], [1, 2], [0, 2]]},  # the refused 4th request is nowhere
    }


async def test_usage_follows_the_quota_window_and_its_initial_offset() -> None:
    store = MemoryStore()
    clock = Clock(ts("2024-05-30T09:00:00"))
    plans = UsagePlans(store, clock=clock)
    plan = await plans.create_plan(name="monthly", quota=QuotaSettings(10, Period.MONTH, 4))
    key = (await plans.create_key(plan_ids=[plan.id])).key
    admitted = {
        when: [await count_request(store, plan, key.id, ts(when)) for _ in range(n)]
        for when, n in (("2024-05-30T09:00:00", 2), ("2024-05-31T23:59:59", 5), ("2024-06-01T00:00:00", 3))
    }
    assert admitted == {  # 10 - 4 = 6 in May, the month the plan was made in
        "2024-05-30T09:00:00": [True, True],
        "2024-05-31T23:59:59": [True, True, True, True, False],
        "2024-06-01T00:00:00": [True, True, True],
    }
    usage = await plans.usage(key.id, date(2024, 5, 29), date(2024, 6, 2))
    assert [(d.day.isoformat(), d.used, d.remaining) for d in usage.days] == [
        ("2024-05-29", 0, 6),
        ("2024-05-30", 2, 4),
        ("2024-05-31", 4, 0),  # 4 of the 5: the 5th passed May's 6
        ("2024-06-01", 3, 7),  # June: the whole limit, no offset
        ("2024-06-02", 0, 7),
    ]


async def test_a_daily_quota_and_a_plan_without_quota() -> None:
    store = MemoryStore()
    plans = UsagePlans(store, clock=Clock(NOW))
    daily = await plans.create_plan(
        name="daily", quota=QuotaSettings(2, Period.DAY), api_stages=[ApiStage("A", "d")]
    )
    free = await plans.create_plan(name="free", api_stages=[ApiStage("B", "d")])
    key = (await plans.create_key(plan_ids=[daily.id, free.id])).key
    assert [await count_request(store, daily, key.id, NOW) for _ in range(3)] == [True, True, False]
    assert await count_request(store, daily, key.id, ts("2024-05-16T00:00:00"))
    for _ in range(5):
        assert await count_request(store, free, key.id, NOW)
    with pytest.raises(InvalidInput, match="is in 2 usage plans"):
        await plans.usage(key.id, date(2024, 5, 15), date(2024, 5, 16))
    assert (await plans.usage(key.id, date(2024, 5, 15), date(2024, 5, 16), daily.id)).to_get_usage()[
        "items"
    ] == {key.id: [[2, 0], [1, 1]]}
    assert (await plans.usage(key.id, date(2024, 5, 15), date(2024, 5, 16), free.id)).to_get_usage()[
        "items"
    ] == {key.id: [[5, None], [0, None]]}
    with pytest.raises(InvalidInput, match="--to 2024-05-14 is before --from 2024-05-15"):
        await plans.usage(key.id, date(2024, 5, 15), date(2024, 5, 14), daily.id)
    alone = (await plans.create_key()).key
    with pytest.raises(InvalidInput, match="is in 0 usage plans"):
        await plans.usage(alone.id, date(2024, 5, 15), date(2024, 5, 15))


async def test_counters_and_usage_in_a_sqlite_file(sqlite_store: SQLiteStore) -> None:
    plans = UsagePlans(sqlite_store, clock=Clock(NOW))
    plan = await plans.create_plan(name="daily", quota=QuotaSettings(2, Period.DAY))
    key = (await plans.create_key(plan_ids=[plan.id])).key
    assert [await count_request(sqlite_store, plan, key.id, NOW) for _ in range(3)] == [True, True, False]
    usage = await plans.usage(key.id, date(2024, 5, 15), date(2024, 5, 15))
    assert usage.to_get_usage()["items"] == {key.id: [[2, 0]]}


# --------------------------------------------------------------------------------------------- KeyCache


async def _store_with_key(store: Store, enabled: bool = True) -> tuple[UsagePlans, str, str, str]:
    plans = UsagePlans(store, clock=Clock(NOW))
    plan = await plans.create_plan(name="basic", api_stages=[ApiStage("Shop", "dev")])
    created = await plans.create_key(value=VALID_VALUE, enabled=enabled, plan_ids=[plan.id])
    return plans, created.value, created.key.id, plan.id


async def test_key_cache_rereads_a_key_after_its_ttl() -> None:
    store = FlakyStore()
    plans, value, key_id, plan_id = await _store_with_key(store)
    store.calls.clear()
    clock = Clock(1000.0)
    cache = KeyCache(store, clock=clock, ttl_s=5.0)
    resolved = await cache.resolve(value)
    assert resolved is not None
    assert resolved.key.id == key_id
    assert [p.id for p in resolved.plans] == [plan_id]
    grant = resolved.grant_for("xyz", "Shop", "dev")
    assert grant is not None
    assert grant.plan.id == plan_id
    assert resolved.grant_for("Shop", "other title", "dev") is not None  # by id too
    assert resolved.grant_for("xyz", "Shop", "prod") is None
    await plans.disable_key(key_id)
    clock.now += 4.9
    cached = await cache.resolve(value)
    assert cached is not None
    assert cached.key.enabled  # not re-read yet
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == 1
    clock.now += 0.2
    fresh = await cache.resolve(value)
    assert fresh is not None
    assert not fresh.key.enabled
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == 2


async def test_key_cache_remembers_unknown_values_briefly() -> None:
    store = FlakyStore()
    plans = UsagePlans(store, clock=Clock(NOW))
    clock = Clock(1000.0)
    cache = KeyCache(store, clock=clock, ttl_s=5.0, negative_ttl_s=1.0)
    for _ in range(100):
        assert await cache.resolve(VALID_VALUE) is None
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == 1  # a flood of a wrong key: one read
    await plans.create_key(value=VALID_VALUE)
    clock.now += 0.9
    assert await cache.resolve(VALID_VALUE) is None
    clock.now += 0.2
    assert await cache.resolve(VALID_VALUE) is not None


async def test_concurrent_lookups_of_one_value_share_one_read() -> None:
    store = FlakyStore()
    _, value, key_id, _ = await _store_with_key(store)
    store.calls.clear()
    cache = KeyCache(store, clock=Clock(1000.0))
    answers = await asyncio.gather(*(cache.resolve(value) for _ in range(20)))
    assert {a.key.id for a in answers if a is not None} == {key_id}
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == 1


async def test_key_cache_is_bounded() -> None:
    store = FlakyStore()
    clock = Clock(1000.0)
    cache = KeyCache(store, clock=clock, max_entries=10)
    for i in range(50):
        await cache.resolve(f"unknown{i:020d}")
    assert len(cache._entries) == 10
    reads = store.calls[f"get_record:{KEY_HASH_KIND}"]
    await cache.resolve(f"unknown{49:020d}")  # among the latest: remembered
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == reads
    await cache.resolve(f"unknown{0:020d}")  # dropped long ago: read again
    assert store.calls[f"get_record:{KEY_HASH_KIND}"] == reads + 1


async def test_key_cache_answers_from_the_last_known_state_while_the_store_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    plans, value, key_id, _ = await _store_with_key(store)
    clock = Clock(1000.0)
    cache = KeyCache(store, clock=clock, ttl_s=5.0)
    assert await cache.resolve(value) is not None
    store.down = True
    caplog.set_level(logging.WARNING, logger="portway.usage_plans")
    for _ in range(5):
        clock.now += 6
        known = await cache.resolve(value)
        assert known is not None
        assert known.key.id == key_id
        assert await cache.resolve("neverseen0123456789xyz") is None  # never seen: unknown
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, caplog.text  # loudly, but once per outage
    assert "api keys: state store unavailable" in errors[0].getMessage()
    assert "last known" in errors[0].getMessage()
    store.down = False
    await plans.disable_key(key_id)
    clock.now += 6
    fresh = await cache.resolve(value)
    assert fresh is not None
    assert not fresh.key.enabled  # back to the store's state by itself
    assert any("state store back" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert cache.outage.down_since is None


async def test_preload_lets_keys_survive_an_outage_that_starts_at_once() -> None:
    store = FlakyStore()
    _, value, key_id, plan_id = await _store_with_key(store)
    cache = KeyCache(store, clock=Clock(1000.0))
    assert await cache.preload() == 1
    store.down = True
    resolved = await cache.resolve(value)
    assert resolved is not None
    assert (resolved.key.id, [p.id for p in resolved.plans]) == (key_id, [plan_id])


async def test_a_plan_read_once_serves_every_key_in_it() -> None:
    store = FlakyStore()
    plans = UsagePlans(store, clock=Clock(NOW))
    plan = await plans.create_plan(name="shared", api_stages=[ApiStage("Shop", "dev")])
    values = [(await plans.create_key(plan_ids=[plan.id])).value for _ in range(5)]
    store.calls.clear()
    cache = KeyCache(store, clock=Clock(1000.0))
    for value in values:
        assert await cache.resolve(value) is not None
    assert store.calls[f"get_record:{PLAN_KIND}"] == 1


async def test_an_api_named_by_id_in_one_plan_and_by_title_in_another_goes_to_the_smaller_plan_id() -> None:
    store = MemoryStore()
    plans = UsagePlans(store, clock=Clock(NOW))
    by_title = await plans.create_plan(name="t", api_stages=[ApiStage("Shop", "dev")])
    by_id = await plans.create_plan(name="i", api_stages=[ApiStage("a1b2c3d4e5", "dev")])
    created = await plans.create_key(plan_ids=[by_title.id, by_id.id])  # the texts differ: allowed
    resolved = await KeyCache(store).resolve(created.value)
    assert resolved is not None
    grant = resolved.grant_for("a1b2c3d4e5", "Shop", "dev")
    assert grant is not None
    assert grant.plan.id == min(by_title.id, by_id.id)


def test_root_and_nested_method_keys() -> None:
    assert method_key("/", "GET") == "//GET"
    assert method_key("/pets/{id}", "get") == "/pets/{id}/GET"
    stage = ApiStage(
        "Shop", "dev", {"//GET": ThrottleSettings(1, 1), "/pets/{id}/ANY": ThrottleSettings(1, 1)}
    )
    assert set(stage.throttle) == {"//GET", "/pets/{id}/ANY"}
