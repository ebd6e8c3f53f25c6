"""The small vocabulary shared by every part of the data plane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ASGIApp", "Headers", "Message", "Receive", "Response", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Response:
    """What the gateway sends back: a buffered ``body``, or a ``stream`` of chunks (e.g. an upstream's)."""

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    # A gateway-made answer's type and message ($context.error.responseType / .message in access logs):
    error_type: str | None = field(default=None, compare=False)
    error_message: str | None = field(default=None, compare=False)
