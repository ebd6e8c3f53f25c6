"""The wire between the gateway and a Lambda worker: frames over a socketpair.

A frame is a 4-byte big-endian body length followed by an orjson-encoded JSON object whose ``"t"`` key
names the message. The worker imports this module, so it stays stdlib + orjson only.

Gateway → worker::

    {"t": "invoke", "id": request_id, "ev": event, "dl": deadline_epoch_ms, "arn": arn, "tr": trace_id,
     "ad": adapter}

``ad`` names an adapter of :data:`portway.integrations.adapters.ADAPTERS` (or is null): then ``ev`` holds the
facts the adapter builds the event from, and ``ok``'s ``v`` is the adapter's answer (e.g. the mapped proxy
response) instead of the handler's raw result. ``tr`` (or, without it, the event's X-Amzn-Trace-Id header)
becomes the invocation's ``_X_AMZN_TRACE_ID``.

Worker → gateway::

    {"t": "ready"}                                          handler imported, waiting for invocations
    {"t": "init_error", "error": {...}, "summary": "..."}   import failed; the worker exits next
    {"t": "ok", "v": value}                                 the handler's return value
    {"t": "error", "error": {...}}                          Lambda's error object
"""

from __future__ import annotations

from typing import BinaryIO

__all__ = [
    "ERROR",
    "HEADER_BYTES",
    "INIT_ERROR",
    "INVOKE",
    "MAX_FRAME_BYTES",
    "OK",
    "READY",
    "FrameDecoder",
    "ProtocolError",
    "frame",
    "read_frame",
]

HEADER_BYTES = 4
# Far above API Gateway's 10 MB payload limit; a length beyond it means the stream is corrupt, not big.
MAX_FRAME_BYTES = 64 * 1024 * 1024

INVOKE = "invoke"
READY = "ready"
INIT_ERROR = "init_error"
OK = "ok"
ERROR = "error"


class ProtocolError(Exception):
    """The peer sent something that is not a frame we understand."""


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(HEADER_BYTES, "big") + body


def read_frame(stream: BinaryIO) -> bytes | None:
    """Read one frame body from a blocking stream; None at a clean or torn end of stream."""
    header = stream.read(HEADER_BYTES)
    if len(header) != HEADER_BYTES:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    if len(body) != size:
        return None
    return body


class FrameDecoder:
    """Incremental decoder for a non-blocking stream: feed it what recv() returned, get whole bodies."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes | memoryview]:
        buffer = self._buffer
        # The common case is exactly one small frame per recv(); answer it without copying.
        if not buffer and len(data) >= HEADER_BYTES:
            size = int.from_bytes(data[:HEADER_BYTES], "big")
            if len(data) == HEADER_BYTES + size:
                return [memoryview(data)[HEADER_BYTES:]]
        buffer += data
        bodies: list[bytes | memoryview] = []
        while len(buffer) >= HEADER_BYTES:
            size = int.from_bytes(buffer[:HEADER_BYTES], "big")
            if size > MAX_FRAME_BYTES:
                raise ProtocolError(f"frame length {size} exceeds {MAX_FRAME_BYTES}")
            end = HEADER_BYTES + size
            if len(buffer) < end:
                break
            bodies.append(bytes(buffer[HEADER_BYTES:end]))
            del buffer[:end]
        return bodies
