"""Handlers for the monitoring tests: one reports the trace it was given, one fails, one is slow."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def traced(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The X-Ray trace of the invocation, as the environment and the event carry it."""
    print(f"traced handler called for {event['path']}")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "env": os.environ.get("_X_AMZN_TRACE_ID"),
                "header": event["headers"].get("X-Amzn-Trace-Id"),
                "requestId": event["requestContext"]["requestId"],
            }
        ),
    }


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise RuntimeError("this handler always fails")


def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(0.4)  # long enough that three calls at once overlap, even on a loaded machine
    return {"statusCode": 200, "body": "slow"}
