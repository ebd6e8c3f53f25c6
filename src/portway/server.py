"""The server under the ASGI app: uvicorn on httptools, with API Gateway's answer to unparseable requests.

A request the HTTP parser refuses (a bad request line, an invalid header name or value) never reaches the ASGI
app; uvicorn answers it with a plain-text 400 of its own. API Gateway answers such a request with its
``BAD_REQUEST`` gateway response, JSON like every other: this protocol does the same.
"""

from __future__ import annotations

import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portway.pipeline.responses import REST_RESPONSES, ResponseType

__all__ = ["GatewayHttpProtocol"]

_BAD_REQUEST = REST_RESPONSES[ResponseType.BAD_REQUEST]


class GatewayHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = _BAD_REQUEST.body()
        head = [
            b"HTTP/1.1 400 Bad Request\r\n",
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-amzn-RequestId: " + str(uuid.uuid4()).encode() + b"\r\n",
            b"x-amzn-ErrorType: " + (_BAD_REQUEST.error_type or "").encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
