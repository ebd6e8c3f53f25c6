"""One request and its answer, as the access log, the metrics and tracing see it once the answer is sent."""

from __future__ import annotations

from dataclasses import dataclass

from portway.pipeline.context import RequestContext

__all__ = ["ApiIdentity", "Exchange"]


@dataclass(frozen=True, slots=True)
class ApiIdentity:
    """The API and stage a gateway serves, as logs and metrics name them."""

    api_id: str
    api_name: str
    stage: str
    kind: str  # "REST" or "HTTP"
    account_id: str = "123456789012"
    region: str = "us-east-1"
    deployment_id: str = ""


@dataclass(slots=True)
class Exchange:
    """A finished request.

    ``ctx`` is always there (a request no route took gets one too, with ``resource`` ""). What the stages
    found out is on it: ``api_key_id``, ``authorizer`` (exactly ``requestContext.authorizer``),
    ``authorizer_error``, ``validation_error``, ``waf_status``, ``cache_status``, ``integration_latency_ms``,
    ``integration_status``, ``integration_error``, ``trace_id``.
    """

    ctx: RequestContext
    api: ApiIdentity
    route_key: str | None  # an HTTP API's route key ("GET /items/{id}", "$default"); None on REST APIs
    status: int
    response_length: int  # bytes of body sent
    response_latency_ms: float  # from the request's arrival to the last byte of the answer
    error_type: str | None = None  # the gateway response type when the gateway answered ("THROTTLED")
    error_message: str | None = None  # its message ("Too Many Requests")
