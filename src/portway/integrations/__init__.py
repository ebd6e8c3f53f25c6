"""Integrations: the terminal stage of every route's pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from portway.pipeline.context import RequestContext
    from portway.types import Response

__all__ = ["Integration"]


class Integration(Protocol):
    """Answers a routed request. ``needs_body``: it reads the whole body (``ctx.body()``, which applies the
    payload limit); an integration that streams it leaves it False. The body is read when first asked for."""

    needs_body: bool

    async def __call__(self, ctx: RequestContext) -> Response: ...

    def describe(self) -> str:
        """One line for `portway routes`, e.g. ``lambda products (products.handler)``."""
        ...
