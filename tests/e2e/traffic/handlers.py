"""A handler that says how many times its worker has been called: cached answers do not call it."""

from __future__ import annotations

import json
from typing import Any

CALLS = 0


def counter(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global CALLS
    CALLS += 1
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"calls": CALLS, "path": event["path"], "query": event["queryStringParameters"]}),
    }
