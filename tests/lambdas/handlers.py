"""Handlers the runtime tests invoke: each shows one behaviour of a Lambda execution environment."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

COUNT = 0


def count(event: Any, context: Any) -> dict[str, Any]:
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid()}


def sleep(event: Any, context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 0.2)))
    return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis()}


def die(event: Any, context: Any) -> Any:
    how = event.get("how")
    if how == "exit":
        os._exit(3)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "sys.exit":
        sys.exit(2)
    if how == "raise":
        raise KeyError("missing")
    if how == "marshal":
        return {"not": {"json"}}
    if how == "big":
        return "x" * (7 * 1024 * 1024)
    return {"pid": os.getpid()}


def environment(event: Any, context: Any) -> dict[str, Any]:
    names = event["names"]
    return {
        "env": {name: os.environ.get(name) for name in names},
        "cwd": os.getcwd(),
        "path0": sys.path[0],
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "aws_request_id": context.aws_request_id,
        },
    }


def talk(event: Any, context: Any) -> str:
    print("printed line", event.get("n"))
    print("no newline at the end", end="")
    sys.stderr.write("to stderr\n")
    logging.getLogger("app").warning("logged %s", "warning")
    return "ok"


def spawn_child(event: Any, context: Any) -> dict[str, Any]:
    """Starts a child that outlives the handler, then hangs past the function timeout."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(event["pidfile"], "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
    return {}


def http_api(event: Any, context: Any) -> Any:
    """Answers as an HTTP API handler would: the shape the query string asks for."""
    kind = (event.get("queryStringParameters") or {}).get("kind")
    if kind == "inferred":
        return {"routeKey": event["routeKey"], "cookies": event.get("cookies")}
    if kind == "malformed":
        return {"statusCode": "nope"}
    return {"statusCode": 201, "cookies": ["a=1", "b=2"], "body": event["rawPath"]}
