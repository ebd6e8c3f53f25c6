"""The chat app's sendmessage handler (its Node original posts the message to every connection)."""

from __future__ import annotations

import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    data = json.loads(event["body"]).get("data")
    return {"statusCode": 200, "body": json.dumps({"sent": data})}
