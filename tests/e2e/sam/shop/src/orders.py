import os
from typing import Any


def list_orders(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "function": context.function_name,
        "env": {k: os.environ[k] for k in ("TABLE", "STAGE", "GREETING", "MODE", "QUEUE_ARN")},
        "route": event["routeKey"],
    }


def get_order(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "id": event["pathParameters"]["id"],
        "function": context.function_name,
        "memory": context.memory_limit_in_mb,
        "timeout_ms": context.get_remaining_time_in_millis(),
    }
