import json
import time
from typing import Any


def clock(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A different answer each call (the time in ns), long enough to be compressed on /big."""
    body: dict[str, Any] = {"ns": time.time_ns(), "path": event["path"]}
    if event["path"] == "/big":
        body["items"] = ["x" * 40] * 10
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
