"""A pytest plugin: real redis-server processes on 127.0.0.1 for the tests that need Redis.

- :func:`ensure_redis` makes sure something answers on 127.0.0.1:6379 (starting a daemonized
  ``redis-server`` if nothing does); without ``redis-server`` the test is skipped, or fails under ``CI=true``.
- the ``redis_url`` fixture is ``redis://127.0.0.1:6379/0`` once it answers;
- :func:`private_redis` starts a server of the test's own on a free port, as a child process, which the test
  may kill and start again on the same port (outage tests); it is always stopped at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

__all__ = ["REDIS_HOST", "REDIS_PORT", "PrivateRedis", "ensure_redis", "private_redis", "redis_url"]

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
START_TIMEOUT_S = 10.0
NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def redis_answers(port: int, host: str = REDIS_HOST, timeout: float = 0.25) -> bool:
    """Whether a Redis server answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> str:
    """The path of ``redis-server``; skips the test when it is not installed (fails it under CI=true)."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (required under CI=true)")
        pytest.skip(message)
    return binary


def _wait_until_answers(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if redis_answers(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server on port {port} exited with {process.returncode}")
        time.sleep(0.02)
    raise TimeoutError(f"redis-server on port {port} did not answer within {START_TIMEOUT_S} s")


def ensure_redis() -> str:
    """The URL of a Redis answering on 127.0.0.1:6379, started (daemonized) when nothing answers there."""
    if not redis_answers(REDIS_PORT):
        binary = redis_server_binary()
        subprocess.run(
            [binary, "--daemonize", "yes", "--port", str(REDIS_PORT), "--bind", REDIS_HOST, *NO_PERSISTENCE],
            check=False,  # another test process may have started it first: we only need it to answer
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_TIMEOUT_S,
        )
        _wait_until_answers(REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture
def redis_url() -> str:
    return ensure_redis()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


class PrivateRedis:
    """A redis-server child process on its own port, which a test may kill, pause and start again."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/0"

    def start(self) -> None:
        """Start the server (empty: nothing is saved) and wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", REDIS_HOST, *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_until_answers(self.port, self.process)

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL): connections reset, everything in it is lost."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def command(self, *args: str) -> bytes:
        """One command through ``redis-cli`` (raw reply), for looking at the server from outside the store."""
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed")
        done = subprocess.run(
            [cli, "-h", REDIS_HOST, "-p", str(self.port), *args], capture_output=True, check=True, timeout=10
        )
        return done.stdout


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`, stopped (SIGCONT, then SIGKILL) whatever the test did."""
    server = PrivateRedis(redis_server_binary(), free_port())
    try:
        server.start()
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
        server.kill()
