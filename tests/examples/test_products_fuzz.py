"""schemathesis against the example Product API, request validation on: whatever it sends, the gateway never
answers 5xx (a bad request is the validator's 400 or the handler's 4xx, never a crash)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import start_gateway

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "products"
MAX_EXAMPLES = 25  # per operation: bounded in count …
TIMEOUT_S = 240  # … and in time


def test_no_5xx_under_schemathesis(tmp_path: Path) -> None:
    folder = tmp_path / "products"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.db", "__pycache__"))
    gateway = start_gateway(folder / "openapi.yaml", folder / "functions.yaml")
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "schemathesis.cli", "run", str(folder / "openapi.yaml")),
                *("--url", gateway.base, "--checks", "not_a_server_error"),
                *("--max-examples", str(MAX_EXAMPLES), "--seed", "1", "--request-timeout", "10"),
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=tmp_path,
            check=False,
        )
    finally:
        gateway.stop()
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated is not None, done.stdout + done.stderr
    assert int(generated.group(1)) >= 100, "schemathesis really sent requests"
    if done.returncode != 0:
        pytest.fail(f"schemathesis found server errors:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}")
