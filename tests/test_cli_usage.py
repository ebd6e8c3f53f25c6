"""``keys``, ``usage-plans`` and ``usage`` end to end: the commands in a subprocess on a real SQLite file."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from portway import cli_usage
from portway.state.sqlite import SQLiteStore
from portway.usage_plans import UsagePlans, count_request
from tests.conftest import closed_port

TIMEOUT_S = 60.0


class Cli:
    """Runs ``python -m portway.cli_usage`` in a directory, against one state file."""

    def __init__(self, cwd: Path, state: Path | None) -> None:
        self.cwd = cwd
        self.state = state

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        state = ("--state", str(self.state)) if self.state is not None else ()
        environment = {k: v for k, v in os.environ.items() if k != cli_usage.STATE_ENV}
        return subprocess.run(
            [sys.executable, "-m", "portway.cli_usage", *args, *state],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=self.cwd,
            env={**environment, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def error(self, *args: str) -> str:
        """Exit 1 with exactly one ``error: …`` line, and no traceback."""
        result = self(*args)
        assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr + result.stdout
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), result.stderr
        return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path, tmp_path / "state.db")


def test_a_created_key_value_is_shown_once_and_stored_nowhere(cli: Cli) -> None:
    result = cli("keys", "create", "--name", "alice", "--description", "first customer")
    assert result.returncode == 0, result.stderr
    value = re.search(r"^value:\s+([A-Za-z0-9]{40})$", result.stdout, re.MULTILINE)
    assert value is not None, result.stdout
    assert "only time the key's value is shown" in result.stderr
    assert result.stderr.startswith("warning: ")
    listed = cli.ok("keys", "list")
    assert value.group(1) not in listed
    assert "alice" in listed
    assert f"…{value.group(1)[-4:]}" in listed  # the hint tells keys apart
    [key] = cli.json("keys", "list")["items"]
    assert key["name"] == "alice"
    assert "value" not in key
    assert value.group(1) not in cli.ok("keys", "get", key["id"])
    assert value.group(1) not in json.dumps(cli.json("keys", "get", key["id"]))
    for path in cli.cwd.iterdir():  # the database and its WAL
        assert value.group(1).encode() not in path.read_bytes(), path


def test_keys_as_json_and_imported_values(cli: Cli) -> None:
    created = cli.json("keys", "create", "--value", "MyImportedKey0123456789", "--disabled")
    assert created["value"] == "MyImportedKey0123456789"
    assert (created["enabled"], created["hint"], created["name"]) == (False, "6789", created["id"])
    assert re.fullmatch(r"[a-z0-9]{10}", created["id"])
    assert (
        cli.ok("keys", "enable", created["id"]).strip()
        == f"API key {created['id']} ({created['id']}) enabled"
    )
    assert cli.json("keys", "get", created["id"])["enabled"] is True
    assert cli.json("keys", "disable", created["id"])["enabled"] is False
    assert "already" in cli.error("keys", "create", "--value", "MyImportedKey0123456789")
    cli.ok("keys", "delete", created["id"])
    assert cli.json("keys", "list") == {"items": []}
    assert cli.ok("keys", "list").strip() == "no API keys"


def test_plans_keys_and_usage(cli: Cli) -> None:
    plan = cli.json(
        "usage-plans",
        "create",
        "--name",
        "basic",
        "--description",
        "the basic tier",
        "--rate",
        "10",
        "--burst",
        "20",
        "--quota",
        "5/day",
        "--stage",
        "Shop API:dev",
        "--method-throttle",
        "Shop API:dev:/items/{id}/GET=2.5/5",
        "--method-throttle",
        "Shop API:prod:/items/POST=1/1",  # adds the stage
    )
    assert {k: v for k, v in plan.items() if k not in ("id", "createdDate")} == {
        "name": "basic",
        "description": "the basic tier",
        "apiStages": [
            {
                "api": "Shop API",
                "stage": "dev",
                "throttle": {"/items/{id}/GET": {"rateLimit": 2.5, "burstLimit": 5}},
            },
            {
                "api": "Shop API",
                "stage": "prod",
                "throttle": {"/items/POST": {"rateLimit": 1.0, "burstLimit": 1}},
            },
        ],
        "throttle": {"rateLimit": 10.0, "burstLimit": 20},
        "quota": {"limit": 5, "offset": 0, "period": "DAY"},
    }
    table = cli.ok("usage-plans", "list")
    assert re.search(
        rf"^{plan['id']}\s+basic\s+10/s burst 20\s+5/DAY\s+Shop API:dev, Shop API:prod$", table, re.M
    )
    key = cli.json("keys", "create", "--name", "alice")
    assert cli.ok("usage-plans", "add-key", plan["id"], key["id"]).strip() == (
        f"API key {key['id']} (alice) added to usage plan {plan['id']}"
    )
    shown = cli.ok("usage-plans", "get", plan["id"])
    assert f"{key['id']} (alice)" in shown
    assert cli.json("usage-plans", "get", plan["id"])["keyIds"] == [key["id"]]

    async def requests(n: int) -> None:  # what the gateway would count, in the same file
        store = SQLiteStore(cli.state or Path())
        try:
            plans = UsagePlans(store)
            stored = await plans.get_plan(plan["id"])
            for _ in range(n):
                await count_request(store, stored, key["id"], time.time())
        finally:
            await store.close()

    asyncio.run(requests(7))  # 5 admitted, 2 refused
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()
    report = cli.json("usage", key["id"], "--from", yesterday, "--to", today.isoformat())
    assert report == {
        "usagePlanId": plan["id"],
        "startDate": yesterday,
        "endDate": today.isoformat(),
        "items": {key["id"]: [[0, 5], [5, 0]]},
    }
    text = cli.ok("usage", key["id"], "--from", yesterday, "--to", today.isoformat())
    assert re.search(rf"^{today.isoformat()}\s+5\s+0$", text, re.M), text
    assert re.search(rf"^{yesterday}\s+0\s+5$", text, re.M), text

    other = cli.json("usage-plans", "create", "--name", "other", "--stage", "Shop API:dev")
    assert cli.error("usage-plans", "add-key", other["id"], key["id"]) == (
        f"error: usage plans {other['id']} and {plan['id']} both cover Shop API:dev: "
        "an API key can be in one usage plan per API stage"
    )
    cli.ok("usage-plans", "remove-key", plan["id"], key["id"])
    assert cli.json("keys", "get", key["id"])["planIds"] == []
    cli.ok("usage-plans", "add-key", other["id"], key["id"])
    cli.ok("usage-plans", "delete", other["id"])
    assert cli.json("keys", "get", key["id"])["planIds"] == []
    assert [p["id"] for p in cli.json("usage-plans", "list")["items"]] == [plan["id"]]


def test_a_key_created_into_plans_and_its_usage_per_plan(cli: Cli) -> None:
    first = cli.json("usage-plans", "create", "--name", "p", "--stage", "A:dev")
    second = cli.json("usage-plans", "create", "--name", "q", "--stage", "A:prod", "--quota", "9/WEEK")
    key = cli.json("keys", "create", "--plan", first["id"], "--plan", second["id"])
    assert key["planIds"] == [first["id"], second["id"]]
    span = ("--from", "2024-01-01", "--to", "2024-01-02")
    assert cli.error("usage", key["id"], *span) == (
        f"error: API key {key['id']} is in 2 usage plans ({first['id']}, {second['id']}): "
        "name one with --plan"
    )
    assert cli.json("usage", key["id"], *span, "--plan", second["id"])["items"] == {
        key["id"]: [[0, 9], [0, 9]]
    }
    assert cli.json("usage", key["id"], *span, "--plan", first["id"])["items"] == {
        key["id"]: [[0, None], [0, None]]
    }
    assert re.search(r"^2024-01-01\s+0\s+-$", cli.ok("usage", key["id"], *span, "--plan", first["id"]), re.M)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "get", "nokey"), "error: no API key 'nokey'"),
        (("keys", "disable", "nokey"), "error: no API key 'nokey'"),
        (("keys", "delete", "nokey"), "error: no API key 'nokey'"),
        (("keys", "create", "--plan", "noplan"), "error: --plan: no usage plan 'noplan'"),
        (("keys", "create", "--value", "short"), "error: --value: an API key value has 20 to 128 characters"),
        (("keys", "create", "--value", "has-a-dash-0123456789"), "error: --value: an API key value has only"),
        (("usage-plans", "get", "noplan"), "error: no usage plan 'noplan'"),
        (("usage-plans", "delete", "noplan"), "error: no usage plan 'noplan'"),
        (("usage-plans", "add-key", "noplan", "nokey"), "error: no usage plan 'noplan'"),
        (
            ("usage-plans", "create", "--name", "x", "--quota", "lots"),
            "error: --quota 'lots': expected LIMIT/PERIOD",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--quota", "10/YEAR"),
            "error: --quota '10/YEAR': expected",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--quota", "10/DAY+11"),
            "error: --quota '10/DAY+11': quota off",
        ),
        (("usage-plans", "create", "--name", "x", "--rate", "5"), "error: --rate and --burst go together"),
        (
            ("usage-plans", "create", "--name", "x", "--rate", "x", "--burst", "1"),
            "error: --rate 'x': expected",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--rate", "1", "--burst", "1.5"),
            "error: --burst '1.5': expected",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--stage", "nostage"),
            "error: --stage 'nostage': expected API:STAGE",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--stage", "A:b", "--stage", "A:b"),
            "error: --stage 'A:b': named twice",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--method-throttle", "A:b:/x/GET"),
            "error: --method-throttle 'A:b:/x/GET'",
        ),
        (
            ("usage-plans", "create", "--name", "x", "--method-throttle", "A:b:/x=1/1"),
            "error: --method-throttle: method",
        ),
        (("usage", "nokey", "--from", "2024-01-01", "--to", "2024-01-02"), "error: no API key 'nokey'"),
        (
            ("usage", "k", "--from", "2024-02-30", "--to", "2024-03-01"),
            "error: --from '2024-02-30': expected a date",
        ),
        (
            ("usage", "k", "--from", "2024-03-01", "--to", "yesterday"),
            "error: --to 'yesterday': expected a date",
        ),
        (
            ("usage", "--from", "2024-03-01", "--to", "2024-03-02"),
            "error: give KEY (an API key's quota usage) or --by route|key (traffic)",
        ),
        (
            ("usage", "--by", "route", "--from", "2024-03-02", "--to", "2024-03-01"),
            "error: --to: must not be before --from",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_argument_and_exit_1(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    line = cli.error(*args)
    assert line.startswith(message), line


def test_an_unknown_or_unreachable_store_is_one_line_too(tmp_path: Path) -> None:
    cli = Cli(tmp_path, None)
    line = cli.error("keys", "list", "--state", f"redis://127.0.0.1:{closed_port()}/0")
    assert line.startswith("error: --state redis://127.0.0.1:"), line
    assert "cannot be reached" in line
    line = cli.error("keys", "list", "--state", "mongodb://db")
    assert line.startswith("error: --state mongodb://db: unknown state store"), line


def test_the_state_comes_from_the_environment_else_the_default_file(tmp_path: Path) -> None:
    cli = Cli(tmp_path, None)
    created = cli.json("keys", "create", "--name", "default")
    assert (tmp_path / ".portway" / "state.db").is_file()
    elsewhere = tmp_path / "elsewhere.db"
    env = {cli_usage.STATE_ENV: f"sqlite:{elsewhere.name}"}
    result = cli("keys", "list", "--json", env=env)
    assert json.loads(result.stdout) == {"items": []}
    assert elsewhere.is_file()
    assert [k["id"] for k in cli.json("keys", "list")["items"]] == [created["id"]]


def test_register_adds_the_commands_to_any_parser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="portway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve")  # the host's own commands stay
    cli_usage.register(commands)
    state = f"sqlite:///{tmp_path / 'in-process.db'}"
    args = parser.parse_args(["usage-plans", "create", "--name", "in-process", "--state", state, "--json"])
    assert args.command in cli_usage.COMMANDS
    assert cli_usage.run(args) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["name"] == "in-process"
    assert cli_usage.run(parser.parse_args(["usage-plans", "get", "nope", "--state", state])) == 1
    assert capsys.readouterr().err == "error: no usage plan 'nope'\n"
    assert parser.parse_args(["serve"]).command == "serve"
    assert cli_usage.main(["usage-plans", "list", "--state", state]) == 0
    assert "in-process" in capsys.readouterr().out
