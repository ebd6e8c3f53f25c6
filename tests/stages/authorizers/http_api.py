"""HTTP API authorizers, payload 2.0: simple responses and IAM policies over the route ARN."""

from __future__ import annotations

from typing import Any

CALLS = 0


def simple(event: dict[str, Any], context: Any) -> Any:
    global CALLS
    CALLS += 1
    authorized = event["headers"].get("authorization") == "secret"
    return {"isAuthorized": authorized, "context": {"calls": CALLS, "roles": ["a", "b"], "event": event}}


def simple_bare(event: dict[str, Any], context: Any) -> Any:
    """A simple response without a context."""
    return {"isAuthorized": True}


def simple_garbage(event: dict[str, Any], context: Any) -> Any:
    return {"isAuthorized": "yes"}


def policy(event: dict[str, Any], context: Any) -> Any:
    global CALLS
    CALLS += 1
    effect = "Deny" if event["headers"].get("authorization") == "deny" else "Allow"
    return {
        "principalId": "http-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["routeArn"]}],
        },
        "context": {"calls": CALLS, "roles": ["a"]},
    }
