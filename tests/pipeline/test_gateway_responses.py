"""Customised gateway responses: parsing, inheritance through DEFAULT_4XX / DEFAULT_5XX, and rendering."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pytest

from portway.pipeline.context import RequestContext
from portway.pipeline.gateway_responses import (
    CURRENT_REQUEST,
    CustomResponse,
    parse_gateway_responses,
    table_reads_request,
)
from portway.pipeline.responses import (
    HTTP_RESPONSES,
    REST_RESPONSES,
    ResponseTable,
    ResponseType,
    gateway_response,
)

T = ResponseType
EXT = "$.x-amazon-apigateway-gateway-responses"


def request(
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    path_parameters: Mapping[str, str] | None = None,
    stage_variables: Mapping[str, str] | None = None,
) -> RequestContext:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/dev/items/7",
        "raw_path": b"/dev/items/7",
        "headers": list(headers),
        "query_string": query,
        "client": ("10.1.2.3", 5555),
        "http_version": "1.1",
    }
    return RequestContext(
        scope, receive, "/items/7", "dev", "/items/{id}", dict(path_parameters or {}), stage_variables or {}
    )


@contextmanager
def answering(ctx: RequestContext) -> Iterator[RequestContext]:
    token = CURRENT_REQUEST.set(ctx)
    try:
        yield ctx
    finally:
        CURRENT_REQUEST.reset(token)


def parse(raw: Mapping[str, Any], http_api: bool = False) -> ResponseTable:
    table, problems = parse_gateway_responses(raw, HTTP_RESPONSES if http_api else REST_RESPONSES, http_api)
    assert problems == []
    return table


def problems_of(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    _, problems = parse_gateway_responses(raw, REST_RESPONSES, http_api=False)
    return problems


def json_template(text: str) -> dict[str, Any]:
    return {"responseTemplates": {"application/json": text}}


def test_without_the_extension_the_base_table_is_returned_itself() -> None:
    assert parse_gateway_responses({}, REST_RESPONSES, http_api=False) == (REST_RESPONSES, [])
    assert not table_reads_request(REST_RESPONSES)


def test_a_type_takes_its_status_template_and_headers() -> None:
    table = parse(
        {
            "MISSING_AUTHENTICATION_TOKEN": {
                "statusCode": "404",
                "responseParameters": {"gatewayresponse.header.x-hint": "'try /items'"},
                **json_template('{"message": $context.error.messageString, "id": "$context.requestId"}'),
            }
        }
    )
    with answering(request()) as ctx:
        answer = gateway_response(T.MISSING_AUTHENTICATION_TOKEN, table)
    assert answer.status == 404
    assert answer.headers == [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", b"MissingAuthenticationTokenException"),
        (b"x-hint", b"try /items"),
    ]
    assert orjson.loads(answer.body) == {"message": "Missing Authentication Token", "id": ctx.request_id}
    # Other types are untouched: the very same entries.
    assert table[T.THROTTLED] is REST_RESPONSES[T.THROTTLED]


def test_message_string_is_the_message_quoted_and_escaped() -> None:
    table = parse(
        {
            "BAD_REQUEST_PARAMETERS": json_template(
                '{"m": $context.error.messageString, "raw": "$context.error.message"}'
            )
        }
    )
    answer = gateway_response(T.BAD_REQUEST_PARAMETERS, table, 'Missing required request parameters: [a"b]')
    assert answer.body == (
        b'{"m": "Missing required request parameters: [a\\"b]", '
        b'"raw": "Missing required request parameters: [a"b]"}'
    )


def test_a_message_given_by_the_stage_reaches_the_default_body() -> None:
    table = parse({"BAD_REQUEST_PARAMETERS": {"statusCode": 422}})
    answer = gateway_response(T.BAD_REQUEST_PARAMETERS, table, "Missing required request parameters: [id]")
    assert (answer.status, answer.body) == (422, b'{"message":"Missing required request parameters: [id]"}')
    assert (
        gateway_response(T.BAD_REQUEST_PARAMETERS, table).body
        == REST_RESPONSES[T.BAD_REQUEST_PARAMETERS].encoded
    )


def test_default_4xx_applies_to_every_4xx_type_without_its_own_entry() -> None:
    table = parse(
        {
            "DEFAULT_4XX": {
                "statusCode": 400,
                "responseParameters": {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"},
                **json_template('{"type": "$context.error.responseType"}'),
            },
            "THROTTLED": {"responseParameters": {"gatewayresponse.header.retry": "'later'"}},
        }
    )
    for kind in (T.INVALID_API_KEY, T.UNAUTHORIZED, T.ACCESS_DENIED, T.MISSING_AUTHENTICATION_TOKEN):
        answer = gateway_response(kind, table)
        assert answer.status == 400, kind  # DEFAULT_4XX's statusCode replaces theirs
        assert (b"Access-Control-Allow-Origin", b"*") in answer.headers
        assert orjson.loads(answer.body) == {"type": kind.value}  # the type itself, not DEFAULT_4XX
    # A type with an entry of its own takes nothing from DEFAULT_4XX: its own default status and body too.
    throttled = gateway_response(T.THROTTLED, table)
    assert throttled.status == 429
    assert throttled.body == b'{"message":"Too Many Requests"}'
    assert throttled.headers[-1] == (b"retry", b"later")
    assert all(name != b"Access-Control-Allow-Origin" for name, _ in throttled.headers)
    # 5xx types are not 4xx ones.
    assert table[T.INTEGRATION_TIMEOUT] is REST_RESPONSES[T.INTEGRATION_TIMEOUT]


def test_default_5xx_without_a_status_keeps_each_types_own() -> None:
    table = parse(
        {
            "DEFAULT_5XX": json_template(
                '{"oops": $context.error.messageString, "t": "$context.error.responseType"}'
            )
        }
    )
    timeout = gateway_response(T.INTEGRATION_TIMEOUT, table)
    assert timeout.status == 504
    assert orjson.loads(timeout.body) == {"oops": "Endpoint request timed out", "t": "INTEGRATION_TIMEOUT"}
    # Portway's own types (not AWS's to name) follow the fallback of their class, under its name.
    lambda_error = gateway_response(T.LAMBDA_ERROR, table)
    assert lambda_error.status == 502
    assert orjson.loads(lambda_error.body) == {"oops": "Internal server error", "t": "DEFAULT_5XX"}
    assert table[T.THROTTLED] is REST_RESPONSES[T.THROTTLED]


def test_response_parameters_read_the_request() -> None:
    table = parse(
        {
            "DEFAULT_4XX": {
                "responseParameters": {
                    "gatewayresponse.header.x-static": "'fixed'",
                    "gatewayresponse.header.x-accept": "method.request.header.Accept",
                    "gatewayresponse.header.x-q": "method.request.querystring.q",
                    "gatewayresponse.header.x-id": "method.request.path.id",
                    "gatewayresponse.header.x-env": "stageVariables.env",
                    "gatewayresponse.header.x-request": "context.requestId",
                    "gatewayresponse.header.x-missing": "method.request.header.x-not-sent",
                }
            }
        }
    )
    ctx = request(
        headers=[(b"accept", b"text/plain")],
        query=b"q=1&q=two%20words",
        path_parameters={"id": "7"},
        stage_variables={"env": "test"},
    )
    with answering(ctx):
        answer = gateway_response(T.UNAUTHORIZED, table)
    assert answer.headers == [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", b"UnauthorizedException"),
        (b"x-static", b"fixed"),
        (b"x-accept", b"text/plain"),
        (b"x-q", b"two words"),  # the last value
        (b"x-id", b"7"),
        (b"x-env", b"test"),
        (b"x-request", ctx.request_id.encode()),
        # x-missing: a parameter the request lacks sets no header
    ]


def test_templates_print_context_and_stage_variables() -> None:
    template = (
        '{"stage": "$context.stage", "resource": "${context.resourcePath}", '
        '"method": "$context.httpMethod", "path": "$context.path", "ip": "$context.identity.sourceIp", '
        '"agent": "$!context.identity.userAgent", "who": "$context.authorizer.principalId", '
        '"sub": "$context.authorizer.claims.sub", "admin": "$context.authorizer.admin", '
        '"v": "$stageVariables.version", "none": "$stageVariables.nope", "price": "US$ 5", "dollar": "$5", '
        '"protocol": "$context.protocol", "why": "$context.error.validationErrorString"}'
    )
    table = parse({"BAD_REQUEST_BODY": json_template(template)})
    ctx = request(headers=[(b"user-agent", b"curl/8")], stage_variables={"version": "v2"})
    ctx.authorizer = {"principalId": "user-1", "admin": True, "claims": {"sub": "abc"}}
    ctx.validation_error = "[instance has no property name]"
    with answering(ctx):
        answer = gateway_response(T.BAD_REQUEST_BODY, table)
    assert orjson.loads(answer.body) == {
        "stage": "dev",
        "resource": "/items/{id}",
        "method": "POST",
        "path": "/dev/items/7",
        "ip": "10.1.2.3",
        "agent": "curl/8",
        "who": "user-1",
        "sub": "abc",
        "admin": "true",
        "v": "v2",
        "none": "",
        "price": "US$ 5",
        "dollar": "$5",
        "protocol": "HTTP/1.1",
        "why": "[instance has no property name]",  # printed as is: a quote in it would break the JSON
    }


def test_a_template_without_variables_is_rendered_once() -> None:
    table = parse({"THROTTLED": json_template('{"message": "slow down"}')})
    custom = table[T.THROTTLED].custom
    assert isinstance(custom, CustomResponse)
    assert custom.templates["application/json"].static == b'{"message": "slow down"}'
    assert not table_reads_request(table)
    assert gateway_response(T.THROTTLED, table).body == b'{"message": "slow down"}'


def test_the_accept_header_chooses_among_templates() -> None:
    table = parse(
        {
            "THROTTLED": {
                "responseTemplates": {"application/json": '{"m": 1}', "application/xml": "<m>1</m>"},
            }
        }
    )
    assert table_reads_request(table)  # the Accept header chooses
    with answering(request(headers=[(b"accept", b"application/xml;q=0.9, application/json")])):
        xml = gateway_response(T.THROTTLED, table)
    assert (xml.headers[0], xml.body) == ((b"content-type", b"application/xml"), b"<m>1</m>")
    with answering(request(headers=[(b"accept", b"text/html")])):
        fallback = gateway_response(T.THROTTLED, table)
    assert (fallback.headers[0], fallback.body) == ((b"content-type", b"application/json"), b'{"m": 1}')


def test_outside_a_request_request_values_print_empty() -> None:
    table = parse({"THROTTLED": json_template('{"id": "$context.requestId"}')})
    assert gateway_response(T.THROTTLED, table).body == b'{"id": ""}'


def test_http_apis_print_their_short_request_id_and_keep_their_own_words() -> None:
    table = parse(
        {"DEFAULT_4XX": json_template('{"id": "$context.requestId", "m": $context.error.messageString}')},
        http_api=True,
    )
    with answering(request()) as ctx:
        answer = gateway_response(T.MISSING_AUTHENTICATION_TOKEN, table)
    assert answer.status == 404
    assert answer.headers == [(b"content-type", b"application/json")]  # no x-amzn-ErrorType on HTTP APIs
    assert orjson.loads(answer.body) == {"id": ctx.extended_request_id, "m": "Not Found"}


def test_access_denied_keeps_its_capital_message_key_in_the_default_body() -> None:
    table = parse({"ACCESS_DENIED": {"statusCode": 401}})
    answer = gateway_response(T.ACCESS_DENIED, table)
    assert answer.status == 401
    assert orjson.loads(answer.body) == {
        "Message": "User is not authorized to access this resource with an explicit deny"
    }


@pytest.mark.parametrize(
    ("raw", "where", "says"),
    [
        ({"NOT_A_TYPE": {}}, f"{EXT}.NOT_A_TYPE", "unknown gateway response type 'NOT_A_TYPE'"),
        ({"LAMBDA_ERROR": {}}, f"{EXT}.LAMBDA_ERROR", "unknown gateway response type"),
        ({"BAD_REQUEST": {}}, f"{EXT}.BAD_REQUEST", "unknown gateway response type"),
        ({"THROTTLED": "429"}, f"{EXT}.THROTTLED", "must be a mapping"),
        ({"THROTTLED": {"status": 429}}, f"{EXT}.THROTTLED.status", "unknown field"),
        ({"THROTTLED": {"statusCode": 700}}, f"{EXT}.THROTTLED.statusCode", "not an HTTP status code"),
        ({"THROTTLED": {"statusCode": True}}, f"{EXT}.THROTTLED.statusCode", "not an HTTP status code"),
        (
            {"THROTTLED": {"responseParameters": {"gatewayresponse.querystring.a": "'b'"}}},
            f"{EXT}.THROTTLED.responseParameters['gatewayresponse.querystring.a']",
            "only gatewayresponse.header.NAME can be set",
        ),
        (
            {"THROTTLED": {"responseParameters": {"gatewayresponse.header.a": "method.input.params.a"}}},
            f"{EXT}.THROTTLED.responseParameters['gatewayresponse.header.a']",
            "use a 'static value' in single quotes",
        ),
        (
            {"THROTTLED": {"responseParameters": {"gatewayresponse.header.a": "context.nothing"}}},
            f"{EXT}.THROTTLED.responseParameters['gatewayresponse.header.a']",
            "$context.nothing is not available in gateway responses",
        ),
        (
            {"THROTTLED": json_template("$input.params('x')")},
            f"{EXT}.THROTTLED.responseTemplates['application/json']",
            "$input is VTL, and gateway response templates are not VTL",
        ),
        (
            {"THROTTLED": json_template("#if($context.stage == 'dev') x #end")},
            f"{EXT}.THROTTLED.responseTemplates['application/json']",
            "VTL directives are not evaluated",
        ),
        (
            {"THROTTLED": json_template('{"a": "$context.requestId.toUpperCase()"}')},
            f"{EXT}.THROTTLED.responseTemplates['application/json']",
            "$context.requestId.toUpperCase is not available",
        ),
        (
            {"THROTTLED": json_template('{"a": "$thing"}')},
            f"{EXT}.THROTTLED.responseTemplates['application/json']",
            "$thing: only $context.NAME and $stageVariables.NAME can be printed here",
        ),
    ],
)
def test_what_cannot_be_served_is_refused_at_load_time(raw: dict[str, Any], where: str, says: str) -> None:
    problems = problems_of(raw)
    assert len(problems) == 1, problems
    assert problems[0][0] == where
    assert says in problems[0][1]


def test_every_problem_is_reported_and_good_entries_still_parse() -> None:
    table, problems = parse_gateway_responses(
        {
            "THROTTLED": {"statusCode": "abc", "responseTemplates": {"application/json": "#set($a = 1)"}},
            "QUOTA_EXCEEDED": {"statusCode": 430},
        },
        REST_RESPONSES,
        http_api=False,
    )
    assert [where for where, _ in problems] == [
        f"{EXT}.THROTTLED.statusCode",
        f"{EXT}.THROTTLED.responseTemplates['application/json']",
    ]
    assert table[T.QUOTA_EXCEEDED].status == 430
