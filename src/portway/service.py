"""A running Portway: definition → compiled gateway → server, with its Lambda runtime and upstream pools,
and (with ``--reload``) a watcher that recompiles the definition or restarts a function's workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from portway.app import PortwayApp, Served
from portway.config.compile import Resources, cache_prefix, compile_gateway
from portway.config.errors import DefinitionError, DefinitionErrors, Problem
from portway.config.loader import find_functions_file, load_api, load_deployment
from portway.config.model import Deployment
from portway.gateway import Gateway
from portway.integrations.lambda_proxy import UnavailableFunction
from portway.lambdas.runtime import LambdaRuntime
from portway.observability.access_log import AccessLogWriter
from portway.observability.admin import AdminServer, admin_app, needs_token
from portway.observability.metrics import Monitor
from portway.observability.tracing import Tracing
from portway.server import GatewayHttpProtocol
from portway.stages.throttle import ACCOUNT_LIMIT, Limit
from portway.state.factory import open_store
from portway.state.store import Store, StoreError
from portway.websocket.compile import compile_websocket
from portway.websocket.gateway import ConnectionHub, WebSocketGateway
from portway.websocket.model import WebSocketApi
from portway.websocket.protocol import protocol_with_limits

__all__ = ["AdminTokenRequired", "Service", "ServiceOptions", "run_event_loop"]

log = logging.getLogger("portway")
T = TypeVar("T")


def run_event_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on uvloop (the loop the gateway is measured on), or asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    definition: Path
    functions: Path | None = None
    stage: str | None = None  # None: "dev" for a REST API, "$default" (at the root) for an HTTP API
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)  # a SAM template's Parameters
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 3000
    reload: bool = False
    # Where throttle buckets and cache entries live: "memory" (this process) or "redis://…" (every node).
    state: str = "memory"
    # Where API keys, usage plans and quota counters live; None: the Redis store when ``state`` is one,
    # else the SQLite file DEFAULT_KEYS_STATE (what survives a restart on one machine).
    keys_state: str | None = None
    account_limit: Limit | None = ACCOUNT_LIMIT  # None: no account-level throttle
    # Monitoring. Metrics are kept unless switched off; the admin listener (Prometheus, dashboard, JSON API)
    # runs when given a port (0: any free one); beyond loopback it needs a token.
    metrics: bool = True
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None
    admin_token: str | None = None
    access_log: str | None = None  # "-" (stdout), "stderr" or a file; None: no access log
    access_log_format: str | None = None  # a preset (clf, json, xml, csv) or a $context format
    otlp_endpoint: str | None = None  # OpenTelemetry traces (None: OTEL_EXPORTER_OTLP_* if set, else off)
    websocket_sweep_s: float = 1.0  # how often WebSocket connections are checked for idleness and age
    clock: Callable[[], float] | None = None  # what WebSocket idle and lifetime limits are measured by


DEFAULT_KEYS_STATE = "sqlite:.portway/state.db"
USAGE_PERSIST_S = 10  # how often usage counts are written to the keys store


def _collect(load: Callable[[], T], problems: list[Problem]) -> T | None:
    try:
        return load()
    except DefinitionError as exc:
        problems.append(exc.problem)
    except DefinitionErrors as exc:
        problems.extend(exc.problems)
    return None


class _Server(uvicorn.Server):
    """uvicorn's server, with a step of ours before it closes its connections."""

    def __init__(
        self, config: uvicorn.Config, before_shutdown: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        super().__init__(config)
        self.before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await self.before_shutdown()
        finally:
            await super().shutdown(sockets)


class AdminTokenRequired(ValueError):
    """The admin listener is bound beyond loopback without a token."""


class Service:
    def __init__(self, options: ServiceOptions) -> None:
        self.options = options
        self.functions_file = find_functions_file(options.definition, options.functions)
        if options.admin_port is not None and needs_token(options.admin_host) and not options.admin_token:
            raise AdminTokenRequired(
                f"the admin listener on {options.admin_host} is reachable beyond this machine: give it a "
                "token (--admin-token or PORTWAY_ADMIN_TOKEN), or bind it to 127.0.0.1"
            )
        self._stores: list[Store] = []
        store = open_store(options.state)
        runtime = LambdaRuntime({}, logger=logging.getLogger("portway.lambda"))
        access_log = AccessLogWriter.open(options.access_log) if options.access_log is not None else None
        monitor = Monitor(runtime) if options.metrics else None
        if monitor is not None and access_log is not None:
            monitor.access_log_dropped = lambda: access_log.dropped
        self.resources = Resources(
            runtime=runtime,
            store=store,
            account_limit=options.account_limit,
            keys_store=self._keys_store(store),
            monitor=monitor,
            access_log=access_log,
            access_log_format=options.access_log_format,
            tracing=Tracing.configure(options.otlp_endpoint),
        )
        self.app: PortwayApp | None = None
        self.server: uvicorn.Server | None = None
        self.admin: AdminServer | None = None
        self._hub: ConnectionHub | None = None
        if monitor is not None:
            monitor.gateway = self._http_gateway

    def _http_gateway(self) -> Gateway | None:
        gateway = self.app.gateway if self.app is not None else None
        return gateway if isinstance(gateway, Gateway) else None

    @property
    def admin_url(self) -> str | None:
        """The admin listener's address once it listens (``http://127.0.0.1:PORT``)."""
        if self.admin is None:
            return None
        return f"http://{self.admin.host}:{self.admin.port}"

    def _keys_store(self, store: Store) -> Callable[[], Store]:
        """API keys' store, opened when a route first needs it (most APIs never do)."""
        opened: list[Store] = []

        def get() -> Store:
            if not opened:
                url = self.options.keys_state
                if url is None:
                    opened.append(store if store.name == "redis" else open_store(DEFAULT_KEYS_STATE))
                else:
                    opened.append(open_store(url))
                self._stores.append(opened[0])
            return opened[0]

        return get

    def compile(self) -> Served:
        """Load and compile the definition; raises DefinitionErrors naming every problem."""
        problems: list[Problem] = []
        # Both files are read even when the first has problems, so one run shows them all.
        api = _collect(lambda: load_api(self.options.definition, self.options.parameter_overrides), problems)
        if api is not None and api.deployment is not None:
            deployment: Deployment | None = api.deployment  # a SAM template names its functions itself
        else:
            deployment = _collect(lambda: load_deployment(self.functions_file), problems)
        if api is None or deployment is None:
            raise DefinitionErrors(problems)
        if isinstance(api, WebSocketApi):
            return compile_websocket(
                api,
                deployment,
                self.resources,
                self.hub(),
                stage=self.options.stage,
                stage_variables=self.options.stage_variables,
            )
        return compile_gateway(
            api,
            deployment,
            self.resources,
            stage=self.options.stage,
            stage_variables=self.options.stage_variables,
        )

    async def start(self) -> list[Problem]:
        """Compile, then start one warm worker per function (which imports its handler). Returns every
        problem found, import errors included; the service is ready to serve only when there are none."""
        try:
            gateway = self.compile()
        except DefinitionErrors as exc:
            return list(exc.problems)
        problems = await self._prewarm(gateway)
        if self.resources.key_cache is not None:
            # Known keys from the start: a store outage right after a restart still lets them in.
            await self.resources.key_cache.preload()
        self.app = PortwayApp(gateway)
        if isinstance(gateway, WebSocketGateway):
            gateway.hub.gateway = gateway
            await gateway.hub.start()
        monitor = self.resources.monitor
        if monitor is not None and self.options.admin_port is not None and self.admin is None:
            await self._start_admin(monitor)
        for route in gateway.routes() if isinstance(gateway, Gateway) else ():
            if isinstance(route.integration, UnavailableFunction):
                log.warning(
                    "%s %s answers 502: %s", route.method, route.resource, route.integration.describe()
                )
        if gateway.api.not_emulated:
            log.info(
                "not emulated (a Ref to one gives its logical id): %s", ", ".join(gateway.api.not_emulated)
            )
        return problems

    def hub(self) -> ConnectionHub:
        """This node's WebSocket connections (made with the first WebSocket gateway; outlives reloads): the
        connection registry is the --state store's kind, Redis for many nodes."""
        if self._hub is None:
            url = self.options.state if self.resources.store.name == "redis" else "memory"
            self._hub = ConnectionHub(
                url,
                clock=self.options.clock or time.time,
                sweep_interval_s=self.options.websocket_sweep_s,
            )
        return self._hub

    async def _prewarm(self, gateway: Served) -> list[Problem]:
        runtime = self.resources.runtime
        runtime.update_functions(gateway.functions)
        failures = await runtime.prewarm(gateway.functions.keys())
        problems = []
        for name, message in sorted(failures.items()):
            origin = gateway.function_origins.get(name)
            file = origin.file if origin else self.options.definition
            problems.append(Problem(file, origin.where if origin else "", f"function {name!r}: {message}"))
        return problems

    async def serve(self, sock: socket.socket | None = None) -> None:
        """Serve until stopped (signal or :meth:`stop`), then release every worker and connection."""
        assert self.app is not None, "start() first"
        config = uvicorn.Config(
            self.app,
            host=self.options.host,
            port=self.options.port,
            loop="none",
            http=GatewayHttpProtocol,
            interface="asgi3",
            lifespan="off",
            server_header=False,
            # The client's own X-Forwarded-For is data for the integration, never our peer address.
            proxy_headers=False,
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=5,
            **self._websocket_settings(),
        )
        self.server = _Server(config, self._before_shutdown)
        tasks = []
        if self.options.reload:
            tasks.append(asyncio.create_task(self._watch()))
        monitor = self.resources.monitor
        if monitor is not None:
            tasks.append(asyncio.create_task(self._sample(monitor)))
            tasks.append(asyncio.create_task(self._persist_usage(monitor)))
        flushing = self._flush_on_signal()
        try:
            await self.server.serve(sockets=[sock] if sock is not None else None)
        finally:
            if flushing:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if monitor is not None:
                await self._write_usage(monitor)
            await self.close()

    def _websocket_settings(self) -> dict[str, Any]:
        """A WebSocket API's server side: API Gateway's frame and message bounds, no server pings (API
        Gateway sends none: idle connections end by the idle timeout), no compression extension."""
        assert self.app is not None
        gateway = self.app.gateway
        if not isinstance(gateway, WebSocketGateway):
            return {}
        limits = gateway.api.limits
        return {
            "ws": protocol_with_limits(limits.frame_bytes),
            "ws_max_size": limits.message_bytes,
            "ws_ping_interval": None,
            "ws_per_message_deflate": False,
        }

    async def _before_shutdown(self) -> None:
        """Before the server stops: WebSocket clients are told the gateway is going away (1001), and each
        connection's $disconnect runs."""
        if self._hub is not None:
            await self._hub.shutdown()

    async def _start_admin(self, monitor: Monitor) -> None:
        def title() -> str:
            if self.app is None:
                return "Portway"
            gateway = self.app.gateway
            return f"{gateway.api.title} · {gateway.stage}"

        app = admin_app(monitor, token=self.options.admin_token, title=title)
        self.admin = AdminServer(app, self.options.admin_host, self.options.admin_port or 0)
        port = await self.admin.start()
        log.info("admin listener (metrics, dashboard) on http://%s:%d", self.options.admin_host, port)

    async def _sample(self, monitor: Monitor) -> None:
        """One time-series point a second, taken on the second."""
        loop = asyncio.get_running_loop()
        while True:
            now = monitor.clock()
            await asyncio.sleep(1.0 - (now % 1.0) + 0.001)
            started = loop.time()
            monitor.sample()
            if loop.time() - started > 0.05:
                log.debug("metrics sample took %.1f ms", (loop.time() - started) * 1000)

    def _usage_store(self) -> Store | None:
        """Usage is kept where API keys are, once there is such a store: a gateway whose routes use keys,
        or one given --keys-state or a Redis --state. Otherwise it lives in this process only."""
        if (
            self.resources.key_cache is None
            and self.options.keys_state is None
            and self.options.state == "memory"
        ):
            return None
        return self.resources.keys_store()

    async def _persist_usage(self, monitor: Monitor) -> None:
        while True:
            await asyncio.sleep(USAGE_PERSIST_S)
            await self._write_usage(monitor)

    async def _write_usage(self, monitor: Monitor) -> None:
        store = self._usage_store()
        if store is None:
            return
        try:
            await monitor.usage.persist(store, monitor.node)
        except StoreError as exc:
            log.warning("usage not saved (tried again in %d s): %s", USAGE_PERSIST_S, exc)

    def _flush_on_signal(self) -> bool:
        """SIGUSR1 flushes the in-process response cache (``portway cache flush --pid``). Only the main
        thread can take signals: a service run in another thread (tests) has no handler."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
            return False
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(self.flush_cache()))
        return True

    async def flush_cache(self) -> int:
        """Drop every cached response of the served stage; the number dropped."""
        gateway = self._http_gateway()
        if gateway is None:
            return 0  # a WebSocket API has no response cache
        try:
            dropped = await self.resources.store.cache_drop(
                cache_prefix(gateway.api_info.api_id, gateway.stage)
            )
        except StoreError as exc:
            log.error("response cache not flushed: %s", exc)
            return 0
        log.info("response cache flushed: %d entr%s dropped", dropped, "y" if dropped == 1 else "ies")
        return dropped

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()
            self.admin = None
        await self.resources.runtime.close()
        await self.resources.pools.close()
        for store in {id(s): s for s in (self.resources.store, *self._stores)}.values():
            await store.close()
        if self.resources.tracing is not None:
            await asyncio.to_thread(self.resources.tracing.shutdown)
        if self.resources.access_log is not None:
            self.resources.access_log.close()

    def _watched(self) -> list[Path]:
        paths = {self.options.definition.resolve()}
        if self.functions_file is not None:
            paths.add(self.functions_file.resolve())
        if self.app is not None:
            paths.update(spec.code_dir.resolve() for spec in self.app.gateway.functions.values())
        return sorted(paths)

    async def _watch(self) -> None:
        from watchfiles import awatch

        while True:
            watched = self._watched()
            async for changes in awatch(*watched, debounce=200, step=50):
                changed = {Path(path) for _, path in changes}
                if changed & set(watched):
                    await self.reload_definition()
                    break  # the functions' folders may have changed: watch the new set
                await self.reload_code(changed)

    async def reload_definition(self) -> bool:
        """Recompile and swap; on problems keep serving the previous gateway and log why."""
        try:
            gateway = self.compile()
        except DefinitionErrors as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            return False
        problems = await self._prewarm(gateway)
        for problem in problems:
            log.error("reload: %s", problem)
        assert self.app is not None
        self.app.swap(gateway)
        if isinstance(gateway, WebSocketGateway):
            gateway.hub.gateway = gateway
        log.info("reloaded %s (%d routes)", self.options.definition, len(gateway.routes()))
        return True

    async def reload_code(self, changed: set[Path]) -> None:
        assert self.app is not None
        names = [
            name
            for name, spec in self.app.gateway.functions.items()
            if any(path.suffix == ".py" and path.is_relative_to(spec.code_dir.resolve()) for path in changed)
        ]
        if names:
            failures = await self.resources.runtime.reload(names)
            log.info("handler code changed: reloaded %s", ", ".join(sorted(names)))
            for name, message in sorted(failures.items()):
                log.error("reload: function %r: %s", name, message)
