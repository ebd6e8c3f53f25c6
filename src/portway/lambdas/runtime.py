"""The Lambda runtime: each function runs in warm worker processes, as Lambda runs execution environments.

A worker imports its handler once and keeps its globals between invocations. A function has at most
``concurrency`` workers; further invocations wait for one (within the integration's timeout). Two clocks,
as on AWS: the *function* timeout kills the worker (a failed invocation, the worker replaced on next use);
the *integration* timeout answers the caller first while the invocation runs on to its own end.
A worker that crashes, exits or hangs costs that invocation only, never the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import site
import socket
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson

import portway
from portway.lambdas import errors, protocol
from portway.lambdas.spec import FunctionSpec
from portway.lambdas.worker import LINE_ID_END, LINE_START

__all__ = ["INIT_TIMEOUT_S", "Invocation", "LambdaRuntime", "Outcome", "lambda_environment"]

# Lambda gives a function's init phase 10 seconds.
INIT_TIMEOUT_S = 10.0
_STOP_GRACE_S = 2.0
_OUTPUT_LINE_LIMIT = 1024 * 1024
# Environment variables Lambda sets itself and refuses in a function's configuration.
RESERVED_ENVIRONMENT = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


class Outcome(enum.Enum):
    OK = "ok"
    HANDLER_ERROR = "handler error"  # the handler raised, or returned what cannot be marshalled
    FUNCTION_TIMEOUT = "function timeout"  # killed at the function's own timeout
    RUNTIME_EXIT = "runtime exit"  # the worker process died (os._exit, signal, crash)
    INIT_ERROR = "init error"  # the handler could not be loaded
    INTEGRATION_TIMEOUT = "integration timeout"  # the caller stopped waiting; the invocation may go on


@dataclass(frozen=True, slots=True)
class Invocation:
    outcome: Outcome
    payload: Any = None
    error: Mapping[str, Any] | None = None
    duration_ms: float = 0.0
    init_ms: float | None = None  # set when this invocation started a new worker (a cold start)


class _WorkerGone(Exception):
    """The worker's socket closed or carried garbage: the process is dead or must be."""


class _InitFailed(Exception):
    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(error.get("errorMessage", ""))
        self.error = error


class _Channel(asyncio.Protocol):
    """The gateway's end of a worker's socket: decoded frames, one waiter at a time."""

    def __init__(self) -> None:
        self._decoder = protocol.FrameDecoder()
        self._messages: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[dict[str, Any]] | None = None
        self._lost: BaseException | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they are that interface.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for body in self._decoder.feed(data):
                message = orjson.loads(body)
                if not isinstance(message, dict):
                    raise protocol.ProtocolError("a frame that is not an object")
                self._deliver(message)
        except (protocol.ProtocolError, orjson.JSONDecodeError) as exc:
            self._fail(_WorkerGone(f"bad frame from worker: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def _deliver(self, message: dict[str, Any]) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(message)
            self._waiter = None
        else:
            self._messages.append(message)

    def _fail(self, exc: BaseException) -> None:
        if self._lost is None:
            self._lost = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self._waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(_WorkerGone("the worker closed its socket"))

    async def receive(self) -> dict[str, Any]:
        if self._messages:
            return self._messages.popleft()
        if self._lost is not None:
            raise self._lost
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        return await waiter


class _Worker:
    """One worker process: a warm execution environment of one function."""

    def __init__(
        self,
        spec: FunctionSpec,
        generation: int,
        process: asyncio.subprocess.Process,
        channel: _Channel,
        log: logging.Logger,
    ) -> None:
        self.spec = spec
        self.generation = generation
        self.process = process
        self.channel = channel
        self.request_id = ""
        self._readers = [
            asyncio.create_task(_relay_output(stream, spec.name, log))
            for stream in (process.stdout, process.stderr)
            if stream is not None
        ]

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, body: bytes, timeout_s: float) -> dict[str, Any]:
        """Send one invocation and wait for its answer; TimeoutError past ``timeout_s``."""
        transport = self.channel.transport
        if transport is None or transport.is_closing():
            raise _WorkerGone("the worker's socket is closed")
        transport.write(protocol.frame(body))
        async with asyncio.timeout(timeout_s):
            return await self.channel.receive()

    def kill(self) -> None:
        """Kill the worker and anything it started (it leads its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.channel.transport is not None:
            self.channel.transport.close()

    async def stop(self, graceful: bool = True) -> int:
        """Close the worker's socket (it exits at end of stream), kill it if it lingers, reap it."""
        if self.channel.transport is not None:
            self.channel.transport.close()
        if not graceful:
            self.kill()
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                code = await self.process.wait()
        except TimeoutError:
            self.kill()
            code = await self.process.wait()
        # Whatever the handler started in the worker's group goes with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STOP_GRACE_S):
                await asyncio.gather(*self._readers, return_exceptions=True)
        for reader in self._readers:
            reader.cancel()
        return code

    async def exit_reason(self) -> str:
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                code = await self.process.wait()
        except TimeoutError:
            self.kill()
            code = await self.process.wait()
        return errors.exit_reason(code)


async def _relay_output(stream: asyncio.StreamReader, function: str, log: logging.Logger) -> None:
    """Log every line a worker prints, tagged with the function and the invocation's request id."""
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line over the limit: take what is buffered as one line
            line = await stream.read(_OUTPUT_LINE_LIMIT)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        request_id = "-"
        if text.startswith(LINE_START):
            request_id, _, text = text[1:].partition(LINE_ID_END)
            request_id = request_id or "init"
        log.info("[%s] [%s] %s", function, request_id, text)


def lambda_environment(spec: FunctionSpec, log_stream: str) -> dict[str, str]:
    """The worker's environment: the gateway's own (credentials, PATH…), the function's variables, then the
    variables Lambda sets in every execution environment."""
    env = dict(os.environ)
    env.update(spec.environment)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir.resolve()),
            "_HANDLER": spec.handler,
            "TZ": ":UTC",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("_X_AMZN_TRACE_ID", None)
    # The worker imports portway itself: make that work when portway runs from a source tree.
    home = str(Path(portway.__file__).resolve().parent.parent)
    if home not in {str(Path(p).resolve()) for p in site.getsitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [home, env.get("PYTHONPATH")]))
    return env


def _log_stream_name() -> str:
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + os.urandom(16).hex()


class _FunctionPool:
    """The warm workers of one function, at most ``spec.concurrency`` of them."""

    def __init__(self, spec: FunctionSpec, log: logging.Logger) -> None:
        self.spec = spec
        self.log = log
        self.generation = 0
        self.retired = False
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots = asyncio.Semaphore(spec.concurrency)
        self._stopping: set[asyncio.Task[int]] = set()

    async def acquire(self) -> None:
        await self._slots.acquire()

    async def spawn(self) -> _Worker:
        """Start a worker and wait until its handler is imported; :class:`_InitFailed` if it is not."""
        spec = self.spec
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        code_dir = spec.code_dir.resolve()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "portway.lambdas.worker",
                str(child.fileno()),
                str(code_dir),
                spec.module,
                spec.attribute,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(child.fileno(),),
                env=lambda_environment(spec, _log_stream_name()),
                cwd=code_dir,
                start_new_session=True,
                limit=_OUTPUT_LINE_LIMIT,
            )
        except OSError as exc:
            parent.close()
            raise _InitFailed(
                errors.make_error(f"cannot start worker: {exc}", errors.EXIT_ERROR, None, "")
            ) from None
        finally:
            child.close()
        _, channel = await loop.connect_accepted_socket(_Channel, parent)
        worker = _Worker(spec, self.generation, process, channel, self.log)
        try:
            async with asyncio.timeout(INIT_TIMEOUT_S):
                message = await channel.receive()
        except TimeoutError:
            self._discard(worker, graceful=False)
            raise _InitFailed(
                errors.make_error(
                    f"Init phase did not finish within {INIT_TIMEOUT_S:.0f} seconds",
                    errors.TIMED_OUT,
                    None,
                    "",
                )
            ) from None
        except _WorkerGone:
            reason = await worker.exit_reason()
            self._discard(worker)
            raise _InitFailed(
                errors.make_error(f"Runtime exited with error: {reason}", errors.EXIT_ERROR, None, "")
            ) from None
        if message.get("t") != protocol.READY:
            self._discard(worker)
            raise _InitFailed(message.get("error") or {"errorType": "Unknown", "errorMessage": str(message)})
        return worker

    async def run(self, body: bytes, request_id: str) -> Invocation:
        """One invocation on a warm worker (or a new one); the caller holds a slot, released here."""
        init_ms: float | None = None
        worker: _Worker | None = None
        try:
            if self._idle:
                worker = self._idle.pop()
            else:
                started = time.perf_counter()
                try:
                    worker = await self.spawn()
                except _InitFailed as exc:
                    return Invocation(Outcome.INIT_ERROR, error=exc.error)
                init_ms = (time.perf_counter() - started) * 1000
            self._busy.add(worker)
            worker.request_id = request_id
            started = time.perf_counter()
            timeout_s = self.spec.timeout_s
            try:
                message = await worker.call(body, timeout_s)
            except TimeoutError:
                self._discard(worker, graceful=False)
                worker = None
                text = errors.TIMED_OUT_MESSAGE.format(request_id=request_id, seconds=timeout_s)
                return Invocation(
                    Outcome.FUNCTION_TIMEOUT,
                    error=errors.make_error(text, errors.TIMED_OUT, None, request_id),
                    duration_ms=(time.perf_counter() - started) * 1000,
                    init_ms=init_ms,
                )
            except _WorkerGone:
                reason = await worker.exit_reason()
                self._discard(worker)
                worker = None
                text = errors.EXIT_MESSAGE.format(request_id=request_id, reason=reason)
                return Invocation(
                    Outcome.RUNTIME_EXIT,
                    error=errors.make_error(text, errors.EXIT_ERROR, None, request_id),
                    duration_ms=(time.perf_counter() - started) * 1000,
                    init_ms=init_ms,
                )
            duration_ms = (time.perf_counter() - started) * 1000
            if message.get("t") == protocol.OK:
                return Invocation(
                    Outcome.OK, payload=message.get("v"), duration_ms=duration_ms, init_ms=init_ms
                )
            error = message.get("error") or {"errorType": "Unknown", "errorMessage": str(message)}
            return Invocation(Outcome.HANDLER_ERROR, error=error, duration_ms=duration_ms, init_ms=init_ms)
        finally:
            if worker is not None:
                self._busy.discard(worker)
                worker.request_id = ""
                if self.retired or worker.generation != self.generation:
                    self._discard(worker)
                else:
                    self._idle.append(worker)
            self._slots.release()

    def _discard(self, worker: _Worker, graceful: bool = True) -> None:
        self._busy.discard(worker)
        if not graceful:
            worker.kill()
        task = asyncio.get_running_loop().create_task(worker.stop(graceful))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def recycle(self) -> None:
        """Code changed: idle workers go now, busy ones when their invocation ends."""
        self.generation += 1
        idle, self._idle = self._idle, []
        for worker in idle:
            self._discard(worker)

    def retire(self) -> None:
        self.retired = True
        self.recycle()

    def finished(self) -> bool:
        return not (self._idle or self._busy or self._stopping)

    def idle_count(self) -> int:
        return len(self._idle)

    def worker_count(self) -> int:
        return len(self._idle) + len(self._busy)

    async def close(self) -> None:
        self.retire()
        for worker in list(self._busy):
            worker.kill()
        await self.drain()

    async def drain(self) -> None:
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    def add_idle(self, worker: _Worker) -> None:
        if self.retired or worker.generation != self.generation:
            self._discard(worker)
        else:
            self._idle.append(worker)


class LambdaRuntime:
    """Every function's pool of warm workers. Lives as long as the service; gateways come and go."""

    def __init__(self, functions: Mapping[str, FunctionSpec], logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("portway.lambda")
        self._pools: dict[str, _FunctionPool] = {}
        self._retired: list[_FunctionPool] = []
        self._tasks: set[asyncio.Task[Invocation]] = set()
        self.update_functions(functions)

    def update_functions(self, functions: Mapping[str, FunctionSpec]) -> None:
        """Take a new set of functions: unchanged ones keep their warm workers, changed ones start afresh."""
        self._retired = [pool for pool in self._retired if not pool.finished()]
        for name in list(self._pools):
            if name not in functions or self._pools[name].spec != functions[name]:
                pool = self._pools.pop(name)
                pool.retire()
                self._retired.append(pool)
        for name, spec in functions.items():
            if name not in self._pools:
                self._pools[name] = _FunctionPool(spec, self.log)

    def functions(self) -> Mapping[str, FunctionSpec]:
        return {name: pool.spec for name, pool in self._pools.items()}

    def worker_counts(self) -> dict[str, tuple[int, int]]:
        """(workers, idle workers) per function."""
        return {name: (pool.worker_count(), pool.idle_count()) for name, pool in self._pools.items()}

    async def prewarm(self, names: Iterable[str]) -> dict[str, str]:
        """Start one worker per function (importing its handler) unless one is warm; the failures, by name."""
        pools = [(name, self._pools[name]) for name in names if name in self._pools]

        async def warm(pool: _FunctionPool) -> str | None:
            if pool.idle_count():
                return None
            try:
                worker = await pool.spawn()
            except _InitFailed as exc:
                return f"{exc.error.get('errorType', 'Unknown')}: {exc.error.get('errorMessage', '')}"
            pool.add_idle(worker)
            return None

        results = await asyncio.gather(*(warm(pool) for _, pool in pools))
        return {name: result for (name, _), result in zip(pools, results, strict=True) if result is not None}

    async def reload(self, names: Iterable[str]) -> dict[str, str]:
        """Handler code changed: replace the functions' workers, and import the new code right away."""
        names = [name for name in names if name in self._pools]
        for name in names:
            self._pools[name].recycle()
        return await self.prewarm(names)

    async def invoke(
        self,
        function: str,
        event: Any,
        *,
        request_id: str,
        integration_timeout_s: float,
        trace_id: str | None = None,
    ) -> Invocation:
        """Invoke ``function`` with ``event``; answers by ``integration_timeout_s`` at the latest."""
        pool = self._pools.get(function)
        if pool is None:
            error = errors.make_error(
                f"Function not found: {function}", "ResourceNotFoundException", None, request_id
            )
            return Invocation(Outcome.INIT_ERROR, error=error)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + integration_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await pool.acquire()
        except TimeoutError:
            return Invocation(Outcome.INTEGRATION_TIMEOUT)
        spec = pool.spec
        body = orjson.dumps(
            {
                "t": protocol.INVOKE,
                "id": request_id,
                "ev": event,
                "dl": int(time.time() * 1000 + spec.timeout_s * 1000),
                "arn": spec.arn,
                "tr": trace_id,
            }
        )
        task = loop.create_task(pool.run(body, request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(task)
        except TimeoutError:
            # The invocation runs on to its own end (or its function timeout), as on Lambda.
            return Invocation(Outcome.INTEGRATION_TIMEOUT)

    async def close(self) -> None:
        """Stop every worker; invocations still running end as failed ones."""
        pools = [*self._pools.values(), *self._retired]
        self._pools.clear()
        self._retired.clear()
        await asyncio.gather(*(pool.close() for pool in pools))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.gather(*(pool.drain() for pool in pools))
