"""API Gateway's Lambda proxy payloads, built as AWS builds them (plain functions over plain data).

Payload format 1.0 is what a REST API sends its Lambda proxy integration:
https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from portway.integrations.media import matches_any, media_type
from portway.pipeline.context import RequestContext, canonical_header_name
from portway.routing import decode_segment

__all__ = ["ApiInfo", "build_event_v1", "parse_query", "request_time", "stable_id", "trace_id"]

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


def parse_query(query_string: bytes) -> list[tuple[str, str]]:
    """Decoded (name, value) pairs in order; ``+`` is a space. Raises BadPath on malformed encoding."""
    if not query_string:
        return []
    pairs: list[tuple[str, str]] = []
    for piece in query_string.decode("latin-1").split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((decode_segment(name.replace("+", " ")), decode_segment(value.replace("+", " "))))
    return pairs


_NOT_PASSED = frozenset({b"x-forwarded-for", b"x-forwarded-port", b"x-forwarded-proto"})


def _gateway_headers(ctx: RequestContext) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The client's headers plus the ones API Gateway adds in front of the integration, as the event's
    single-value (the last value wins) and multi-value maps."""
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    forwarded_for = None
    has_trace = False
    for raw_name, raw_value in ctx.headers:
        if raw_name in _NOT_PASSED:
            if raw_name == b"x-forwarded-for":
                forwarded_for = raw_value.decode("latin-1")
            continue
        if raw_name == b"x-amzn-trace-id":
            has_trace = True
        name = canonical_header_name(raw_name)
        value = raw_value.decode("latin-1")
        single[name] = value
        values = multi.get(name)
        if values is None:
            multi[name] = [value]
        else:
            values.append(value)
    client = ctx.client_ip
    added = [
        ("X-Forwarded-For", f"{forwarded_for}, {client}" if forwarded_for else client),
        ("X-Forwarded-Port", str(ctx.server_port)),
        ("X-Forwarded-Proto", ctx.scheme),
    ]
    if not has_trace:
        added.insert(0, ("X-Amzn-Trace-Id", trace_id(ctx.request_time_ns)))
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


def build_event_v1(
    ctx: RequestContext,
    body: bytes,
    *,
    api: ApiInfo,
    resource_id: str,
    binary_media_types: Sequence[str],
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The payload-1.0 event of a REST API Lambda proxy integration."""
    headers, multi_headers = _gateway_headers(ctx)
    query, multi_query = _single_and_multi(parse_query(ctx.query_string))
    host = ctx.header(b"host")
    domain = host.decode("latin-1") if host else f"{api.api_id}.execute-api.{api.region}.amazonaws.com"
    user_agent = ctx.header(b"user-agent")
    event_body, is_base64 = body_field(body, ctx.header(b"content-type"), binary_media_types)
    identity = dict(_IDENTITY)
    identity["sourceIp"] = ctx.client_ip
    identity["userAgent"] = user_agent.decode("latin-1") if user_agent is not None else None
    request_context: dict[str, Any] = {
        "resourceId": resource_id,
        "resourcePath": ctx.resource,
        "httpMethod": ctx.method,
        "extendedRequestId": ctx.extended_request_id,
        "requestTime": request_time(ctx.request_time_ns),
        "path": f"/{ctx.stage}{ctx.path}",
        "accountId": api.account_id,
        "protocol": f"HTTP/{ctx.http_version}",
        "stage": ctx.stage,
        "domainPrefix": domain.split(".", 1)[0],
        "requestTimeEpoch": ctx.request_time_ns // 1_000_000,
        "requestId": ctx.request_id,
        "identity": identity,
        "domainName": domain,
        "deploymentId": api.deployment_id,
        "apiId": api.api_id,
    }
    if authorizer is not None:
        request_context["authorizer"] = dict(authorizer)
    return {
        "resource": ctx.resource,
        "path": ctx.path or "/",
        "httpMethod": ctx.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": ctx.path_parameters or None,
        "stageVariables": dict(ctx.stage_variables) or None,
        "requestContext": request_context,
        "body": event_body,
        "isBase64Encoded": is_base64,
    }
