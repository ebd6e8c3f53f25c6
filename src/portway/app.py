"""The ASGI application: holds the current compiled gateway and swaps it whole on reload."""

from __future__ import annotations

from collections.abc import Awaitable

from portway.gateway import Gateway
from portway.types import Receive, Scope, Send
from portway.websocket.gateway import WebSocketGateway

Served = Gateway | WebSocketGateway

__all__ = ["PortwayApp", "Served"]


class PortwayApp:
    """Raw ASGI, no framework between the socket and the router. Requests in flight keep the gateway
    they started with; a swap only changes which one the next request reads."""

    def __init__(self, gateway: Served) -> None:
        self.gateway = gateway

    def swap(self, gateway: Served) -> None:
        self.gateway = gateway

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the gateway's coroutine: one frame less on every request. (The
        # server is told the interface is ASGI 3, so it does not have to guess from the signature.)
        if scope["type"] == "http":
            return self.gateway.handle(scope, receive, send)
        return self._other(scope, receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            # Start-up and shut-down belong to the Service that owns the loop; answer the protocol only.
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            gateway = self.gateway
            if isinstance(gateway, WebSocketGateway):
                await gateway.handle_websocket(scope, receive, send)
            else:  # a REST or HTTP API takes no WebSocket upgrade
                await receive()
                await send({"type": "websocket.close", "code": 1008})
