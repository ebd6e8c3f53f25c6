"""Gateway-made answers, as data named the way API Gateway names its gateway response types.

Hold this table against https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import orjson

from portway.types import Headers, Response

__all__ = [
    "HTTP_RESPONSES",
    "REST_RESPONSES",
    "GatewayResponse",
    "Rendering",
    "ResponseTable",
    "ResponseType",
    "gateway_response",
]


class ResponseType(StrEnum):
    MISSING_AUTHENTICATION_TOKEN = "MISSING_AUTHENTICATION_TOKEN"
    BAD_REQUEST = "BAD_REQUEST"  # malformed request line, path or headers (answered before routing)
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    INTEGRATION_FAILURE = "INTEGRATION_FAILURE"
    INTEGRATION_TIMEOUT = "INTEGRATION_TIMEOUT"
    LAMBDA_ERROR = "LAMBDA_ERROR"  # failed invocation or malformed proxy response: not customisable on AWS
    API_CONFIGURATION_ERROR = "API_CONFIGURATION_ERROR"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INVALID_API_KEY = "INVALID_API_KEY"  # missing, unknown or disabled API key, or no usage plan for it
    THROTTLED = "THROTTLED"
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"
    UNAUTHORIZED = "UNAUTHORIZED"  # the authorizer found no (or no valid) identity
    ACCESS_DENIED = "ACCESS_DENIED"  # the authorizer's policy denies the method
    AUTHORIZER_FAILURE = "AUTHORIZER_FAILURE"  # the authorizer failed (error, timeout, garbage)
    AUTHORIZER_CONFIGURATION_ERROR = "AUTHORIZER_CONFIGURATION_ERROR"
    EXPIRED_TOKEN = "EXPIRED_TOKEN"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    BAD_REQUEST_BODY = "BAD_REQUEST_BODY"  # the body failed the model (request validator)
    BAD_REQUEST_PARAMETERS = "BAD_REQUEST_PARAMETERS"  # required parameters missing (request validator)
    WAF_FILTERED = "WAF_FILTERED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"  # a resource not found after authentication and authorization
    # Fallbacks, never answered by themselves: a definition's DEFAULT_4XX / DEFAULT_5XX entry applies to every
    # 4xx / 5xx type that has no entry of its own (pipeline/gateway_responses.py).
    DEFAULT_4XX = "DEFAULT_4XX"
    DEFAULT_5XX = "DEFAULT_5XX"


class Rendering(Protocol):
    """A customised answer (``x-amazon-apigateway-gateway-responses``): pipeline/gateway_responses.py."""

    def render(self, spec: GatewayResponse, message: str) -> Response: ...


@dataclass(frozen=True, slots=True)
class GatewayResponse:
    status: int
    message: str
    error_type: str | None  # the x-amzn-ErrorType header value (REST APIs send one, HTTP APIs do not)
    message_key: str = "message"
    custom: Rendering | None = field(default=None, compare=False)  # the definition's customisation, if any
    encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded", orjson.dumps({self.message_key: self.message}))

    def body(self) -> bytes:
        return self.encoded


# REST API defaults (HTTP APIs reuse the words with their own codes, in their own table).
REST_RESPONSES: dict[ResponseType, GatewayResponse] = {
    ResponseType.MISSING_AUTHENTICATION_TOKEN: GatewayResponse(
        403, "Missing Authentication Token", "MissingAuthenticationTokenException"
    ),
    ResponseType.BAD_REQUEST: GatewayResponse(400, "Bad Request", "BadRequestException"),
    ResponseType.REQUEST_TOO_LARGE: GatewayResponse(413, "Request Too Long", "RequestTooLongException"),
    # AWS's table gives INTEGRATION_FAILURE 504 by default; an unreachable HTTP upstream (refused or reset
    # connection) is answered 502 with the generic 5xx body, which is what clients of a proxy expect.
    ResponseType.INTEGRATION_FAILURE: GatewayResponse(
        502, "Internal server error", "InternalServerErrorException"
    ),
    ResponseType.INTEGRATION_TIMEOUT: GatewayResponse(
        504, "Endpoint request timed out", "InternalServerErrorException"
    ),
    ResponseType.LAMBDA_ERROR: GatewayResponse(502, "Internal server error", "InternalServerErrorException"),
    ResponseType.API_CONFIGURATION_ERROR: GatewayResponse(
        500, "Internal server error", "InternalServerErrorException"
    ),
    ResponseType.UNSUPPORTED_MEDIA_TYPE: GatewayResponse(
        415, "Unsupported Media Type", "UnsupportedMediaTypeException"
    ),
    ResponseType.INVALID_API_KEY: GatewayResponse(403, "Forbidden", "ForbiddenException"),
    ResponseType.THROTTLED: GatewayResponse(429, "Too Many Requests", "TooManyRequestsException"),
    ResponseType.QUOTA_EXCEEDED: GatewayResponse(429, "Limit Exceeded", "LimitExceededException"),
    ResponseType.UNAUTHORIZED: GatewayResponse(401, "Unauthorized", "UnauthorizedException"),
    # Capital M: what AWS sends for an explicit deny.
    ResponseType.ACCESS_DENIED: GatewayResponse(
        403,
        "User is not authorized to access this resource with an explicit deny",
        "AccessDeniedException",
        message_key="Message",
    ),
    ResponseType.AUTHORIZER_FAILURE: GatewayResponse(
        500, "Internal server error", "AuthorizerFailureException"
    ),
    ResponseType.AUTHORIZER_CONFIGURATION_ERROR: GatewayResponse(
        500, "Internal server error", "AuthorizerConfigurationException"
    ),
    ResponseType.EXPIRED_TOKEN: GatewayResponse(403, "Token expired", "ExpiredTokenException"),
    ResponseType.INVALID_SIGNATURE: GatewayResponse(403, "Invalid signature", "InvalidSignatureException"),
    ResponseType.BAD_REQUEST_BODY: GatewayResponse(400, "Invalid request body", "BadRequestException"),
    ResponseType.BAD_REQUEST_PARAMETERS: GatewayResponse(
        400, "Missing required request parameters: []", "BadRequestException"
    ),
    ResponseType.WAF_FILTERED: GatewayResponse(403, "Forbidden", "ForbiddenException"),
    ResponseType.RESOURCE_NOT_FOUND: GatewayResponse(404, "Not Found", "NotFoundException"),
}

# HTTP APIs answer with their own codes and words, and without x-amzn-ErrorType.
HTTP_RESPONSES: dict[ResponseType, GatewayResponse] = {
    ResponseType.MISSING_AUTHENTICATION_TOKEN: GatewayResponse(404, "Not Found", None),  # no route matched
    ResponseType.BAD_REQUEST: GatewayResponse(400, "Bad Request", None),
    ResponseType.REQUEST_TOO_LARGE: GatewayResponse(413, "Request Entity Too Large", None),
    ResponseType.INTEGRATION_FAILURE: GatewayResponse(500, "Internal Server Error", None),
    ResponseType.INTEGRATION_TIMEOUT: GatewayResponse(503, "Service Unavailable", None),
    ResponseType.LAMBDA_ERROR: GatewayResponse(500, "Internal Server Error", None),
    ResponseType.API_CONFIGURATION_ERROR: GatewayResponse(500, "Internal Server Error", None),
    ResponseType.UNSUPPORTED_MEDIA_TYPE: GatewayResponse(415, "Unsupported Media Type", None),
    ResponseType.INVALID_API_KEY: GatewayResponse(403, "Forbidden", None),
    ResponseType.THROTTLED: GatewayResponse(429, "Too Many Requests", None),
    ResponseType.QUOTA_EXCEEDED: GatewayResponse(429, "Limit Exceeded", None),
    ResponseType.UNAUTHORIZED: GatewayResponse(401, "Unauthorized", None),
    ResponseType.ACCESS_DENIED: GatewayResponse(403, "Forbidden", None),
    ResponseType.AUTHORIZER_FAILURE: GatewayResponse(500, "Internal Server Error", None),
    ResponseType.AUTHORIZER_CONFIGURATION_ERROR: GatewayResponse(500, "Internal Server Error", None),
    ResponseType.EXPIRED_TOKEN: GatewayResponse(401, "Unauthorized", None),
    ResponseType.INVALID_SIGNATURE: GatewayResponse(401, "Unauthorized", None),
    ResponseType.BAD_REQUEST_BODY: GatewayResponse(400, "Invalid request body", None),
    ResponseType.BAD_REQUEST_PARAMETERS: GatewayResponse(
        400, "Missing required request parameters: []", None
    ),
    ResponseType.WAF_FILTERED: GatewayResponse(403, "Forbidden", None),
    ResponseType.RESOURCE_NOT_FOUND: GatewayResponse(404, "Not Found", None),
}

ResponseTable = dict[ResponseType, GatewayResponse]

_JSON = (b"content-type", b"application/json")


def gateway_response(
    kind: ResponseType, table: ResponseTable = REST_RESPONSES, message: str | None = None
) -> Response:
    """The answer of ``kind`` from ``table``; ``message`` replaces the default message where it says more
    (``Missing required request parameters: [id]``). A type the definition customised renders its own
    status, headers and body template."""
    spec = table[kind]
    text = spec.message if message is None else message
    if spec.custom is not None:
        response = spec.custom.render(spec, text)
        response.error_type, response.error_message = kind.value, text
        return response
    headers: Headers = [_JSON]
    if spec.error_type is not None:
        headers.append((b"x-amzn-errortype", spec.error_type.encode()))
    body = spec.encoded if message is None else orjson.dumps({spec.message_key: message})
    return Response(spec.status, headers, body, None, kind.value, text)
