"""The functions of tests/e2e/sam/auth: a TOKEN authorizer and an integration echoing what it was given."""

import json
from typing import Any


def _policy(principal: str, effect: str, resource: str) -> dict[str, Any]:
    statement = {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}
    return {"principalId": principal, "policyDocument": {"Version": "2012-10-17", "Statement": [statement]}}


def authorize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """``allow`` may call every method of the API, ``deny`` is denied this one; anything else is 401."""
    token = event["authorizationToken"]
    if token == "allow":
        api = event["methodArn"].split("/", 1)[0]  # arn:aws:execute-api:REGION:ACCOUNT:API_ID
        return {**_policy("user-1", "Allow", f"{api}/*"), "context": {"tier": "gold"}}
    if token == "deny":
        return _policy("user-2", "Deny", event["methodArn"])
    raise Exception("Unauthorized")


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = event.get("routeKey") or f"{event['httpMethod']} {event['resource']}"
    authorizer = event["requestContext"].get("authorizer")
    body = {"route": route, "authorizer": authorizer, "body": event.get("body")}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
