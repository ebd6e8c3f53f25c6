"""Lambda functions of the authorizer and validation end-to-end tests, each run in its own real worker.

Every authorizer counts its invocations in a module global (one warm worker per function: the count is the
function's) and hands the count on in its context, so a test sees from the integration's answer how often
the authorizer ran. The integrations echo what they were given.
"""

from __future__ import annotations

import json
from typing import Any

CALLS = 0


def _count() -> int:
    global CALLS
    CALLS += 1
    return CALLS


def _policy(principal: str, effect: str, resource: str) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }


def token(event: dict[str, Any], context: Any) -> Any:
    """A REST TOKEN authorizer: the token says what to answer.

    ``allow…`` allows every method of the API (the principal names the token), ``deny`` denies the method,
    ``only-get`` allows ``GET /pets`` alone, ``unauthorized`` raises API Gateway's 401 error, ``boom``
    another error, and ``garbage`` returns something that is no authorizer output.
    """
    calls = _count()
    value: str = event["authorizationToken"]
    arn: str = event["methodArn"]
    api = arn.split("/", 1)[0]  # arn:aws:execute-api:REGION:ACCOUNT:API_ID
    if value.startswith("allow"):
        answer = _policy(f"user-{value}", "Allow", f"{api}/*")
        answer["context"] = {"calls": calls, "tier": "gold", "admin": True, "ratio": 1.5}
        return answer
    if value == "deny":
        return _policy("user-deny", "Deny", arn)
    if value == "only-get":
        return {**_policy("user-get", "Allow", f"{api}/*/GET/pets"), "context": {"calls": calls}}
    if value == "unauthorized":
        raise Exception("Unauthorized")
    if value == "boom":
        raise RuntimeError("the user database is down")
    if value == "garbage":
        return "Allow"
    raise Exception(f"unexpected token {value!r}")


def request(event: dict[str, Any], context: Any) -> Any:
    """A REST REQUEST authorizer: allows any tenant but ``blocked``; says what it was given."""
    calls = _count()
    tenant = event["headers"].get("X-Tenant") or event["headers"].get("x-tenant")
    session = event["queryStringParameters"].get("session")
    effect = "Deny" if tenant == "blocked" else "Allow"
    answer = _policy(f"tenant-{tenant}", effect, event["methodArn"])
    answer["context"] = {"calls": calls, "tenant": tenant, "session": session, "type": event["type"]}
    return answer


def simple(event: dict[str, Any], context: Any) -> Any:
    """An HTTP API authorizer, payload 2.0 with simple responses: ``letmein`` is authorized."""
    calls = _count()
    value = event["headers"].get("authorization")
    if value == "unauthorized":
        raise Exception("Unauthorized")
    if value == "boom":
        raise RuntimeError("the user database is down")
    return {
        "isAuthorized": value == "letmein",
        "context": {
            "calls": calls,
            "user": "jane",
            "admin": False,
            "roles": ["reader", "writer"],
            "identitySource": event["identitySource"],
            "routeKey": event["routeKey"],
        },
    }


def echo(event: dict[str, Any], context: Any) -> Any:
    """A Lambda proxy integration (payload 1.0 or 2.0) answering with the authorizer data it received."""
    calls = _count()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"calls": calls, "authorizer": event["requestContext"].get("authorizer")}),
    }


def orders(event: dict[str, Any], context: Any) -> Any:
    """A Lambda proxy integration that counts its calls and echoes the body and parameters it got."""
    calls = _count()
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "calls": calls,
                "body": json.loads(event["body"]) if event["body"] else None,
                "query": event["queryStringParameters"],
            }
        ),
    }
