"""A REST TOKEN authorizer: the token says what to answer. ``calls`` counts this worker's invocations."""

from __future__ import annotations

import json
import os
import time
from typing import Any

CALLS = 0


def policy(
    principal: str, effect: str, resource: str | list[str], action: str = "execute-api:Invoke"
) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": action, "Effect": effect, "Resource": resource}],
        },
    }


def handler(event: dict[str, Any], context: Any) -> Any:
    global CALLS
    CALLS += 1
    token: str = event["authorizationToken"]
    arn: str = event["methodArn"]
    api = arn.split("/", 1)[0]  # arn:aws:execute-api:REGION:ACCOUNT:API_ID
    if token == "allow":
        answer = policy("user-1", "Allow", arn)
        answer["context"] = {"calls": CALLS, "tier": "gold", "admin": True, "ratio": 1.5}
        return answer
    if token == "deny":
        return policy("user-1", "Deny", arn)
    if token == "unauthorized":
        raise Exception("Unauthorized")
    if token == "boom":
        raise ValueError("database is down")
    if token == "flaky":
        if CALLS == 1:
            raise RuntimeError("first call fails")
        return {**policy("user-1", "Allow", arn), "context": {"calls": CALLS}}
    if token == "garbage":
        return "Allow"
    if token == "list":
        return [policy("user-1", "Allow", arn)]
    if token == "no-principal":
        answer = policy("user-1", "Allow", arn)
        del answer["principalId"]
        return answer
    if token == "bad-policy":
        return policy("user-1", "allow", arn)  # Effect is case sensitive
    if token == "nested":
        return {**policy("user-1", "Allow", arn), "context": {"roles": ["admin"]}}
    if token == "slow":
        time.sleep(2)
        return policy("user-1", "Allow", arn)
    if token == "exit":
        os._exit(3)
    if token == "get-only":
        return {**policy("user-1", "Allow", f"{api}/*/GET/*"), "context": {"calls": CALLS}}
    if token == "wildcard":
        return {**policy("user-1", "Allow", "arn:aws:execute-api:*"), "context": {"calls": CALLS}}
    if token.startswith("key:"):
        return {**policy("user-1", "Allow", arn), "usageIdentifierKey": token[4:]}
    if token == "invalidate":
        return policy("user-1", "Allow", f"{api}/*", action="execute-api:*")
    if token == "conditional":
        answer = policy("user-1", "Allow", arn)
        answer["policyDocument"]["Statement"][0]["Condition"] = {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
        return answer
    if token == "echo":
        return {**policy("user-1", "Allow", arn), "context": {"event": json.dumps(event), "calls": CALLS}}
    raise Exception(f"unexpected token {token!r}")
