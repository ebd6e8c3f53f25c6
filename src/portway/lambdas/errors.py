"""Lambda's error vocabulary, as the AWS Python runtime (awslambdaric) and the Lambda service word it.

One place to hold against AWS: error types, message texts, limits. Imported by the worker too, so stdlib only.
"""

from __future__ import annotations

import signal
from typing import Any

__all__ = [
    "BUILT_IN_MODULE_CONFLICT",
    "EXIT_ERROR",
    "HANDLER_NOT_FOUND",
    "IMPORT_MODULE_ERROR",
    "MALFORMED_HANDLER_NAME",
    "MARSHAL_ERROR",
    "MAX_RESPONSE_BYTES",
    "RESPONSE_TOO_LARGE",
    "TIMED_OUT",
    "USER_CODE_SYNTAX_ERROR",
    "exit_reason",
    "make_error",
]

# Raised by the runtime inside the execution environment (awslambdaric FaultException types).
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
MARSHAL_ERROR = "Runtime.MarshalError"
# Reported by the Lambda service when the environment itself fails.
EXIT_ERROR = "Runtime.ExitError"
TIMED_OUT = "Sandbox.Timedout"
RESPONSE_TOO_LARGE = "Function.ResponseSizeTooLarge"

# Synchronous invocation response limit (6 MB as Lambda counts it).
MAX_RESPONSE_BYTES = 6291556

IMPORT_MODULE_MESSAGE = "Unable to import module '{module}': {reason}"
SYNTAX_ERROR_MESSAGE = "Syntax error in module '{module}': {reason}"
HANDLER_NOT_FOUND_MESSAGE = "Handler '{attribute}' missing on module '{module}'"
BUILT_IN_MODULE_MESSAGE = "Cannot use built-in module {module} as a handler module"
MALFORMED_HANDLER_MESSAGE = "Bad handler '{handler}': {reason}"
MARSHAL_MESSAGE = "Unable to marshal response: {reason}"
RESPONSE_TOO_LARGE_MESSAGE = (
    "Response payload size ({size} bytes) exceeded maximum allowed payload size (6291556 bytes)."
)
TIMED_OUT_MESSAGE = "RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"
EXIT_MESSAGE = "RequestId: {request_id} Error: Runtime exited with error: {reason}"
EXIT_WITHOUT_REASON_MESSAGE = "RequestId: {request_id} Error: Runtime exited without providing a reason"

# Lambda's service is written in Go and names signals the way Go's syscall.Signal does.
_SIGNAL_NAMES = {
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGTERM: "terminated",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGINT: "interrupt",
}


def make_error(
    message: str, error_type: str, stack_trace: list[str] | None, request_id: str
) -> dict[str, Any]:
    """The error object a Python handler's failure becomes, key for key as awslambdaric builds it."""
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack_trace or [],
    }


def exit_reason(returncode: int) -> str:
    """``exit status 1`` or ``signal: segmentation fault``, as Lambda reports a runtime that died."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        number = signal.Signals(-returncode)
    except ValueError:
        return f"signal: {-returncode}"
    return f"signal: {_SIGNAL_NAMES.get(number, number.name)}"
