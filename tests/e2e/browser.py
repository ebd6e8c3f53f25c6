"""A real headless browser for the tests that look at a page: Debian's ``chromium``, driven by Playwright.

Playwright drives the system's browser (``executable_path``); it never downloads one of its own. Without
``chromium`` on PATH (or without Playwright) the test is skipped, and fails under ``CI=true``, where
scripts/test installs it.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

__all__ = ["ARTIFACTS", "chromium_executable", "launch_browser", "png_size"]

# Screenshots and other files a run leaves for people to look at (git-ignored).
ARTIFACTS = Path(os.environ.get("PORTWAY_ARTIFACTS", "test-artifacts"))
LAUNCH_TIMEOUT_MS = 30_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (required under CI=true)")
    pytest.skip(message)


def chromium_executable() -> str:
    """The path of Debian's ``chromium``; skips the test when it is not installed (fails it under CI=true)."""
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium is not installed (Debian's package: apt-get install chromium)")
    return path


@contextmanager
def launch_browser() -> Iterator[Browser]:
    """Headless chromium under Playwright, closed on the way out."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            browser.close()


def png_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, read from its IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
