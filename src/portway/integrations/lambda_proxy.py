"""The Lambda proxy integration (``aws_proxy``): payload 1.0 (REST APIs) or 2.0 (HTTP APIs) in, response out.

The gateway's side is small on purpose: it sends the request's facts, and the worker builds the event and
maps the handler's result (see :mod:`portway.integrations.events`), so the gateway's single event loop only
moves bytes.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from portway.integrations.adapters import HTTP_V2, REST_V1
from portway.integrations.events import ApiInfo, body_field
from portway.integrations.events_v2 import http_api_body
from portway.lambdas.runtime import LambdaRuntime, Outcome
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.types import Headers, Response

__all__ = ["LambdaProxyIntegration", "UnavailableFunction"]

log = logging.getLogger("portway.integration")


class LambdaProxyIntegration:
    """Invokes a local Lambda function with the payload-1.0 event and sends back its mapped response."""

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
        payload_format: str = "1.0",
        route_key: str | None = None,
        responses: ResponseTable = REST_RESPONSES,
    ) -> None:
        self.function = function
        self.handler = handler
        self.runtime = runtime
        self.timeout_s = timeout_s
        self.api = api.as_json()
        self.resource_id = resource_id
        self.binary_media_types = list(binary_media_types)
        self.payload_format = payload_format
        self.route_key = route_key  # an HTTP API route's key, e.g. "GET /items/{id}"
        self.table = responses
        self.adapter = HTTP_V2 if payload_format == "2.0" else REST_V1

    def describe(self) -> str:
        payload = f", payload {self.payload_format}" if self.route_key is not None else ""
        return f"lambda {self.function} ({self.handler}{payload})"

    def _request(self, ctx: RequestContext, body: bytes) -> dict[str, Any]:
        """The request's facts (an events.ProxyRequest) for the worker's adapter."""
        content_type, accept = ctx.media_headers()
        facts: dict[str, Any] = {
            "method": ctx.method,
            "stage": ctx.stage,
            "pathParameters": ctx.path_parameters,
            "stageVariables": ctx.stage_variables,
            "headers": [(name.decode("latin-1"), value.decode("latin-1")) for name, value in ctx.headers],
            "query": ctx.query_string.decode("latin-1"),
            "clientIp": ctx.client_ip,
            "serverPort": ctx.server_port,
            "scheme": ctx.scheme,
            "httpVersion": ctx.http_version,
            "requestTimeNs": ctx.request_time_ns,
            "traceId": ctx.trace_id,
            "api": self.api,
        }
        if ctx.authorizer is not None:
            facts["authorizer"] = ctx.authorizer
        if self.adapter == HTTP_V2:
            facts["body"], facts["isBase64Encoded"] = http_api_body(body, content_type)
            facts["rawPath"] = ctx.scope_path()
            facts["routeKey"] = self.route_key
            facts["requestId"] = ctx.extended_request_id  # an HTTP API's request id is the short one
            return facts
        facts["body"], facts["isBase64Encoded"] = body_field(body, content_type, self.binary_media_types)
        facts["resource"] = ctx.resource
        facts["path"] = ctx.path
        facts["requestId"] = ctx.request_id
        facts["extendedRequestId"] = ctx.extended_request_id
        facts["resourceId"] = self.resource_id
        facts["accept"] = accept.decode("latin-1") if accept is not None else None
        facts["binaryMediaTypes"] = self.binary_media_types
        if ctx.api_key_id is not None:
            facts["apiKey"], facts["apiKeyId"] = ctx.api_key, ctx.api_key_id
        return facts

    async def __call__(self, ctx: RequestContext) -> Response:
        body = await ctx.body()
        invocation = await self.runtime.invoke(
            self.function,
            self._request(ctx, body),
            request_id=ctx.request_id,
            integration_timeout_s=self.timeout_s,
            trace_id=ctx.trace_id,
            adapter=self.adapter,
        )
        outcome = invocation.outcome
        if outcome is Outcome.OK:
            ctx.integration_status = 200  # Lambda's own Invoke status, as $context.integrationStatus has it
            return self._response(invocation.payload, ctx)
        if outcome is Outcome.INTEGRATION_TIMEOUT:
            ctx.integration_error = "Execution failed due to a timeout error"
            log.error(
                "[%s] [%s] Execution failed due to a timeout error (integration timeout %.0f ms)",
                self.function,
                ctx.request_id,
                self.timeout_s * 1000,
            )
            return gateway_response(ResponseType.INTEGRATION_TIMEOUT, self.table)
        error = invocation.error or {}
        # Lambda answers a failed function 200 (with X-Amz-Function-Error); one it could not run, 5xx.
        ctx.integration_status = 200 if outcome is Outcome.HANDLER_ERROR else 502
        ctx.integration_error = f"{error.get('errorType', 'Unknown')}: {error.get('errorMessage', '')}"
        log.error(
            "[%s] [%s] Lambda execution failed (%s): %s: %s%s",
            self.function,
            ctx.request_id,
            outcome.name,
            error.get("errorType", "Unknown"),
            error.get("errorMessage", ""),
            "".join(f"\n    {line}" for line in error.get("stackTrace", []) or []),
        )
        return gateway_response(ResponseType.LAMBDA_ERROR, self.table)

    def _response(self, mapped: Any, ctx: RequestContext) -> Response:
        """The worker's mapping of the proxy response (:func:`events.rest_v1_answer`) as what is sent."""
        if "malformed" in mapped:
            log.error(
                "[%s] [%s] Execution failed due to configuration error: Malformed Lambda proxy response: %s",
                self.function,
                ctx.request_id,
                mapped["malformed"],
            )
            return gateway_response(ResponseType.LAMBDA_ERROR, self.table)
        text: str = mapped["body"]
        payload = base64.b64decode(text) if mapped["decode"] else text.encode("utf-8")
        headers: Headers = [
            (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
            for name, value in mapped["headers"]
        ]
        return Response(mapped["status"], headers, payload)


class UnavailableFunction:
    """A route whose function Portway cannot run (e.g. a Node.js one in a SAM template): 502, saying why."""

    needs_body = False

    def __init__(self, function: str, why: str) -> None:
        self.function = function
        self.why = why
        self.body = orjson.dumps({"message": f"Portway cannot run function {function}: {why}"})

    def describe(self) -> str:
        return f"lambda {self.function} (not run: {self.why})"

    async def __call__(self, ctx: RequestContext) -> Response:
        log.error("[%s] [%s] not invoked: %s", self.function, ctx.request_id, self.why)
        return Response(502, [(b"content-type", b"application/json")], self.body)
