"""Handlers of the WebSocket tests. Each event a lifecycle handler sees is appended, as one JSON line, to the
file the ``events`` stage variable names, so a test can read what API Gateway would have sent."""

from __future__ import annotations

import json
from typing import Any

import boto3


def _record(event: dict[str, Any]) -> None:
    path = (event.get("stageVariables") or {}).get("events")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(event) + "\n")


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    query = event.get("queryStringParameters") or {}
    if "crash" in query:
        raise RuntimeError("the $connect handler failed")
    if "reject" in query:
        return {"statusCode": int(query["reject"])}
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    _record(event)
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "body": json.dumps({"route": event["requestContext"]["routeKey"], "got": event["body"]}),
    }


def fallback(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "body": json.dumps({"route": "$default", "got": event["body"], "base64": event["isBase64Encoded"]}),
    }


def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    ctx = event["requestContext"]
    return {
        "statusCode": 200,
        "body": json.dumps(
            {
                "connectionId": ctx["connectionId"],
                "domainName": ctx["domainName"],
                "stage": ctx["stage"],
                "eventType": ctx["eventType"],
                "messageId": ctx["messageId"],
            }
        ),
    }


def broadcast(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Send ``data`` to every connection in ``to`` through the @connections API, as a chat handler does."""
    message = json.loads(event["body"])
    ctx = event["requestContext"]
    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=f"http://{ctx['domainName']}/{ctx['stage']}"
    )
    gone = []
    for connection_id in message["to"]:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=message["data"].encode())
        except client.exceptions.GoneException:
            gone.append(connection_id)
    return {"statusCode": 200, "body": json.dumps({"sent": len(message["to"]) - len(gone), "gone": gone})}


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("this route always fails")


def auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Allows token 'good' (with a context), denies anything else."""
    _record(event)
    token = (event.get("queryStringParameters") or {}).get("token")
    effect = "Allow" if token == "good" else "Deny"
    return {
        "principalId": "user-1",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}],
        },
        "context": {"tier": "gold", "level": 3},
    }
