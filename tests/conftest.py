"""Shared fixtures: a real Portway gateway on an ephemeral 127.0.0.1 port, driven over TCP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from portway.config.errors import Problem
from portway.gateway import Gateway
from portway.service import Service, ServiceOptions, run_event_loop

pytest_plugins = ["tests.redis_fixtures"]

APPS = Path(__file__).parent / "e2e" / "apps"


class GatewayStartError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass
class RunningGateway:
    service: Service
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base(self) -> str:
        assert self.service.app is not None
        return f"{self.url}{self.service.app.gateway.prefix}"

    @property
    def gateway(self) -> Gateway:
        """The REST or HTTP API gateway being served."""
        assert self.service.app is not None
        gateway = self.service.app.gateway
        assert isinstance(gateway, Gateway)
        return gateway

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def stop(self) -> None:
        if not self.thread.is_alive():
            return  # stopped already (a test that restarts a gateway stops it itself)
        self.loop.call_soon_threadsafe(self.service.stop)
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "gateway did not stop"


def start_gateway(
    definition: Path,
    functions: Path | None = None,
    *,
    stage: str | None = "dev",
    stage_variables: Mapping[str, str] | None = None,
    reload: bool = False,
    **extra: Any,
) -> RunningGateway:
    """Start a gateway in a thread with its own event loop, on a socket bound before it starts.

    ``extra``: further ServiceOptions (state, keys_state, account_limit …)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    options = ServiceOptions(
        definition=definition,
        functions=functions,
        stage=stage,
        stage_variables=dict(stage_variables or {}),
        port=port,
        reload=reload,
        **extra,
    )
    service = Service(options)
    ready = threading.Event()
    outcome: dict[str, Any] = {}
    holder: dict[str, asyncio.AbstractEventLoop] = {}

    async def main() -> None:
        holder["loop"] = asyncio.get_running_loop()
        problems = await service.start()
        if problems:
            outcome["problems"] = problems
            await service.close()
            ready.set()
            return
        ready.set()
        await service.serve(sock)

    def run() -> None:
        try:
            run_event_loop(main())
        except BaseException as exc:  # surfaced to the test below
            outcome["error"] = exc
            ready.set()
        finally:
            sock.close()

    thread = threading.Thread(target=run, name=f"portway-{port}", daemon=True)
    thread.start()
    if not ready.wait(timeout=30):
        raise TimeoutError("gateway did not start in 30 s")
    if "problems" in outcome:
        thread.join(timeout=10)
        raise GatewayStartError(outcome["problems"])
    if "error" in outcome:
        raise RuntimeError("gateway failed to start") from outcome["error"]
    return RunningGateway(service, port, holder["loop"], thread)


class GatewayFactory(Protocol):
    def __call__(
        self,
        definition: Path,
        functions: Path | None = None,
        *,
        stage: str | None = "dev",
        stage_variables: Mapping[str, str] | None = None,
        reload: bool = False,
        **extra: Any,
    ) -> RunningGateway: ...


@pytest.fixture
def gateway_factory() -> Iterator[GatewayFactory]:
    started: list[RunningGateway] = []

    def factory(
        definition: Path,
        functions: Path | None = None,
        *,
        stage: str | None = "dev",
        stage_variables: Mapping[str, str] | None = None,
        reload: bool = False,
        **extra: Any,
    ) -> RunningGateway:
        gw = start_gateway(
            definition, functions, stage=stage, stage_variables=stage_variables, reload=reload, **extra
        )
        started.append(gw)
        return gw

    yield factory
    for gw in started:
        gw.stop()


@dataclass
class RunningApp:
    port: int
    server: object
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout=15)


def run_asgi(app: object) -> RunningApp:
    """Serve any ASGI app with uvicorn on an ephemeral 127.0.0.1 port, in a thread."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False)  # type: ignore[arg-type]
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        finally:
            sock.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the ASGI app's server did not start"
    return RunningApp(port, server, thread)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port
