"""A served WebSocket API: the handshake and ``$connect``, messages routed to integrations, ``$disconnect``
on every way a connection ends, and the ``@connections`` management API on the stage's callback URL.

Two objects, as the HTTP side has them: :class:`WebSocketGateway` is compiled from the definition (routes,
integrations, limits) and swapped whole on reload; :class:`ConnectionHub` outlives it (the sockets of this
node, the idle and lifetime sweeper, the cluster's connection registry). A connection keeps the gateway it
connected through until it closes.

What a connection goes through, as API Gateway does it:

1. ``GET /{stage}`` with an upgrade. An unknown path is refused 403. ``$connect``'s authorizer, if any, runs
   first (identity sources missing → 401, denied → 403, failed → 500); then ``$connect``'s integration: an
   error answers 502, a ``statusCode`` outside 2xx answers that status; only then is the handshake accepted.
2. Each message goes to the route its ``routeSelectionExpression`` names, else ``$default``, else the client
   gets ``{"message": "Forbidden", …}``. A two-way route (a route response) sends the integration's ``body``
   back; a failed integration sends ``{"message": "Internal server error", …}``. Messages of one connection
   are handled concurrently, as on AWS (no ordering between their answers).
3. It ends by the client's close, a broken socket, the idle timeout (10 minutes without a message either
   way), the connection's lifetime (2 hours), ``DELETE @connections/{id}``, an oversized frame or message
   (1009) or the gateway shutting down (1001): in every case ``$disconnect`` is invoked once, with the
   close code and reason, and the connection leaves the registry.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import orjson

from portway.config.compile import FunctionOrigin
from portway.integrations.events import parse_query, request_time
from portway.lambdas.runtime import LambdaRuntime, Outcome
from portway.lambdas.spec import FunctionSpec
from portway.observability.access_log import AccessLogWriter
from portway.observability.metrics import UNROUTED, Monitor, RouteStats
from portway.pipeline.context import BodyTooLarge, read_body
from portway.routing import BadPath
from portway.stages.policy import Decision, PolicyError, evaluate
from portway.state.store import Bucket, Store, StoreUnavailable
from portway.types import Receive, Scope, Send
from portway.websocket import events
from portway.websocket.model import CONNECT, DISCONNECT, WebSocketApi, WsLambda, WsMock, WsRoute
from portway.websocket.registry import ConnectionInfo, ConnectionRegistry, Delivery, open_registry
from portway.websocket.selection import (
    FORBIDDEN,
    INTERNAL_SERVER_ERROR,
    SelectionExpression,
    error_answer,
    parse_expression,
    select_route,
)

__all__ = ["CONNECTIONS_PATH", "ConnectionHub", "WebSocketGateway"]

log = logging.getLogger("portway.websocket")

CONNECTIONS_PATH = "/@connections/"
GOING_AWAY = 1001
NORMAL = 1000
ABNORMAL = 1006
GOING_AWAY_REASON = "Going away"
TOO_MANY_REQUESTS = "Too Many Requests"  # a throttled $connect's 429 body, a throttled message's error frame
MAX_IN_FLIGHT = 64  # messages of one connection being handled at once; past it, reading waits
_JSON = (b"content-type", b"application/json")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _error(
    status: int, error_type: str, message: str | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A management API error as API Gateway sends it: the type in ``x-amzn-ErrorType`` (what the SDKs read);
    a body only for the errors whose shape has a message."""
    headers = [(b"x-amzn-ErrorType", error_type.encode())]
    if message is None:
        return status, headers, b""
    return status, [_JSON, *headers], orjson.dumps({"message": message})


class Connection:
    """One client socket on this node."""

    __slots__ = (
        "closed",
        "connected_at",
        "context",
        "gateway",
        "id",
        "in_flight",
        "last_active",
        "send",
        "server_close",
        "tasks",
    )

    def __init__(
        self, gateway: WebSocketGateway, context: events.ConnectionContext, send: Send, now: float
    ) -> None:
        self.gateway = gateway
        self.context = context
        self.id = context.connection_id
        self.send = send
        self.connected_at = now
        self.last_active = now
        self.server_close: tuple[int, str] | None = None  # why the gateway closed it, when it did
        self.closed = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def send_message(self, data: bytes | str) -> bool:
        if self.closed.is_set() or self.server_close is not None:
            return False
        message: dict[str, Any] = {"type": "websocket.send"}
        message["bytes" if isinstance(data, bytes) else "text"] = data
        try:
            await self.send(message)
        except Exception:  # the socket went away under us: the receive loop sees it too
            return False
        return True

    async def close(self, code: int, reason: str) -> bool:
        if self.closed.is_set() or self.server_close is not None:
            return False
        self.server_close = (code, reason)
        with contextlib.suppress(Exception):
            await self.send({"type": "websocket.close", "code": code, "reason": reason})
        return True


class ConnectionHub:
    """This node's sockets, the sweeper that ends idle and too-old connections, and the way to every node's
    connections (the registry). Implements the registry's LocalConnections."""

    def __init__(
        self,
        registry: str | ConnectionRegistry = "memory",
        *,
        clock: Callable[[], float] = time.time,
        sweep_interval_s: float = 1.0,
    ) -> None:
        """``registry``: a registry, or its URL (``memory``, ``redis://…``), opened so that the connections
        of a node that died reach this node's :meth:`orphaned`."""
        self.registry = (
            open_registry(registry, on_orphaned=self.orphaned) if isinstance(registry, str) else registry
        )
        self.gateway: WebSocketGateway | None = None  # the gateway served now (set on start and reload)
        self.clock = clock
        self.sweep_interval_s = sweep_interval_s
        self.local: dict[str, Connection] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self.closing = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.registry.start(self)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    # -- LocalConnections --------------------------------------------------------------------------------

    async def send(self, connection_id: str, data: bytes, binary: bool) -> bool:
        connection = self.local.get(connection_id)
        if connection is None:
            return False
        sent = await connection.send_message(data if binary else data.decode("utf-8", "replace"))
        if sent:
            connection.last_active = self.clock()  # a message either way keeps the connection alive
        return sent

    async def close(self, connection_id: str) -> bool:
        connection = self.local.get(connection_id)
        if connection is None:
            return False
        return await connection.close(NORMAL, "")

    async def orphaned(self, infos: list[ConnectionInfo]) -> None:
        """Connections of a node that died, cleaned up by this one: their ``$disconnect`` runs here (close
        code 1006: their sockets went without a close frame), as API Gateway runs it for a lost connection."""
        gateway = self.gateway
        if gateway is None:
            return
        for info in infos:
            log.warning("[%s] connection of dead node %s cleaned up", info.connection_id, info.node)
            await gateway.disconnected(gateway.context_of(info), ABNORMAL, "")

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            now = self.clock()
            for connection in list(self.local.values()):
                limits = connection.gateway.api.limits
                if (
                    now - connection.connected_at >= limits.max_connection_s
                    or now - connection.last_active >= limits.idle_timeout_s
                ):
                    await connection.close(GOING_AWAY, GOING_AWAY_REASON)

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close every connection with 1001 (going away), wait for each ``$disconnect``, leave the cluster."""
        self.closing = True
        connections = list(self.local.values())
        for connection in connections:
            await connection.close(GOING_AWAY, GOING_AWAY_REASON)
        if connections:
            waits = [asyncio.ensure_future(c.closed.wait()) for c in connections]
            _, pending = await asyncio.wait(waits, timeout=timeout_s)
            for waiting in pending:
                waiting.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._started:
            await self.registry.stop()


@dataclass(frozen=True, slots=True)
class WebSocketGateway:
    """One WebSocket API stage, compiled: routes by key, the selection expression, and where they run."""

    api: WebSocketApi
    stage: str
    stage_variables: Mapping[str, str]
    runtime: LambdaRuntime
    hub: ConnectionHub
    functions: Mapping[str, FunctionSpec] = field(default_factory=dict)
    function_origins: Mapping[str, FunctionOrigin] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)  # route key → the function its integration runs
    authorizers: Mapping[str, str] = field(default_factory=dict)  # route key → its authorizer's function
    region: str = "us-east-1"
    account_id: str = "123456789012"
    monitor: Monitor | None = None
    stats: dict[str, RouteStats] = field(default_factory=dict)  # per route key, and UNROUTED
    access_log: AccessLogWriter | None = None  # one JSON line per event when access logging is on
    store: Store | None = None  # where the routes' throttle buckets live (this process, or Redis for many)
    throttles: Mapping[str, tuple[Bucket, ...]] = field(default_factory=dict)  # route key → its buckets
    selection: SelectionExpression = field(init=False)
    prefix: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "selection", parse_expression(self.api.route_selection_expression))
        object.__setattr__(self, "prefix", f"/{self.stage}")

    def routes(self) -> tuple[WsRoute, ...]:
        return tuple(self.api.routes.values())

    def describe_routes(self) -> list[tuple[str, str]]:
        """(route key, what runs it) for ``portway routes``."""
        rows = []
        for key, route in sorted(self.api.routes.items()):
            integration = route.integration
            target = f"lambda {integration.function}" if isinstance(integration, WsLambda) else "mock"
            if route.route_response:
                target += " (two-way)"
            if route.authorizer is not None:
                target += f", authorizer {route.authorizer.function}"
            rows.append((key, target))
        return rows

    # -- HTTP: the @connections management API -----------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else str(scope["path"])
        status, headers, body = 403, [_JSON], b'{"message":"Forbidden"}'
        if path.startswith(self.prefix + CONNECTIONS_PATH):
            connection_id = unquote(path[len(self.prefix) + len(CONNECTIONS_PATH) :])
            status, headers, body = await self._manage(scope["method"], connection_id, receive)
        request_id = events.new_request_id()
        headers = [*headers, (b"x-amzn-RequestId", request_id.encode())]
        if status != 204:
            headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if status != 204 else b""})

    async def _manage(
        self, method: str, connection_id: str, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if not connection_id or "/" in connection_id:
            return _error(400, "BadRequestException", "Invalid connectionId")
        registry = self.hub.registry
        try:
            if method == "POST":
                try:
                    data = await read_body(receive, self.api.limits.message_bytes)
                except BodyTooLarge:
                    return _error(413, "PayloadTooLargeException", "Message too long")
                delivered = await registry.send(connection_id, data, binary=not _is_text(data))
                if delivered is Delivery.GONE:
                    return _error(410, "GoneException")
                return 200, [], b""
            if method == "GET":
                info = await registry.get(connection_id)
                if info is None:
                    return _error(410, "GoneException")
                return 200, [_JSON], orjson.dumps(_connection_json(info))
            if method == "DELETE":
                closed = await registry.close(connection_id)
                if closed is Delivery.GONE:
                    return _error(410, "GoneException")
                return 204, [], b""
        except StoreUnavailable as exc:
            log.error("@connections %s %s: %s", method, connection_id, exc)
            return 500, [_JSON], b'{"message":"Internal server error"}'
        return _error(405, "MethodNotAllowedException", f"{method} is not a @connections method")

    # -- WebSocket: one connection, from handshake to $disconnect ------------------------------------------

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        raw: bytes | None = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else str(scope["path"])
        if path.rstrip("/") != self.prefix or self.hub.closing:
            await _refuse(send, 403, {"message": "Forbidden"})
            return
        now = self.hub.clock()
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in scope["headers"]]
        host = next((value for name, value in headers if name.lower() == "host"), None)
        agent = next((value for name, value in headers if name.lower() == "user-agent"), None)
        client = scope.get("client")
        context = events.ConnectionContext(
            connection_id=events.new_connection_id(),
            connected_at_ms=int(now * 1000),
            source_ip=str(client[0]) if client else "127.0.0.1",
            api_id=self.api.api_id,
            stage=self.stage,
            domain_name=host or f"{self.api.api_id}.execute-api.{self.region}.amazonaws.com",
            user_agent=agent,
            region=self.region,
            account_id=self.account_id,
        )
        query: bytes = scope.get("query_string", b"")
        server = scope.get("server")
        port = int(server[1]) if server and server[1] is not None else 80
        scheme = "wss" if scope.get("scheme") == "wss" else "ws"
        started = time.perf_counter()
        request_id = events.new_request_id()
        refused, context, integration_ms = await self._connect(
            context, headers, query, port, scheme, request_id
        )
        del headers  # only $connect reads them: not kept for the connection's life (1 KB a connection)
        self._observe(
            CONNECT,
            refused[0] if refused is not None else 200,
            started,
            integration_ms,
            event_type="CONNECT",
            request_id=request_id,
            context=context,
        )
        if refused is not None:
            await _refuse(send, *refused)
            return
        connection = Connection(self, context, send, now)
        # Reachable through @connections from the moment the client has its open connection, not before.
        self.hub.local[connection.id] = connection
        info = ConnectionInfo(
            connection_id=connection.id,
            node=self.hub.registry.node,
            connected_at_ms=context.connected_at_ms,
            source_ip=context.source_ip,
            user_agent=agent,
            last_active_at_ms=context.connected_at_ms,
        )
        code, reason = ABNORMAL, ""
        try:
            try:
                await self.hub.registry.add(info)
            except StoreUnavailable as exc:
                log.error(
                    "[%s] connection not registered (the @connections API of other nodes will not "
                    "reach it): %s",
                    connection.id,
                    exc,
                )
            await send({"type": "websocket.accept"})
            code, reason = await self._messages(connection, receive)
        finally:
            self.hub.local.pop(connection.id, None)
            if connection.server_close is not None:
                code, reason = connection.server_close
            for task in list(connection.tasks):
                task.cancel()
            await self.hub.registry.remove(connection.id)
            await self.disconnected(connection.context, code, reason)
            connection.closed.set()

    async def _connect(
        self,
        context: events.ConnectionContext,
        headers: list[tuple[str, str]],
        query: bytes,
        port: int,
        scheme: str,
        request_id: str,
    ) -> tuple[tuple[int, dict[str, Any]] | None, events.ConnectionContext, float | None]:
        """Run ``$connect``'s authorizer and integration: (status, body) when the handshake is refused, the
        connection's context (with the authorizer's answer), the integration's latency."""
        if not await self._admit(CONNECT):
            return (429, {"message": TOO_MANY_REQUESTS}), context, None
        route = self.api.routes.get(CONNECT)
        if route is None:
            return None, context, None
        now_ns = time.time_ns()
        try:
            if route.authorizer is not None:
                refused, context = await self._authorize(route, context, headers, query, port, scheme)
                if refused is not None:
                    return refused, context, None
            event = events.connect_event(
                context,
                headers=headers,
                query=query,
                request_id=request_id,
                request_time_ns=now_ns,
                stage_variables=self.stage_variables,
                server_port=port,
                scheme="https" if scheme == "wss" else "http",
            )
        except BadPath:
            return (400, {"message": "Bad Request"}), context, None
        outcome, integration_ms = await self._timed(route, event, request_id, context.connection_id)
        if outcome is None:
            return (502, {"message": "Internal server error"}), context, integration_ms
        status = outcome.get("statusCode") if isinstance(outcome, dict) else None
        if isinstance(status, int) and not 200 <= status < 300:
            return (status, {"message": _reason(status)}), context, integration_ms
        return None, context, integration_ms

    async def _authorize(
        self,
        route: WsRoute,
        context: events.ConnectionContext,
        headers: list[tuple[str, str]],
        query: bytes,
        port: int,
        scheme: str,
    ) -> tuple[tuple[int, dict[str, Any]] | None, events.ConnectionContext]:
        authorizer = route.authorizer
        assert authorizer is not None
        lowered = {name.lower(): value for name, value in headers}
        queries = dict(_query_pairs(query))
        for source in authorizer.identity_sources:
            value = None
            if source.startswith("route.request.header."):
                value = lowered.get(source[len("route.request.header.") :].lower())
            elif source.startswith("route.request.querystring."):
                value = queries.get(source[len("route.request.querystring.") :])
            elif source.startswith("stageVariables."):
                value = self.stage_variables.get(source[len("stageVariables.") :])
            else:
                value = "context"
            if not value:
                return (401, {"message": "Unauthorized"}), context
        request_id = events.new_request_id()
        event = events.authorizer_event(
            context,
            headers=headers,
            query=query,
            request_id=request_id,
            request_time_ns=time.time_ns(),
            stage_variables=self.stage_variables,
            server_port=port,
            scheme="https" if scheme == "wss" else "http",
        )
        started = time.perf_counter()
        invocation = await self.runtime.invoke(
            self.authorizers[route.route_key], event, request_id=request_id, integration_timeout_s=10.0
        )
        latency_ms = round((time.perf_counter() - started) * 1000)
        payload = invocation.payload
        if invocation.outcome is not Outcome.OK:
            error = invocation.error or {}
            if error.get("errorMessage") == "Unauthorized":
                return (401, {"message": "Unauthorized"}), context
            log.error(
                "[%s] $connect authorizer %s failed: %s", context.connection_id, authorizer.function, error
            )
            return (500, {"message": None}), context
        try:
            if not isinstance(payload, dict) or not isinstance(payload.get("principalId"), str):
                raise PolicyError("the authorizer's answer has no principalId")
            decision = evaluate(
                payload.get("policyDocument"),
                "execute-api:Invoke",
                events.method_arn(self.api.api_id, self.stage, self.region, self.account_id),
            )
            view = events.authorizer_view(payload["principalId"], payload.get("context"), latency_ms)
        except (PolicyError, ValueError) as exc:
            log.error(
                "[%s] $connect authorizer %s: invalid answer: %s",
                context.connection_id,
                authorizer.function,
                exc,
            )
            return (500, {"message": None}), context
        if decision is not Decision.ALLOW:
            return (403, {"message": "Forbidden"}), context
        return None, _with_authorizer(context, view)

    async def _messages(self, connection: Connection, receive: Receive) -> tuple[int, str]:
        """Read messages until the socket closes; the close code and reason."""
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                return int(message.get("code", ABNORMAL)), str(message.get("reason") or "")
            if kind != "websocket.receive":
                continue
            now = self.hub.clock()
            connection.last_active = now
            await self.hub.registry.touch(connection.id, int(now * 1000))
            body: str | bytes | None = message.get("text")
            if body is None:
                body = message.get("bytes") or b""
            await connection.in_flight.acquire()
            task = asyncio.get_running_loop().create_task(self._message(connection, body))
            connection.tasks.add(task)
            task.add_done_callback(connection.tasks.discard)

    async def _message(self, connection: Connection, body: str | bytes) -> None:
        started = time.perf_counter()
        try:
            request_id = events.new_request_id()
            chosen = select_route(self.selection, self.api.routes.keys(), body)
            if chosen.route_key is None:
                await connection.send_message(error_answer(FORBIDDEN, connection.id, request_id))
                self._observe(
                    None,
                    403,
                    started,
                    None,
                    "NO_ROUTE",
                    event_type="MESSAGE",
                    request_id=request_id,
                    context=connection.context,
                )
                return
            route = self.api.routes[chosen.route_key]
            if not await self._admit(route.route_key):
                await connection.send_message(error_answer(TOO_MANY_REQUESTS, connection.id, request_id))
                self._observe(
                    route.route_key,
                    429,
                    started,
                    None,
                    "THROTTLED",
                    event_type="MESSAGE",
                    request_id=request_id,
                    context=connection.context,
                )
                return
            message_id = events.new_message_id()
            event = events.message_event(
                connection.context,
                route_key=route.route_key,
                body=body,
                message_id=message_id,
                request_id=request_id,
                request_time_ns=time.time_ns(),
                stage_variables=self.stage_variables,
            )
            outcome, integration_ms = await self._timed(route, event, request_id, connection.id)
            if outcome is None:
                await connection.send_message(error_answer(INTERNAL_SERVER_ERROR, connection.id, request_id))
                self._observe(
                    route.route_key,
                    500,
                    started,
                    integration_ms,
                    "INTEGRATION_FAILURE",
                    event_type="MESSAGE",
                    request_id=request_id,
                    context=connection.context,
                    message_id=message_id,
                )
                return
            if route.route_response:
                answer = _answer_body(outcome)
                if answer is not None:
                    await connection.send_message(answer)
            self._observe(
                route.route_key,
                200,
                started,
                integration_ms,
                event_type="MESSAGE",
                request_id=request_id,
                context=connection.context,
                message_id=message_id,
            )
        except Exception:
            log.exception("[%s] message handling failed", connection.id)
        finally:
            connection.in_flight.release()

    def context_of(self, info: ConnectionInfo) -> events.ConnectionContext:
        """A connection's context from what the registry keeps of it (another node's connection)."""
        return events.ConnectionContext(
            connection_id=info.connection_id,
            connected_at_ms=info.connected_at_ms,
            source_ip=info.source_ip,
            api_id=self.api.api_id,
            stage=self.stage,
            domain_name=f"{self.api.api_id}.execute-api.{self.region}.amazonaws.com",
            user_agent=info.user_agent,
            region=self.region,
            account_id=self.account_id,
        )

    async def disconnected(self, context: events.ConnectionContext, code: int, reason: str) -> None:
        """Run ``$disconnect`` for a connection that ended with ``code`` and ``reason``."""
        route = self.api.routes.get(DISCONNECT)
        if route is None:
            return
        request_id = events.new_request_id()
        event = events.disconnect_event(
            context,
            status_code=code,
            reason=reason,
            request_id=request_id,
            request_time_ns=time.time_ns(),
            stage_variables=self.stage_variables,
        )
        started = time.perf_counter()
        outcome, integration_ms = await self._timed(route, event, request_id, context.connection_id)
        failed = outcome is None
        self._observe(
            DISCONNECT,
            500 if failed else 200,
            started,
            integration_ms,
            "INTEGRATION_FAILURE" if failed else None,
            event_type="DISCONNECT",
            request_id=request_id,
            context=context,
        )

    async def _admit(self, key: str) -> bool:
        """Whether the route's throttle (``routeSettings`` / ``defaultRouteSettings``) lets one more in. A
        store that cannot be reached lets everything in, as the HTTP side's throttle does."""
        buckets = self.throttles.get(key)
        if not buckets or self.store is None:
            return True
        try:
            admission = await self.store.take(buckets, time.time())
        except StoreUnavailable:
            return True
        return admission.allowed

    async def _timed(
        self, route: WsRoute, event: dict[str, Any], request_id: str, connection_id: str
    ) -> tuple[Any, float]:
        """:meth:`_integrate`, and how long it took (ms): IntegrationLatency."""
        started = time.perf_counter()
        outcome = await self._integrate(route, event, request_id, connection_id)
        return outcome, (time.perf_counter() - started) * 1000

    def _observe(
        self,
        key: str | None,
        status: int,
        started: float,
        integration_ms: float | None,
        error: str | None = None,
        *,
        event_type: str,
        request_id: str,
        context: events.ConnectionContext,
        message_id: str | None = None,
    ) -> None:
        """Count one WebSocket event in the metrics (per route key; messages no route takes under "-"), and
        write its access log line: JSON with the ``$context`` names of a WebSocket API's access log."""
        latency_ms = (time.perf_counter() - started) * 1000
        monitor = self.monitor
        if monitor is not None:
            stats = self.stats.get(key) if key is not None else None
            if stats is None:
                stats = self.stats[UNROUTED]
            monitor.record(stats, None, status, latency_ms, 0, error, integration_ms)
        if self.access_log is not None:
            line = {
                "requestId": request_id,
                "requestTime": request_time(time.time_ns()),
                "eventType": event_type,
                "routeKey": key or "-",
                "connectionId": context.connection_id,
                "messageId": message_id or "-",
                "ip": context.source_ip,
                "status": str(status),
                "responseLatency": str(round(latency_ms)),
                "integrationLatency": "-" if integration_ms is None else str(round(integration_ms)),
                "error": error or "-",
            }
            self.access_log.write(orjson.dumps(line).decode())

    async def _integrate(
        self, route: WsRoute, event: dict[str, Any], request_id: str, connection_id: str
    ) -> Any:
        """Run a route's integration; its result (a Lambda's return value, a mock's body), None on failure."""
        integration = route.integration
        if isinstance(integration, WsMock):
            return {"statusCode": 200, "body": integration.body}
        assert isinstance(integration, WsLambda)
        invocation = await self.runtime.invoke(
            self.targets[route.route_key],
            event,
            request_id=request_id,
            integration_timeout_s=integration.timeout_ms / 1000,
        )
        if invocation.outcome is Outcome.OK:
            return invocation.payload if invocation.payload is not None else {}
        error = invocation.error or {}
        log.error(
            "[%s] [%s] %s %s failed (%s): %s: %s",
            integration.function,
            request_id,
            route.route_key,
            connection_id,
            invocation.outcome.name,
            error.get("errorType", "Unknown"),
            error.get("errorMessage", ""),
        )
        return None


def _with_authorizer(context: events.ConnectionContext, view: dict[str, Any]) -> events.ConnectionContext:
    return replace(context, authorizer=view)


def _answer_body(outcome: Any) -> str | bytes | None:
    """What a two-way route sends back: a Lambda proxy result's ``body`` (decoded when base64), or a
    result that is not a proxy response as JSON."""
    if isinstance(outcome, dict) and ("statusCode" in outcome or "body" in outcome):
        body = outcome.get("body")
        if body is None:
            return None
        if outcome.get("isBase64Encoded") and isinstance(body, str):
            return base64.b64decode(body)
        return body if isinstance(body, str) else orjson.dumps(body).decode()
    if isinstance(outcome, str):
        return outcome
    return orjson.dumps(outcome).decode()


def _connection_json(info: ConnectionInfo) -> dict[str, Any]:
    identity: dict[str, str] = {"sourceIp": info.source_ip}
    if info.user_agent is not None:
        identity["userAgent"] = info.user_agent
    return {
        "connectedAt": _iso(info.connected_at_ms),
        "identity": identity,
        "lastActiveAt": _iso(info.last_active_at_ms),
    }


def _is_text(data: bytes) -> bool:
    """A posted message goes out as a text frame when it is UTF-8, as API Gateway sends it."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _query_pairs(query: bytes) -> list[tuple[str, str]]:
    try:
        return parse_query(query)
    except BadPath:
        return []


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _refuse(send: Send, status: int, body: dict[str, Any]) -> None:
    """Refuse the handshake with an HTTP answer (ASGI's websocket.http.response extension)."""
    payload = orjson.dumps(body)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", b"%d" % len(payload))],
        }
    )
    await send({"type": "websocket.http.response.body", "body": payload})
