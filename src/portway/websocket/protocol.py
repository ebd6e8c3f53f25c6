"""The WebSocket side of the server: uvicorn's sans-I/O websockets protocol, with API Gateway's frame limit.

API Gateway takes frames of at most 32 KB and messages (frames put together) of at most 128 KB. The message
bound is the websockets library's own ``max_size`` (uvicorn's ``ws_max_size``); frames are only seen here, one
by one, before uvicorn joins them: a frame over the bound closes the connection with 1009 (message too big),
which the application then sees as a disconnect with that code, as it sees every other way a connection ends.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame

__all__ = ["FRAME_TOO_BIG", "GatewayWebSocketProtocol", "protocol_with_limits"]

FRAME_TOO_BIG = 1009  # RFC 6455: a message too big to process
ABNORMAL_CLOSURE = 1006  # RFC 6455: the connection closed without a close frame


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    frame_bytes = 32 * 1024  # set per server by protocol_with_limits

    def handle_text(self, event: Frame) -> None:
        if self._fits(event):
            super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        if self._fits(event):
            super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self._fits(event):
            super().handle_cont(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake_complete and not self.close_sent and self.conn.close_rcvd is None:
            # The socket went without a close frame: RFC 6455's 1006 (uvicorn would say 1005, "a close frame
            # without a status"). The application reads this first disconnect and stops there.
            self.queue.put_nowait({"type": "websocket.disconnect", "code": ABNORMAL_CLOSURE, "reason": ""})
        super().connection_lost(exc)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A refused handshake (the HTTP answer) is a finished one: uvicorn would log it as unfinished.
            self.handshake_complete = True

    def _fits(self, event: Frame) -> bool:
        if len(event.data) <= self.frame_bytes:
            return True
        if not self.close_sent:
            reason = f"frame of {len(event.data)} bytes over the {self.frame_bytes}-byte limit"
            self.conn.fail(FRAME_TOO_BIG, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait({"type": "websocket.disconnect", "code": FRAME_TOO_BIG, "reason": reason})
            self.transport.close()
        return False


def protocol_with_limits(frame_bytes: int) -> type[GatewayWebSocketProtocol]:
    """The protocol class for one server, with its frame bound."""
    return type("GatewayWebSocketProtocol", (GatewayWebSocketProtocol,), {"frame_bytes": frame_bytes})
