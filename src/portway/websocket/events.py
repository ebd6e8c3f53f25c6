"""The Lambda events of a WebSocket API, as API Gateway sends them: plain functions over plain values.

Shapes, key order and value formats follow events captured from AWS (see ``tests/websocket/aws_events.json``
and where each came from):

- ``$connect`` (``eventType: CONNECT``): the handshake's ``headers`` / ``multiValueHeaders`` (sorted by name
  without regard to case; ``Connection``, ``Upgrade`` and ``Content-Length`` left out; ``X-Amzn-Trace-Id`` and
  ``X-Forwarded-For/-Port/-Proto`` added), ``queryStringParameters`` / ``multiValueQueryStringParameters``
  only when the URL has a query, ``requestContext``, ``isBase64Encoded: false`` — no ``body``;
- a message (``MESSAGE``): ``requestContext`` with its ``messageId``, the ``body`` (a binary frame
  base64-encoded, ``isBase64Encoded: true``), no headers;
- ``$disconnect`` (``DISCONNECT``): the fixed headers API Gateway sends then (``Host``, and ``x-api-key``,
  ``X-Forwarded-For``, ``x-restapi`` all empty), ``disconnectStatusCode`` and ``disconnectReason``;
- the ``REQUEST`` authorizer of ``$connect``: ``type``, ``methodArn``
  (``arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/$connect``), the headers with ``Connection: upgrade``,
  ``content-length: 0`` and ``Upgrade: websocket``, the query, ``stageVariables`` and the ``requestContext``.

``requestContext`` keys come in AWS's order; ``requestId`` and ``extendedRequestId`` are the same id; ids
(connection, message, request) are 16 characters of URL-safe base64 ending in ``=``, like
``L0SM9cOFvHcCIhw=``; ``requestTime`` is ``09/Feb/2024:18:11:43 +0000``, ``connectedAt`` and
``requestTimeEpoch`` milliseconds. Once an authorizer allowed the connection, its output
(:func:`authorizer_view`) is ``requestContext.authorizer`` in every event of that connection.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from portway.integrations.events import canonical_header_name, parse_query, request_time, trace_id
from portway.websocket.model import CONNECT, DISCONNECT

__all__ = [
    "NO_STATUS_REASON",
    "ConnectionContext",
    "authorizer_event",
    "authorizer_view",
    "connect_event",
    "disconnect_event",
    "message_event",
    "method_arn",
    "new_connection_id",
    "new_message_id",
    "new_request_id",
]

# What API Gateway says when the client closed without a status (the close code is then 1005).
NO_STATUS_REASON = "Client-side close frame status not set"

# The handshake's own headers, which the $connect integration does not see.
_HANDSHAKE = frozenset({"connection", "upgrade", "content-length"})
_GATEWAY_ADDED = frozenset({"x-forwarded-for", "x-forwarded-port", "x-forwarded-proto"})
# How clients spell the WebSocket headers (Title-Case would give "Sec-Websocket-Key").
_SPELLING = {
    "sec-websocket-key": "Sec-WebSocket-Key",
    "sec-websocket-version": "Sec-WebSocket-Version",
    "sec-websocket-extensions": "Sec-WebSocket-Extensions",
    "sec-websocket-protocol": "Sec-WebSocket-Protocol",
    "x-amzn-trace-id": "X-Amzn-Trace-Id",
}


def _new_id() -> str:
    """16 characters of URL-safe base64 ending in "=" (11 random bytes), as API Gateway's ids look."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode("ascii")


def new_connection_id() -> str:
    """A connection id like ``L0SM9cOFvHcCIhw=`` (URL-safe: it goes into ``@connections/{id}``)."""
    return _new_id()


def new_message_id() -> str:
    return _new_id()


def new_request_id() -> str:
    """An id for one event (``requestId``, and ``extendedRequestId``, which is the same)."""
    return _new_id()


def method_arn(api_id: str, stage: str, region: str = "us-east-1", account_id: str = "123456789012") -> str:
    """The ``$connect`` route's ARN, which an authorizer's policy must allow."""
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{CONNECT}"


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What every event of one connection says about it, fixed when it connected."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    api_id: str
    stage: str
    domain_name: str  # the Host the client connected to (the callback URL is https://{domain}/{stage})
    user_agent: str | None = None
    authorizer: Mapping[str, Any] | None = None  # the authorizer's output (authorizer_view), once allowed
    region: str = "us-east-1"
    account_id: str = "123456789012"


def authorizer_view(
    principal_id: str, context: Mapping[str, Any] | None, integration_latency_ms: int
) -> dict[str, Any]:
    """``requestContext.authorizer`` after a Lambda authorizer allowed the connection: ``principalId``,
    ``integrationLatency`` and the output's ``context``, its values as strings (as REST APIs pass them).

    Raises ValueError for a context value that is not a string, number or boolean (AWS refuses those).
    """
    view: dict[str, Any] = {"principalId": principal_id, "integrationLatency": integration_latency_ms}
    for key, value in (context or {}).items():
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = orjson.dumps(value).decode()
        else:
            raise ValueError(f"context.{key} must be a string, number or boolean, not {type(value).__name__}")
        view.setdefault(key, text)
    return view


def _spell(name: str) -> str:
    """A header name as the client would have written it: kept when it has capitals, else the usual form."""
    if name != name.lower():
        return name
    return _SPELLING.get(name) or canonical_header_name(name)


def _header_maps(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Single-value (the last value wins) and multi-value maps, names sorted without regard to case."""
    ordered = sorted(pairs, key=lambda pair: pair[0].lower())  # stable: repeated headers keep their order
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in ordered:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _handshake_headers(
    headers: Sequence[tuple[str, str]],
    source_ip: str,
    server_port: int,
    scheme: str,
    trace: str,
    handshake: Sequence[tuple[str, str]] = (),
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The client's headers as API Gateway passes them on, with the ones it adds."""
    pairs: list[tuple[str, str]] = list(handshake)
    forwarded_for: str | None = None
    has_trace = False
    for raw_name, value in headers:
        lowered = raw_name.lower()
        if lowered in _HANDSHAKE:
            continue
        if lowered in _GATEWAY_ADDED:
            if lowered == "x-forwarded-for":
                forwarded_for = value
            continue
        has_trace = has_trace or lowered == "x-amzn-trace-id"
        pairs.append((_spell(raw_name), value))
    if not has_trace:
        pairs.append(("X-Amzn-Trace-Id", trace))
    pairs += [
        ("X-Forwarded-For", f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip),
        ("X-Forwarded-Port", str(server_port)),
        ("X-Forwarded-Proto", scheme),
    ]
    return _header_maps(pairs)


def _query_maps(query: str | bytes) -> tuple[dict[str, str], dict[str, list[str]]] | None:
    pairs = parse_query(query)
    if not pairs:
        return None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _identity(ctx: ConnectionContext) -> dict[str, str]:
    if ctx.user_agent is None:
        return {"sourceIp": ctx.source_ip}
    return {"userAgent": ctx.user_agent, "sourceIp": ctx.source_ip}


def _request_context(
    ctx: ConnectionContext,
    route_key: str,
    event_type: str,
    request_id: str,
    request_time_ns: int,
    *,
    message_id: str | None = None,
    disconnect: tuple[int, str] | None = None,
    with_authorizer: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {"routeKey": route_key}
    if with_authorizer and ctx.authorizer is not None:
        out["authorizer"] = dict(ctx.authorizer)
    if disconnect is not None:
        out["disconnectStatusCode"] = disconnect[0]
    if message_id is not None:
        out["messageId"] = message_id
    out["eventType"] = event_type
    out["extendedRequestId"] = request_id
    out["requestTime"] = request_time(request_time_ns)
    out["messageDirection"] = "IN"
    if disconnect is not None:
        out["disconnectReason"] = disconnect[1]
    out["stage"] = ctx.stage
    out["connectedAt"] = ctx.connected_at_ms
    out["requestTimeEpoch"] = request_time_ns // 1_000_000
    out["identity"] = _identity(ctx)
    out["requestId"] = request_id
    out["domainName"] = ctx.domain_name
    out["connectionId"] = ctx.connection_id
    out["apiId"] = ctx.api_id
    return out


def connect_event(
    ctx: ConnectionContext,
    *,
    headers: Sequence[tuple[str, str]],
    query: str | bytes = "",
    request_id: str,
    request_time_ns: int,
    stage_variables: Mapping[str, str] | None = None,
    server_port: int = 443,
    scheme: str = "https",
    trace: str | None = None,
) -> dict[str, Any]:
    """The ``$connect`` route's event. ``headers``: the handshake's (name, value) pairs as received;
    ``query``: the URL's raw query string (raises :class:`~portway.routing.BadPath` if malformed)."""
    single, multi = _handshake_headers(
        headers, ctx.source_ip, server_port, scheme, trace or trace_id(request_time_ns)
    )
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    queries = _query_maps(query)
    if queries is not None:
        event["queryStringParameters"], event["multiValueQueryStringParameters"] = queries
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    event["requestContext"] = _request_context(ctx, CONNECT, "CONNECT", request_id, request_time_ns)
    event["isBase64Encoded"] = False
    return event


def message_event(
    ctx: ConnectionContext,
    *,
    route_key: str,
    body: str | bytes,
    message_id: str,
    request_id: str,
    request_time_ns: int,
    stage_variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A message's event, for the route selection chose: a text frame's ``body`` as it is, a binary frame's
    (``bytes``) base64-encoded with ``isBase64Encoded: true``."""
    event: dict[str, Any] = {}
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    event["requestContext"] = _request_context(
        ctx, route_key, "MESSAGE", request_id, request_time_ns, message_id=message_id
    )
    if isinstance(body, bytes):
        event["body"] = base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = True
    else:
        event["body"] = body
        event["isBase64Encoded"] = False
    return event


def disconnect_event(
    ctx: ConnectionContext,
    *,
    status_code: int,
    reason: str,
    request_id: str,
    request_time_ns: int,
    stage_variables: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``$disconnect`` route's event: the close code and reason (1005 with :data:`NO_STATUS_REASON`
    when the client sent no status), and the only headers API Gateway still has then."""
    single, multi = _header_maps(
        [("Host", ctx.domain_name), ("x-api-key", ""), ("X-Forwarded-For", ""), ("x-restapi", "")]
    )
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    if stage_variables:
        event["stageVariables"] = dict(stage_variables)
    event["requestContext"] = _request_context(
        ctx, DISCONNECT, "DISCONNECT", request_id, request_time_ns, disconnect=(status_code, reason)
    )
    event["isBase64Encoded"] = False
    return event


def authorizer_event(
    ctx: ConnectionContext,
    *,
    headers: Sequence[tuple[str, str]],
    query: str | bytes = "",
    request_id: str,
    request_time_ns: int,
    stage_variables: Mapping[str, str] | None = None,
    server_port: int = 443,
    scheme: str = "https",
    trace: str | None = None,
) -> dict[str, Any]:
    """The input of the ``$connect`` route's ``REQUEST`` authorizer (the developer guide's *Control access
    to WebSocket APIs with AWS Lambda REQUEST authorizers*)."""
    single, multi = _handshake_headers(
        headers,
        ctx.source_ip,
        server_port,
        scheme,
        trace or trace_id(request_time_ns),
        handshake=[("Connection", "upgrade"), ("content-length", "0"), ("Upgrade", "websocket")],
    )
    event: dict[str, Any] = {
        "type": "REQUEST",
        "methodArn": method_arn(ctx.api_id, ctx.stage, ctx.region, ctx.account_id),
        "headers": single,
        "multiValueHeaders": multi,
    }
    queries = _query_maps(query)
    if queries is not None:
        event["queryStringParameters"], event["multiValueQueryStringParameters"] = queries
    event["stageVariables"] = dict(stage_variables or {})
    event["requestContext"] = _request_context(
        ctx, CONNECT, "CONNECT", request_id, request_time_ns, with_authorizer=False
    )
    return event
