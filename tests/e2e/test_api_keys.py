"""API keys and usage plans end to end: keys made with the `portway` CLI, a gateway reading them from the
same SQLite file, requests over real sockets."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.cli_runner import portway_json
from tests.conftest import GatewayFactory

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"
FORBIDDEN = b'{"message":"Forbidden"}'


def test_keys_plans_and_quotas(tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(
        state,
        *("usage-plans", "create", "--name", "basic", "--rate", "1000", "--burst", "1000"),
        *("--quota", "3/DAY", "--stage", "Traffic API:dev"),
    )
    alice = portway_json(state, "keys", "create", "--name", "alice", "--plan", plan["id"])
    idle = portway_json(state, "keys", "create", "--name", "idle")  # in no plan
    disabled = portway_json(state, "keys", "create", "--name", "gone", "--plan", plan["id"], "--disabled")
    gw = gateway_factory(API, FUNCTIONS, stage="dev", keys_state=state)
    with httpx.Client(base_url=gw.base) as client:
        missing = client.get("/keyed")
        unknown = client.get("/keyed", headers={"x-api-key": "x" * 40})
        no_plan = client.get("/keyed", headers={"x-api-key": idle["value"]})
        off = client.get("/keyed", headers={"x-api-key": disabled["value"]})
        open_route = client.get("/open")  # no key required
        admitted = [
            client.get(path, headers={"X-API-Key": alice["value"]}).status_code
            for path in ("/keyed", "/keyed/other", "/keyed")
        ]
        over = client.get("/keyed", headers={"x-api-key": alice["value"]})
    for refused in (missing, unknown, no_plan, off):
        assert refused.status_code == 403
        assert refused.content == FORBIDDEN
        assert refused.headers["x-amzn-errortype"] == "ForbiddenException"
    assert open_route.status_code == 200
    assert admitted == [200, 200, 200]
    assert over.status_code == 429
    assert over.content == b'{"message":"Limit Exceeded"}'
    assert over.headers["x-amzn-errortype"] == "LimitExceededException"
    today = datetime.now(UTC).date().isoformat()
    usage = portway_json(state, "usage", alice["id"], "--from", today, "--to", today)
    assert usage["items"] == {alice["id"]: [[3, 0]]}


def test_a_plan_throttles_each_key_on_its_own(tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(
        state,
        *("usage-plans", "create", "--name", "slow", "--rate", "0.001", "--burst", "2"),
        *("--stage", "Traffic API:dev"),
    )
    first = portway_json(state, "keys", "create", "--name", "first", "--plan", plan["id"])
    second = portway_json(state, "keys", "create", "--name", "second", "--plan", plan["id"])
    # No account or method limit on /keyed: the plan's own buckets are the only ones.
    gw = gateway_factory(API, FUNCTIONS, stage="dev", keys_state=state, account_limit=None)
    with httpx.Client(base_url=gw.base) as client:
        one = [client.get("/keyed", headers={"x-api-key": first["value"]}).status_code for _ in range(3)]
        two = [client.get("/keyed", headers={"x-api-key": second["value"]}).status_code for _ in range(3)]
    assert one == [200, 200, 429]
    assert two == [200, 200, 429]


def test_a_key_for_another_stage_is_refused(tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(state, "usage-plans", "create", "--name", "prod-only", "--stage", "Traffic API:prod")
    key = portway_json(state, "keys", "create", "--name", "k", "--plan", plan["id"])
    gw = gateway_factory(API, FUNCTIONS, stage="dev", keys_state=state)
    response = httpx.get(f"{gw.base}/keyed", headers={"x-api-key": key["value"]})
    assert response.status_code == 403
    assert response.content == FORBIDDEN


KEYS_API = Path(__file__).parent / "keys" / "api.yaml"


def test_the_lambda_event_names_the_callers_key(tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(state, "usage-plans", "create", "--name", "p", "--stage", "Keys API:dev")
    key = portway_json(state, "keys", "create", "--name", "k", "--plan", plan["id"])
    gw = gateway_factory(KEYS_API, stage="dev", keys_state=state)
    keyed = httpx.get(f"{gw.base}/identity", headers={"x-api-key": key["value"]}).json()
    anonymous = httpx.get(f"{gw.base}/anonymous").json()
    assert keyed["apiKey"] == key["value"]
    assert keyed["apiKeyId"] == key["id"]
    assert "apiKey" not in anonymous
    assert "apiKeyId" not in anonymous


def test_keys_and_quota_counts_survive_a_restart(tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(
        state, "usage-plans", "create", "--name", "p", "--quota", "3/DAY", "--stage", "Traffic API:dev"
    )
    key = portway_json(state, "keys", "create", "--name", "k", "--plan", plan["id"])
    headers = {"x-api-key": key["value"]}
    first = gateway_factory(API, FUNCTIONS, stage="dev", keys_state=state)
    before = [httpx.get(f"{first.base}/keyed", headers=headers).status_code for _ in range(2)]
    first.stop()
    second = gateway_factory(API, FUNCTIONS, stage="dev", keys_state=state)
    after = [httpx.get(f"{second.base}/keyed", headers=headers).status_code for _ in range(2)]
    assert before == [200, 200]
    assert after == [200, 429], "the quota count went on from where the first process left it"
