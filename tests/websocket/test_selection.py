"""Route selection: routeSelectionExpression against a message, as the developer guide evaluates it."""

from __future__ import annotations

from typing import Any

import pytest

from portway.websocket.selection import (
    ExpressionError,
    Reason,
    error_answer,
    parse_expression,
    select_route,
    select_route_response,
    stringify,
)

# The developer guide's example message (Working with routes for WebSocket APIs).
MESSAGE = '{"service": "chat", "action": "join", "data": {"room": "room1234", "tags": ["a", "b"]}}'


@pytest.mark.parametrize(
    ("expression", "key"),
    [
        ("$request.body.action", "join"),  # an unwrapped variable
        ("${request.body.action}", "join"),  # a wrapped variable
        ("${request.body.service}/${request.body.action}", "chat/join"),  # variables with static text
        ("${request.body.action}-${request.body.invalidPath}", "join-"),  # a path not found is ""
        ("action", "action"),  # a static value
        ("\\$default", "$default"),  # an escaped dollar sign
        ("$request.body.data.room", "room1234"),  # nested
        ("$request.body.data['room']", "room1234"),
        ('${request.body.data["room"]}', "room1234"),
        ("$request.body.data.tags[1]", "b"),
        ("$request.body.data.tags", "[a, b]"),  # an array is stringified as the guide shows
        ("$request.body.data.tags[5]", ""),
        ("$request.body.action.deeper", ""),
        ("$request.body.action-beta", "join-beta"),  # an unwrapped variable ends where its path does
        ("v1:$request.body.action", "v1:join"),
    ],
)
def test_the_expression_evaluates_as_the_guide_says(expression: str, key: str) -> None:
    routes = {key, "$default"}
    selection = select_route(expression, routes, MESSAGE)
    assert selection.key == key
    assert selection.route_key == key
    assert selection.reason is Reason.MATCHED


def test_a_wrapped_variable_may_name_keys_an_unwrapped_one_cannot() -> None:
    selection = select_route("${request.body.my-action}", {"go"}, '{"my-action": "go"}')
    assert selection.route_key == "go"


def test_route_keys_are_case_sensitive() -> None:
    selection = select_route("$request.body.action", {"Join", "$default"}, MESSAGE)
    assert (selection.route_key, selection.reason, selection.key) == ("$default", Reason.NO_MATCH, "join")


@pytest.mark.parametrize("message", ["hello", "{not json", b'{"action": "join"}', ""])
def test_a_message_that_is_not_json_goes_to_default(message: str | bytes) -> None:
    selection = select_route("$request.body.action", {"join", "$default"}, message)
    assert (selection.route_key, selection.reason, selection.key) == ("$default", Reason.NOT_JSON, None)


@pytest.mark.parametrize(
    "message",
    ['{"other": 1}', '{"action": "leave"}', '["join"]', '"join"', '{"action": null}'],
)
def test_a_message_naming_no_route_goes_to_default(message: str) -> None:
    selection = select_route("$request.body.action", {"join", "$default"}, message)
    assert selection.route_key == "$default"
    assert selection.reason is Reason.NO_MATCH


def test_without_default_an_unroutable_message_is_refused() -> None:
    routes = {"$connect", "join"}
    refused = select_route("$request.body.action", routes, '{"action": "leave"}')
    assert refused.refused
    assert (refused.route_key, refused.reason, refused.key) == (None, Reason.NO_MATCH, "leave")
    not_json = select_route("$request.body.action", routes, "leave")
    assert not_json.refused
    assert not_json.reason is Reason.NOT_JSON


@pytest.mark.parametrize("key", ["$connect", "$disconnect"])
def test_a_message_never_runs_connect_or_disconnect(key: str) -> None:
    selection = select_route(
        "$request.body.action", {"$connect", "$disconnect", "$default"}, f'{{"action": "{key}"}}'
    )
    assert selection.route_key == "$default"
    assert selection.reason is Reason.NO_MATCH


def test_a_static_expression_needs_no_json() -> None:
    parsed = parse_expression("\\$default")
    assert not parsed.needs_body
    assert parsed.static == "$default"
    assert select_route(parsed, {"$default"}, b"\x00binary").route_key == "$default"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("x", "x"),
        (1, "1"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (None, ""),
        ([1, "a", [True]], "[1, a, [true]]"),
        ({"a": 1, "b": "c"}, "{a=1, b=c}"),
    ],
)
def test_values_are_stringified(value: Any, text: str) -> None:
    assert stringify(value) == text


def test_numbers_and_booleans_select_routes_by_their_text() -> None:
    assert select_route("$request.body.v", {"2"}, '{"v": 2}').route_key == "2"
    assert select_route("$request.body.v", {"true"}, '{"v": true}').route_key == "true"


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("", "empty"),
        ("$request.header.x-action", "$request.body.PATH only"),
        ("${context.routeKey}", "$request.body.PATH only"),
        ("$default", "'\\$default'"),
        ("${request.body.action", "never closed"),
        ("${request.body[*]}", "JSONPath"),
        ("${request.body..action}", "JSONPath"),
        ("$request.bodyaction", "$request.body.PATH only"),
        ("$", "$request.body.PATH only"),
    ],
)
def test_expressions_aws_would_refuse_say_why(expression: str, says: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(expression)
    assert says in str(caught.value)


def test_the_parsed_expression_keeps_its_parts_in_order() -> None:
    parsed = parse_expression("a${request.body.b}c$request.body.d[0]")
    texts = [part if isinstance(part, str) else part.text for part in parsed.parts]
    assert texts == ["a", "${request.body.b}", "c", "$request.body.d[0]"]
    assert parsed.needs_body
    assert parsed.static is None


def test_route_response_selection_is_default_only() -> None:
    assert select_route_response("$default") == "$default"
    assert select_route_response(None) is None
    assert select_route_response("$other") is None


def test_error_answers_are_spaced_as_aws_sends_them() -> None:
    # As captured from API Gateway, e.g. {"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", ...}
    assert error_answer("Forbidden", "XDmENcnwIE0CFEQ=", "XDmGEE2RoE0FRdQ=") == (
        '{"message": "Forbidden", "connectionId":"XDmENcnwIE0CFEQ=", "requestId":"XDmGEE2RoE0FRdQ="}'
    )
    assert error_answer("Internal server error", "Qyi07eCbtjMCJKw=", "Qyi3UG41tjMFlUg=") == (
        '{"message": "Internal server error", "connectionId":"Qyi07eCbtjMCJKw=", '
        '"requestId":"Qyi3UG41tjMFlUg="}'
    )
