"""WebSocket Lambda events: built from plain values, they match events captured from API Gateway key for key,
in AWS's order (aws_events.json says where each sample comes from)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from portway.websocket.events import (
    NO_STATUS_REASON,
    ConnectionContext,
    authorizer_event,
    authorizer_view,
    connect_event,
    disconnect_event,
    message_event,
    method_arn,
    new_connection_id,
    new_message_id,
    new_request_id,
)

SAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "aws_events.json").read_text(encoding="utf-8"))
MS = 1_000_000  # nanoseconds in a millisecond


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = SAMPLES[name]["event"]
    return event


def assert_same(ours: dict[str, Any], aws: dict[str, Any]) -> None:
    """Same keys, nesting, values and key order (JSON text keeps the order)."""
    assert ours == aws
    assert json.dumps(ours) == json.dumps(aws)


def test_connect_matches_aws() -> None:
    aws = sample("connect")
    context = ConnectionContext(
        connection_id="HEMM0fIjIAMCFvA=",
        connected_at_ms=1741367070493,
        source_ip="191.94.0.73",
        api_id="5nn096u8h6",
        stage="dev",
        domain_name="5nn096u8h6.execute-api.us-east-1.amazonaws.com",
        user_agent="insomnium/0.2.3-a",
    )
    # The handshake as a server receives it: lower-case names, the handshake's own headers included.
    headers = [
        ("host", "5nn096u8h6.execute-api.us-east-1.amazonaws.com"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-key", "GUa6in8K5oSsqWhn4Xu4hw=="),
        ("sec-websocket-version", "13"),
        ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
        ("user-agent", "insomnium/0.2.3-a"),
    ]
    ours = connect_event(
        context,
        headers=headers,
        query="channel=abc",
        request_id="HEMM0GseIAMESYg=",
        request_time_ns=1741367070493 * MS,
        trace="Root=1-67cb271e-1c39194673f190e36f64e47b",
    )
    assert_same(ours, aws)


def test_connect_without_a_query_has_no_query_maps() -> None:
    aws = sample("connect_without_query")
    context = ConnectionContext(
        connection_id="AAAA1234=",
        connected_at_ms=1707502303419,
        source_ip="192.0.2.1",
        api_id="abcd1234",
        stage="prod",
        domain_name="abcd1234.execute-api.us-east-1.amazonaws.com",
    )
    headers = [
        ("Host", "abcd123.execute-api.us-east-1.amazonaws.com"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "..."),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ]
    ours = connect_event(
        context, headers=headers, request_id="ABCD1234=", request_time_ns=1707502303420 * MS, trace="..."
    )
    assert_same(ours, aws)
    assert ours["requestContext"]["requestTime"] == "09/Feb/2024:18:11:43 +0000"


def test_message_matches_aws() -> None:
    aws = sample("message")
    context = ConnectionContext(
        connection_id="SOqGjdZioAMCEeg=",
        connected_at_ms=1652722217711,
        source_ip="123.456.789.123",
        api_id="u9jlm1pv1h",
        stage="api",
        domain_name="u9jlm1pv1h.execute-api.us-east-1.amazonaws.com",
    )
    ours = message_event(
        context,
        route_key="$default",
        body='{"first_name" : "Jane", "last_name" : "Doe"}',
        message_id="SOqIDdzSoAMCEeg=",
        request_id="SOqIDEacoAMFaHQ=",
        request_time_ns=1652722227357 * MS,
    )
    assert_same(ours, aws)


def test_disconnect_matches_aws() -> None:
    aws = sample("disconnect")
    context = ConnectionContext(
        connection_id="AAAA1234=",
        connected_at_ms=1707503007396,
        source_ip="192.0.2.1",
        api_id="abcd1234",
        stage="prod",
        domain_name="abcd1234.execute-api.us-east-1.amazonaws.com",
    )
    ours = disconnect_event(
        context,
        status_code=1005,
        reason=NO_STATUS_REASON,
        request_id="ABCD1234=",
        request_time_ns=1707503008941 * MS,
    )
    assert_same(ours, aws)


def test_authorizer_input_matches_aws() -> None:
    aws = sample("authorizer")
    context = ConnectionContext(
        connection_id="...",
        connected_at_ms=1674162806344,
        source_ip="...",
        api_id="abcdef123",
        stage="default",
        domain_name="abcdef123.execute-api.us-east-1.amazonaws.com",
    )
    headers = [
        ("Host", "abcdef123.execute-api.us-east-1.amazonaws.com"),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "..."),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("HeaderAuth1", "headerValue1"),
    ]
    ours = authorizer_event(
        context,
        headers=headers,
        query="QueryString1=queryValue1",
        request_id="...",
        request_time_ns=1674162806345 * MS,
        trace="...",
    )
    assert_same(ours, aws)


CONTEXT = ConnectionContext(
    connection_id="L0SM9cOFvHcCIhw=",
    connected_at_ms=1_700_000_000_000,
    source_ip="203.0.113.9",
    api_id="a1b2c3d4e5",
    stage="dev",
    domain_name="127.0.0.1:8080",
)


def test_ids_look_like_aws_ids() -> None:
    ids = {new_connection_id() for _ in range(200)} | {new_message_id(), new_request_id()}
    assert len(ids) == 202
    for value in ids:
        # 16 characters of URL-safe base64, ending in "=", like "L0SM9cOFvHcCIhw=" or "HEJGadx-IAMCJPQ=".
        assert re.fullmatch(r"[A-Za-z0-9_-]{15}=", value), value


def test_a_binary_frame_arrives_base64_encoded() -> None:
    event = message_event(
        CONTEXT,
        route_key="$default",
        body=b"\x00\xffbinary",
        message_id="m",
        request_id="r",
        request_time_ns=1_700_000_001_000 * MS,
    )
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xffbinary"


def test_the_authorizers_output_reaches_every_later_event() -> None:
    view = authorizer_view("me", {"stringKey": "stringval", "numberKey": 123, "booleanKey": True}, 17)
    assert view == {
        "principalId": "me",
        "integrationLatency": 17,
        "stringKey": "stringval",
        "numberKey": "123",
        "booleanKey": "true",
    }
    authorized = ConnectionContext(**{**_fields(CONTEXT), "authorizer": view})
    connect = connect_event(authorized, headers=[("host", "h")], request_id="r", request_time_ns=1 * MS)
    message = message_event(
        authorized, route_key="chat", body="{}", message_id="m", request_id="r", request_time_ns=2 * MS
    )
    gone = disconnect_event(
        authorized, status_code=1000, reason="bye", request_id="r", request_time_ns=3 * MS
    )
    for event in (connect, message, gone):
        context = event["requestContext"]
        assert context["authorizer"] == view
        assert list(context)[:2] == ["routeKey", "authorizer"]
    assert list(message["requestContext"])[2] == "messageId"
    assert list(gone["requestContext"])[2] == "disconnectStatusCode"
    # The authorizer itself does not see an authorizer.
    asked = authorizer_event(authorized, headers=[], request_id="r", request_time_ns=1 * MS)
    assert "authorizer" not in asked["requestContext"]


def test_an_authorizer_context_must_hold_plain_values() -> None:
    with pytest.raises(ValueError, match=r"context\.nested"):
        authorizer_view("me", {"nested": {"a": 1}}, 1)


def _fields(context: ConnectionContext) -> dict[str, Any]:
    return {name: getattr(context, name) for name in context.__dataclass_fields__}


def test_identity_names_the_user_agent_first_when_there_is_one() -> None:
    with_agent = ConnectionContext(**{**_fields(CONTEXT), "user_agent": "wscat"})
    event = message_event(
        with_agent, route_key="a", body="", message_id="m", request_id="r", request_time_ns=0
    )
    assert (
        json.dumps(event["requestContext"]["identity"]) == '{"userAgent": "wscat", "sourceIp": "203.0.113.9"}'
    )


def test_headers_are_passed_on_as_api_gateway_passes_them() -> None:
    event = connect_event(
        CONTEXT,
        headers=[
            ("x-forwarded-for", "198.51.100.1"),
            ("cookie", "a=1"),
            ("X-Custom", "one"),
            ("x-custom", "two"),
            ("x-amzn-trace-id", "Root=1-mine"),
            ("content-length", "0"),
            ("accept", "*/*"),
        ],
        query="a=1&a=2&b=%20x",
        request_id="r",
        request_time_ns=1_700_000_000_001 * MS,
        server_port=8080,
        scheme="http",
    )
    assert list(event["headers"]) == [
        "Accept",
        "Cookie",
        "X-Amzn-Trace-Id",
        "X-Custom",
        "X-Forwarded-For",
        "X-Forwarded-Port",
        "X-Forwarded-Proto",
    ]
    assert event["headers"]["X-Forwarded-For"] == "198.51.100.1, 203.0.113.9"  # the client's, then its own
    assert event["headers"]["X-Amzn-Trace-Id"] == "Root=1-mine"  # a trace the client sent is kept
    assert (event["headers"]["X-Forwarded-Port"], event["headers"]["X-Forwarded-Proto"]) == ("8080", "http")
    assert event["multiValueHeaders"]["X-Custom"] == ["one", "two"]  # one name, however it was spelt
    assert event["queryStringParameters"] == {"a": "2", "b": " x"}  # the last value wins
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": [" x"]}


def test_a_trace_id_is_made_when_none_is_given() -> None:
    event = connect_event(CONTEXT, headers=[], request_id="r", request_time_ns=1_700_000_000_000 * MS)
    assert re.fullmatch(r"Root=1-6553f100-[0-9a-f]{24}", event["headers"]["X-Amzn-Trace-Id"])


def test_stage_variables_come_before_the_request_context() -> None:
    variables = {"table": "chat"}
    connect = connect_event(CONTEXT, headers=[], request_id="r", request_time_ns=0, stage_variables=variables)
    message = message_event(
        CONTEXT,
        route_key="a",
        body="",
        message_id="m",
        request_id="r",
        request_time_ns=0,
        stage_variables=variables,
    )
    for event in (connect, message):
        keys = list(event)
        assert keys.index("stageVariables") == keys.index("requestContext") - 1
        assert event["stageVariables"] == variables
    asked = authorizer_event(CONTEXT, headers=[], request_id="r", request_time_ns=0)
    assert asked["stageVariables"] == {}


def test_the_method_arn_ends_with_connect() -> None:
    assert (
        method_arn("abcdef123", "default")
        == "arn:aws:execute-api:us-east-1:123456789012:abcdef123/default/$connect"
    )
    assert (
        method_arn("a", "prod", "eu-west-1", "111122223333")
        == "arn:aws:execute-api:eu-west-1:111122223333:a/prod/$connect"
    )


def test_disconnect_headers_name_the_domain() -> None:
    event = disconnect_event(
        CONTEXT, status_code=1001, reason="Going away", request_id="r", request_time_ns=0
    )
    assert event["headers"] == {
        "Host": "127.0.0.1:8080",
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert (event["requestContext"]["disconnectStatusCode"], event["requestContext"]["disconnectReason"]) == (
        1001,
        "Going away",
    )
