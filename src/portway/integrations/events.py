"""API Gateway's Lambda proxy payloads, built and read as AWS does it: plain functions over plain data.

Payload format 1.0 is what a REST API sends its Lambda proxy integration:
https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html

These run in the Lambda workers, not in the gateway: the gateway sends the facts of a request (a
:data:`ProxyRequest`, plain JSON), the worker builds the event, calls the handler and maps its result
(:func:`map_response_v1`), so this per-request work runs beside the function, off the gateway's event loop
(see :mod:`portway.integrations.adapters`).
Imported by every worker, so it stays light: the standard library and Portway's pure helpers only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portway.integrations.media import first_accept_type, matches_any, media_type
from portway.routing import decode_segment

__all__ = [
    "ApiInfo",
    "MalformedResponse",
    "ProxyRequest",
    "body_field",
    "build_event_v1",
    "canonical_header_name",
    "check_base64",
    "map_response_v1",
    "parse_query",
    "parse_status",
    "request_time",
    "response_body",
    "rest_v1_answer",
    "stable_id",
    "trace_id",
]

# What the gateway knows of one request, as the worker receives it (all JSON):
#   resource, path (without the stage, still encoded), method, stage, pathParameters, stageVariables,
#   headers ([[lower-case name, value], ...] in order), query (raw query string), clientIp, serverPort,
#   scheme, httpVersion, requestId, extendedRequestId, requestTimeNs, body (str or None),
#   isBase64Encoded, api ({apiId, accountId, region, deploymentId}), resourceId, and authorizer when one ran.
ProxyRequest = Mapping[str, Any]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


def stable_id(seed: str, length: int = 10) -> str:
    """A lower-case id that looks like API Gateway's (``a1b2c3d4e5``), the same for the same seed."""
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:length])


@dataclass(frozen=True, slots=True)
class ApiInfo:
    """The identity API Gateway would give the API and its deployment."""

    api_id: str
    account_id: str = "123456789012"
    region: str = "us-east-1"
    deployment_id: str = ""

    def as_json(self) -> dict[str, str]:
        return {
            "apiId": self.api_id,
            "accountId": self.account_id,
            "region": self.region,
            "deploymentId": self.deployment_id,
        }


_CANONICAL: dict[str, str] = {}


def canonical_header_name(raw: str) -> str:
    """Header names as a typical client sends them (``content-type`` → ``Content-Type``).

    ASGI servers lower-case header names, while API Gateway passes a REST handler the client's own
    spelling; the usual Title-Case is the closest we can give back. Cached: the set of names is small.
    """
    name = _CANONICAL.get(raw)
    if name is None:
        name = "-".join(part[:1].upper() + part[1:] for part in raw.split("-"))
        if len(_CANONICAL) < 4096:
            _CANONICAL[raw] = name
    return name


_last_request_time: tuple[int, str] = (-1, "")


def request_time(ns: int) -> str:
    """``09/Apr/2015:12:34:56 +0000`` (locale-free: ``%b`` would follow the process locale).

    Formatted once per second: every request of that second shares the text.
    """
    global _last_request_time
    second = ns // 1_000_000_000
    cached_second, text = _last_request_time
    if second != cached_second:
        t = time.gmtime(second)
        month = _MONTHS[t.tm_mon - 1]
        text = f"{t.tm_mday:02d}/{month}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
        _last_request_time = (second, text)
    return text


def trace_id(ns: int) -> str:
    """An X-Ray trace header value: ``Root=1-{epoch seconds, hex}-{96 random bits, hex}``."""
    return f"Root=1-{ns // 1_000_000_000:08x}-{random.getrandbits(96):024x}"


def parse_query(query_string: bytes | str) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs in order; ``+`` is a space. Raises BadPath on malformed encoding."""
    if not query_string:
        return []
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    pairs: list[tuple[str, str]] = []
    for piece in query_string.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((decode_segment(name.replace("+", " ")), decode_segment(value.replace("+", " "))))
    return pairs


# Headers API Gateway does not pass on as the client sent them: the X-Forwarded-* ones it sets itself, and
# the connection's own (its sample events carry neither Content-Length nor Connection).
_NOT_PASSED = frozenset(
    {"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "content-length", "connection"}
)


def _gateway_headers(request: ProxyRequest) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The client's headers plus the ones API Gateway adds in front of the integration, as the event's
    single-value (the last value wins) and multi-value maps."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    forwarded_for = None
    has_trace = False
    for raw_name, value in request["headers"]:
        if raw_name in _NOT_PASSED:
            if raw_name == "x-forwarded-for":
                forwarded_for = value
            continue
        if raw_name == "x-amzn-trace-id":
            has_trace = True
        name = canonical_header_name(raw_name)
        single[name] = value
        values = multi.get(name)
        if values is None:
            multi[name] = [value]
        else:
            values.append(value)
    client = request["clientIp"]
    added = [
        ("X-Forwarded-For", f"{forwarded_for}, {client}" if forwarded_for else client),
        ("X-Forwarded-Port", str(request["serverPort"])),
        ("X-Forwarded-Proto", request["scheme"]),
    ]
    if not has_trace:
        added.insert(0, ("X-Amzn-Trace-Id", request.get("traceId") or trace_id(request["requestTimeNs"])))
    for name, value in added:
        single[name] = value
        multi[name] = [value]
    return single, multi


def _single_and_multi(
    pairs: Sequence[tuple[str, str]],
) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value  # the last value wins, as in API Gateway's single-value maps
        multi.setdefault(name, []).append(value)
    return single, multi


def body_field(
    body: bytes, content_type: bytes | None, binary_media_types: Sequence[str]
) -> tuple[str | None, bool]:
    """The event's ``body`` and ``isBase64Encoded``: binary media types travel base64-encoded."""
    if not body:
        return None, False
    if matches_any(binary_media_types, media_type(content_type)):
        return base64.b64encode(body).decode("ascii"), True
    return body.decode("utf-8", errors="replace"), False


# requestContext.identity of a caller API Gateway knows nothing more about than its address and agent.
_IDENTITY: dict[str, str | None] = {
    "cognitoIdentityPoolId": None,
    "accountId": None,
    "cognitoIdentityId": None,
    "caller": None,
    "sourceIp": None,
    "principalOrgId": None,
    "accessKey": None,
    "cognitoAuthenticationType": None,
    "cognitoAuthenticationProvider": None,
    "userArn": None,
    "userAgent": None,
    "user": None,
}


def _header(request: ProxyRequest, name: str) -> str | None:
    found = None
    for raw_name, value in request["headers"]:
        if raw_name == name:
            found = value
    return found


def build_event_v1(request: ProxyRequest) -> dict[str, Any]:
    """The payload-1.0 event of a REST API Lambda proxy integration."""
    headers, multi_headers = _gateway_headers(request)
    query, multi_query = _single_and_multi(parse_query(request["query"]))
    api = request["api"]
    host = _header(request, "host")
    domain = host or f"{api['apiId']}.execute-api.{api['region']}.amazonaws.com"
    identity = dict(_IDENTITY)
    identity["sourceIp"] = request["clientIp"]
    identity["userAgent"] = _header(request, "user-agent")
    if "apiKeyId" in request:  # the caller's API key, once the api_key stage accepted it
        identity["apiKey"] = request["apiKey"]
        identity["apiKeyId"] = request["apiKeyId"]
    request_time_ns: int = request["requestTimeNs"]
    request_context: dict[str, Any] = {
        "resourceId": request["resourceId"],
        "resourcePath": request["resource"],
        "httpMethod": request["method"],
        "extendedRequestId": request["extendedRequestId"],
        "requestTime": request_time(request_time_ns),
        "path": f"/{request['stage']}{request['path']}",
        "accountId": api["accountId"],
        "protocol": f"HTTP/{request['httpVersion']}",
        "stage": request["stage"],
        "domainPrefix": domain.split(".", 1)[0],
        "requestTimeEpoch": request_time_ns // 1_000_000,
        "requestId": request["requestId"],
        "identity": identity,
        "domainName": domain,
        "deploymentId": api["deploymentId"],
        "apiId": api["apiId"],
    }
    authorizer = request.get("authorizer")
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    return {
        "resource": request["resource"],
        "path": request["path"] or "/",
        "httpMethod": request["method"],
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": request["pathParameters"] or None,
        "stageVariables": request["stageVariables"] or None,
        "requestContext": request_context,
        "body": request["body"],
        "isBase64Encoded": request["isBase64Encoded"],
    }


# --- the proxy response ------------------------------------------------------------------------------

# Headers the gateway itself owns on the wire; a Lambda's values are kept under x-amzn-Remapped-*, as
# API Gateway does, instead of clashing with the real ones.
_REMAPPED = frozenset({"connection", "content-length", "date", "server", "transfer-encoding"})
# Every key is optional (no statusCode means 200), but no other key is allowed: not even payload 2.0's
# `cookies` (AWS answers "Malformed Lambda proxy response" to it).
_PROXY_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


class MalformedResponse(ValueError):
    """The handler's result is not a valid proxy response (API Gateway: 'Malformed Lambda proxy response')."""


def _header_value(value: Any, field: str, name: object) -> str:
    """A header value as AWS takes it from a proxy response: a string, or a boolean sent as true/false."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    raise MalformedResponse(f"{field}.{name} must be a string, got {type(value).__name__}")


def parse_status(value: Any) -> int:
    """A proxy response's ``statusCode``: an integer, or a string of digits, that is an HTTP status."""
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


def response_body(result: Mapping[str, Any]) -> tuple[str, bool]:
    """A proxy response's ``body`` (a string, or none) and ``isBase64Encoded`` (a boolean)."""
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedResponse(f"body must be a string, got {type(body).__name__}")
    is_base64 = result.get("isBase64Encoded", False)
    if not isinstance(is_base64, bool):
        raise MalformedResponse("isBase64Encoded must be a boolean")
    return body or "", is_base64


def check_base64(text: str) -> None:
    """A body the answer says is base64 must be: else the response is malformed."""
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse("isBase64Encoded is true but the body is not valid base64") from None


def map_response_v1(
    result: Any, accept: str | None, binary_media_types: Sequence[str]
) -> tuple[int, list[tuple[str, str]], str, bool]:
    """A handler's proxy result as the client's response: status, headers, body text and whether that text
    is base64 to be decoded into the bytes to send. Raises :class:`MalformedResponse`."""
    if not isinstance(result, dict):
        raise MalformedResponse(f"the result must be an object, got {type(result).__name__}")
    unknown = set(result) - _PROXY_KEYS
    if unknown:
        raise MalformedResponse(f"unexpected fields {sorted(unknown)}")
    raw_status = result.get("statusCode")
    status = 200 if raw_status is None else parse_status(raw_status)
    text, is_base64 = response_body(result)
    decode = bool(
        is_base64 and binary_media_types and matches_any(binary_media_types, first_accept_type(accept))
    )
    if decode:
        check_base64(text)
    headers: list[tuple[str, str]] = []
    has_type = False
    for name, value in _collect_headers(result):
        lowered = name.lower()
        if lowered in _REMAPPED:
            name = f"x-amzn-Remapped-{name}"
        elif lowered == "content-type":
            has_type = True
        headers.append((name, value))
    if not has_type:
        headers.append(("Content-Type", "application/json"))
    return status, headers, text, decode


def rest_v1_answer(result: Any, payload: str, request: ProxyRequest) -> dict[str, Any]:
    """What the worker sends back for a REST proxy invocation: the mapped response, or why it is malformed."""
    try:
        status, headers, body, decode = map_response_v1(
            result, request.get("accept"), request.get("binaryMediaTypes") or ()
        )
    except MalformedResponse as exc:
        return {"malformed": str(exc)}
    return {"status": status, "headers": headers, "body": body, "decode": decode}
