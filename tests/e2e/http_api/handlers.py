"""Handlers behind the HTTP API end-to-end tests."""

from __future__ import annotations

import base64
import json
import time
from typing import Any


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The event itself: an inferred response (a dict without statusCode) for payload 2.0; payload 1.0
    routes must answer in the 1.0 format, even on an HTTP API."""
    if "httpMethod" in event:
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event}),
        }
    return {"event": event}


def shaped(event: dict[str, Any], context: Any) -> Any:
    kind = (event.get("queryStringParameters") or {}).get("kind", "")
    if kind == "string":
        return "Hello from Lambda!"
    if kind == "cookies":
        return {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-custom": "yes"},
            "cookies": ["a=1; Path=/", "b=2; HttpOnly", "c=3"],
            "body": "with cookies",
        }
    if kind == "binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "image/png"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    if kind == "malformed":
        return {"statusCode": "teapot"}
    if kind == "raise":
        raise RuntimeError("boom")
    if kind == "sleep":
        time.sleep(2)
    return {"statusCode": 400, "body": f"unknown kind {kind!r}"}
