"""Payload format 2.0: what an HTTP API sends its Lambda proxy integration, and how it reads the answer.

https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html

Plain functions over plain data, run in the Lambda workers like :mod:`portway.integrations.events`. The facts
(a :data:`~portway.integrations.events.ProxyRequest`) differ from payload 1.0's in a few keys: ``rawPath``
(the whole path, stage included, still percent-encoded), ``routeKey`` and ``stage`` (``$default`` for the
default stage); ``resource``, ``path``, ``resourceId`` and ``extendedRequestId`` are not used.

What AWS does that a reader might not expect, and this does too:

- header names are lower-case and repeated headers are joined with commas, as are repeated query parameters;
- the Cookie header leaves ``headers`` for the ``cookies`` list;
- ``rawPath`` arrives percent-*decoded* (REST APIs keep it encoded);
- maps with nothing in them are left out of the event, not set to null;
- a result without ``statusCode`` (any JSON value) is *inferred*: 200, ``content-type: application/json``,
  the string itself or the JSON text as the body.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from portway.integrations.events import (
    MalformedResponse,
    ProxyRequest,
    check_base64,
    parse_query,
    parse_status,
    request_time,
    response_body,
    trace_id,
)

__all__ = ["build_event_v2", "http_api_body", "http_v2_answer", "map_response_v2"]

_SET_BY_GATEWAY = frozenset({"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
_TEXT_SUFFIXES = ("+json", "+xml")


def http_api_body(body: bytes, content_type: bytes | None) -> tuple[str | None, bool]:
    """The event's ``body`` and ``isBase64Encoded`` on an HTTP API: which has no binary media types, and
    base64-encodes every body that is not text (a text media type, or no type and valid UTF-8)."""
    if not body:
        return None, False
    media = content_type.decode("latin-1").split(";", 1)[0].strip().lower() if content_type else ""
    textual = (
        media.startswith(_TEXT_TYPES)
        or media.endswith(_TEXT_SUFFIXES)
        or media == ("application/x-www-form-urlencoded")
    )
    if textual or not media:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _headers_and_cookies(request: ProxyRequest) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    forwarded_for = None
    for name, value in request["headers"]:
        if name == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        if name in _SET_BY_GATEWAY:
            if name == "x-forwarded-for":
                forwarded_for = value
            continue
        previous = headers.get(name)
        headers[name] = value if previous is None else f"{previous},{value}"
    client = request["clientIp"]
    headers["x-forwarded-for"] = f"{forwarded_for}, {client}" if forwarded_for else client
    headers["x-forwarded-port"] = str(request["serverPort"])
    headers["x-forwarded-proto"] = request["scheme"]
    if "x-amzn-trace-id" not in headers:
        headers["x-amzn-trace-id"] = request.get("traceId") or trace_id(request["requestTimeNs"])
    return headers, cookies


def build_event_v2(request: ProxyRequest) -> dict[str, Any]:
    """The payload-2.0 event of an HTTP API Lambda proxy integration, keys in AWS's order."""
    headers, cookies = _headers_and_cookies(request)
    query: dict[str, str] = {}
    for name, value in parse_query(request["query"]):
        previous = query.get(name)
        query[name] = value if previous is None else f"{previous},{value}"
    api = request["api"]
    domain = headers.get("host") or f"{api['apiId']}.execute-api.{api['region']}.amazonaws.com"
    raw_path = unquote(request["rawPath"])
    request_time_ns: int = request["requestTimeNs"]
    request_context: dict[str, Any] = {
        "accountId": api["accountId"],
        "apiId": api["apiId"],
    }
    authorizer = request.get("authorizer")
    if authorizer is not None:
        request_context["authorizer"] = authorizer
    request_context.update(
        {
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0],
            "http": {
                "method": request["method"],
                "path": raw_path,
                "protocol": f"HTTP/{request['httpVersion']}",
                "sourceIp": request["clientIp"],
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request["requestId"],
            "routeKey": request["routeKey"],
            "stage": request["stage"],
            "time": request_time(request_time_ns),
            "timeEpoch": request_time_ns // 1_000_000,
        }
    )
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": request["routeKey"],
        "rawPath": raw_path,
        "rawQueryString": request["query"],
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = request_context
    if request["body"] is not None:
        event["body"] = request["body"]
    if request["pathParameters"]:
        event["pathParameters"] = request["pathParameters"]
    event["isBase64Encoded"] = request["isBase64Encoded"]
    if request["stageVariables"]:
        event["stageVariables"] = request["stageVariables"]
    return event


def _text(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise MalformedResponse(f"{where} must be a string, got {type(value).__name__}")


def map_response_v2(result: Any, payload: str) -> tuple[int, list[tuple[str, str]], str, bool]:
    """A handler's result as the client's response: status, headers, body text, and whether the text is
    base64 to be decoded. ``payload`` is the result's JSON text as the runtime serialised it (the body of an
    inferred response). Raises :class:`MalformedResponse`."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Inferred: any JSON value without a statusCode is a 200 with it as a JSON body.
        body = result if isinstance(result, str) else payload
        return 200, [("content-type", "application/json")], body, False
    status = parse_status(result["statusCode"])
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise MalformedResponse("headers must be an object")
    headers = [(str(name), _text(value, f"headers.{name}")) for name, value in raw_headers.items()]
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise MalformedResponse("cookies must be a list of strings")
    headers.extend(("set-cookie", _text(cookie, "cookies[]")) for cookie in cookies)
    text, is_base64 = response_body(result)
    if is_base64:
        check_base64(text)
    return status, headers, text, is_base64


def http_v2_answer(result: Any, payload: str, request: ProxyRequest) -> dict[str, Any]:
    """What the worker sends back for an HTTP API proxy invocation: the mapped response, or why it is
    malformed (the gateway answers 500 then)."""
    try:
        status, headers, body, decode = map_response_v2(result, payload)
    except MalformedResponse as exc:
        return {"malformed": str(exc)}
    return {"status": status, "headers": headers, "body": body, "decode": decode}
