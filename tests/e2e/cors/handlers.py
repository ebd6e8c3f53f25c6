"""Handlers behind the CORS end-to-end tests."""

from __future__ import annotations

from typing import Any


def items(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An answer carrying CORS headers of its own: API Gateway ignores them when CORS is configured."""
    return {
        "statusCode": 200,
        "headers": {
            "content-type": "application/json",
            "x-request-cost": "3",
            "access-control-allow-origin": "https://evil.example",
            "access-control-allow-methods": "DELETE",
        },
        "body": '{"items": []}',
    }


def explicit_options(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An OPTIONS route's integration: a preflight to its path reaches it."""
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "from the route"}
