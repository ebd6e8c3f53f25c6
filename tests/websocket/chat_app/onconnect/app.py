"""The chat app's $connect handler (its Node original stores the connection id in DynamoDB)."""

from __future__ import annotations

import os
from typing import Any

CONNECTIONS: set[str] = set()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    CONNECTIONS.add(event["requestContext"]["connectionId"])
    return {"statusCode": 200, "body": f"Connected ({os.environ.get('TABLE_NAME', '')})."}
