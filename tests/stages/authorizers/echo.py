"""A Lambda proxy integration that answers with the requestContext.authorizer it received."""

from __future__ import annotations

import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> Any:
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(event["requestContext"].get("authorizer")),
    }
