"""The one stage interface: a stage answers early or lets the request go on; response hooks unwind."""

from __future__ import annotations

from typing import Protocol

from portway.pipeline.context import RequestContext
from portway.types import Response

__all__ = ["Stage"]


class Stage(Protocol):
    """A pipeline stage (waf, auth, throttle, validate, cache …), decided per route at compile time.

    ``on_request`` returns None to go on, or a Response to answer now (later stages and the integration
    are skipped). ``on_response`` runs in reverse order on whatever response is going out; a stage whose
    ``responds`` is False never changes it, and the route does not call it.
    """

    name: str
    needs_body: bool
    responds: bool

    async def on_request(self, ctx: RequestContext) -> Response | None: ...

    async def on_response(self, ctx: RequestContext, response: Response) -> Response: ...
