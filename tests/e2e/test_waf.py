"""A stage's web ACL over real sockets: each rule type blocking (403 Forbidden) or counting, by priority."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from portway.config.errors import Problem
from tests.conftest import GatewayFactory, GatewayStartError

WAF = Path(__file__).parent / "waf"
API = WAF / "api.yaml"
FUNCTIONS = WAF / "functions.yaml"
FORBIDDEN = b'{"message":"Forbidden"}'


def assert_blocked(response: httpx.Response) -> None:
    assert response.status_code == 403
    assert response.content == FORBIDDEN
    assert response.headers["x-amzn-errortype"] == "ForbiddenException"


def test_each_rule_type_blocks_or_counts(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="guarded", account_limit=None)
    with caplog.at_level(logging.INFO, logger="portway.waf"), httpx.Client(base_url=gw.base) as client:
        assert client.get("/open").status_code == 200  # 1
        assert_blocked(client.get("/open", headers={"user-agent": "BadBot/2.0"}))  # 2: regex on a header
        counted = client.get("/open", params={"section": "ADMIN"})  # 3: byte match, count only
        assert_blocked(client.get("/open?id=1%27%20OR%201%3D1--"))  # 4: SQL injection in the query
        assert_blocked(client.post("/upload", content=b"<script>alert(1)</script>"))  # 5: XSS in the body
        benign = client.post("/upload", content=b'{"note": "O\'Brien <3 select a plan"}')  # 6
        assert_blocked(client.get("/open", params={"q": "x" * 250}))  # 7: size constraint
        # The rate rule (last by priority) counts the requests that reach it: 1, 3 and 6 so far.
        allowed = [client.get("/open").status_code for _ in range(7)]  # its 4th to 10th
        limited = client.get("/open")  # its 11th: over 10 a minute from this address
    assert counted.status_code == 200
    assert benign.status_code == 200
    assert benign.json()["body"] == '{"note": "O\'Brien <3 select a plan"}'
    assert allowed == [200] * 7
    assert_blocked(limited)
    messages = [record.getMessage() for record in caplog.records]
    assert any("watch-admin" in m and "COUNT" in m.upper() for m in messages), messages


def test_rules_combine_and_a_count_lets_the_request_on(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="lockdown", account_limit=None)
    with httpx.Client(base_url=gw.base) as client:
        counted = client.get("/open")  # the loopback address is counted, then nothing blocks
        blocked = client.get("/big")  # loopback AND a path ending in /big
    assert counted.status_code == 200
    assert_blocked(blocked)


def test_a_bad_web_acl_is_reported_in_the_functions_file(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    functions = tmp_path / "functions.yaml"
    functions.write_text(
        "functions:\n  counter: {handler: x.counter}\nstages:\n  dev:\n    webAcl:\n      rules:\n"
        "        - {name: r, priority: 0, action: block, statement: {ipSet: {addresses: ['300.1.2.3/8']}}}\n"
    )
    (tmp_path / "x.py").write_text("def counter(event, context):\n    return {'statusCode': 200}\n")
    with pytest.raises(GatewayStartError) as raised:
        gateway_factory(API, functions, stage="dev")
    problems: list[Problem] = raised.value.problems
    assert any(
        p.file == functions and "webAcl.rules[0].statement.ipSet.addresses[0]" in p.path for p in problems
    ), problems
