"""Lambda handlers the end-to-end tests call through the gateway."""

from __future__ import annotations

import base64
import os
import time
from typing import Any

CALLS = 0  # module state: survives between warm invocations


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns the event and the context attributes, as JSON."""
    import json

    global CALLS
    CALLS += 1
    payload = {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "calls": CALLS,
        "pid": os.getpid(),
        "env": {k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION")},
    }
    print(f"echo called {CALLS} times")
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(payload)}


def shaped(event: dict[str, Any], context: Any) -> Any:
    """Returns whatever response shape the query string asks for."""
    query = event.get("queryStringParameters") or {}
    kind = query.get("kind", "")
    if kind == "merge":
        return {
            "statusCode": 201,
            "headers": {"X-Single": "one", "X-Both": "from-headers", "Content-Type": "text/plain"},
            "multiValueHeaders": {"X-Both": ["m1", "m2"], "X-Multi": ["a", "b"]},
            "body": "merged",
        }
    if kind == "cookies":
        return {
            "statusCode": 200,
            "multiValueHeaders": {"Set-Cookie": ["a=1; Path=/", "b=2; HttpOnly", "c=3; Secure"]},
            "body": "cookies",
        }
    if kind == "binary":
        return {
            "statusCode": 200,
            "headers": {"Content-Type": "image/png"},
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    if kind == "no-content-type":
        return {"statusCode": 200, "body": '{"ok":true}'}
    if kind == "not-a-dict":
        return ["not", "a", "response"]
    if kind == "body-object":
        return {"statusCode": 200, "body": {"not": "a string"}}
    if kind == "no-status":
        return {"body": "where is my status"}
    if kind == "bad-status":
        return {"statusCode": "teapot", "body": ""}
    if kind == "cookies-key":
        return {"statusCode": 200, "body": "", "cookies": ["a=1"]}
    if kind == "number-header":
        return {"statusCode": 200, "headers": {"X-Count": 3}, "body": ""}
    if kind == "bool-header":
        return {"statusCode": 200, "headers": {"X-Flag": True}, "multiValueHeaders": {"X-Many": [False]}}
    if kind == "extra-field":
        return {"statusCode": 200, "body": "", "unexpected": 1}
    if kind == "empty":
        return {"statusCode": 204}
    return {"statusCode": 400, "body": f"unknown kind {kind!r}"}


def fail(event: dict[str, Any], context: Any) -> Any:
    """Fails the way the query string asks: raise, sleep, exit."""
    query = event.get("queryStringParameters") or {}
    how = query.get("how", "")
    if how == "raise":
        raise ValueError("handler exploded")
    if how == "sleep":
        time.sleep(float(query.get("seconds", "5")))
        return {"statusCode": 200, "body": "slept"}
    if how == "exit":
        os._exit(3)
    return {"statusCode": 200, "body": "fine"}


def size(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    return {"statusCode": 200, "body": str(len(raw))}
