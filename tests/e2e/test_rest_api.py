"""End to end over real sockets: a REST API with Lambda proxy, Mock and HTTP proxy integrations."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import APPS, RunningApp, RunningGateway, closed_port, run_asgi, start_gateway
from tests.e2e.upstream import upstream_app


@pytest.fixture(scope="module")
def upstream() -> Iterator[RunningApp]:
    app = run_asgi(upstream_app)
    yield app
    app.stop()


@pytest.fixture(scope="module")
def gw(upstream: RunningApp) -> Iterator[RunningGateway]:
    gateway = start_gateway(
        APPS / "rest_api.yaml",
        APPS / "functions.yaml",
        stage_variables={"upstreamPort": str(upstream.port), "closedPort": str(closed_port())},
    )
    yield gateway
    gateway.stop()


@pytest.fixture
def client(gw: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.base, timeout=10) as c:
        yield c


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --- routing and gateway answers -------------------------------------------------------------------


def test_no_route_is_missing_authentication_token(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-errortype"] == "MissingAuthenticationTokenException"
    assert response.headers["x-amzn-requestid"]


def test_wrong_method_on_existing_resource_is_403(client: httpx.Client) -> None:
    response = client.delete("/shaped")
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_unknown_stage_is_403(gw: RunningGateway) -> None:
    response = httpx.get(f"{gw.url}/prod/echo")
    assert response.status_code == 403
    assert response.json() == {"message": "Missing Authentication Token"}


def test_root_resource_under_stage(gw: RunningGateway) -> None:
    for path in ("/dev", "/dev/"):
        response = httpx.get(gw.url + path)
        assert response.status_code == 200
        assert response.json() == {"root": True}


def test_static_beats_parameter(client: httpx.Client) -> None:
    assert client.get("/items/special").json() == {"special": True}
    event = _echo(client.get("/items/42"))["event"]
    assert event["resource"] == "/items/{id}"
    assert event["pathParameters"] == {"id": "42"}


def test_greedy_path_and_any_method(client: httpx.Client) -> None:
    event = _echo(client.patch("/echo/a/b/c", content=b"x"))["event"]
    assert event["resource"] == "/echo/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b/c"}
    assert event["httpMethod"] == "PATCH"


def test_malformed_percent_encoding_is_400(gw: RunningGateway) -> None:
    for target in ("/dev/items/%zz", "/dev/items/%e9", "/dev/echo?x=%G1"):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), (target, head)
        assert body == b'{"message":"Bad Request"}'


def test_body_over_10_mb_is_413(client: httpx.Client) -> None:
    response = client.post("/size", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json() == {"message": "Request Too Long"}


def test_body_over_10_mb_chunked_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b"y" * (1024 * 1024)

    response = client.post("/size", content=chunks())
    assert response.status_code == 413


def test_body_at_limit_is_accepted(client: httpx.Client) -> None:
    response = client.post(
        "/size", content=b"z" * (10 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert response.text == str(10 * 1024 * 1024)


# --- the payload 1.0 event -----------------------------------------------------------------------


def test_event_matches_api_gateway_payload_v1(client: httpx.Client, gw: RunningGateway) -> None:
    response = client.post(
        "/echo?tag=a&tag=b&q=hello%20world&plus=a+b&empty=",
        content=b'{"hello": "world"}',
        headers=[
            ("Content-Type", "application/json"),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("User-Agent", "t/1"),
        ],
    )
    data = _echo(response)
    event = data["event"]
    assert list(event) == [
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
        "body",
        "isBase64Encoded",
    ]
    assert event["resource"] == "/echo"
    assert event["path"] == "/echo"
    assert event["httpMethod"] == "POST"
    assert event["headers"]["Content-Type"] == "application/json"
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["headers"]["User-Agent"] == "t/1"
    assert event["headers"]["Host"] == f"127.0.0.1:{gw.port}"
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["headers"]["X-Forwarded-Proto"] == "http"
    assert event["headers"]["X-Forwarded-Port"] == str(gw.port)
    assert event["headers"]["X-Amzn-Trace-Id"].startswith("Root=1-")
    assert "Content-Length" not in event["headers"]
    assert "Connection" not in event["multiValueHeaders"]
    assert event["queryStringParameters"] == {"tag": "b", "q": "hello world", "plus": "a b", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "tag": ["a", "b"],
        "q": ["hello world"],
        "plus": ["a b"],
        "empty": [""],
    }
    assert event["pathParameters"] is None
    assert event["stageVariables"] == {
        "echoFunction": "echo",
        "upstreamPort": gw.service.options.stage_variables["upstreamPort"],
        "closedPort": gw.service.options.stage_variables["closedPort"],
    }
    assert event["body"] == '{"hello": "world"}'
    assert event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["resourcePath"] == "/echo"
    assert rc["httpMethod"] == "POST"
    assert rc["path"] == "/dev/echo"
    assert rc["stage"] == "dev"
    assert rc["protocol"] == "HTTP/1.1"
    assert rc["accountId"] == "123456789012"
    assert len(rc["apiId"]) == 10
    assert rc["apiId"].isalnum()
    assert len(rc["resourceId"]) == 6
    assert rc["domainName"] == f"127.0.0.1:{gw.port}"
    assert rc["requestId"] == response.headers["x-amzn-requestid"]
    assert rc["extendedRequestId"] == response.headers["x-amz-apigw-id"]
    assert abs(rc["requestTimeEpoch"] / 1000 - time.time()) < 60
    assert time.strftime("%Y", time.gmtime()) in rc["requestTime"]
    assert rc["requestTime"].endswith(" +0000")
    assert rc["identity"]["sourceIp"] == "127.0.0.1"
    assert rc["identity"]["userAgent"] == "t/1"
    assert rc["identity"]["user"] is None
    assert rc["identity"]["caller"] is None


def test_event_without_query_or_body_has_nulls(client: httpx.Client) -> None:
    event = _echo(client.get("/echo"))["event"]
    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["body"] is None
    assert event["pathParameters"] is None


def test_path_stays_encoded_and_path_parameters_are_decoded(client: httpx.Client) -> None:
    event = _echo(client.get("/items/a%20b%2Bc"))["event"]
    assert event["path"] == "/items/a%20b%2Bc"
    assert event["pathParameters"] == {"id": "a b+c"}
    assert event["requestContext"]["path"] == "/dev/items/a%20b%2Bc"


def test_binary_request_body_is_base64(client: httpx.Client) -> None:
    raw = bytes(range(256))
    response = client.post("/echo", content=raw, headers={"Content-Type": "image/png"})
    event = _echo(response)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw


def test_context_and_environment(client: httpx.Client) -> None:
    data = _echo(client.get("/echo"))
    context = data["context"]
    assert context["function_name"] == "echo"
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:echo"
    assert str(context["memory_limit_in_mb"]) == "256"
    assert context["log_group_name"] == "/aws/lambda/echo"
    assert context["log_stream_name"]
    assert 0 < context["remaining_ms"] <= 3000
    assert context["aws_request_id"] == data["event"]["requestContext"]["requestId"]
    assert data["env"] == {
        "GREETING": "hello from echo",
        "AWS_LAMBDA_FUNCTION_NAME": "echo",
        "AWS_REGION": "eu-west-1",
    }


def test_globals_persist_between_invocations(client: httpx.Client) -> None:
    first = _echo(client.get("/echo"))
    second = _echo(client.get("/echo"))
    if first["pid"] == second["pid"]:
        assert second["calls"] == first["calls"] + 1


def test_x_portway_handler_names_the_handler(client: httpx.Client) -> None:
    response = client.get("/direct", params={"kind": "no-content-type"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}


# --- response mapping ------------------------------------------------------------------------------


def test_headers_and_multi_value_headers_merge(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "merge"})
    assert response.status_code == 201
    assert response.text == "merged"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-single"] == "one"
    assert response.headers.get_list("x-both") == ["m1", "m2"]
    assert response.headers.get_list("x-multi") == ["a", "b"]


def test_three_set_cookie_headers_reach_the_client(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "cookies"})
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly", "c=3; Secure"]
    assert response.headers["content-type"] == "application/json"


def test_binary_response_decoded_when_first_accept_matches(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "binary"}, headers={"Accept": "image/png"})
    assert response.content == bytes(range(256))
    assert response.headers["content-type"] == "image/png"


def test_binary_response_stays_base64_when_first_accept_does_not_match(client: httpx.Client) -> None:
    response = client.get(
        "/shaped", params={"kind": "binary"}, headers={"Accept": "application/json, image/png"}
    )
    assert response.text == base64.b64encode(bytes(range(256))).decode()


def test_default_content_type_is_json(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "no-content-type"})
    assert response.headers["content-type"] == "application/json"


def test_every_proxy_response_field_is_optional(client: httpx.Client) -> None:
    # No statusCode: API Gateway answers 200 (none of the fields is required; only unknown ones are refused).
    response = client.get("/shaped", params={"kind": "no-status"})
    assert response.status_code == 200
    assert response.text == "where is my status"
    assert response.headers["content-type"] == "application/json"


def test_boolean_header_values_are_sent_as_true_and_false(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "bool-header"})
    assert response.status_code == 200
    assert response.headers["x-flag"] == "true"
    assert response.headers["x-many"] == "false"
    assert response.content == b""


def test_empty_204(client: httpx.Client) -> None:
    response = client.get("/shaped", params={"kind": "empty"})
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    "kind", ["not-a-dict", "body-object", "bad-status", "extra-field", "cookies-key", "number-header"]
)
def test_malformed_proxy_response_is_502(client: httpx.Client, kind: str) -> None:
    response = client.get("/shaped", params={"kind": kind})
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert response.headers["x-amzn-errortype"] == "InternalServerErrorException"


# --- the runtime's failure modes -----------------------------------------------------------------


def test_handler_exception_is_502_then_recovers(client: httpx.Client) -> None:
    response = client.get("/fail", params={"how": "raise"})
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert client.get("/fail").text == "fine"


def test_function_timeout_is_502_then_recovers(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("/fail", params={"how": "sleep", "seconds": "5"})
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert time.monotonic() - started < 3
    assert client.get("/fail").text == "fine"


def test_integration_timeout_is_504_then_recovers(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.get("/slow", params={"how": "sleep", "seconds": "2"})
    assert response.status_code == 504
    assert response.json() == {"message": "Endpoint request timed out"}
    assert time.monotonic() - started < 1.5
    assert client.get("/slow").text == "fine"


def test_os_exit_is_502_then_recovers(client: httpx.Client) -> None:
    response = client.get("/fail", params={"how": "exit"})
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}
    assert client.get("/fail").text == "fine"


# --- mock --------------------------------------------------------------------------------------------


def test_mock_default_response_with_static_headers(client: httpx.Client) -> None:
    response = client.get("/mock")
    assert response.status_code == 200
    assert response.json() == {"mocked": True}
    assert response.headers["x-mock"] == "yes"
    assert response.headers["access-control-allow-origin"] == "*"


def test_mock_picks_template_by_accept(client: httpx.Client) -> None:
    response = client.get("/mock", headers={"Accept": "text/plain"})
    assert response.text == "mocked as text"
    assert response.headers["content-type"] == "text/plain"


def test_mock_status_selects_integration_response(client: httpx.Client) -> None:
    response = client.post("/mock", json={})
    assert response.status_code == 404
    assert response.json() == {"message": "nothing here"}


def test_mock_unmatched_content_type_with_never_passthrough_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/mock", content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 415
    assert response.json() == {"message": "Unsupported Media Type"}


def test_mock_without_matching_or_default_response_is_500(client: httpx.Client) -> None:
    response = client.get("/mock/nodefault")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal server error"}


# --- HTTP proxy ----------------------------------------------------------------------------------------


def test_http_proxy_forwards_method_path_query_headers_body(
    client: httpx.Client, upstream: RunningApp
) -> None:
    response = client.put(
        "/upstream/a/b%20c?x=1&x=2",
        content=b"payload",
        headers={
            "X-Custom": "v",
            "Connection": "keep-alive",
            "Keep-Alive": "timeout=5",
            "X-Forwarded-For": "10.0.0.9",
        },
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "PUT"
    assert seen["raw_path"] == "/a/b%20c"
    assert seen["query"] == "x=1&x=2"
    assert seen["body"] == "payload"
    headers = {k: v for k, v in seen["headers"]}
    assert headers["x-custom"] == "v"
    assert headers["x-from-gateway"] == "portway"
    assert headers["host"] == f"127.0.0.1:{upstream.port}"
    assert headers["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert "keep-alive" not in headers
    assert response.headers["x-upstream"] == "yes"
    assert response.headers.get_list("set-cookie") == ["u1=1", "u2=2"]


def test_http_proxy_maps_renamed_path_parameter(client: httpx.Client) -> None:
    seen = client.get("/users/u-7/orders").json()
    assert seen["path"] == "/api/users/u-7/orders"


def test_http_proxy_passes_upstream_status(client: httpx.Client) -> None:
    assert client.get("/upstream/teapot").status_code == 418


def test_http_proxy_streams_chunks(client: httpx.Client) -> None:
    with client.stream("GET", "/upstream/stream") as response:
        assert response.status_code == 200
        assert b"".join(response.iter_bytes()) == b"chunk0;chunk1;chunk2;chunk3;chunk4;"


def test_http_proxy_timeout_is_504(client: httpx.Client) -> None:
    response = client.get("/upstream/slow")
    assert response.status_code == 504
    assert response.json() == {"message": "Endpoint request timed out"}


def test_http_proxy_refused_is_502(client: httpx.Client) -> None:
    response = client.get("/refused")
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_http_proxy_large_streamed_body(client: httpx.Client) -> None:
    payload = b"q" * (3 * 1024 * 1024)
    response = client.post("/upstream/big", content=payload)
    assert response.status_code == 200
    assert len(response.json()["body"]) == len(payload)


def test_http_proxy_body_over_limit_is_413(client: httpx.Client) -> None:
    response = client.post("/upstream/big", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413


@pytest.mark.parametrize(
    "header",
    [b"Bad Header: x", b"X-Control: a\x01b", b"X-Newline: a\rb"],
)
def test_malformed_header_is_api_gateway_400(gw: RunningGateway, header: bytes) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(b"GET /dev/echo HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"x-amzn-ErrorType: BadRequestException" in head
    assert body == b'{"message":"Bad Request"}'
    # The gateway goes on serving.
    assert httpx.get(f"{gw.base}/echo").status_code == 200


def _exchange(gw: RunningGateway, *requests: bytes) -> bytes:
    """Send requests on one connection (the last closing it); everything the gateway answered."""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        for request in requests:
            s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("size", [10_300, 200_000, 2_000_000])
def test_headers_over_10_kb_are_431(gw: RunningGateway, size: int) -> None:
    request = b"GET /dev/echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\nConnection: close\r\n\r\n"
    try:
        data = _exchange(gw, request)
    except (BrokenPipeError, ConnectionResetError):
        data = b""  # closed while we were still sending: the answer may be lost with it, never a hang
    if data:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431"), head
        assert body == b'{"message":"Request Header Fields Too Large"}'
    assert httpx.get(f"{gw.base}/echo").status_code == 200


def test_headers_just_under_10_kb_pass_and_the_cap_holds_on_a_kept_alive_connection(
    gw: RunningGateway,
) -> None:
    small = b"GET /dev/echo HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 9_000 + b"\r\n\r\n"
    big = b"GET /dev/echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 11_000 + b"\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
        s.sendall(small)
        first = b""
        while b"\r\n\r\n" not in first:
            first += s.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))[15:]
        )
        while len(body) < length:
            body += s.recv(65536)
        s.sendall(big)
        second = b""
        while chunk := s.recv(65536):
            second += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    assert second.startswith(b"HTTP/1.1 431"), second[:200]
