"""The Lambda proxy integration (``aws_proxy``) of REST APIs: payload 1.0 in, proxy response out."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from portway.integrations.events import ApiInfo, build_event_v1
from portway.integrations.media import first_accept_type, matches_any
from portway.lambdas.runtime import LambdaRuntime, Outcome
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import ResponseType, gateway_response
from portway.types import Headers, Response

__all__ = ["LambdaProxyIntegration", "MalformedResponse", "map_response_v1"]

log = logging.getLogger("portway.integration")

# Headers the gateway itself owns on the wire; a Lambda's values are kept under x-amzn-Remapped-*, as
# API Gateway does, instead of clashing with the real ones.
_REMAPPED = frozenset({"connection", "content-length", "date", "server", "transfer-encoding"})
_PROXY_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded", "cookies"})


class MalformedResponse(ValueError):
    """The handler's result is not a valid proxy response (API Gateway: 'Malformed Lambda proxy response')."""


def _header_value(value: Any, field: str, name: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    raise MalformedResponse(f"{field}.{name} must be a string, got {type(value).__name__}")


def _status(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        status = value
    elif isinstance(value, str) and value.isdigit():
        status = int(value)
    else:
        raise MalformedResponse(f"statusCode must be an integer, got {value!r}")
    if not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode {status} is not an HTTP status")
    return status


def _collect_headers(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    if not isinstance(single, dict):
        raise MalformedResponse("headers must be an object")
    if not isinstance(multi, dict):
        raise MalformedResponse("multiValueHeaders must be an object")
    pairs: list[tuple[str, str]] = []
    # When both maps name a header, API Gateway sends only the multiValueHeaders values.
    in_multi = {str(name).lower() for name in multi} if multi else ()
    for name, value in single.items():
        if str(name).lower() not in in_multi:
            pairs.append((str(name), _header_value(value, "headers", name)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResponse(f"multiValueHeaders.{name} must be a list")
        pairs.extend((str(name), _header_value(v, "multiValueHeaders", name)) for v in values)
    return pairs


def map_response_v1(result: Any, accept: bytes | None, binary_media_types: Sequence[str]) -> Response:
    """Turn a handler's proxy result into the client's response, or raise :class:`MalformedResponse`."""
    if not isinstance(result, dict):
        raise MalformedResponse(f"the result must be an object, got {type(result).__name__}")
    unknown = set(result) - _PROXY_KEYS
    if unknown:
        raise MalformedResponse(f"unexpected fields {sorted(unknown)}")
    status = _status(result.get("statusCode"))
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedResponse(f"body must be a string, got {type(body).__name__}")
    is_base64 = result.get("isBase64Encoded", False)
    if not isinstance(is_base64, bool):
        raise MalformedResponse("isBase64Encoded must be a boolean")
    text = body or ""
    if is_base64 and binary_media_types and matches_any(binary_media_types, first_accept_type(accept)):
        try:
            payload = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResponse("isBase64Encoded is true but the body is not valid base64") from None
    else:
        payload = text.encode("utf-8")
    headers: Headers = []
    has_type = False
    for name, value in _collect_headers(result):
        lowered = name.lower()
        if lowered in _REMAPPED:
            name = f"x-amzn-Remapped-{name}"
        elif lowered == "content-type":
            has_type = True
        headers.append((name.encode("latin-1", "replace"), value.encode("latin-1", "replace")))
    if not has_type:
        headers.append((b"Content-Type", b"application/json"))
    return Response(status, headers, payload)


class LambdaProxyIntegration:
    """Invokes a local Lambda function with the payload-1.0 event and maps its proxy response."""

    needs_body = True

    def __init__(
        self,
        *,
        function: str,
        handler: str,
        runtime: LambdaRuntime,
        timeout_s: float,
        api: ApiInfo,
        resource_id: str,
        binary_media_types: Sequence[str],
    ) -> None:
        self.function = function
        self.handler = handler
        self.runtime = runtime
        self.timeout_s = timeout_s
        self.api = api
        self.resource_id = resource_id
        self.binary_media_types = tuple(binary_media_types)

    def describe(self) -> str:
        return f"lambda {self.function} ({self.handler})"

    async def __call__(self, ctx: RequestContext) -> Response:
        body = await ctx.body()
        event = build_event_v1(
            ctx, body, api=self.api, resource_id=self.resource_id, binary_media_types=self.binary_media_types
        )
        invocation = await self.runtime.invoke(
            self.function,
            event,
            request_id=ctx.request_id,
            integration_timeout_s=self.timeout_s,
            trace_id=event["headers"].get("X-Amzn-Trace-Id"),
        )
        outcome = invocation.outcome
        if outcome is Outcome.OK:
            try:
                return map_response_v1(invocation.payload, ctx.header(b"accept"), self.binary_media_types)
            except MalformedResponse as exc:
                log.error(
                    "[%s] [%s] Execution failed due to configuration error: "
                    "Malformed Lambda proxy response: %s",
                    self.function,
                    ctx.request_id,
                    exc,
                )
                return gateway_response(ResponseType.LAMBDA_ERROR)
        if outcome is Outcome.INTEGRATION_TIMEOUT:
            log.error(
                "[%s] [%s] Execution failed due to a timeout error (integration timeout %.0f ms)",
                self.function,
                ctx.request_id,
                self.timeout_s * 1000,
            )
            return gateway_response(ResponseType.INTEGRATION_TIMEOUT)
        error = invocation.error or {}
        log.error(
            "[%s] [%s] Lambda execution failed (%s): %s: %s%s",
            self.function,
            ctx.request_id,
            outcome.name,
            error.get("errorType", "Unknown"),
            error.get("errorMessage", ""),
            "".join(f"\n    {line}" for line in error.get("stackTrace", []) or []),
        )
        return gateway_response(ResponseType.LAMBDA_ERROR)
