"""bench/websocket.py's Lambda handlers: as little work as a handler can do, so the figures are the gateway's,
and a broadcast as users write one (boto3's ``post_to_connection``, one connection after the other)."""

from __future__ import annotations

import json
import time
from typing import Any

_CLIENTS: dict[str, Any] = {}  # the management API client by endpoint, made once per warm worker


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$default, two-way: answer the message as it came."""
    return {"statusCode": 200, "body": event["body"]}


def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Two-way: the caller's connection id."""
    return {"statusCode": 200, "body": event["requestContext"]["connectionId"]}


def broadcast(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Send ``data`` to every connection in ``to`` through the @connections API; answers how many went out
    and how long the posting took (from the first post to the last post's answer)."""
    message = json.loads(event["body"])
    ctx = event["requestContext"]
    endpoint = f"http://{ctx['domainName']}/{ctx['stage']}"
    client = _CLIENTS.get(endpoint)
    if client is None:
        import boto3  # only this function's worker pays for boto3

        client = _CLIENTS[endpoint] = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint)
    data = message["data"].encode()
    gone = 0
    started = time.monotonic()
    for connection_id in message["to"]:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=data)
        except client.exceptions.GoneException:
            gone += 1
    elapsed = time.monotonic() - started
    answer = {
        "broadcast": message["data"],
        "sent": len(message["to"]) - gone,
        "gone": gone,
        "seconds": elapsed,
    }
    return {"statusCode": 200, "body": json.dumps(answer)}
