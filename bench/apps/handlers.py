"""The benchmark's Lambda handler: as little work as a handler can do, so the figure is the gateway's."""

from __future__ import annotations

from typing import Any

_RESPONSE = {"statusCode": 200, "body": '{"hello":"world"}'}


def hello(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _RESPONSE
