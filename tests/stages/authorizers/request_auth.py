"""A REQUEST authorizer (REST, and HTTP APIs' payload 1.0): allows the method ARN it is asked about,
unless the X-Mode header says deny; echoes its event into the context."""

from __future__ import annotations

import json
from typing import Any

CALLS = 0


def handler(event: dict[str, Any], context: Any) -> Any:
    global CALLS
    CALLS += 1
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    effect = "Deny" if headers.get("x-mode") == "deny" else "Allow"
    return {
        "principalId": "request-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]},
        },
        "context": {"event": json.dumps(event), "calls": CALLS, "tags": "a,b"},
    }


def nested_context(event: dict[str, Any], context: Any) -> Any:
    """An HTTP API authorizer (payload 1.0) may pass objects and arrays in its context."""
    global CALLS
    CALLS += 1
    return {
        "principalId": "request-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}
            ],
        },
        "context": {"calls": CALLS, "roles": ["admin", "dev"], "profile": {"plan": "pro"}, "active": True},
    }
