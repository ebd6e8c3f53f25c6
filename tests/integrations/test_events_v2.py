"""Payload format 2.0 (HTTP APIs), as plain functions: the event from request facts, the answer from a result.

Held against the AWS developer guide's payload 2.0 example and its response rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from portway.integrations.events import MalformedResponse
from portway.integrations.events_v2 import build_event_v2, http_v2_answer, map_response_v2

NS = 1_583_348_638_390_000_000  # 04/Mar/2020:19:03:58 +0000


def facts(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": "POST",
        "rawPath": "/dev/my/path%20here",
        "routeKey": "POST /my/{item}",
        "stage": "dev",
        "pathParameters": {"item": "path here"},
        "stageVariables": {},
        "headers": [
            ["host", "abc123.execute-api.us-east-1.amazonaws.com"],
            ["header2", "value1"],
            ["header2", "value2"],
            ["cookie", "cookie1=a; cookie2=b"],
            ["user-agent", "agent/1"],
            ["x-forwarded-for", "10.0.0.1"],
        ],
        "query": "parameter1=value1&parameter1=value2&parameter2=a%20b",
        "clientIp": "127.0.0.1",
        "serverPort": 3000,
        "scheme": "http",
        "httpVersion": "1.1",
        "requestId": "JKJaXmPLvHcESHA=",
        "requestTimeNs": NS,
        "body": "Hello from client!",
        "isBase64Encoded": False,
        "api": {"apiId": "abc123", "accountId": "123456789012", "region": "us-east-1", "deploymentId": "d1"},
    }
    request.update(overrides)
    return request


def test_event_has_aws_keys_in_aws_order() -> None:
    event = build_event_v2(facts())
    assert list(event) == [
        "version",
        "routeKey",
        "rawPath",
        "rawQueryString",
        "cookies",
        "headers",
        "queryStringParameters",
        "requestContext",
        "body",
        "pathParameters",
        "isBase64Encoded",
    ]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /my/{item}"
    assert event["body"] == "Hello from client!"
    assert event["pathParameters"] == {"item": "path here"}
    assert event["isBase64Encoded"] is False


def test_raw_path_is_decoded_and_raw_query_string_is_not() -> None:
    event = build_event_v2(facts())
    assert event["rawPath"] == "/dev/my/path here"
    assert event["rawQueryString"] == "parameter1=value1&parameter1=value2&parameter2=a%20b"
    assert event["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "a b"}


def test_headers_are_joined_and_cookies_move_to_their_own_list() -> None:
    event = build_event_v2(facts())
    headers = event["headers"]
    assert headers["header2"] == "value1,value2"
    assert "cookie" not in headers
    assert event["cookies"] == ["cookie1=a", "cookie2=b"]
    assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert headers["x-forwarded-port"] == "3000"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"].startswith("Root=1-5e5ffb9e-")
    assert all(name == name.lower() for name in headers)


def test_request_context() -> None:
    context = build_event_v2(facts())["requestContext"]
    assert context == {
        "accountId": "123456789012",
        "apiId": "abc123",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {
            "method": "POST",
            "path": "/dev/my/path here",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "agent/1",
        },
        "requestId": "JKJaXmPLvHcESHA=",
        "routeKey": "POST /my/{item}",
        "stage": "dev",
        "time": "04/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1_583_348_638_390,
    }


def test_empty_parts_are_left_out_not_null() -> None:
    event = build_event_v2(
        facts(headers=[["host", "h"]], query="", body=None, pathParameters={}, stageVariables={})
    )
    for key in ("cookies", "queryStringParameters", "body", "pathParameters", "stageVariables"):
        assert key not in event
    assert event["isBase64Encoded"] is False


def test_stage_variables_and_authorizer_when_present() -> None:
    event = build_event_v2(
        facts(stageVariables={"fn": "x"}, authorizer={"jwt": {"claims": {}, "scopes": None}})
    )
    assert event["stageVariables"] == {"fn": "x"}
    assert event["requestContext"]["authorizer"] == {"jwt": {"claims": {}, "scopes": None}}
    assert list(event["requestContext"])[:3] == ["accountId", "apiId", "authorizer"]


@pytest.mark.parametrize(
    ("result", "body"),
    [
        ({"message": "Hello from Lambda!"}, '{"message": "Hello from Lambda!"}'),
        ("Hello from Lambda!", "Hello from Lambda!"),
        ([1, 2], "[1, 2]"),
        (None, "null"),
        (True, "true"),
    ],
)
def test_a_result_without_status_code_is_inferred(result: Any, body: str) -> None:
    status, headers, text, decode = map_response_v2(result, json.dumps(result))
    assert (status, headers, text, decode) == (200, [("content-type", "application/json")], body, False)


def test_full_response_with_cookies_and_base64() -> None:
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "image/png", "X-Flag": True, "X-N": 3},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": "iVBORw0KGgo=",
        "isBase64Encoded": True,
    }
    status, headers, text, decode = map_response_v2(result, json.dumps(result))
    assert status == 201
    assert headers == [
        ("Content-Type", "image/png"),
        ("X-Flag", "true"),
        ("X-N", "3"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; HttpOnly"),
    ]
    assert (text, decode) == ("iVBORw0KGgo=", True)


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "teapot"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "cookies": "a=1"},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
        {"statusCode": 700},
    ],
)
def test_malformed_full_responses(result: dict[str, Any]) -> None:
    with pytest.raises(MalformedResponse):
        map_response_v2(result, json.dumps(result))
    assert "malformed" in http_v2_answer(result, json.dumps(result), facts())
