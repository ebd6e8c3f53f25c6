"""One Lambda execution environment: imports one handler once, then runs invocations one at a time.

Started by the gateway as ``python -m portway.lambdas.worker FD CODE_DIR MODULE ATTRIBUTE``; FD is its end of
a socketpair carrying :mod:`portway.lambdas.protocol` frames. Like Lambda's Python runtime (awslambdaric) it
reports import failures with the runtime's error types, marshals results with ``json`` (so what Lambda
cannot return, this cannot either), sets ``_X_AMZN_TRACE_ID`` per invocation, and puts a handler on the root
logger that formats records the way Lambda's does. Everything the handler prints reaches the gateway's log
tagged with the request id of the invocation that printed it.

Kept to the standard library and orjson: this module's imports are every worker's start-up cost.
"""

from __future__ import annotations

import decimal
import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson

from portway.integrations.adapters import ADAPTERS
from portway.lambdas import errors, protocol
from portway.lambdas.context import LambdaContext

# Marks a line written during an invocation: "\x1e<request id>\x1f<text>" (see runtime._relay_output).
LINE_START = "\x1e"
LINE_ID_END = "\x1f"

_current_request_id = ""

Handler = Callable[[Any, LambdaContext], Any]


class TaggedStream:
    """The handler's ``sys.stdout`` / ``sys.stderr``: whole lines, each tagged with the request id."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._raw: BinaryIO = os.fdopen(fd, "wb", buffering=0, closefd=False)
        self._pending = ""

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._pending += text
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            self._emit(lines)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def _emit(self, lines: list[str]) -> None:
        tag = f"{LINE_START}{_current_request_id}{LINE_ID_END}"
        data = "".join(f"{tag}{line}\n" for line in lines).encode("utf-8", "replace")
        view = memoryview(data)
        while view:
            written = self._raw.write(view)
            view = view[written or 0 :]

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._emit([pending])

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return False

    @property
    def buffer(self) -> _BytesView:
        return _BytesView(self)


class _BytesView:
    """``sys.stdout.buffer`` for code that writes bytes."""

    def __init__(self, stream: TaggedStream) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _current_request_id
        return True


def _setup_logging(stream: TaggedStream) -> None:
    """Lambda's root handler and format (awslambdaric's, with timestamps in UTC)."""
    handler = logging.StreamHandler(stream)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(level.upper())


class InitError(Exception):
    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error = errors.make_error(message, error_type, stack, "")


def load_handler(module: str, attribute: str) -> Handler:
    """Import the handler as awslambdaric does, with its error types and messages."""
    if module.split(".")[0] in sys.builtin_module_names:
        raise InitError(errors.BUILT_IN_MODULE_CONFLICT, errors.BUILT_IN_MODULE_MESSAGE.format(module=module))
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise InitError(
            errors.IMPORT_MODULE_ERROR, errors.IMPORT_MODULE_MESSAGE.format(module=module, reason=exc)
        ) from None
    except SyntaxError as exc:
        stack = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise InitError(
            errors.USER_CODE_SYNTAX_ERROR,
            errors.SYNTAX_ERROR_MESSAGE.format(module=module, reason=exc),
            stack,
        ) from None
    except Exception as exc:
        raise InitError(type(exc).__name__, str(exc), _user_stack(exc)) from None
    try:
        handler: Handler = getattr(loaded, attribute)
    except AttributeError:
        raise InitError(
            errors.HANDLER_NOT_FOUND,
            errors.HANDLER_NOT_FOUND_MESSAGE.format(attribute=attribute, module=module),
        ) from None
    return handler


def _user_stack(exc: BaseException) -> list[str]:
    """The traceback without this module's own frames, formatted as awslambdaric formats it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return traceback.format_list(frames)


def _marshal_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _trace_header(event: Any) -> str | None:
    headers = event.get("headers") if isinstance(event, dict) else None
    trace = headers.get("X-Amzn-Trace-Id") if isinstance(headers, dict) else None
    return trace if isinstance(trace, str) else None


def invoke(handler: Handler, message: dict[str, Any]) -> bytes:
    """Run one invocation; the frame body to answer with."""
    global _current_request_id
    request_id: str = message["id"]
    _current_request_id = request_id
    context = LambdaContext(request_id, message["dl"], message["arn"])
    adapter = ADAPTERS.get(message["ad"]) if message.get("ad") else None
    try:
        event = adapter[0](message["ev"]) if adapter is not None else message["ev"]
    except Exception as exc:
        # A bug of Portway's, not of the handler: say so, with the trace.
        error = errors.make_error(
            f"Portway could not build the event: {exc!r}", "Portway.AdapterError", None, request_id
        )
        error["stackTrace"] = traceback.format_exception(exc)
        return orjson.dumps({"t": protocol.ERROR, "error": error})
    # Lambda puts the request's X-Ray trace header in the environment for the invocation.
    trace = message.get("tr") or _trace_header(event)
    if trace:
        os.environ["_X_AMZN_TRACE_ID"] = trace
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        result = handler(event, context)
    except Exception as exc:
        error = errors.make_error(str(exc), type(exc).__name__, _user_stack(exc), request_id)
        return orjson.dumps({"t": protocol.ERROR, "error": error})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        text = json.dumps(result, default=_marshal_default, ensure_ascii=False, allow_nan=False)
        payload = text.encode()
    except (TypeError, ValueError) as exc:
        error = errors.make_error(
            errors.MARSHAL_MESSAGE.format(reason=exc), errors.MARSHAL_ERROR, None, request_id
        )
        return orjson.dumps({"t": protocol.ERROR, "error": error})
    if len(payload) > errors.MAX_RESPONSE_BYTES:
        message_text = errors.RESPONSE_TOO_LARGE_MESSAGE.format(size=len(payload))
        error = errors.make_error(message_text, errors.RESPONSE_TOO_LARGE, None, request_id)
        return orjson.dumps({"t": protocol.ERROR, "error": error})
    if adapter is not None:
        # The answer is read from the JSON, as API Gateway reads what Lambda returned.
        return orjson.dumps({"t": protocol.OK, "v": adapter[1](orjson.loads(payload), text, message["ev"])})
    return b'{"t":"ok","v":' + payload + b"}"


def main(argv: list[str]) -> int:
    fd, code_dir, module, attribute = int(argv[1]), argv[2], argv[3], argv[4]
    sock = socket.socket(fileno=fd)
    reader = sock.makefile("rb")
    # `python -m` put the working folder first on sys.path; Lambda puts the task root there.
    sys.path[0] = code_dir
    sys.stdout = TaggedStream(1)
    sys.stderr = TaggedStream(2)
    # Log records get a stream of their own, so a half-printed line never swallows one (Lambda keeps
    # them apart as well: records go through the runtime's log sink, prints through stdout).
    _setup_logging(TaggedStream(1))
    try:
        handler = load_handler(module, attribute)
    except InitError as exc:
        sock.sendall(protocol.frame(orjson.dumps({"t": protocol.INIT_ERROR, "error": exc.error})))
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    sock.sendall(protocol.frame(orjson.dumps({"t": protocol.READY})))
    while True:
        body = protocol.read_frame(reader)
        if body is None:
            return 0  # the gateway closed our socket: shut down
        message = orjson.loads(body)
        if message.get("t") != protocol.INVOKE:
            continue
        sock.sendall(protocol.frame(invoke(handler, message)))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
