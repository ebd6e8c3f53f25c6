"""Access logs: every $context variable against real request contexts, presets, JSON escaping, the writer."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from portway.integrations.events import stable_id
from portway.observability.access_log import (
    DEFAULT,
    NO_REQUEST_ID,
    NOT_ONE_LINE,
    PRESETS,
    AccessLogFormat,
    AccessLogOpenError,
    AccessLogWriter,
    LogStreamHandler,
    format_named,
    preset,
)
from portway.observability.access_log_vars import ALWAYS_MISSING, VARIABLES
from portway.observability.exchange import ApiIdentity, Exchange
from portway.pipeline.context import RequestContext

REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
SHORT_ID = "BvX2BhJvIAMEbVg="
TIME_NS = 1_428_582_896_123_456_789  # 09/Apr/2015:12:34:56.123 UTC
HOST = b"abc123.execute-api.us-east-1.amazonaws.com"
TRACE = b"Root=1-5e1b4151-5ac6c58f5b5dbd6a2c3d4e5f;Parent=53995c3f42cd8ad8;Sampled=1"
API_KEY = "k" * 30

REST_API = ApiIdentity("a1b2c3d4e5", "Shop", "dev", "REST", deployment_id="dep42x")
HTTP_API = ApiIdentity("h1t2t3p4a5", "Shop", "$default", "HTTP")


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def context(
    method: str = "GET",
    raw_path: bytes = b"/dev/items/7",
    path: str = "/items/7",
    stage: str = "dev",
    resource: str = "/items/{id}",
    headers: Sequence[tuple[bytes, bytes]] = (),
    client: tuple[str, int] | None = ("203.0.113.9", 5555),
) -> RequestContext:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "headers": list(headers),
        "query_string": b"",
        "http_version": "1.1",
    }
    if client is not None:
        scope["client"] = client
    ctx = RequestContext(scope, receive, path, stage, resource, {"id": "7"} if resource else {}, {})
    ctx.request_id, ctx.extended_request_id, ctx.request_time_ns = REQUEST_ID, SHORT_ID, TIME_NS
    return ctx


def routed_rest() -> Exchange:
    """A REST request that went through API key, Lambda authorizer, validator, web ACL and Lambda stages."""
    ctx = context(
        method="POST",
        headers=[
            (b"host", HOST),
            (b"user-agent", b"curl/8.4.0"),
            (b"x-amzn-trace-id", TRACE),
            (b"content-length", b"12"),
        ],
    )
    ctx.api_key, ctx.api_key_id = API_KEY, "kid123"
    ctx.authorizer = {"principalId": "user-1", "integrationLatency": 12, "tier": "gold", "admin": "true"}
    ctx.authorizer_latency_ms, ctx.authorizer_status, ctx.authorizer_error = 12.4, 200, "cached denial"
    ctx.validation_error = '[instance value ("x") not found in enum]'
    ctx.waf_status = "COUNT"
    ctx.integration_latency_ms, ctx.integration_status = 40.6, 200
    ctx.integration_error = "Lambda.Unknown"
    return Exchange(
        ctx,
        REST_API,
        None,
        400,
        87,
        52.7,
        error_type="BAD_REQUEST_BODY",
        error_message="Invalid request body",
    )


def unrouted_rest() -> Exchange:
    """A request no route took, from a client that sent nothing: the gateway answered 403 itself."""
    ctx = context(raw_path=b"/nowhere", path="/nowhere", stage="", resource="", client=None)
    return Exchange(ctx, ApiIdentity("a1b2c3d4e5", "Shop", "dev", "REST"), None, 403, 42, 0.2)


def routed_http(authorizer: dict[str, Any] | None) -> Exchange:
    ctx = context(
        raw_path=b"/items/7",
        stage="$default",
        headers=[(b"host", b"api.example.com"), (b"content-length", b"12"), (b"x-amzn-trace-id", TRACE)],
    )
    ctx.authorizer = authorizer
    ctx.integration_latency_ms, ctx.integration_status = 3.0, 200
    return Exchange(ctx, HTTP_API, "GET /items/{id}", 200, 30, 4.4)


def render_one(name: str, exchange: Exchange) -> str:
    """What ``$context.NAME`` prints (behind the request id every format must carry)."""
    line = AccessLogFormat.parse(f"$context.requestId|$context.{name}").render(exchange)
    return line.split("|", 1)[1]


# --- every variable ---------------------------------------------------------------------------------------

# Expected values, every documented variable: the routed REST request and the unrouted one. A pattern stands
# for a value made per request.
GENERATED_TRACE = re.compile(r"1-[0-9a-f]{8}-[0-9a-f]{24}")
EXPECTED: dict[str, tuple[str, str | re.Pattern[str]]] = {
    "accountId": ("123456789012", "123456789012"),
    "apiId": ("a1b2c3d4e5", "a1b2c3d4e5"),
    "authorize.error": ("-", "-"),
    "authorize.latency": ("-", "-"),
    "authorize.status": ("-", "-"),
    "authenticate.error": ("-", "-"),
    "authenticate.latency": ("-", "-"),
    "authenticate.status": ("-", "-"),
    "authorizer.claims": ("-", "-"),
    "authorizer.error": ("cached denial", "-"),
    "authorizer.integrationLatency": ("12", "-"),
    "authorizer.integrationStatus": ("-", "-"),
    "authorizer.latency": ("12", "-"),
    "authorizer.principalId": ("user-1", "-"),
    "authorizer.requestId": ("-", "-"),
    "authorizer.status": ("200", "-"),
    "awsEndpointRequestId": ("-", "-"),
    "awsEndpointRequestId2": ("-", "-"),
    "customDomain.basePathMatched": ("-", "-"),
    "dataProcessed": ("-", "-"),  # HTTP APIs only
    "deploymentId": ("dep42x", "-"),
    "domainName": (HOST.decode(), "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"),
    "domainPrefix": ("abc123", "a1b2c3d4e5"),
    "error.message": ("Invalid request body", "-"),
    "error.messageString": ('"Invalid request body"', "-"),
    "error.responseType": ("BAD_REQUEST_BODY", "-"),
    "error.validationErrorString": ('[instance value ("x") not found in enum]', "-"),
    "extendedRequestId": (SHORT_ID, SHORT_ID),
    "httpMethod": ("POST", "GET"),
    "identity.accessKey": ("-", "-"),
    "identity.accountId": ("-", "-"),
    "identity.apiKey": (API_KEY, "-"),
    "identity.apiKeyId": ("kid123", "-"),
    "identity.caller": ("-", "-"),
    "identity.clientCert.clientCertPem": ("-", "-"),
    "identity.clientCert.issuerDN": ("-", "-"),
    "identity.clientCert.serialNumber": ("-", "-"),
    "identity.clientCert.subjectDN": ("-", "-"),
    "identity.clientCert.validity.notAfter": ("-", "-"),
    "identity.clientCert.validity.notBefore": ("-", "-"),
    "identity.cognitoAuthenticationProvider": ("-", "-"),
    "identity.cognitoAuthenticationType": ("-", "-"),
    "identity.cognitoIdentityId": ("-", "-"),
    "identity.cognitoIdentityPoolId": ("-", "-"),
    "identity.principalOrgId": ("-", "-"),
    "identity.sourceIp": ("203.0.113.9", "127.0.0.1"),
    "identity.user": ("-", "-"),
    "identity.userAgent": ("curl/8.4.0", "-"),
    "identity.userArn": ("-", "-"),
    "identity.vpcId": ("-", "-"),
    "identity.vpceId": ("-", "-"),
    "integration.error": ("Lambda.Unknown", "-"),
    "integration.integrationStatus": ("200", "-"),
    "integration.latency": ("41", "-"),
    "integration.requestId": ("-", "-"),
    "integration.status": ("200", "-"),
    "integrationErrorMessage": ("Lambda.Unknown", "-"),
    "integrationLatency": ("41", "-"),
    "integrationStatus": ("200", "-"),
    "isCanaryRequest": ("-", "-"),
    "path": ("/dev/items/7", "/nowhere"),
    "protocol": ("HTTP/1.1", "HTTP/1.1"),
    "requestId": (REQUEST_ID, REQUEST_ID),
    "requestTime": ("09/Apr/2015:12:34:56 +0000", "09/Apr/2015:12:34:56 +0000"),
    "requestTimeEpoch": ("1428582896123", "1428582896123"),
    "resourceId": (stable_id("/items/{id}", 6), "-"),
    "resourcePath": ("/items/{id}", "-"),
    "responseLatency": ("53", "0"),
    "responseLength": ("87", "42"),
    "responseOverride.status": ("-", "-"),
    "routeKey": ("-", "-"),  # HTTP APIs only
    "stage": ("dev", "dev"),
    "status": ("400", "403"),
    "waf.error": ("-", "-"),
    "waf.latency": ("-", "-"),
    "waf.status": ("200", "-"),
    "wafResponseCode": ("WAF_ALLOW", "-"),
    "webaclArn": ("-", "-"),
    "xrayTraceId": ("1-5e1b4151-5ac6c58f5b5dbd6a2c3d4e5f", GENERATED_TRACE),
    # Names at the end: an authorizer's context key, a claim, the mapping-template overrides.
    "authorizer.tier": ("gold", "-"),
    "authorizer.admin": ("true", "-"),
    "authorizer.missingKey": ("-", "-"),
    "authorizer.claims.sub": ("-", "-"),
    "requestOverride.header.x_trace": ("-", "-"),
    "requestOverride.path.id": ("-", "-"),
    "requestOverride.querystring.q": ("-", "-"),
    "responseOverride.header.x_extra": ("-", "-"),
}


def test_the_table_covers_every_variable() -> None:
    assert set(VARIABLES) <= set(EXPECTED)


def matches(got: str, expected: str | re.Pattern[str]) -> bool:
    return got == expected if isinstance(expected, str) else expected.fullmatch(got) is not None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_variable_on_a_routed_rest_request(name: str) -> None:
    got = render_one(name, routed_rest())
    assert matches(got, EXPECTED[name][0]), (name, got)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_variable_on_an_unrouted_request(name: str) -> None:
    got = render_one(name, unrouted_rest())
    assert matches(got, EXPECTED[name][1]), (name, got)


def test_what_portway_never_has_prints_a_dash_even_when_everything_is_set() -> None:
    exchange = routed_rest()
    for name in sorted(ALWAYS_MISSING):
        assert render_one(name.replace("NAME", "x"), exchange) == "-", name


# HTTP APIs: the short request id, the route key, no resource, the authorizer's lambda map and JWT claims.
HTTP_EXPECTED: dict[str, str] = {
    "requestId": SHORT_ID,
    "extendedRequestId": SHORT_ID,
    "routeKey": "GET /items/{id}",
    "stage": "$default",
    "path": "/items/7",
    "resourcePath": "-",
    "resourceId": "-",
    "xrayTraceId": "-",
    "dataProcessed": "42",  # the request's 12 bytes and the answer's 30
    "domainName": "api.example.com",
    "domainPrefix": "api",
    "integrationLatency": "3",
    "responseLatency": "4",
    "deploymentId": "-",
}


@pytest.mark.parametrize(("name", "expected"), sorted(HTTP_EXPECTED.items()))
def test_http_api_variables(name: str, expected: str) -> None:
    assert render_one(name, routed_http(None)) == expected


def test_http_api_lambda_authorizer_context_comes_from_its_lambda_map() -> None:
    exchange = routed_http({"lambda": {"tier": "gold", "n": 1, "ok": True, "roles": ["a", "b"]}})
    assert render_one("authorizer.tier", exchange) == "gold"
    assert render_one("authorizer.n", exchange) == "1"
    assert render_one("authorizer.ok", exchange) == "true"
    assert render_one("authorizer.roles", exchange) == '["a","b"]'
    assert render_one("authorizer.principalId", exchange) == "-"
    assert render_one("authorizer.claims.sub", exchange) == "-"


def test_jwt_and_cognito_claims() -> None:
    http = routed_http({"jwt": {"claims": {"sub": "u-1", "scope": "read"}, "scopes": ["read"]}})
    assert render_one("authorizer.claims.sub", http) == "u-1"
    assert render_one("authorizer.claims.email", http) == "-"
    assert render_one("authorizer.sub", http) == "-"  # a claim is not a context key
    http_v1 = routed_http({"claims": {"sub": "u-2"}, "scopes": ["read"]})
    assert render_one("authorizer.claims.sub", http_v1) == "u-2"
    rest = routed_rest()
    rest.ctx.authorizer = {"claims": {"sub": "u-3", "cognito_groups": "[admin]"}}
    assert render_one("authorizer.claims.sub", rest) == "u-3"
    assert render_one("authorizer.claims.cognito_groups", rest) == "[admin]"
    assert render_one("authorizer.claims", rest) == "-"  # AWS: "returns null"


def test_a_blocked_request_as_the_web_acl_saw_it() -> None:
    exchange = routed_rest()
    exchange.ctx.waf_status = "BLOCK"
    assert render_one("waf.status", exchange) == "403"
    assert render_one("wafResponseCode", exchange) == "WAF_BLOCK"
    exchange.ctx.waf_status = "ALLOW"
    assert render_one("wafResponseCode", exchange) == "WAF_ALLOW"


def test_a_client_trace_header_with_root_elsewhere() -> None:
    exchange = routed_rest()
    exchange.ctx.headers[2] = (b"x-amzn-trace-id", b"Self=1-abc;Root=1-5e1b4151-000000000000000000000001")
    assert render_one("xrayTraceId", exchange) == "1-5e1b4151-000000000000000000000001"


def test_latencies_are_whole_milliseconds() -> None:
    exchange = routed_rest()
    exchange.response_latency_ms, exchange.ctx.integration_latency_ms = 0.4, 1999.6
    assert render_one("responseLatency", exchange) == "0"
    assert render_one("integration.latency", exchange) == "2000"


# --- presets ----------------------------------------------------------------------------------------------

# As the developer guide prints them (REST: "Set up CloudWatch logging for REST APIs"; HTTP: "Configure
# logging for HTTP APIs"), the REST CLF with the space after "]" that CLF has.
AWS_REST_JSON = (
    '{ "requestId":"$context.requestId", "extendedRequestId":"$context.extendedRequestId",'
    '"ip": "$context.identity.sourceIp", "caller":"$context.identity.caller", '
    '"user":"$context.identity.user", '
    '"requestTime":"$context.requestTime", "httpMethod":"$context.httpMethod", '
    '"resourcePath":"$context.resourcePath", "status":"$context.status", "protocol":"$context.protocol", '
    '"responseLength":"$context.responseLength" }'
)
AWS_HTTP_CSV = (
    "$context.identity.sourceIp,$context.requestTime,$context.httpMethod,$context.routeKey,$context.protocol,"
    "$context.status,$context.responseLength,$context.requestId,$context.extendedRequestId"
)


def test_presets_are_the_consoles() -> None:
    assert PRESETS["REST"]["json"] == AWS_REST_JSON
    assert PRESETS["HTTP"]["csv"] == AWS_HTTP_CSV
    assert DEFAULT is preset("json") is format_named("JSON") is format_named(" json ", "rest")
    assert format_named("clf", "HTTP").text == PRESETS["HTTP"]["clf"]


def test_rest_json_preset_on_a_routed_request() -> None:
    line = DEFAULT.render(routed_rest())
    assert "\n" not in line
    assert (
        orjson.loads(line)
        == json.loads(line)
        == {
            "requestId": REQUEST_ID,
            "extendedRequestId": SHORT_ID,
            "ip": "203.0.113.9",
            "caller": "-",
            "user": "-",
            "requestTime": "09/Apr/2015:12:34:56 +0000",
            "httpMethod": "POST",
            "resourcePath": "/items/{id}",
            "status": "400",
            "protocol": "HTTP/1.1",
            "responseLength": "87",
        }
    )


def test_http_json_preset() -> None:
    assert orjson.loads(preset("json", "HTTP").render(routed_http(None))) == {
        "requestId": SHORT_ID,
        "ip": "203.0.113.9",
        "requestTime": "09/Apr/2015:12:34:56 +0000",
        "httpMethod": "GET",
        "routeKey": "GET /items/{id}",
        "status": "200",
        "protocol": "HTTP/1.1",
        "responseLength": "30",
        "extendedRequestId": SHORT_ID,
    }


def test_text_presets() -> None:
    exchange = routed_rest()
    assert preset("clf").render(exchange) == (
        f'203.0.113.9 - - [09/Apr/2015:12:34:56 +0000] "POST /items/{{id}} HTTP/1.1" 400 87 '
        f"{REQUEST_ID} {SHORT_ID}"
    )
    assert preset("CSV").render(exchange) == (
        "203.0.113.9,-,-,09/Apr/2015:12:34:56 +0000,POST,/items/{id},HTTP/1.1,400,87,"
        f"{REQUEST_ID},{SHORT_ID}"
    )
    assert (
        preset("xml")
        .render(exchange)
        .startswith(
            f'<request id="{REQUEST_ID}"> <extendedRequestId>{SHORT_ID}</extendedRequestId> '
            "<ip>203.0.113.9</ip> "
            "<caller>-</caller>"
        )
    )
    assert preset("clf", "HTTP").render(routed_http(None)) == (
        f'203.0.113.9 - - [09/Apr/2015:12:34:56 +0000] "GET GET /items/{{id}} HTTP/1.1" 200 30 {SHORT_ID} '
        f"{SHORT_ID}"
    )


@pytest.mark.parametrize("kind", ["REST", "HTTP"])
@pytest.mark.parametrize("name", ["clf", "json", "xml", "csv"])
def test_every_preset_renders_an_unrouted_request(kind: str, name: str) -> None:
    line = preset(name, kind).render(unrouted_rest())
    assert REQUEST_ID in line or SHORT_ID in line
    assert "\n" not in line
    if name == "json":
        assert orjson.loads(line)["status"] == "403"


def test_unknown_presets() -> None:
    with pytest.raises(ValueError, match="not a preset"):
        preset("yaml")
    with pytest.raises(ValueError, match="REST or HTTP"):
        preset("json", "WEBSOCKET")


# --- JSON escaping, and AWS's raw text elsewhere ----------------------------------------------------------

HOSTILE_AGENT = b'evil "agent" \\ C:\\path\t\x01'


def hostile() -> Exchange:
    exchange = routed_rest()
    exchange.ctx.headers[1] = (b"user-agent", HOSTILE_AGENT + b"\nsecond line")
    exchange.error_message = 'bad "input"\n'
    exchange.ctx.authorizer = {"principalId": 'p"1', "n": "7", "flag": "true"}
    return exchange


def test_json_templates_escape_values_inside_strings() -> None:
    fmt = AccessLogFormat.parse(
        '{"requestId":"$context.requestId", "ua":"$context.identity.userAgent", '
        '"message":"$context.error.message", "quotedMessage":"$context.error.messageString", '
        '"principal":"$context.authorizer.principalId", "escaped":"\\"$context.status\\""}'
    )
    line = fmt.render(hostile())
    assert "\n" not in line
    assert orjson.loads(line) == {
        "requestId": REQUEST_ID,
        "ua": (HOSTILE_AGENT + b"\nsecond line").decode("latin-1"),
        "message": 'bad "input"\n',
        "quotedMessage": '"bad \\"input\\"\\n"',
        "principal": 'p"1',
        "escaped": '"400"',
    }


def test_json_templates_write_values_outside_strings_as_json() -> None:
    fmt = AccessLogFormat.parse(
        '{"requestId":"$context.requestId", "status":$context.status, "latency":$context.integrationLatency, '
        '"error":$context.error.messageString, "ua":$context.identity.userAgent, "n":$context.authorizer.n, '
        '"flag":$context.authorizer.flag, "caller":$context.identity.caller, '
        '"key":$context.identity.apiKeyId}'
    )
    assert fmt.json
    exchange = hostile()
    exchange.ctx.integration_latency_ms = None
    assert orjson.loads(fmt.render(exchange)) == {
        "requestId": REQUEST_ID,
        "status": 400,
        "latency": None,  # AWS prints a bare "-" here
        "error": 'bad "input"\n',
        "ua": (HOSTILE_AGENT + b"\nsecond line").decode("latin-1"),
        "n": 7,
        "flag": True,
        "caller": None,
        "key": "kid123",
    }
    quiet = unrouted_rest()
    assert orjson.loads(fmt.render(quiet))["error"] is None


def test_non_ascii_text_stays_readable_in_json() -> None:
    exchange = routed_rest()
    exchange.error_message = "Größe ungültig ✓"
    line = AccessLogFormat.parse('{"id":"$context.requestId","m":"$context.error.message"}').render(exchange)
    assert "Größe ungültig ✓" in line
    assert orjson.loads(line)["m"] == "Größe ungültig ✓"


def test_text_formats_substitute_as_aws_does_but_keep_one_line() -> None:
    fmt = AccessLogFormat.parse(
        '$context.requestId "$context.identity.userAgent" $context.error.messageString'
    )
    assert not fmt.json
    line = fmt.render(hostile())
    assert line == (f'{REQUEST_ID} "evil "agent" \\ C:\\path\t\x01\\nsecond line" "bad \\"input\\"\\n"')


# --- what parse refuses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "$context.requestId $context.requestID",
            "$context.requestID is not an API Gateway access log variable",
        ),
        ("$context.requestId $context.identity.sorceIp", "did you mean $context.identity.sourceIp?"),
        ("$context.requestId $context.authorizer", "$context.authorizer is not"),
        ("$context.requestId $context.authorizer.a.b", "$context.authorizer.a.b is not"),
        ("$context.requestId $context.connectionId", "$context.connectionId is not"),  # WebSocket APIs only
        ("$context.status $context.httpMethod", NO_REQUEST_ID),
        ("$context.requestId\n$context.status", NOT_ONE_LINE),
        ("${context.requestId}", "no ${...} form"),
        ("$context.requestId $input.body", "$context.NAME variables only"),
        ("$context.requestId $stageVariables.env", "$context.NAME variables only"),
    ],
)
def test_what_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        AccessLogFormat.parse(text)


def test_parse_details() -> None:
    fmt = AccessLogFormat.parse("$context.extendedRequestId costs $5, 100% [$context.status].\n")
    assert fmt.variables == ("extendedRequestId", "status")
    assert fmt.render(routed_rest()) == f"{SHORT_ID} costs $5, 100% [400]."
    assert format_named("$context.requestId").variables == ("requestId",)
    assert repr(fmt).startswith("AccessLogFormat.parse(")


def test_format_text_is_only_ever_text() -> None:
    # A format compiles to Python code: its text must come out as it went in, whatever it looks like.
    text = (
        "x {ex} {{c}} {0!r} ' \" \\ \\n \\N{DASH} ''' \"\"\" f'{x}' \t é \ud800 "
        "{__import__('os').getcwd()} $context.requestId }} ${ $5 %s"
    )
    fmt = AccessLogFormat.parse(text)
    assert not fmt.json
    assert fmt.render(routed_rest()) == text.replace("$context.requestId", REQUEST_ID)


def test_a_variable_printed_twice_in_a_json_template() -> None:
    fmt = AccessLogFormat.parse(
        '{"id":"$context.requestId", "a":$context.identity.userAgent, "b":"$context.identity.userAgent", '
        '"c":$context.identity.userAgent, "s":$context.status, "t":"$context.status"}'
    )
    agent = (HOSTILE_AGENT + b"\nsecond line").decode("latin-1")
    assert orjson.loads(fmt.render(hostile())) == {
        "id": REQUEST_ID,
        "a": agent,
        "b": agent,
        "c": agent,
        "s": 400,
        "t": "400",
    }
    quiet = orjson.loads(fmt.render(unrouted_rest()))
    assert (quiet["a"], quiet["b"], quiet["c"]) == (None, "-", None)


# --- the writer -------------------------------------------------------------------------------------------


def test_writer_appends_to_a_file_in_order(tmp_path: Path) -> None:
    target = tmp_path / "logs" / "nested" / "access.log"
    writer = AccessLogWriter.open(str(target))
    for i in range(2000):
        writer.write(f"line {i}")
    writer.close()
    writer.close()  # again: nothing happens
    assert target.read_text().splitlines() == [f"line {i}" for i in range(2000)]
    again = AccessLogWriter.open(str(target))
    again.write(DEFAULT.render(routed_rest()))
    again.close()
    lines = target.read_text().splitlines()
    assert len(lines) == 2001
    assert orjson.loads(lines[-1])["requestId"] == REQUEST_ID
    assert writer.dropped == again.dropped == 0


def test_writer_to_stdout_and_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    out = AccessLogWriter.open("-")
    err = AccessLogWriter.open("stderr")
    out.write("one")
    err.write("problem")
    out.write("two")
    out.close()
    err.close()
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("one\ntwo\n", "problem\n")


def test_writer_to_stdout_by_name(capfd: pytest.CaptureFixture[str]) -> None:
    writer = AccessLogWriter.open("stdout")
    writer.write("hello")
    writer.close()
    assert capfd.readouterr().out == "hello\n"


def test_an_unwritable_destination_names_itself(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    target = blocker / "access.log"
    with pytest.raises(AccessLogOpenError, match=re.escape(str(target))) as raised:
        AccessLogWriter.open(str(target))
    assert isinstance(raised.value, OSError)
    assert "cannot write the access log there" in str(raised.value)
    with pytest.raises(OSError, match=re.escape(str(tmp_path))):
        AccessLogWriter.open(str(tmp_path))  # a directory


class GatedStream:
    """A stream whose writes wait for the test's permission, so the writer's backlog can be filled."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.entered = threading.Semaphore(0)
        self.permits = threading.Semaphore(0)
        self.name = "gated"

    def write(self, text: str) -> int:
        self.entered.release()
        assert self.permits.acquire(timeout=10)
        self.text.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_overflow_drops_and_counts_and_warns_once_per_episode(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="portway.access")
    stream = GatedStream()
    writer = AccessLogWriter(stream, max_backlog=2)  # type: ignore[arg-type]  # a TextIO enough for the writer
    writer.write("first")
    assert stream.entered.acquire(timeout=10)  # the thread holds "first", waiting to write it
    for line in ("a", "b", "c", "d"):  # a and b wait; c and d find the backlog full
        writer.write(line)
    assert writer.dropped == 2
    warnings = [r for r in caplog.records if r.name == "portway.access"]
    assert len(warnings) == 1
    assert "dropping new lines" in warnings[0].getMessage()
    stream.permits.release()
    assert stream.entered.acquire(timeout=10)  # the thread took a and b and waits to write them
    for line in ("e", "f", "g"):  # the backlog had room again: a new episode starts at g
        writer.write(line)
    assert writer.dropped == 3
    assert len([r for r in caplog.records if r.name == "portway.access"]) == 2
    stream.permits.release(10)
    writer.close()
    assert "".join(stream.text) == "first\na\nb\ne\nf\n"
    writer.write("after close")
    assert writer.dropped == 4


class BrokenStream:
    name = "broken"

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        pass


def test_a_stream_that_fails_costs_its_lines(capfd: pytest.CaptureFixture[str]) -> None:
    writer = AccessLogWriter(BrokenStream())  # type: ignore[arg-type]  # a TextIO enough for the writer
    writer.write("lost")
    writer.close()
    assert writer.dropped == 1
    assert "cannot write to broken" in capfd.readouterr().err


def test_the_log_handler_shares_the_stream(tmp_path: Path) -> None:
    target = tmp_path / "gateway.log"
    writer = AccessLogWriter.open(str(target))
    logger = logging.getLogger("tests.portway.lambda")
    handler = LogStreamHandler(writer)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logger.info("handler said %s", "hi")
        writer.write("access line")
        logger.debug("not shown")
        logger.warning("careful")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    writer.close()
    lines = target.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO tests\.portway\.lambda handler said hi", lines[0])
    assert lines[1] == "access line"
    assert re.fullmatch(rf"{stamp} WARNING tests\.portway\.lambda careful", lines[2])
    assert len(lines) == 3


def test_the_log_handler_takes_a_format(capsys: pytest.CaptureFixture[str]) -> None:
    writer = AccessLogWriter.open("-")
    handler = LogStreamHandler(writer, "%(levelname)s:%(message)s")
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom %d", (3,), None)
    handler.handle(record)
    writer.close()
    assert capsys.readouterr().out == "ERROR:boom 3\n"


def test_lines_reach_the_file_when_the_interpreter_exits_without_close(tmp_path: Path) -> None:
    target = tmp_path / "exit.log"
    script = (
        "from portway.observability.access_log import AccessLogWriter\n"
        f"w = AccessLogWriter.open({str(target)!r})\n"
        "for i in range(5000):\n"
        "    w.write(f'line {i}')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert target.read_text().splitlines() == [f"line {i}" for i in range(5000)]


def test_every_variable_name_parses() -> None:
    names: Mapping[str, object] = VARIABLES
    fmt = AccessLogFormat.parse(" ".join(f"$context.{name}" for name in names))
    assert len(fmt.variables) == len(names)
    assert fmt.render(unrouted_rest()).count(" ") >= len(names) - 1
