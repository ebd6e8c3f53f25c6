"""Handlers of the native chat API fixture (chat.yaml)."""

from __future__ import annotations

from typing import Any


def connect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


def disconnect(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


def sendmessage(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": event["body"]}


def fallback(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": "no such action"}


def auth(event: dict[str, Any], context: Any) -> dict[str, Any]:
    allowed = (event.get("queryStringParameters") or {}).get("token") == "letmein"
    return {
        "principalId": "user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allowed else "Deny",
                    "Resource": event["methodArn"],
                }
            ],
        },
        "context": {"room": "lobby"},
    }
