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
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import orjson

import portway
from portway.lambdas import errors, protocol
from portway.lambdas.spec import FunctionSpec
from portway.lambdas.worker import LINE_ID_END, LINE_START
from portway.observability.histogram import Histogram

__all__ = ["INIT_TIMEOUT_S", "Invocation", "LambdaRuntime", "Outcome", "lambda_environment"]

# Lambda gives a function's init phase 10 seconds.
INIT_TIMEOUT_S = 10.0
_STOP_GRACE_S = 2.0
PLACEHOLDER_ACCESS_KEY = "portway-local"  # what handlers sign with when the gateway has no AWS credentials
_OUTPUT_LINE_LIMIT = 1024 * 1024


class Outcome(enum.Enum):
    OK = "ok"
    HANDLER_ERROR = "handler error"  # the handler raised, or returned what cannot be marshalled
    FUNCTION_TIMEOUT = "function timeout"  # killed at the function's own timeout
    RUNTIME_EXIT = "runtime exit"  # the worker process died (os._exit, signal, crash)
    INIT_ERROR = "init error"  # the handler could not be loaded
    INTEGRATION_TIMEOUT = "integration timeout"  # the caller stopped waiting; the invocation may go on


@dataclass(slots=True)
class Invocation:
    outcome: Outcome
    payload: Any = None
    error: Mapping[str, Any] | None = None
    duration_ms: float = 0.0
    init_ms: float | None = None  # set when this invocation started a new worker (a cold start)


class FunctionStats:
    """One function's invocations, as Lambda's CloudWatch metrics count them (Invocations, Errors,
    Duration, ConcurrentExecutions), plus timeouts and cold starts. Kept across code reloads."""

    __slots__ = ("cold_starts", "duration", "errors", "invocations", "running", "timeouts")

    def __init__(self) -> None:
        self.invocations = 0  # finished invocations, failed ones included (as Lambda counts them)
        self.errors = 0  # invocations that failed: handler errors, timeouts, crashes, init errors
        self.timeouts = 0  # killed at the function's own timeout
        self.cold_starts = 0  # invocations that waited for a new worker to start
        self.running = 0  # invocations running now (ConcurrentExecutions), cold starts included
        self.duration = Histogram()

    def finished(self, result: Invocation) -> None:
        self.running -= 1
        self.invocations += 1
        outcome = result.outcome
        if outcome is not Outcome.OK:
            self.errors += 1
            if outcome is Outcome.FUNCTION_TIMEOUT:
                self.timeouts += 1
        if result.init_ms is not None:
            self.cold_starts += 1
        if outcome is not Outcome.INIT_ERROR:
            self.duration.observe(result.duration_ms)


class _WorkerGone(Exception):
    """The worker's socket closed or carried garbage: the process is dead or must be."""


class _InitFailed(Exception):
    def __init__(self, error: Mapping[str, Any]) -> None:
        super().__init__(error.get("errorMessage", ""))
        self.error = error


_Reply = dict[str, Any] | _WorkerGone
_ReplyHandler = Callable[[_Reply], None]


class _Channel(asyncio.Protocol):
    """The gateway's end of a worker's socket: each decoded frame goes to the one handler expecting it.

    Callbacks rather than futures and timeouts: this is the per-invocation hot path.
    """

    def __init__(self) -> None:
        self._decoder = protocol.FrameDecoder()
        self._pending: deque[_Reply] = deque()
        self._handler: _ReplyHandler | None = None
        self._lost = False
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
            self._deliver(_WorkerGone(f"bad frame from worker: {exc}"))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._deliver(_WorkerGone("the worker closed its socket"))

    def _deliver(self, reply: _Reply) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler(reply)
        else:
            self._pending.append(reply)

    def expect(self, handler: _ReplyHandler | None) -> None:
        """Hand the next reply to ``handler`` (at once if one is waiting); None: nobody expects one."""
        if handler is not None and self._pending:
            handler(self._pending.popleft())
        else:
            self._handler = handler

    def is_open(self) -> bool:
        return not self._lost and self.transport is not None and not self.transport.is_closing()

    async def receive(self) -> _Reply:
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self.expect(future.set_result)
        return await future


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
        self._readers = [
            asyncio.create_task(_relay_output(stream, spec.name, log))
            for stream in (process.stdout, process.stderr)
            if stream is not None
        ]

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """Kill the worker and anything it started (it leads its own process group)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.channel.transport is not None:
            self.channel.transport.close()

    async def stop(self, graceful: bool = True) -> int:
        """Close the worker's socket (it exits at end of stream), kill it if it lingers, reap it."""
        self.channel.expect(None)
        if self.channel.transport is not None:
            self.channel.transport.close()
        if not graceful:
            self.kill()
        code = await self._reap()
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
        return errors.exit_reason(await self._reap())

    async def _reap(self) -> int:
        """The exit code, once the process has ended; killed if it has not within the grace time."""
        try:
            async with asyncio.timeout(_STOP_GRACE_S):
                return await self.process.wait()
        except TimeoutError:
            self.kill()
            return await self.process.wait()


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
    # Lambda always gives a function credentials. Without the gateway's own, the SDK clients a handler makes
    # for Portway's own endpoints (the @connections API) still need some to sign with.
    if "AWS_ACCESS_KEY_ID" not in env and "AWS_PROFILE" not in env:
        env["AWS_ACCESS_KEY_ID"] = PLACEHOLDER_ACCESS_KEY
        env["AWS_SECRET_ACCESS_KEY"] = PLACEHOLDER_ACCESS_KEY
    # The worker imports portway itself: make that work when portway runs from a source tree.
    home = str(Path(portway.__file__).resolve().parent.parent)
    if home not in {str(Path(p).resolve()) for p in site.getsitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [home, env.get("PYTHONPATH")]))
    return env


def _log_stream_name() -> str:
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + os.urandom(16).hex()


class _Call:
    """One invocation on its way: waits for a slot, then a worker, then the worker's reply."""

    __slots__ = ("answer", "body", "init_ms", "request_id", "started", "timer")

    def __init__(self, body: bytes, request_id: str, answer: asyncio.Future[Invocation]) -> None:
        self.body = body
        self.request_id = request_id
        self.answer = answer  # what the caller awaits; it may stop waiting (integration timeout)
        self.init_ms: float | None = None
        self.started = 0.0
        self.timer: asyncio.TimerHandle | None = None


_Spawner = Callable[[Coroutine[Any, Any, None]], None]


class _FunctionPool:
    """The warm workers of one function, and at most ``spec.concurrency`` invocations running at once;
    further ones queue in order."""

    def __init__(
        self, spec: FunctionSpec, log: logging.Logger, background: _Spawner, stats: FunctionStats
    ) -> None:
        self.spec = spec
        self.stats = stats
        self.log = log
        self.generation = 0
        self.retired = False
        self.closed = False
        self._background = background
        self._free = spec.concurrency
        self._queue: deque[_Call] = deque()
        self._idle: list[_Worker] = []
        self._running: dict[_Worker, _Call] = {}
        self._stopping: set[asyncio.Task[int]] = set()

    # --- workers -------------------------------------------------------------------------------------

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
            error = errors.make_error(f"cannot start worker: {exc}", errors.EXIT_ERROR, None, "")
            raise _InitFailed(error) from None
        finally:
            child.close()
        _, channel = await loop.connect_accepted_socket(_Channel, parent)
        worker = _Worker(spec, self.generation, process, channel, self.log)
        try:
            async with asyncio.timeout(INIT_TIMEOUT_S):
                reply = await channel.receive()
        except TimeoutError:
            self._discard(worker, graceful=False)
            message = f"Init phase did not finish within {INIT_TIMEOUT_S:.0f} seconds"
            raise _InitFailed(errors.make_error(message, errors.TIMED_OUT, None, "")) from None
        if isinstance(reply, _WorkerGone):
            reason = await worker.exit_reason()
            self._discard(worker)
            message = f"Runtime exited with error: {reason}"
            raise _InitFailed(errors.make_error(message, errors.EXIT_ERROR, None, ""))
        if reply.get("t") != protocol.READY:
            self._discard(worker)
            raise _InitFailed(reply.get("error") or {"errorType": "Unknown", "errorMessage": str(reply)})
        return worker

    def _discard(self, worker: _Worker, graceful: bool = True) -> None:
        self._running.pop(worker, None)
        if not graceful:
            worker.kill()
        task = asyncio.get_running_loop().create_task(worker.stop(graceful))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    def add_idle(self, worker: _Worker) -> None:
        if self.retired or worker.generation != self.generation:
            self._discard(worker)
        else:
            self._idle.append(worker)

    # --- invocations ---------------------------------------------------------------------------------

    def submit(self, call: _Call) -> None:
        if self._free > 0:
            self._free -= 1
            self._start(call)
        else:
            self._queue.append(call)

    def _release_slot(self) -> None:
        while self._queue:
            call = self._queue.popleft()
            if not call.answer.done():  # a caller that stopped waiting does not get its call run
                self._start(call)
                return
        self._free += 1

    def _start(self, call: _Call) -> None:
        self.stats.running += 1
        if self._idle:
            self._dispatch(call, self._idle.pop())
        else:
            self._background(self._cold_start(call))

    async def _cold_start(self, call: _Call) -> None:
        started = time.perf_counter()
        try:
            worker = await self.spawn()
        except _InitFailed as exc:
            self._finish(call, None, Invocation(Outcome.INIT_ERROR, error=exc.error))
            return
        call.init_ms = (time.perf_counter() - started) * 1000
        self._dispatch(call, worker)

    def _dispatch(self, call: _Call, worker: _Worker) -> None:
        call.started = time.perf_counter()
        if self.closed:
            self._discard(worker, graceful=False)
            self._finish(call, None, _SHUTTING_DOWN)
            return
        channel = worker.channel
        if not channel.is_open() or channel.transport is None:
            # It died while idle (nothing was sent to it): this call goes to another worker, as Lambda
            # sends an invocation to a new execution environment.
            self._discard(worker)
            self.stats.running -= 1  # counted again as it starts over
            self._start(call)
            return
        self._running[worker] = call
        channel.expect(partial(self._on_reply, call, worker))
        channel.transport.write(protocol.frame(call.body))
        call.timer = asyncio.get_running_loop().call_later(
            self.spec.timeout_s, self._on_timeout, call, worker
        )

    def _on_reply(self, call: _Call, worker: _Worker, reply: _Reply) -> None:
        if call.timer is not None:
            call.timer.cancel()
        if isinstance(reply, _WorkerGone):
            self._background(self._lost(call, worker))
            return
        duration_ms = (time.perf_counter() - call.started) * 1000
        if reply.get("t") == protocol.OK:
            result = Invocation(Outcome.OK, reply.get("v"), None, duration_ms, call.init_ms)
        else:
            error = reply.get("error") or {"errorType": "Unknown", "errorMessage": str(reply)}
            result = Invocation(Outcome.HANDLER_ERROR, None, error, duration_ms, call.init_ms)
        self._finish(call, worker, result)

    def _on_timeout(self, call: _Call, worker: _Worker) -> None:
        worker.channel.expect(None)
        self._discard(worker, graceful=False)
        text = errors.TIMED_OUT_MESSAGE.format(request_id=call.request_id, seconds=self.spec.timeout_s)
        error = errors.make_error(text, errors.TIMED_OUT, None, call.request_id)
        duration_ms = (time.perf_counter() - call.started) * 1000
        self._finish(call, None, Invocation(Outcome.FUNCTION_TIMEOUT, None, error, duration_ms, call.init_ms))

    async def _lost(self, call: _Call, worker: _Worker) -> None:
        """The worker died during the invocation: a failed invocation, with the reason Lambda gives."""
        self._running.pop(worker, None)
        reason = await worker.exit_reason()
        self._discard(worker)
        text = errors.EXIT_MESSAGE.format(request_id=call.request_id, reason=reason)
        error = errors.make_error(text, errors.EXIT_ERROR, None, call.request_id)
        duration_ms = (time.perf_counter() - call.started) * 1000
        self._finish(call, None, Invocation(Outcome.RUNTIME_EXIT, None, error, duration_ms, call.init_ms))

    def _finish(self, call: _Call, worker: _Worker | None, result: Invocation) -> None:
        self.stats.finished(result)
        if worker is not None:
            self._running.pop(worker, None)
            self.add_idle(worker)
        self._release_slot()  # may hand the worker just returned to the next queued call
        if not call.answer.done():
            call.answer.set_result(result)

    # --- lifecycle -----------------------------------------------------------------------------------

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
        return not (self._idle or self._running or self._stopping)

    def idle_count(self) -> int:
        return len(self._idle)

    def worker_count(self) -> int:
        return len(self._idle) + len(self._running)

    def close(self) -> None:
        """Shutting down: every queued and running invocation fails now, running workers are killed."""
        self.closed = True
        self.retire()
        queued, self._queue = self._queue, deque()
        for call in queued:
            if not call.answer.done():
                call.answer.set_result(_SHUTTING_DOWN)
        for worker, call in list(self._running.items()):
            if call.timer is not None:
                call.timer.cancel()
            worker.channel.expect(None)
            self._discard(worker, graceful=False)
            self._finish(call, None, _SHUTTING_DOWN)

    async def drain(self) -> None:
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)


def _expire(answer: asyncio.Future[Invocation]) -> None:
    if not answer.done():
        answer.set_result(_INTEGRATION_TIMEOUT)


_INTEGRATION_TIMEOUT = Invocation(Outcome.INTEGRATION_TIMEOUT)
_SHUTTING_DOWN = Invocation(
    Outcome.RUNTIME_EXIT,
    error=errors.make_error("Runtime exited: the gateway is shutting down", errors.EXIT_ERROR, None, ""),
)


class LambdaRuntime:
    """Every function's pool of warm workers. Lives as long as the service; gateways come and go."""

    def __init__(self, functions: Mapping[str, FunctionSpec], logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("portway.lambda")
        self._pools: dict[str, _FunctionPool] = {}
        self._retired: list[_FunctionPool] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats: dict[str, FunctionStats] = {}  # per function name, kept across reloads
        self.update_functions(functions)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
                stats = self.stats.setdefault(name, FunctionStats())
                self._pools[name] = _FunctionPool(spec, self.log, self._background, stats)

    def functions(self) -> Mapping[str, FunctionSpec]:
        return {name: pool.spec for name, pool in self._pools.items()}

    def busy_counts(self) -> dict[str, int]:
        """Workers running an invocation now, per function."""
        return {name: pool.worker_count() - pool.idle_count() for name, pool in self._pools.items()}

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
        adapter: str | None = None,
    ) -> Invocation:
        """Invoke ``function`` with ``event``; answers by ``integration_timeout_s`` at the latest (the
        invocation itself runs on to its end or its function timeout, as on Lambda).

        With an ``adapter`` (a name in :data:`portway.integrations.adapters.ADAPTERS`), ``event`` is what the
        adapter builds the event from, and the payload is the adapter's answer instead of the raw result.
        """
        pool = self._pools.get(function)
        if pool is None:
            error = errors.make_error(
                f"Function not found: {function}", "ResourceNotFoundException", None, request_id
            )
            return Invocation(Outcome.INIT_ERROR, error=error)
        spec = pool.spec
        body = orjson.dumps(
            {
                "t": protocol.INVOKE,
                "id": request_id,
                "ev": event,
                "dl": int(time.time() * 1000 + spec.timeout_s * 1000),
                "arn": spec.arn,
                "tr": trace_id,
                "ad": adapter,
            }
        )
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Invocation] = loop.create_future()
        timer = loop.call_later(integration_timeout_s, _expire, answer)
        pool.submit(_Call(body, request_id, answer))
        try:
            return await answer
        finally:
            timer.cancel()

    async def close(self) -> None:
        """Stop every worker; invocations still queued or running end as failed ones."""
        pools = [*self._pools.values(), *self._retired]
        self._pools.clear()
        self._retired.clear()
        for pool in pools:
            pool.close()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await asyncio.gather(*(pool.drain() for pool in pools))
