"""The server under the ASGI app: uvicorn on httptools, with API Gateway's answer to unparseable requests.

A request the HTTP parser refuses (a bad request line, an invalid header name or value) never reaches the ASGI
app; uvicorn answers it with a plain-text 400 of its own. API Gateway answers such a request with its
``BAD_REQUEST`` gateway response, JSON like every other: this protocol does the same.

API Gateway also caps the request line and headers together at 10,240 bytes. The parser would take any
size (a megabyte of headers reached the app): past the cap the connection is answered 431
``{"message":"Request Header Fields Too Large"}`` and closed, before more of the head is buffered. (AWS
documents the cap, not its answer; 431 is HTTP's own status for it.) Requests pipelined into one read are
checked by the first head only: the read itself stays bounded (the loop reads at most 256 KB at a time).
"""

from __future__ import annotations

import uuid

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from portway.pipeline.responses import REST_RESPONSES, ResponseType

__all__ = ["GatewayHttpProtocol"]

_BAD_REQUEST = REST_RESPONSES[ResponseType.BAD_REQUEST]
MAX_HEAD_BYTES = 10_240  # API Gateway's limit on the request line and headers together
_TOO_LARGE_BODY = b'{"message":"Request Header Fields Too Large"}'


class GatewayHttpProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > MAX_HEAD_BYTES:
                self._answer(b"431 Request Header Fields Too Large", _TOO_LARGE_BODY, None)
                return
        super().data_received(data)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what comes next on the connection is the next request's head
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._answer(b"400 Bad Request", _BAD_REQUEST.body(), _BAD_REQUEST.error_type)

    def _answer(self, status: bytes, body: bytes, error_type: str | None) -> None:
        head = [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-amzn-RequestId: " + str(uuid.uuid4()).encode() + b"\r\n",
        ]
        if error_type is not None:
            head.append(b"x-amzn-ErrorType: " + error_type.encode() + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()
