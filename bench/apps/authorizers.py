"""The protection benchmark's Lambda TOKEN authorizer: allows every method of the API, whatever the token."""

from __future__ import annotations

from typing import Any


def allow_all(event: dict[str, Any], context: Any) -> dict[str, Any]:
    api = event["methodArn"].split("/", 1)[0]  # arn:aws:execute-api:REGION:ACCOUNT:API_ID
    return {
        "principalId": "bench-user",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": f"{api}/*"}],
        },
        "context": {"tier": "bench"},
    }
