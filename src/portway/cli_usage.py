"""``portway keys``, ``portway usage-plans`` and ``portway usage``: API keys and usage plans from the shell.

Hooked into the ``portway`` command with :func:`register` (adds the three commands to its subparsers) and
:func:`run` (runs whichever of them was parsed). Also runnable alone:
``python -m portway.cli_usage keys list``.

Every command takes ``--state URL`` (default: the ``PORTWAY_STATE`` environment variable, else
``sqlite:.portway/state.db`` in the current directory), the store the gateway reads keys and plans from, and
``--json`` for machine-readable output. A key's value is printed once, when it is created; only its digest is
kept. Bad input exits 1 with one ``error: …`` line naming the argument.

    portway keys create --name alice --plan c7y23b
    portway usage-plans create --name basic --rate 10 --burst 20 --quota 1000/MONTH \\
        --stage "Products API:prod" --method-throttle "Products API:prod:/products/GET=5/10"
    portway usage-plans add-key c7y23b ru3mpjgse6
    portway usage ru3mpjgse6 --from 2024-05-01 --to 2024-05-07
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

import orjson

from portway.observability.usage import group_usage, read_usage
from portway.state.store import StoreError
from portway.usage_plans import (
    ApiKey,
    ApiStage,
    Period,
    QuotaSettings,
    ThrottleSettings,
    UsagePlan,
    UsagePlanError,
    UsagePlans,
)

__all__ = ["COMMANDS", "DEFAULT_STATE", "STATE_ENV", "main", "register", "run"]

COMMANDS = frozenset({"keys", "usage-plans", "usage"})
STATE_ENV = "PORTWAY_STATE"
DEFAULT_STATE = "sqlite:.portway/state.db"
EXIT_ERROR = 1

Handler = Callable[[UsagePlans, argparse.Namespace], Awaitable[int]]


class CliError(Exception):
    """Bad command-line input; the message names the argument."""


# ------------------------------------------------------------------------------------------- parsing


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys``, ``usage-plans`` and ``usage`` to a parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state",
        default=None,
        metavar="URL",
        help=f"state store: memory, redis://HOST:PORT/DB, sqlite:///PATH.db or a PATH.db (default: "
        f"${STATE_ENV}, else {DEFAULT_STATE})",
    )
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def leaf(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str, handler: Handler
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=text, description=text, parents=[common])
        sub.set_defaults(usage_handler=handler)
        return sub

    keys = commands.add_parser("keys", help="API keys: create, list, get, enable, disable, delete")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = leaf(key_commands, "create", "create an API key (its value is printed once)", _keys_create)
    create.add_argument("--name", default=None, help="a name (default: the key's id)")
    create.add_argument("--description", default="")
    create.add_argument(
        "--value",
        default=None,
        help="import this value (20-128 letters and digits) instead of generating one",
    )
    create.add_argument(
        "--plan",
        action="append",
        default=[],
        metavar="PLAN",
        help="add the key to this usage plan (repeatable)",
    )
    create.add_argument("--disabled", action="store_true", help="create the key disabled")
    leaf(key_commands, "list", "list API keys (never their values)", _keys_list)
    for name, text, handler in (
        ("get", "show an API key", _keys_get),
        ("enable", "let an API key be used again", _keys_enable),
        ("disable", "refuse an API key (403) until enabled", _keys_disable),
        ("delete", "delete an API key", _keys_delete),
    ):
        leaf(key_commands, name, text, handler).add_argument("key", metavar="KEY", help="the key's id")

    plans = commands.add_parser("usage-plans", help="usage plans: throttling and quotas per API key")
    plan_commands = plans.add_subparsers(dest="plans_command", required=True, metavar="COMMAND")
    make = leaf(plan_commands, "create", "create a usage plan", _plans_create)
    make.add_argument("--name", required=True)
    make.add_argument("--description", default="")
    make.add_argument("--rate", default=None, help="steady requests per second, per key")
    make.add_argument("--burst", default=None, help="burst size (token bucket), per key")
    make.add_argument(
        "--quota",
        default=None,
        metavar="LIMIT/PERIOD[+OFFSET]",
        help="e.g. 1000/MONTH, 100/DAY, 5000/WEEK+200",
    )
    make.add_argument(
        "--stage",
        action="append",
        default=[],
        metavar="API:STAGE",
        help="an API stage the plan covers; API is the API's id or its title (repeatable)",
    )
    make.add_argument(
        "--method-throttle",
        action="append",
        default=[],
        metavar="API:STAGE:/path/METHOD=RATE/BURST",
        help="a method's own throttle, e.g. 'Pets:prod:/pets/{id}/GET=5/10' (repeatable; adds the stage)",
    )
    leaf(plan_commands, "list", "list usage plans", _plans_list)
    leaf(plan_commands, "get", "show a usage plan and its keys", _plans_get).add_argument(
        "plan", metavar="PLAN"
    )
    leaf(plan_commands, "delete", "delete a usage plan (its keys stay)", _plans_delete).add_argument(
        "plan", metavar="PLAN"
    )
    for name, text, handler in (
        ("add-key", "add an API key to a usage plan", _plans_add_key),
        ("remove-key", "remove an API key from a usage plan", _plans_remove_key),
    ):
        sub = leaf(plan_commands, name, text, handler)
        sub.add_argument("plan", metavar="PLAN")
        sub.add_argument("key", metavar="KEY")

    usage = commands.add_parser(
        "usage",
        help="an API key's requests per day and its quota left; or, with --by, requests, errors and "
        "latency per day by route or by key",
        parents=[common],
    )
    usage.set_defaults(usage_handler=_usage)
    usage.add_argument(
        "key", metavar="KEY", nargs="?", default=None, help="the key's id (with --by: only its requests)"
    )
    usage.add_argument(
        "--by",
        choices=("route", "key"),
        default=None,
        help="traffic recorded by the gateways using this store: per day and route, or per day and key",
    )
    usage.add_argument("--from", dest="start", required=True, metavar="YYYY-MM-DD", help="first day (UTC)")
    usage.add_argument(
        "--to", dest="end", required=True, metavar="YYYY-MM-DD", help="last day (UTC), included"
    )
    usage.add_argument("--plan", default=None, help="the usage plan (needed when the key is in several)")


def state_url(args: argparse.Namespace) -> str:
    """The store URL a command uses: ``--state``, else ``$PORTWAY_STATE``, else the default."""
    return str(args.state or os.environ.get(STATE_ENV) or DEFAULT_STATE)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``keys`` / ``usage-plans`` / ``usage`` command; the exit status."""
    try:
        return asyncio.run(_run(args))
    except (CliError, UsagePlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except StoreError as exc:
        print(f"error: --state {state_url(args)}: {exc or type(exc).__name__}", file=sys.stderr)
    return EXIT_ERROR


async def _run(args: argparse.Namespace) -> int:
    from portway.state.factory import open_store

    url = state_url(args)
    try:
        store = open_store(url)
    except (ValueError, OSError) as exc:
        raise CliError(f"--state {url}: {exc}") from None
    try:
        handler: Handler = args.usage_handler
        return await handler(UsagePlans(store), args)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="portway", description="Manage Portway's API keys and usage plans.")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return run(parser.parse_args(argv))


# -------------------------------------------------------------------------------------------- inputs

_QUOTA = re.compile(r"(\d+)/([A-Za-z]+)(?:\+(\d+))?")
_RATE_BURST = re.compile(r"(\d+(?:\.\d+)?)/(\d+)")


def parse_quota(text: str) -> QuotaSettings:
    match = _QUOTA.fullmatch(text.strip())
    if match is None or match.group(2).upper() not in Period.__members__:
        raise CliError(
            f"--quota {text!r}: expected LIMIT/PERIOD[+OFFSET] with PERIOD DAY, WEEK or MONTH "
            "(e.g. 1000/MONTH+100)"
        )
    limit, period, offset = match.groups()
    try:
        return QuotaSettings(int(limit), Period(period.upper()), int(offset or 0))
    except UsagePlanError as exc:
        raise CliError(f"--quota {text!r}: {exc}") from None


def parse_throttle(rate: str | None, burst: str | None) -> ThrottleSettings | None:
    if rate is None and burst is None:
        return None
    if rate is None or burst is None:
        raise CliError("--rate and --burst go together: give both")
    try:
        rate_value = float(rate)
    except ValueError:
        raise CliError(f"--rate {rate!r}: expected requests per second, a number ≥ 0") from None
    if not burst.isdigit():
        raise CliError(f"--burst {burst!r}: expected a whole number ≥ 0")
    try:
        return ThrottleSettings(rate_value, int(burst))
    except UsagePlanError as exc:
        raise CliError(f"--rate {rate!r}: {exc}") from None


def parse_stage(text: str, option: str = "--stage") -> tuple[str, str]:
    api, sep, stage = text.rpartition(":")
    if not sep or not api or not stage:
        raise CliError(f"{option} {text!r}: expected API:STAGE (API is the API's id or title)")
    return api, stage


def parse_method_throttle(text: str) -> tuple[str, str, str, ThrottleSettings]:
    target, sep, limits = text.rpartition("=")
    where, slash, path = target.partition(":/")
    rate_burst = _RATE_BURST.fullmatch(limits)
    if not sep or not slash or rate_burst is None:
        raise CliError(
            f"--method-throttle {text!r}: expected API:STAGE:/path/METHOD=RATE/BURST "
            "(e.g. Pets:prod:/pets/GET=5/10)"
        )
    api, stage = parse_stage(where, "--method-throttle")
    try:
        return api, stage, "/" + path, ThrottleSettings(float(rate_burst.group(1)), int(rate_burst.group(2)))
    except UsagePlanError as exc:
        raise CliError(f"--method-throttle {text!r}: {exc}") from None


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"{option} {text!r}: expected a date YYYY-MM-DD") from None


def api_stages(stages: Sequence[str], method_throttles: Sequence[str]) -> list[ApiStage]:
    order: dict[tuple[str, str], dict[str, ThrottleSettings]] = {}
    for text in stages:
        key = parse_stage(text)
        if key in order:
            raise CliError(f"--stage {text!r}: named twice")
        order[key] = {}
    for text in method_throttles:
        api, stage, path, limits = parse_method_throttle(text)
        order.setdefault((api, stage), {})[path] = limits
    try:
        return [ApiStage(api, stage, throttle) for (api, stage), throttle in order.items()]
    except UsagePlanError as exc:
        raise CliError(f"--method-throttle: {exc}") from None


# ------------------------------------------------------------------------------------------- outputs


def _print_json(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def _fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{name + ':':<{width}} {value}".rstrip() for name, value in pairs)


def _hint(key: ApiKey) -> str:
    return f"…{key.hint}"


def _describe_key(key: ApiKey, value: str | None = None) -> str:
    as_json = key.to_json()
    shown = (
        value if value is not None else f"{_hint(key)} (only its last {len(key.hint)} characters are kept)"
    )
    return _fields(
        [
            ("id", key.id),
            ("name", key.name),
            ("description", key.description),
            ("enabled", "yes" if key.enabled else "no"),
            ("value", shown),
            ("usage plans", ", ".join(key.plan_ids) or "-"),
            ("created", as_json["createdDate"]),
            ("updated", as_json["lastUpdatedDate"]),
        ]
    )


def _throttle_text(throttle: ThrottleSettings | None) -> str:
    return f"{throttle.rate_limit:g}/s burst {throttle.burst_limit}" if throttle is not None else "-"


def _quota_text(plan: UsagePlan) -> str:
    quota = plan.quota
    if quota is None:
        return "-"
    first = f" ({quota.limit - quota.offset} in the plan's first)" if quota.offset else ""
    return f"{quota.limit}/{quota.period.value}{first}"


def _describe_plan(plan: UsagePlan, keys: Sequence[ApiKey]) -> str:
    pairs = [
        ("id", plan.id),
        ("name", plan.name),
        ("description", plan.description),
        ("throttle", _throttle_text(plan.throttle)),
        ("quota", _quota_text(plan)),
        ("created", plan.to_json()["createdDate"]),
    ]
    for api_stage in plan.api_stages:
        pairs.append(("stage", api_stage.label))
        pairs.extend(
            (f"  {path}", _throttle_text(limits)) for path, limits in sorted(api_stage.throttle.items())
        )
    if not plan.api_stages:
        pairs.append(("stage", "- (covers no API stage yet)"))
    pairs.append(("keys", ", ".join(f"{k.id} ({k.name})" for k in keys) or "-"))
    return _fields(pairs)


# ------------------------------------------------------------------------------------------ commands


async def _keys_create(ops: UsagePlans, args: argparse.Namespace) -> int:
    for plan_id in args.plan:
        try:
            await ops.get_plan(plan_id)
        except UsagePlanError as exc:
            raise CliError(f"--plan: {exc}") from None
    created = await ops.create_key(
        name=args.name,
        description=args.description,
        value=args.value,
        enabled=not args.disabled,
        plan_ids=args.plan,
    )
    if args.json:
        _print_json({**created.key.to_json(), "value": created.value})
    else:
        print(_describe_key(created.key, created.value))
    if args.value is None:
        print(
            "warning: this is the only time the key's value is shown: Portway keeps only its digest. "
            "Copy it now.",
            file=sys.stderr,
        )
    return 0


async def _keys_list(ops: UsagePlans, args: argparse.Namespace) -> int:
    keys = await ops.list_keys()
    if args.json:
        _print_json({"items": [k.to_json() for k in keys]})
        return 0
    if not keys:
        print("no API keys")
        return 0
    rows = [("ID", "NAME", "ENABLED", "VALUE", "USAGE PLANS", "CREATED")]
    rows.extend(
        (
            k.id,
            k.name,
            "yes" if k.enabled else "no",
            _hint(k),
            ",".join(k.plan_ids) or "-",
            k.to_json()["createdDate"],
        )
        for k in keys
    )
    print(_table(rows))
    return 0


async def _show_key(key: ApiKey, args: argparse.Namespace, done: str | None = None) -> int:
    if args.json:
        _print_json(key.to_json())
    elif done is not None:
        print(f"API key {key.id} ({key.name}) {done}")
    else:
        print(_describe_key(key))
    return 0


async def _keys_get(ops: UsagePlans, args: argparse.Namespace) -> int:
    return await _show_key(await ops.get_key(args.key), args)


async def _keys_enable(ops: UsagePlans, args: argparse.Namespace) -> int:
    return await _show_key(await ops.enable_key(args.key), args, "enabled")


async def _keys_disable(ops: UsagePlans, args: argparse.Namespace) -> int:
    return await _show_key(await ops.disable_key(args.key), args, "disabled")


async def _keys_delete(ops: UsagePlans, args: argparse.Namespace) -> int:
    key = await ops.get_key(args.key)
    await ops.delete_key(key.id)
    return await _show_key(key, args, "deleted")


async def _plans_create(ops: UsagePlans, args: argparse.Namespace) -> int:
    throttle = parse_throttle(args.rate, args.burst)
    quota = parse_quota(args.quota) if args.quota is not None else None
    stages = api_stages(args.stage, args.method_throttle)
    plan = await ops.create_plan(
        name=args.name, description=args.description, api_stages=stages, throttle=throttle, quota=quota
    )
    if args.json:
        _print_json(plan.to_json())
    else:
        print(_describe_plan(plan, []))
    return 0


async def _plans_list(ops: UsagePlans, args: argparse.Namespace) -> int:
    plans = await ops.list_plans()
    if args.json:
        _print_json({"items": [p.to_json() for p in plans]})
        return 0
    if not plans:
        print("no usage plans")
        return 0
    rows = [("ID", "NAME", "THROTTLE", "QUOTA", "STAGES")]
    rows.extend(
        (
            p.id,
            p.name,
            _throttle_text(p.throttle),
            _quota_text(p),
            ", ".join(s.label for s in p.api_stages) or "-",
        )
        for p in plans
    )
    print(_table(rows))
    return 0


async def _plans_get(ops: UsagePlans, args: argparse.Namespace) -> int:
    plan = await ops.get_plan(args.plan)
    keys = await ops.plan_keys(plan.id)
    if args.json:
        _print_json({**plan.to_json(), "keyIds": [k.id for k in keys]})
    else:
        print(_describe_plan(plan, keys))
    return 0


async def _plans_delete(ops: UsagePlans, args: argparse.Namespace) -> int:
    plan = await ops.get_plan(args.plan)
    await ops.delete_plan(plan.id)
    if args.json:
        _print_json(plan.to_json())
    else:
        print(f"usage plan {plan.id} ({plan.name}) deleted")
    return 0


async def _plans_add_key(ops: UsagePlans, args: argparse.Namespace) -> int:
    key = await ops.add_key(args.plan, args.key)
    return await _show_key(key, args, f"added to usage plan {args.plan}")


async def _plans_remove_key(ops: UsagePlans, args: argparse.Namespace) -> int:
    key = await ops.remove_key(args.plan, args.key)
    return await _show_key(key, args, f"removed from usage plan {args.plan}")


async def _usage(ops: UsagePlans, args: argparse.Namespace) -> int:
    start = parse_day(args.start, "--from")
    end = parse_day(args.end, "--to")
    if args.by is not None:
        return await _traffic(ops, args, start, end)
    if args.key is None:
        raise CliError("give KEY (an API key's quota usage) or --by route|key (traffic)")
    report = await ops.usage(args.key, start, end, args.plan)
    if args.json:
        _print_json(report.to_get_usage())
        return 0
    print(f"API key {report.key_id}, usage plan {report.plan_id} (days in UTC)")
    rows = [("DATE", "USED", "REMAINING")]
    rows.extend(
        (d.day.isoformat(), str(d.used), "-" if d.remaining is None else str(d.remaining))
        for d in report.days
    )
    print(_table(rows))
    return 0


async def _traffic(ops: UsagePlans, args: argparse.Namespace, start: date, end: date) -> int:
    """Requests, 4xx, 5xx and mean latency per day, by route or by key, from every gateway's records."""
    if end < start:
        raise CliError("--to: must not be before --from")
    rows = [row for row in await read_usage(ops.store, start, end) if args.key in (None, row.key_id)]
    by: str = args.by
    items = group_usage(rows, by)
    if args.json:
        _print_json({"from": start.isoformat(), "to": end.isoformat(), "by": by, "items": items})
        return 0
    table = [("DATE", by.upper(), "REQUESTS", "4XX", "5XX", "AVG MS")]
    table.extend(
        (
            item["day"],
            item[by],
            str(item["count"]),
            str(item["4xx"]),
            str(item["5xx"]),
            "-" if item["latency_avg_ms"] is None else f"{item['latency_avg_ms']:.1f}",
        )
        for item in items
    )
    print(_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
