"""Baseline (a) of the benchmark: a bare ASGI hello-world on the gateway's own server settings.

The same server as ``portway serve`` (see ``Service.serve`` and ``run_event_loop`` in portway/service.py):
uvicorn with httptools, inside ``uvloop.run``, lifespan off, no access log, no Server header, no proxy
headers. (The gateway's protocol class is uvicorn's HttpToolsProtocol with only its answer to unparseable
requests changed; the stock class is used here so the baseline owes nothing to Portway.) Only the
application differs, so gateway / hello-world is the gateway's own cost.

    .venv/bin/python bench/hello.py --port 3001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'{"hello":"world"}'
_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
}
_BODY: Message = {"type": "http.response.body", "body": BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_BODY)


async def serve(host: str, port: int) -> None:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        lifespan="off",
        server_header=False,
        proxy_headers=False,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()


def main() -> int:
    parser = argparse.ArgumentParser(description="bare ASGI hello-world on uvicorn + uvloop + httptools")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # As `portway serve` does: SIGTERM stops the server like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
