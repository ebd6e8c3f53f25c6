"""A real OTLP/HTTP trace receiver for tests: an aiohttp server on 127.0.0.1 that decodes what exporters
post (``ExportTraceServiceRequest`` protobuf) and keeps the spans.

It runs on its own event loop in a thread, so sync and async tests use it alike, and an exporter's
background thread can post to it while a test's loop is busy::

    with OtlpReceiver() as receiver:
        tracing = Tracing.configure(receiver.url, environ={})
        …
        spans = receiver.wait_for(3)
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = ["OtlpReceiver", "ReceivedSpan"]

PROTOBUF = "application/x-protobuf"

# The OTLP enums, by the names the OpenTelemetry API uses.
KINDS = {
    Span.SPAN_KIND_UNSPECIFIED: "UNSPECIFIED",
    Span.SPAN_KIND_INTERNAL: "INTERNAL",
    Span.SPAN_KIND_SERVER: "SERVER",
    Span.SPAN_KIND_CLIENT: "CLIENT",
    Span.SPAN_KIND_PRODUCER: "PRODUCER",
    Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUSES = {
    Status.STATUS_CODE_UNSET: "UNSET",
    Status.STATUS_CODE_OK: "OK",
    Status.STATUS_CODE_ERROR: "ERROR",
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it; ids in lower-case hex, ``parent_id`` "" for a root span."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str  # "SERVER", "INTERNAL", "CLIENT" …
    attributes: dict[str, Any]
    status: str  # "UNSET", "OK" or "ERROR"
    status_message: str
    events: tuple[tuple[str, dict[str, Any]], ...]  # (name, attributes), e.g. ("exception", {...})
    resource: dict[str, Any] = field(repr=False)
    scope: str = ""


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    items: list[KeyValue] = list(pairs)
    return {pair.key: _value(pair.value) for pair in items}


class OtlpReceiver:
    """Collects the spans posted to ``{url}/v1/traces`` (or any other path: see :attr:`paths`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._spans: list[ReceivedSpan] = []
        self.paths: list[str] = []  # the path of every export request received
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The collector's base URL (exporters append /v1/traces)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        """The spans, once at least ``count`` have arrived; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._spans) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} spans, received {len(self._spans)}")
                self._changed.wait(left)
            return list(self._spans)

    async def _export(self, request: web.Request) -> web.Response:
        if request.content_type != PROTOBUF:
            return web.Response(status=415, text=f"expected {PROTOBUF}")
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received: list[ReceivedSpan] = []
        for resource_spans in message.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=KINDS[span.kind],
                            attributes=_attributes(span.attributes),
                            status=STATUSES[span.status.code],
                            status_message=span.status.message,
                            events=tuple((e.name, _attributes(e.attributes)) for e in span.events),
                            resource=resource,
                            scope=scope_spans.scope.name,
                        )
                    )
        with self._changed:
            self.paths.append(request.path)
            self._spans.extend(received)
            self._changed.notify_all()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(), content_type=PROTOBUF)

    def start(self) -> OtlpReceiver:
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._stop())
                loop.close()

        self._thread = threading.Thread(target=serve, name="otlp-receiver", daemon=True)
        self._thread.start()
        started.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # an ephemeral port, known before the site starts
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        assert not thread.is_alive(), "OTLP receiver did not stop"

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
