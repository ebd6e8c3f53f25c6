"""The ``context`` a handler receives, shaped like awslambdaric's LambdaContext.

Lives in the worker process. Like the AWS runtime, function facts come from the environment (so
``memory_limit_in_mb`` is a *string*, as on Lambda) and the deadline from the invocation.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["CognitoIdentity", "LambdaContext"]


class CognitoIdentity:
    """On Lambda ``context.identity`` is this object even without Cognito, with both ids None."""

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, identity_id: str | None = None, pool_id: str | None = None) -> None:
        self.cognito_identity_id = identity_id
        self.cognito_identity_pool_id = pool_id

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity([cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}])"
        )


class LambdaContext:
    """What ``handler(event, context)`` gets as ``context``.

    >>> ctx = LambdaContext("c0ffee", int(time.time() * 1000) + 3000, "arn:aws:lambda:us-east-1:1:function:f")
    >>> 0 < ctx.get_remaining_time_in_millis() <= 3000
    True
    """

    def __init__(self, aws_request_id: str, deadline_epoch_ms: int, invoked_function_arn: str) -> None:
        environ = os.environ
        self.aws_request_id = aws_request_id
        self.log_group_name = environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.client_context: object | None = None
        self.identity = CognitoIdentity()
        self.tenant_id: str | None = None
        self._deadline_epoch_ms = deadline_epoch_ms

    def get_remaining_time_in_millis(self) -> int:
        remaining = self._deadline_epoch_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, message: object) -> None:
        sys.stdout.write(str(message))

    def __repr__(self) -> str:
        return (
            "LambdaContext(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}"
            "])"
        )
