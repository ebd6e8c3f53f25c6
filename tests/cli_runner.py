"""The real ``portway`` command in a subprocess, for the tests that drive it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

TIMEOUT_S = 60.0


def portway(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "portway", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def portway_json(state: str, *args: str) -> Any:
    """A keys / usage-plans / usage command against ``state``, which must succeed: its --json output."""
    done = portway(*args, "--state", state, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
