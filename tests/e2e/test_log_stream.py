"""`portway serve` writes access log lines, the handlers' own output and the gateway's log to one stream,
each with the request's id."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_monitoring import API, FUNCTIONS

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_access_log_handler_output_and_gateway_log_share_the_stream(tmp_path: Path) -> None:
    port = free_port()
    stdout = tmp_path / "stdout.log"
    with stdout.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "portway", "serve", str(API), "--functions", str(FUNCTIONS)),
                *("--stage", "dev", "--port", str(port), "--account-throttle", "off"),
                *("--stage-variable", "upstreamPort=1"),
            ],
            stdout=out,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "portway serve did not start"
                    time.sleep(0.05)
            base = f"http://127.0.0.1:{port}/dev"
            traced = httpx.get(f"{base}/traced", timeout=15)
            failed = httpx.get(f"{base}/fail", timeout=15)
            assert (traced.status_code, failed.status_code) == (200, 502)
        finally:
            process.terminate()
            process.wait(timeout=15)
            if process.stderr is not None:
                process.stderr.close()
    lines = stdout.read_text().splitlines()
    traced_id = traced.headers["x-amzn-RequestId"]
    failed_id = failed.headers["x-amzn-RequestId"]
    access = [json.loads(line) for line in lines if line.startswith("{")]
    assert [(entry["requestId"], entry["status"]) for entry in access] == [
        (traced_id, "200"),
        (failed_id, "502"),
    ]
    # The handler's print, tagged with its function and request id, in the same stream:
    assert any(f"[traced] [{traced_id}] traced handler called for /traced" in line for line in lines), lines
    # The gateway's own log of the failed invocation, with its request id, too:
    assert any(f"[fail] [{failed_id}] Lambda execution failed" in line for line in lines), lines
