"""Answers with the identity API Gateway put in the event."""

from __future__ import annotations

import json
from typing import Any


def identity(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"statusCode": 200, "body": json.dumps(event["requestContext"]["identity"])}
