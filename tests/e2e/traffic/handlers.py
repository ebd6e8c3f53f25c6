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


REPORT_CALLS = 0


def report(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Like ``counter``, with a body well over the API's minimum compression size (100 bytes)."""
    global REPORT_CALLS
    REPORT_CALLS += 1
    rows = [f"row {i:02d}" for i in range(20)]
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"calls": REPORT_CALLS, "rows": rows}),
    }


ECHO_CALLS = 0


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The body it received, and the Content-Encoding header it saw (None when absent)."""
    global ECHO_CALLS
    ECHO_CALLS += 1
    headers = {name.lower(): value for name, value in (event["headers"] or {}).items()}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "calls": ECHO_CALLS,
                "body": event["body"],
                "isBase64Encoded": event["isBase64Encoded"],
                "contentEncoding": headers.get("content-encoding"),
            }
        ),
    }
