"""WebSocket APIs end to end: the websockets client library on one side, Lambda handlers on the other, and
boto3's apigatewaymanagementapi client on the @connections API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.clock import ManualClock
from tests.conftest import GatewayFactory, RunningGateway
from tests.redis_fixtures import ensure_redis

HERE = Path(__file__).parent / "websocket"
API = HERE / "api.yaml"
STRICT = HERE / "strict.yaml"
FUNCTIONS = HERE / "functions.yaml"


def ws_url(gw: RunningGateway, query: str = "") -> str:
    return f"ws://127.0.0.1:{gw.port}/dev" + (f"?{query}" if query else "")


def management(gw: RunningGateway) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=f"{gw.url}/dev",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def recorded(path: Path, event_type: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The events of ``event_type`` the handlers wrote, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        found = [
            e
            for e in map(json.loads, lines)
            if e["requestContext"].get("eventType") == event_type
            and "methodArn" not in e  # not the authorizer's
        ]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) >= count, f"{len(found)} {event_type} events, expected {count}"
            return found
        time.sleep(0.02)


async def ask(ws: ClientConnection, message: dict[str, Any] | str) -> Any:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    answer = await asyncio.wait_for(ws.recv(), 10)
    return json.loads(answer)


@pytest.fixture
def events(tmp_path: Path) -> Path:
    return tmp_path / "events.jsonl"


@pytest.fixture
def gw(gateway_factory: GatewayFactory, events: Path) -> RunningGateway:
    return gateway_factory(API, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})


async def test_connect_event_has_query_headers_and_context(gw: RunningGateway, events: Path) -> None:
    async with connect(
        ws_url(gw, "room=lobby&tag=a&tag=b"),
        additional_headers={"X-Team": "blue"},
        user_agent_header="ws-test/1.0",
    ) as ws:
        me = await ask(ws, {"action": "whoami"})
    (event,) = recorded(events, "CONNECT")
    assert event["queryStringParameters"] == {"room": "lobby", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"room": ["lobby"], "tag": ["a", "b"]}
    assert event["headers"]["X-Team"] == "blue"
    assert event["headers"]["Host"] == f"127.0.0.1:{gw.port}"
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["routeKey"] == "$connect"
    assert context["eventType"] == "CONNECT"
    assert context["messageDirection"] == "IN"
    assert context["stage"] == "dev"
    assert context["connectionId"] == me["connectionId"]
    assert context["identity"] == {"userAgent": "ws-test/1.0", "sourceIp": "127.0.0.1"}
    assert context["domainName"] == f"127.0.0.1:{gw.port}"
    assert isinstance(context["connectedAt"], int)
    assert context["requestId"] == context["extendedRequestId"]
    assert me["eventType"] == "MESSAGE"
    assert len(me["connectionId"]) == 16
    assert me["connectionId"].endswith("=")


async def test_route_selection_two_way_default_and_malformed(gw: RunningGateway) -> None:
    async with connect(ws_url(gw)) as ws:
        assert await ask(ws, {"action": "echo", "x": 1}) == {
            "route": "echo",
            "got": '{"action": "echo", "x": 1}',
        }
        assert await ask(ws, {"action": "nosuchroute"}) == {
            "route": "$default",
            "got": '{"action": "nosuchroute"}',
            "base64": False,
        }
        assert (await ask(ws, "not json {"))["route"] == "$default"  # malformed JSON → $default
        assert (await ask(ws, {"no": "action"}))["route"] == "$default"
        assert await ask(ws, {"action": "ping"}) == {"pong": True}  # a mock two-way route
        await ws.send(b"\x00\x01binary")
        binary = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert binary["base64"] is True
        assert binary["got"] == "AAFiaW5hcnk="
        # A one-way route answers nothing: the next answer is the next two-way route's.
        await ws.send(json.dumps({"action": "silent"}))
        assert await ask(ws, {"action": "ping"}) == {"pong": True}
        failed = await ask(ws, {"action": "fail"})
        assert failed["message"] == "Internal server error"
        assert failed["connectionId"]


async def test_a_message_no_route_takes_is_forbidden(gateway_factory: GatewayFactory, events: Path) -> None:
    strict = gateway_factory(STRICT, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})
    async with connect(ws_url(strict, "token=good")) as ws:
        answer = await ask(ws, {"action": "nope"})
        assert answer["message"] == "Forbidden"
        assert set(answer) == {"message", "connectionId", "requestId"}
        assert await ask(ws, {"action": "echo"}) == {"route": "echo", "got": '{"action": "echo"}'}


async def test_connect_can_refuse_the_handshake(gw: RunningGateway) -> None:
    for query, status in (("reject=401", 401), ("reject=403", 403), ("reject=429", 429), ("crash=1", 502)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(gw, query)):
                pass
        assert refused.value.response.status_code == status, query
    with pytest.raises(InvalidStatus) as wrong_stage:
        async with connect(f"ws://127.0.0.1:{gw.port}/prod"):
            pass
    assert wrong_stage.value.response.status_code == 403


async def test_the_connect_authorizer(gateway_factory: GatewayFactory, events: Path) -> None:
    strict = gateway_factory(STRICT, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})
    for query, status in (("", 401), ("token=bad", 403)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(strict, query)):
                pass
        assert refused.value.response.status_code == status
    async with connect(ws_url(strict, "token=good")) as ws:
        await ask(ws, {"action": "echo"})
    (request,) = recorded(events, "CONNECT")  # the allowed connection's $connect event
    assert request["requestContext"]["authorizer"]["principalId"] == "user-1"
    assert request["requestContext"]["authorizer"]["tier"] == "gold"
    assert request["requestContext"]["authorizer"]["level"] == "3"


async def test_the_connections_api_with_boto3(gw: RunningGateway, events: Path) -> None:
    client = management(gw)
    async with connect(ws_url(gw), user_agent_header="ws-test/2.0") as ws:
        me = await ask(ws, {"action": "whoami"})
        connection_id = me["connectionId"]
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b'{"hello": 1}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"hello": 1}
        await asyncio.to_thread(client.post_to_connection, ConnectionId=connection_id, Data=b"\xff\xfe")
        assert await asyncio.wait_for(ws.recv(), 10) == b"\xff\xfe"  # not UTF-8: a binary frame
        info = await asyncio.to_thread(client.get_connection, ConnectionId=connection_id)
        assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ws-test/2.0"}
        assert abs(info["ConnectedAt"].timestamp() - time.time()) < 30
        assert info["LastActiveAt"] >= info["ConnectedAt"]
        deleted = await asyncio.to_thread(client.delete_connection, ConnectionId=connection_id)
        assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1000
    (gone,) = recorded(events, "DISCONNECT")
    assert gone["requestContext"]["connectionId"] == connection_id
    assert gone["requestContext"]["disconnectStatusCode"] == 1000
    for call in (
        lambda: client.post_to_connection(ConnectionId=connection_id, Data=b"late"),
        lambda: client.get_connection(ConnectionId=connection_id),
        lambda: client.delete_connection(ConnectionId=connection_id),
        lambda: client.post_to_connection(ConnectionId="bm90LWEtcmVhbC1pZA=", Data=b"x"),
    ):
        with pytest.raises(ClientError) as failed:
            await asyncio.to_thread(call)
        assert failed.value.response["Error"]["Code"] == "GoneException"
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


async def test_client_close_reaches_disconnect(gw: RunningGateway, events: Path) -> None:
    async with connect(ws_url(gw)) as ws:
        me = await ask(ws, {"action": "whoami"})
        await ws.close(4001, "bye now")
    (event,) = recorded(events, "DISCONNECT")
    context = event["requestContext"]
    assert context["routeKey"] == "$disconnect"
    assert context["connectionId"] == me["connectionId"]
    assert context["disconnectStatusCode"] == 4001
    assert context["disconnectReason"] == "bye now"
    assert event["headers"]["Host"] == f"127.0.0.1:{gw.port}"


async def test_idle_connections_are_closed_by_the_clock(
    gateway_factory: GatewayFactory, events: Path
) -> None:
    clock = ManualClock()
    gw = gateway_factory(
        API,
        FUNCTIONS,
        stage="dev",
        stage_variables={"events": str(events)},
        clock=clock,
        websocket_sweep_s=0.02,
    )
    async with connect(ws_url(gw)) as idle, connect(ws_url(gw)) as busy:
        clock.advance(599)
        await ask(busy, {"action": "ping"})  # activity resets busy's idle time
        await asyncio.sleep(0.1)
        clock.advance(2)  # idle: 601 s without a message; busy: 2 s
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(idle.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert await ask(busy, {"action": "ping"}) == {"pong": True}
        clock.advance(7200)  # past the two hours every connection may last
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(busy.recv(), 10)
    gone = recorded(events, "DISCONNECT", 2)
    assert {e["requestContext"]["disconnectStatusCode"] for e in gone} == {1001}
    assert {e["requestContext"]["disconnectReason"] for e in gone} == {"Going away"}


async def test_oversized_frames_and_messages_close_with_1009(
    gateway_factory: GatewayFactory, events: Path
) -> None:
    strict = gateway_factory(STRICT, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})
    async with connect(ws_url(strict, "token=good"), max_size=None) as ws:
        await ws.send("x" * 2000)  # one frame over the 1 KB frame limit
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    async with connect(ws_url(strict, "token=good"), max_size=None) as ws:
        await ws.send(iter(["y" * 1000] * 5))  # frames within bounds, a message over the 4 KB one
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    gone = recorded(events, "DISCONNECT", 2)
    assert [e["requestContext"]["disconnectStatusCode"] for e in gone] == [1009, 1009]


async def test_broadcast_to_100_connections_through_a_handler(gw: RunningGateway) -> None:
    clients = [await connect(ws_url(gw)) for _ in range(100)]
    try:
        ids = [(await ask(ws, {"action": "whoami"}))["connectionId"] for ws in clients]
        assert len(set(ids)) == 100
        await clients[0].send(json.dumps({"action": "broadcast", "to": ids, "data": "hello all"}))
        assert await asyncio.wait_for(clients[0].recv(), 20) == "hello all"
        assert json.loads(await asyncio.wait_for(clients[0].recv(), 20)) == {"sent": 100, "gone": []}
        # The sender got its own copy before the route's answer; everyone else gets exactly one.
        for ws in clients[1:]:
            assert await asyncio.wait_for(ws.recv(), 10) == "hello all"
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))


async def test_shutdown_says_going_away_and_runs_disconnect(gw: RunningGateway, events: Path) -> None:
    async with connect(ws_url(gw)) as ws:
        await ask(ws, {"action": "ping"})
        await asyncio.to_thread(gw.stop)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    (event,) = recorded(events, "DISCONNECT")
    assert event["requestContext"]["disconnectStatusCode"] == 1001


@pytest.fixture
def redis_url() -> str:
    return ensure_redis()


async def test_two_nodes_share_connections_over_redis(
    gateway_factory: GatewayFactory, events: Path, redis_url: str
) -> None:
    first = gateway_factory(
        API, FUNCTIONS, stage="dev", stage_variables={"events": str(events)}, state=redis_url
    )
    second = gateway_factory(
        API, FUNCTIONS, stage="dev", stage_variables={"events": str(events)}, state=redis_url
    )
    on_second = management(second)
    async with connect(ws_url(first)) as ws:
        me = await ask(ws, {"action": "whoami"})
        connection_id = me["connectionId"]
        await asyncio.to_thread(
            on_second.post_to_connection, ConnectionId=connection_id, Data=b"via node two"
        )
        assert await asyncio.wait_for(ws.recv(), 10) == "via node two"
        info = await asyncio.to_thread(on_second.get_connection, ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        await asyncio.to_thread(on_second.delete_connection, ConnectionId=connection_id)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    with pytest.raises(ClientError) as failed:
        await asyncio.to_thread(on_second.post_to_connection, ConnectionId=connection_id, Data=b"late")
    assert failed.value.response["Error"]["Code"] == "GoneException"


async def test_websocket_metrics(gateway_factory: GatewayFactory, events: Path) -> None:
    from tests.e2e.test_monitoring import metric_samples, value

    gw = gateway_factory(API, FUNCTIONS, stage="dev", stage_variables={"events": str(events)}, admin_port=0)
    with pytest.raises(InvalidStatus):
        async with connect(ws_url(gw, "reject=403")):
            pass
    async with connect(ws_url(gw)) as ws:
        await ask(ws, {"action": "echo"})
        await ask(ws, {"action": "ping"})
        await ask(ws, "garbage")
        await ask(ws, {"action": "fail"})
    recorded(events, "DISCONNECT")
    assert gw.service.admin_url is not None
    samples = await asyncio.to_thread(metric_samples, gw.service.admin_url)
    assert value(samples, "apigateway_connect_count_total", route="$connect") == 2
    assert value(samples, "apigateway_client_error_total", route="$connect") == 1
    assert value(samples, "apigateway_message_count_total", route="echo") == 1
    assert value(samples, "apigateway_message_count_total", route="$default") == 1
    assert value(samples, "apigateway_integration_error_total", route="fail") == 1
    assert value(samples, "apigateway_integration_latency_milliseconds_count", route="echo") == 1
    assert value(samples, "apigateway_count_total", route="$disconnect") == 1


async def test_websocket_access_log(gateway_factory: GatewayFactory, events: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    variables = {"events": str(events)}
    gw = gateway_factory(
        API, FUNCTIONS, stage="dev", stage_variables=variables, access_log=str(log), metrics=False
    )
    async with connect(ws_url(gw)) as ws:
        me = await ask(ws, {"action": "whoami"})
        await ask(ws, {"action": "fail"})
    recorded(events, "DISCONNECT")
    gw.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(line["eventType"], line["routeKey"], line["status"]) for line in lines] == [
        ("CONNECT", "$connect", "200"),
        ("MESSAGE", "whoami", "200"),
        ("MESSAGE", "fail", "500"),
        ("DISCONNECT", "$disconnect", "200"),
    ]
    assert {line["connectionId"] for line in lines} == {me["connectionId"]}
    assert lines[1]["messageId"] == me["messageId"]
    assert lines[2]["error"] == "INTEGRATION_FAILURE"


async def test_pings_are_answered_and_a_broken_socket_still_disconnects(
    gw: RunningGateway, events: Path
) -> None:
    async with connect(ws_url(gw)) as ws:
        pong = await ws.ping(b"are you there")
        latency = await asyncio.wait_for(pong, 10)
        assert latency >= 0
        me = await ask(ws, {"action": "whoami"})
        assert ws.transport is not None
        ws.transport.abort()  # no close frame: the socket just goes
    (event,) = recorded(events, "DISCONNECT")
    assert event["requestContext"]["connectionId"] == me["connectionId"]
    assert event["requestContext"]["disconnectStatusCode"] == 1006


async def test_a_dead_nodes_connections_are_cleaned_up_by_another(
    gateway_factory: GatewayFactory, events: Path, redis_url: str
) -> None:
    variables = {"events": str(events)}
    first = gateway_factory(API, FUNCTIONS, stage="dev", stage_variables=variables, state=redis_url)
    second = gateway_factory(API, FUNCTIONS, stage="dev", stage_variables=variables, state=redis_url)
    async with connect(ws_url(second)) as ws:
        me = await ask(ws, {"action": "whoami"})
        # The second node stops heart-beating, as a crashed process would (its socket stays open here).
        await asyncio.to_thread(second.call, second.service.hub().registry.abandon())
        (event,) = await asyncio.to_thread(recorded, events, "DISCONNECT", 1, 30.0)
        assert event["requestContext"]["connectionId"] == me["connectionId"]
        assert event["requestContext"]["disconnectStatusCode"] == 1006
        with pytest.raises(ClientError) as failed:
            await asyncio.to_thread(
                management(first).post_to_connection, ConnectionId=me["connectionId"], Data=b"x"
            )
        assert failed.value.response["Error"]["Code"] == "GoneException"


async def test_route_throttling(gateway_factory: GatewayFactory, events: Path) -> None:
    strict = gateway_factory(STRICT, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})
    async with connect(ws_url(strict, "token=good")) as ws:
        assert (await ask(ws, {"action": "echo"}))["route"] == "echo"
        assert (await ask(ws, {"action": "echo"}))["route"] == "echo"
        refused = await ask(ws, {"action": "echo"})  # the burst of 2 is spent
        assert refused["message"] == "Too Many Requests"
        assert set(refused) == {"message", "connectionId", "requestId"}


async def test_connections_api_refuses_bad_requests(gateway_factory: GatewayFactory, events: Path) -> None:
    strict = gateway_factory(STRICT, FUNCTIONS, stage="dev", stage_variables={"events": str(events)})
    async with connect(ws_url(strict, "token=good")) as ws, httpx.AsyncClient(timeout=10) as client:
        await ask(ws, {"action": "echo"})  # the API is up and serving
        base = f"{strict.url}/dev/@connections"
        too_big = await client.post(f"{base}/bm90LWEtcmVhbC1pZA=", content=b"x" * 5000)  # messageBytes 4096
        assert too_big.status_code == 413
        assert too_big.headers["x-amzn-ErrorType"] == "PayloadTooLargeException"
        assert too_big.json() == {"message": "Message too long"}
        nested = await client.post(f"{base}/a/b", content=b"x")
        assert nested.status_code == 400
        assert nested.headers["x-amzn-ErrorType"] == "BadRequestException"
        empty = await client.post(f"{base}/", content=b"x")
        assert empty.status_code == 400
        wrong = await client.put(f"{base}/bm90LWEtcmVhbC1pZA=", content=b"x")
        assert wrong.status_code == 405
        assert wrong.headers["x-amzn-ErrorType"] == "MethodNotAllowedException"
        elsewhere = await client.get(f"{strict.url}/dev/anything")
        assert elsewhere.status_code == 403
        assert elsewhere.json() == {"message": "Forbidden"}
