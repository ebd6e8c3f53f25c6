"""The per-request context every stage and integration reads: parsed once, lazily where it costs."""

from __future__ import annotations

import binascii
import random
import time
from collections.abc import Mapping
from typing import Any

from portway.state.store import Bucket
from portway.types import Receive, Response, Scope

__all__ = ["MAX_BODY_BYTES", "BodyTooLarge", "RequestContext", "read_body"]

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


class BodyTooLarge(Exception):
    """The request body is over the payload limit."""


def _uuid4(bits: int) -> str:
    """A random (version 4) UUID string from 128 random bits; what ``str(uuid.uuid4())`` gives, faster.

    Request ids need to be unique, not secret: Python's own generator (seeded from the OS) spares a system
    call per request.

    >>> _uuid4(0)
    '00000000-0000-4000-8000-000000000000'
    """
    h = (bits & _UUID_CLEAR | _UUID_V4).to_bytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID_CLEAR = ~(0xF000 << 64 | 0xC000 << 48) & (1 << 128) - 1
_UUID_V4 = 0x4000 << 64 | 0x8000 << 48
_BITS_88 = (1 << 88) - 1


async def read_body(receive: Receive, limit: int) -> bytes:
    """An ASGI request's whole body from ``receive``; over ``limit`` bytes raises :class:`BodyTooLarge`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class RequestContext:
    """One request as the gateway sees it; ``path`` is without the stage and still percent-encoded."""

    __slots__ = (
        "_body",
        "_receive",
        "_trace_id",
        "api_key",
        "api_key_id",
        "authorizer",
        "authorizer_error",
        "authorizer_latency_ms",
        "authorizer_status",
        "cache_status",
        "can_invalidate_cache",
        "extended_request_id",
        "headers",
        "integration_error",
        "integration_latency_ms",
        "integration_status",
        "method",
        "path",
        "path_parameters",
        "request_id",
        "request_time_ns",
        "resource",
        "scope",
        "stage",
        "stage_variables",
        "usage_buckets",
        "validation_error",
        "waf_status",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        path: str,
        stage: str,
        resource: str,
        path_parameters: dict[str, str],
        stage_variables: Mapping[str, str],
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._body: bytes | None = None
        self.method: str = scope["method"]
        self.path = path
        self.stage = stage
        self.resource = resource
        self.path_parameters = path_parameters
        self.stage_variables = stage_variables
        self.headers: list[tuple[bytes, bytes]] = scope["headers"]
        bits = random.getrandbits(216)  # 128 for the request id, 88 for the extended one
        self.request_id = _uuid4(bits >> 88)
        # API Gateway's extended request id: 16 base64 characters ending in '=' (11 random bytes).
        self.extended_request_id = binascii.b2a_base64((bits & _BITS_88).to_bytes(11), newline=False).decode()
        self.request_time_ns = time.time_ns()
        # What earlier stages found out, for later ones, the integration and the logs:
        self.api_key: str | None = None  # the caller's API key value, once the api_key stage accepted it
        self.api_key_id: str | None = None
        self.usage_buckets: tuple[Bucket, ...] = ()  # the key's usage-plan limits, for the throttle stage
        self.can_invalidate_cache = False  # may Cache-Control: max-age=0 refresh a cached entry
        self.cache_status: str | None = None  # "hit" or "miss" when a cache stage ran
        # requestContext.authorizer as the integration's event carries it (principalId and context, or
        # {"claims": …}, or payload 2.0's {"lambda": …} / {"jwt": {"claims", "scopes"}}), once one ran:
        self.authorizer: dict[str, Any] | None = None
        self.validation_error: str | None = None  # why a request validator refused it ($context.error…)
        self.waf_status: str | None = None  # the web ACL's decision: "ALLOW", "BLOCK" or "COUNT"
        # The authorizer step, once it ran ($context.authorizer.error, .status, .latency): why it refused or
        # failed, the status it ended with, the time it took (an invocation or a JWT check).
        self.authorizer_error: str | None = None
        self.authorizer_status: int | None = None
        self.authorizer_latency_ms: float | None = None
        # Set by the integration when it ran (the access log's $context.integration* variables, the
        # IntegrationLatency metric): its latency, its status (Lambda's invoke status, the upstream's), and
        # its error.
        self.integration_latency_ms: float | None = None
        self.integration_status: int | None = None
        self.integration_error: str | None = None
        self._trace_id: str | None = None

    def note_authorizer(self, started: float, response: Response | None) -> Response | None:
        """Note how the authorizer step went, for the access log: its latency since ``started``
        (``time.perf_counter()``), its status and its error; ``response`` passes through."""
        self.authorizer_latency_ms = (time.perf_counter() - started) * 1000
        if response is None:
            self.authorizer_status = 200
        else:
            self.authorizer_status = response.status
            self.authorizer_error = response.error_message
        return response

    # Read from the scope when asked: most routes never need them.

    @property
    def trace_id(self) -> str:
        """The request's X-Ray trace header (``Root=1-…``): the client's own when it sent one with a Root,
        else a new one, made once. It reaches HTTP upstreams, the Lambda event and ``_X_AMZN_TRACE_ID``."""
        trace = self._trace_id
        if trace is None:
            sent = self.header(b"x-amzn-trace-id")
            if sent is not None and b"Root=" in sent:
                trace = sent.decode("latin-1")
            else:
                trace = f"Root=1-{self.request_time_ns // 1_000_000_000:08x}-{random.getrandbits(96):024x}"
            self._trace_id = trace
        return trace

    def scope_path(self) -> str:
        """The whole request path, stage included, still percent-encoded."""
        raw: bytes | None = self.scope.get("raw_path")
        return raw.decode("latin-1") if raw else str(self.scope["path"])

    @property
    def query_string(self) -> bytes:
        query: bytes = self.scope.get("query_string", b"")
        return query

    @property
    def client_ip(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "127.0.0.1"

    @property
    def server_port(self) -> int:
        server = self.scope.get("server")
        return int(server[1]) if server and server[1] is not None else 80

    @property
    def scheme(self) -> str:
        return str(self.scope.get("scheme", "http"))

    @property
    def http_version(self) -> str:
        return str(self.scope.get("http_version", "1.1"))

    @staticmethod
    def new_request_id() -> str:
        return _uuid4(random.getrandbits(128))

    @staticmethod
    def new_short_id() -> str:
        """An id like API Gateway's extended and HTTP API request ids: 16 base64 characters ending in '='."""
        return binascii.b2a_base64(random.randbytes(11), newline=False).decode()

    def header(self, lower_name: bytes) -> bytes | None:
        """The last value of a header (names compared lower-case, as ASGI gives them)."""
        found = None
        for name, value in self.headers:
            if name == lower_name:
                found = value
        return found

    def media_headers(self) -> tuple[bytes | None, bytes | None]:
        """The (last) Content-Type and Accept values in one pass: what templates and encodings go by."""
        content_type = accept = None
        for name, value in self.headers:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
        return content_type, accept

    async def body(self) -> bytes:
        """The whole request body, read once; over :data:`MAX_BODY_BYTES` raises :class:`BodyTooLarge`."""
        if self._body is not None:
            return self._body
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BodyTooLarge
        self._body = await read_body(self._receive, MAX_BODY_BYTES)
        return self._body

    @property
    def buffered_body(self) -> bytes | None:
        """The body once read (or replaced by a stage), else None; a streaming integration sends it if set."""
        return self._body

    def replace_body(self, body: bytes) -> None:
        """Hand later stages and the integration a different body (e.g. a decompressed one)."""
        self._body = body

    def receive(self) -> Receive:
        """The raw ASGI receive, for integrations that stream the body instead of buffering it."""
        return self._receive
