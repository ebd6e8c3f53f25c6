"""A small upstream service for the HTTP proxy tests: echoes what it received, or misbehaves on demand."""

from __future__ import annotations

import asyncio

import orjson

from portway.types import Receive, Scope, Send


async def upstream_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path: str = scope["path"]
    if path.startswith("/slow"):
        await asyncio.sleep(3)
    if path.startswith("/stream"):
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for i in range(5):
            await send({"type": "http.response.body", "body": f"chunk{i};".encode(), "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    payload = orjson.dumps(
        {
            "method": scope["method"],
            "path": path,
            "raw_path": (scope.get("raw_path") or b"").decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": body.decode("latin-1"),
        }
    )
    status = 418 if path.startswith("/teapot") else 200
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-upstream", b"yes"),
                (b"set-cookie", b"u1=1"),
                (b"set-cookie", b"u2=2"),
                (b"connection", b"keep-alive"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
