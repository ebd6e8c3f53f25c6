"""Bounded load for the throttling tests: several clients well above a limit, for a few seconds."""

from __future__ import annotations

import asyncio
import time

import httpx


async def hammer(urls: list[str], seconds: float, per_node: int = 6) -> tuple[int, int, float]:
    """Drive every node well above the limit for ``seconds``: (200s, 429s, elapsed)."""
    ok = refused = 0
    async with httpx.AsyncClient() as client:
        started = time.monotonic()
        deadline = started + seconds

        async def worker(url: str) -> None:
            nonlocal ok, refused
            while time.monotonic() < deadline:
                status = (await client.get(url)).status_code
                if status == 200:
                    ok += 1
                elif status == 429:
                    refused += 1
                else:  # pragma: no cover - a failure explains itself
                    raise AssertionError(status)

        await asyncio.gather(*(worker(f"{url}/limited") for url in urls for _ in range(per_node)))
        return ok, refused, time.monotonic() - started
