"""Cold start: time from `portway serve template.yaml` to its first successful response.

A SAM template with five Python functions behind an HTTP API (bench/apps/sam5/): the gateway process starts,
imports every handler in its own warm worker, and answers. Several runs, the median printed; each run is
bounded (10 s) and its processes are stopped before the next.

    .venv/bin/python bench/coldstart.py [--runs 7]
"""

from __future__ import annotations

import argparse
import http.client
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "bench" / "apps" / "sam5" / "template.yaml"
PATH = "/users"
RUN_TIMEOUT_S = 10.0
TARGET_S = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def answered(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", PATH)
        ok = connection.getresponse().status == 200
        connection.close()
    except OSError:
        return False
    return ok


def one_run() -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "portway",
            "serve",
            str(TEMPLATE),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        while time.perf_counter() - started < RUN_TIMEOUT_S:
            if process.poll() is not None:
                errors = process.stderr.read().decode() if process.stderr else ""
                raise SystemExit(f"portway exited with {process.returncode}: {errors}")
            if answered(port):
                return time.perf_counter() - started
            time.sleep(0.002)
        raise SystemExit(f"no answer within {RUN_TIMEOUT_S:.0f} s")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7, help="how many cold starts (default: %(default)s)")
    args = parser.parse_args()
    one_run()  # the first start after an install also writes bytecode caches: not a cold start to count
    times = [one_run() for _ in range(args.runs)]
    median = statistics.median(times)
    print(f"5-function SAM template, first successful response after start ({args.runs} runs):")
    print("  " + "  ".join(f"{t:.3f}s" for t in times))
    verdict = "PASS" if median < TARGET_S else "FAIL"
    print(f"median {median:.3f} s   target < {TARGET_S:.1f} s   {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
