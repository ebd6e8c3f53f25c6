"""The Lambda runtime against real worker processes: warm state, both clocks, crashes, limits, output."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from portway.lambdas.runtime import Invocation, LambdaRuntime, Outcome
from portway.lambdas.spec import FunctionSpec

HERE = Path(__file__).parent


def spec(name: str, attribute: str, **settings: Any) -> FunctionSpec:
    return FunctionSpec(name=name, code_dir=HERE, module="handlers", attribute=attribute, **settings)


@pytest.fixture
async def runtime() -> AsyncIterator[LambdaRuntime]:
    rt = LambdaRuntime({})
    yield rt
    await rt.close()


async def call(
    rt: LambdaRuntime, name: str, event: Any = None, *, wait_s: float = 10.0, request_id: str = "req-1"
) -> Invocation:
    return await rt.invoke(name, event or {}, request_id=request_id, integration_timeout_s=wait_s)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); its state in /proc says it is gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_globals_persist_in_a_warm_worker(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"count": spec("count", "count")})
    first = await call(runtime, "count")
    second = await call(runtime, "count")
    assert first.outcome is Outcome.OK
    assert first.init_ms is not None  # a cold start
    assert second.init_ms is None  # warm
    assert second.payload == {"count": first.payload["count"] + 1, "pid": first.payload["pid"]}


async def test_prewarm_imports_once_and_reports_nothing_for_good_code(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"count": spec("count", "count")})
    assert await runtime.prewarm(["count"]) == {}
    assert runtime.worker_counts() == {"count": (1, 1)}
    result = await call(runtime, "count")
    assert result.init_ms is None
    assert result.payload["count"] == 1


async def test_concurrency_limit_queues_extra_invocations(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"sleep": spec("sleep", "sleep", concurrency=2)})
    await runtime.prewarm(["sleep"])
    started = time.monotonic()
    results = await asyncio.gather(*(call(runtime, "sleep", {"seconds": 0.4}) for _ in range(4)))
    elapsed = time.monotonic() - started
    assert all(r.outcome is Outcome.OK for r in results)
    assert len({r.payload["pid"] for r in results}) <= 2
    assert elapsed >= 0.8  # two rounds of two
    assert runtime.worker_counts()["sleep"][0] <= 2


async def test_waiting_for_a_worker_counts_against_the_integration_timeout(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"sleep": spec("sleep", "sleep", concurrency=1)})
    await runtime.prewarm(["sleep"])
    busy = asyncio.create_task(call(runtime, "sleep", {"seconds": 1.0}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    queued = await call(runtime, "sleep", {"seconds": 0}, wait_s=0.3)
    assert queued.outcome is Outcome.INTEGRATION_TIMEOUT
    assert time.monotonic() - started < 0.6
    assert (await busy).outcome is Outcome.OK


async def test_function_timeout_kills_the_worker_and_the_next_call_gets_a_new_one(
    runtime: LambdaRuntime,
) -> None:
    runtime.update_functions({"sleep": spec("sleep", "sleep", timeout_s=0.5)})
    first = await call(runtime, "sleep", {"seconds": 0})
    started = time.monotonic()
    timed_out = await call(runtime, "sleep", {"seconds": 5}, request_id="slow-1")
    assert time.monotonic() - started < 1.5
    assert timed_out.outcome is Outcome.FUNCTION_TIMEOUT
    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert timed_out.error["errorMessage"] == "RequestId: slow-1 Error: Task timed out after 0.50 seconds"
    await asyncio.sleep(0.1)
    assert not alive(first.payload["pid"])
    after = await call(runtime, "sleep", {"seconds": 0})
    assert after.outcome is Outcome.OK
    assert after.payload["pid"] != first.payload["pid"]


async def test_integration_timeout_answers_first_and_the_invocation_runs_on(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"sleep": spec("sleep", "sleep", timeout_s=3, concurrency=1)})
    first = await call(runtime, "sleep", {"seconds": 0})
    started = time.monotonic()
    result = await call(runtime, "sleep", {"seconds": 0.8}, wait_s=0.2)
    assert result.outcome is Outcome.INTEGRATION_TIMEOUT
    assert time.monotonic() - started < 0.5
    # The same worker finishes its invocation and serves the next one (it was never killed).
    after = await call(runtime, "sleep", {"seconds": 0})
    assert after.outcome is Outcome.OK
    assert after.payload["pid"] == first.payload["pid"]
    assert time.monotonic() - started >= 0.8


async def test_remaining_time_counts_down_from_the_function_timeout(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"sleep": spec("sleep", "sleep", timeout_s=2)})
    result = await call(runtime, "sleep", {"seconds": 0.3})
    assert 1000 < result.payload["remaining"] <= 1700


@pytest.mark.parametrize(
    ("how", "reason"),
    [("exit", "exit status 3"), ("kill", "signal: killed"), ("sys.exit", "exit status 2")],
)
async def test_a_dying_worker_fails_one_invocation_only(
    runtime: LambdaRuntime, how: str, reason: str
) -> None:
    runtime.update_functions({"die": spec("die", "die")})
    before = await call(runtime, "die", {})
    died = await call(runtime, "die", {"how": how}, request_id="r-9")
    assert died.outcome is Outcome.RUNTIME_EXIT
    assert died.error is not None
    assert died.error["errorType"] == "Runtime.ExitError"
    assert died.error["errorMessage"] == f"RequestId: r-9 Error: Runtime exited with error: {reason}"
    after = await call(runtime, "die", {})
    assert after.outcome is Outcome.OK
    assert after.payload["pid"] != before.payload["pid"]


async def test_handler_exception_keeps_the_worker(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"die": spec("die", "die")})
    before = await call(runtime, "die", {})
    failed = await call(runtime, "die", {"how": "raise"}, request_id="r-1")
    assert failed.outcome is Outcome.HANDLER_ERROR
    assert failed.error is not None
    assert failed.error["errorType"] == "KeyError"
    assert failed.error["errorMessage"] == "'missing'"
    assert failed.error["requestId"] == "r-1"
    assert any("raise KeyError" in line for line in failed.error["stackTrace"])
    assert not any("portway" in line for line in failed.error["stackTrace"])
    after = await call(runtime, "die", {})
    assert after.payload["pid"] == before.payload["pid"]


async def test_unmarshallable_and_oversized_results_are_errors(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"die": spec("die", "die")})
    marshal = await call(runtime, "die", {"how": "marshal"})
    assert marshal.outcome is Outcome.HANDLER_ERROR
    assert marshal.error is not None
    assert marshal.error["errorType"] == "Runtime.MarshalError"
    assert marshal.error["errorMessage"].startswith("Unable to marshal response: ")
    big = await call(runtime, "die", {"how": "big"})
    assert big.error is not None
    assert big.error["errorType"] == "Function.ResponseSizeTooLarge"


async def test_each_function_has_its_own_environment(runtime: LambdaRuntime) -> None:
    names = [
        "ONLY_A",
        "ONLY_B",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "LAMBDA_TASK_ROOT",
        "_HANDLER",
        "TZ",
        "_X_AMZN_TRACE_ID",
    ]
    runtime.update_functions(
        {
            "a": spec("a", "environment", environment={"ONLY_A": "1"}, memory_mb=512, region="eu-west-3"),
            "b": spec("b", "environment", environment={"ONLY_B": "2"}),
        }
    )
    a = await runtime.invoke(
        "a", {"names": names}, request_id="r-a", integration_timeout_s=10, trace_id="Root=1-x"
    )
    b = await call(runtime, "b", {"names": names})
    assert a.payload["env"] == {
        "ONLY_A": "1",
        "ONLY_B": None,
        "AWS_LAMBDA_FUNCTION_NAME": "a",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "LAMBDA_TASK_ROOT": str(HERE),
        "_HANDLER": "handlers.environment",
        "TZ": ":UTC",
        "_X_AMZN_TRACE_ID": "Root=1-x",
    }
    assert b.payload["env"]["ONLY_A"] is None
    assert b.payload["env"]["ONLY_B"] == "2"
    assert a.payload["cwd"] == str(HERE)
    assert a.payload["path0"] == str(HERE)
    context = a.payload["context"]
    assert context == {
        "function_name": "a",
        "function_version": "$LATEST",
        "memory_limit_in_mb": "512",
        "invoked_function_arn": "arn:aws:lambda:eu-west-3:123456789012:function:a",
        "log_group_name": "/aws/lambda/a",
        "log_stream_name": context["log_stream_name"],
        "aws_request_id": "r-a",
    }
    assert "/[$LATEST]" in context["log_stream_name"]


async def test_output_reaches_the_log_tagged_with_function_and_request(
    runtime: LambdaRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="portway.lambda")
    runtime.update_functions({"talk": spec("talk", "talk")})
    result = await call(runtime, "talk", {"n": 7}, request_id="req-42")
    assert result.payload == "ok"
    expected = ["printed line 7", "no newline at the end", "to stderr"]
    for _ in range(100):
        lines = [r.getMessage() for r in caplog.records if r.name == "portway.lambda"]
        if len(lines) >= 4:
            break
        await asyncio.sleep(0.02)
    for text in expected:
        assert f"[talk] [req-42] {text}" in lines
    logged = [line for line in lines if "logged warning" in line]
    assert len(logged) == 1
    assert logged[0].startswith("[talk] [req-42] [WARNING]\t")
    assert logged[0].endswith("\treq-42\tlogged warning")


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


@pytest.mark.parametrize(
    ("source", "error_type", "message"),
    [
        (
            "import does_not_exist_anywhere\n",
            "Runtime.ImportModuleError",
            "Unable to import module 'broken': No module named 'does_not_exist_anywhere'",
        ),
        (
            "def handler(event, context)\n    return 1\n",
            "Runtime.UserCodeSyntaxError",
            "Syntax error in module 'broken'",
        ),
        ("raise RuntimeError('configuration missing')\n", "RuntimeError", "configuration missing"),
        (
            "def other(event, context):\n    return 1\n",
            "Runtime.HandlerNotFound",
            "Handler 'handler' missing on module",
        ),
    ],
)
async def test_init_errors_are_reported_as_lambda_reports_them(
    runtime: LambdaRuntime, tmp_path: Path, source: str, error_type: str, message: str
) -> None:
    _write(tmp_path, "broken.py", source)
    runtime.update_functions({"broken": FunctionSpec("broken", tmp_path, "broken", "handler")})
    failures = await runtime.prewarm(["broken"])
    assert failures["broken"].startswith(f"{error_type}: {message}")
    result = await call(runtime, "broken")
    assert result.outcome is Outcome.INIT_ERROR
    assert result.error is not None
    assert result.error["errorType"] == error_type


async def test_reload_picks_up_new_code_in_new_workers(runtime: LambdaRuntime, tmp_path: Path) -> None:
    _write(tmp_path, "app.py", "def handler(event, context):\n    return 'v1'\n")
    runtime.update_functions({"app": FunctionSpec("app", tmp_path, "app", "handler")})
    assert (await call(runtime, "app")).payload == "v1"
    _write(tmp_path, "app.py", "def handler(event, context):\n    return 'v2'\n")
    assert (await call(runtime, "app")).payload == "v1"  # warm: the module was imported once
    assert await runtime.reload(["app"]) == {}
    assert (await call(runtime, "app")).payload == "v2"


async def test_changed_settings_start_fresh_workers_and_unchanged_stay_warm(runtime: LambdaRuntime) -> None:
    runtime.update_functions({"count": spec("count", "count"), "other": spec("other", "count")})
    await call(runtime, "count")
    other = await call(runtime, "other")
    runtime.update_functions(
        {"count": spec("count", "count", environment={"X": "1"}), "other": spec("other", "count")}
    )
    assert (await call(runtime, "count")).payload["count"] == 1
    assert (await call(runtime, "other")).payload == {"count": 2, "pid": other.payload["pid"]}


async def test_unknown_function(runtime: LambdaRuntime) -> None:
    result = await call(runtime, "nope")
    assert result.outcome is Outcome.INIT_ERROR
    assert result.error is not None
    assert result.error["errorType"] == "ResourceNotFoundException"


async def test_close_stops_every_worker_and_what_they_started(tmp_path: Path) -> None:
    rt = LambdaRuntime({"count": spec("count", "count"), "spawn": spec("spawn", "spawn_child", timeout_s=30)})
    pid = (await call(rt, "count")).payload["pid"]
    pidfile = tmp_path / "child.pid"
    task = asyncio.create_task(call(rt, "spawn", {"pidfile": str(pidfile)}, wait_s=29))
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text():
            break
        await asyncio.sleep(0.02)
    child = int(pidfile.read_text())
    assert alive(child)
    await rt.close()
    result = await task
    assert result.outcome is Outcome.RUNTIME_EXIT
    assert not alive(pid)
    for _ in range(50):
        if not alive(child):
            break
        await asyncio.sleep(0.02)
    assert not alive(child)


async def test_function_timeout_also_kills_what_the_handler_started(
    runtime: LambdaRuntime, tmp_path: Path
) -> None:
    runtime.update_functions({"spawn": spec("spawn", "spawn_child", timeout_s=1)})
    pidfile = tmp_path / "child.pid"
    result = await call(runtime, "spawn", {"pidfile": str(pidfile)})
    assert result.outcome is Outcome.FUNCTION_TIMEOUT
    child = int(pidfile.read_text())
    for _ in range(50):
        if not alive(child):
            break
        await asyncio.sleep(0.02)
    assert not alive(child)


async def test_a_worker_that_died_while_idle_is_replaced_without_failing_a_call(
    runtime: LambdaRuntime,
) -> None:
    runtime.update_functions({"count": spec("count", "count")})
    first = await call(runtime, "count")
    os.kill(first.payload["pid"], 9)
    for _ in range(100):
        if not alive(first.payload["pid"]):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the gateway see the socket close
    after = await call(runtime, "count")
    assert after.outcome is Outcome.OK
    assert after.payload["pid"] != first.payload["pid"]
    assert after.init_ms is not None  # a new execution environment


async def test_the_worker_builds_payload_2_events_and_maps_their_answers(runtime: LambdaRuntime) -> None:
    from portway.integrations.adapters import HTTP_V2
    from tests.integrations.test_events_v2 import facts

    runtime.update_functions({"http": spec("http", "http_api")})

    async def answer(query: str) -> Any:
        result = await runtime.invoke(
            "http", facts(query=query), request_id="r", integration_timeout_s=10, adapter=HTTP_V2
        )
        assert result.outcome is Outcome.OK
        return result.payload

    full = await answer("")
    assert full == {
        "status": 201,
        "headers": [["set-cookie", "a=1"], ["set-cookie", "b=2"]],
        "body": "/dev/my/path here",
        "decode": False,
    }
    inferred = await answer("kind=inferred")
    assert inferred["status"] == 200
    assert inferred["headers"] == [["content-type", "application/json"]]
    assert json.loads(inferred["body"]) == {
        "routeKey": "POST /my/{item}",
        "cookies": ["cookie1=a", "cookie2=b"],
    }
    assert "malformed" in await answer("kind=malformed")
