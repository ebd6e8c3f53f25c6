"""What traffic control costs, and how exactly it holds: throttling, caching and API keys under wrk.

Part 1, THROUGHPUT: requests/s of one ``portway serve`` process (bench/apps/traffic_api.yaml, one stage per
feature, settings in bench/apps/traffic_functions.yaml), with wrk as a bounded load from a second process on
127.0.0.1, of

  (p) GET /plain/mock: the plain Mock route, ``--account-throttle off`` and no stage settings (its pipeline is
      compress → integration: checked in the server's own route table);
  (t) GET /throttled/mock: the same route with a method throttle of 1e9/s (burst 1e9) and the account
      throttle at 1e9/1e9: every request takes two tokens, none is refused; memory store;
  (r) the same over Redis (``--state redis://127.0.0.1:6379/0``);
  (c) GET /cached/hello: a cache hit (the Lambda route, cached for an hour: a miss would show as Lambda
      workers' CPU), memory store, ``--account-throttle off``;
  (k) GET /keyed/keyed: a Mock route requiring an API key, a usage plan (1e9/s, burst 1e9, quota 1e9/DAY)
      and a key created with ``portway usage-plans create`` / ``portway keys create`` in a temporary SQLite
      file (``--keys-state``); account throttle 1e9/1e9 (without a throttle stage the plan's throttle would
      not apply); wrk sends ``x-api-key``;

and prints t/p, r/p, c/p and k/p against the targets. run.py's method: servers pinned to one CPU and wrk
to another, Redis beside wrk (``--no-pin-redis``: where it runs), a warm-up before every measurement,
rounds in a rotating order with fresh server processes every round, medians, per-round spread, CPU per
request from /proc.

Part 2, ACCURACY: GET /limited/mock has a method throttle (traffic_functions.yaml: 500/s, burst 50) over
Redis. wrk asks for far more for D seconds, first against one gateway node, then against two nodes (two
``portway serve`` processes, same definition, same Redis) loaded at the same time by two wrk processes. The
requests admitted (200s), summed over the nodes, are compared with rate x duration + burst. The method's
bucket is deleted from Redis before each run.

    .venv/bin/python bench/traffic.py              # 3 rounds of 5 targets (1 s + 5 s), 2 runs of 10 s
    .venv/bin/python bench/traffic.py --only accuracy --accuracy-duration 20

The exit code is 0 whether or not the targets are met (it is a measurement); 2 when it could not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from run import (
    BENCH,
    CLK_TCK,
    EXPECTED_BODY,
    HOST,
    ROOT,
    WRK_GRACE_S,
    WRK_REPORT,
    WRK_SCRIPT,
    BenchError,
    Load,
    Measurement,
    Pinning,
    Server,
    _cpu_seconds,
    _delta,
    _positive,
    add_cpu_options,
    add_measurement_options,
    by_cpu_line,
    by_target,
    check_measurement_options,
    choose_pinning,
    cost_ratios,
    ensure_wrk,
    figure_cells,
    figures,
    free_port,
    http_get,
    machine_info,
    measure,
    measure_rounds,
    measurement_config,
    measurement_line,
    median,
    others_cell,
    per_request,
    pinning_json,
    ratio_line,
    route_pipeline,
    rps_ratios,
    run_guarded,
    table,
    warn_of_failures,
    warn_of_noise,
    write_results,
    wrk_errors,
    wrk_result,
)

from portway.config.functions import load_functions
from portway.integrations.events import stable_id

DEFINITION = BENCH / "apps" / "traffic_api.yaml"
FUNCTIONS = BENCH / "apps" / "traffic_functions.yaml"
API_TITLE = "Portway traffic benchmark"  # traffic_api.yaml's info.title: the usage plan names it
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
NAMESPACE = "portway"  # the gateway's Redis namespace (every key starts with {portway}:)
HUGE = 1_000_000_000  # limits no run comes near: every request takes its tokens, none is refused
HUGE_LIMIT = f"{HUGE}/{HUGE}"
KEY_QUOTA = f"{HUGE}/DAY"
ACCURACY_STAGE = "limited"
ACCURACY_TOLERANCE = 0.05
# None: no target, reported only.
TARGETS: dict[str, float | None] = {"t/p": 0.85, "r/p": 0.5, "c/p": 0.9, "k/p": None}

# For the accuracy runs: wrk also counts the answers by status (per thread, summed in done()).
STATUS_SCRIPT = (
    WRK_REPORT
    + r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  statuses = {}
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local mine = thread:get("statuses")
    if mine then
      for status, n in pairs(mine) do
        counts[status] = (counts[status] or 0) + n
      end
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  portway_report(summary, '"statuses":{%s}', table.concat(parts, ","))
end
"""
)


@dataclass(frozen=True, slots=True)
class TrafficTarget:
    key: str
    label: str
    stage: str
    route: str  # the resource, served at /STAGE/route
    redis: bool  # --state redis://… (else memory)
    account_throttle: str  # --account-throttle
    pipeline: str  # the route's stages, as the server's route table must show them
    keyed: bool = False  # wrk sends the API key

    @property
    def path(self) -> str:
        return f"/{self.stage}{self.route}"


TARGET_LIST = (
    TrafficTarget("p", "plain Mock route", "plain", "/mock", False, "off", "compress → integration"),
    TrafficTarget(
        "t", "throttled, memory", "throttled", "/mock", False, HUGE_LIMIT, "throttle → compress → integration"
    ),
    TrafficTarget(
        "r", "throttled, Redis", "throttled", "/mock", True, HUGE_LIMIT, "throttle → compress → integration"
    ),
    TrafficTarget("c", "cache hit", "cached", "/hello", False, "off", "compress → cache → integration"),
    TrafficTarget(
        "k",
        "API key + usage plan",
        "keyed",
        "/keyed",
        False,
        HUGE_LIMIT,
        "api_key → throttle → compress → integration",
        keyed=True,
    ),
)


@dataclass(slots=True)
class TrafficMeasurement(Measurement):
    redis_cpu_us_per_request: float | None = None
    redis_scripts: int | None = None  # script calls (EVALSHA) Redis ran during the measurement: batching


@dataclass(slots=True)
class TrafficSummary:
    target: str
    label: str
    pipeline: str
    rps: float
    rps_rounds: list[float]
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float | None
    workers_cpu_us_per_request: float | None
    redis_cpu_us_per_request: float | None
    redis_requests_per_script: float | None  # how many take() calls one Redis script call answered
    others_cpu: float | None
    errors: int


@dataclass(slots=True)
class TrafficRatio:
    name: str
    value: float
    per_round: list[float]
    target: float | None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "(no target)"
        return "PASS" if self.value >= self.target else "FAIL"


@dataclass(slots=True)
class NodeRun:
    port: int
    server_cpus: list[int] | None
    wrk_cpus: list[int] | None
    requests: int
    duration_s: float
    started_s: float  # wrk's start, from the first wrk's start
    statuses: dict[str, int]
    errors: dict[str, int]

    @property
    def admitted(self) -> int:
        """Answers of 2xx: wrk's requests minus its non-2xx/3xx (the status counts agree: checked)."""
        return self.requests - self.errors.get("non-2xx/3xx", 0)


@dataclass(slots=True)
class AccuracyRun:
    nodes: int
    rate: float
    burst: int
    window_s: float  # from the first wrk's start to the last one's end
    expected: float
    admitted: int
    ratio: float
    within: bool
    pinning: str
    node_runs: list[NodeRun] = field(default_factory=list)


# --- Redis -------------------------------------------------------------------------------------------


class RedisSide:
    """The Redis the gateways share: its process (CPU, affinity) and the accuracy bucket's key."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        try:
            info = self.client.info("server")
        except redis.RedisError as exc:
            raise BenchError(
                f"Redis at {url} cannot be reached ({exc}); start one with "
                '`redis-server --daemonize yes --port 6379 --save "" --appendonly no`'
            ) from None
        self.pid: int = int(info["process_id"])
        self.version = str(info.get("redis_version", "?"))
        self._saved: dict[int, set[int]] = {}
        if not Path(f"/proc/{self.pid}").exists():
            self.pid = 0  # not on this machine's /proc (a container?): no CPU figures, no pinning

    def cpu_seconds(self) -> float | None:
        return _cpu_seconds(self.pid) if self.pid else None

    def _threads(self) -> list[int]:
        try:
            return [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]
        except OSError:
            return []

    def affinity(self) -> list[int] | None:
        try:
            return sorted(os.sched_getaffinity(self.pid)) if self.pid else None
        except OSError:
            return None

    def pin(self, cpus: set[int] | None) -> str:
        """Move every Redis thread to ``cpus`` (put back by :meth:`unpin`); what was done, for the output."""
        if cpus is None or not self.pid:
            return f"Redis (pid {self.pid or '?'}) where it is, CPUs {self.affinity()}"
        for tid in self._threads():
            with contextlib.suppress(OSError):
                saved = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, cpus)
                self._saved[tid] = saved
        if not self._saved:
            return f"Redis (pid {self.pid}) could not be pinned: left on CPUs {self.affinity()}"
        return f"Redis (pid {self.pid}) on CPU {','.join(map(str, sorted(cpus)))} during part 1"

    def unpin(self) -> None:
        for tid, cpus in self._saved.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)
        self._saved.clear()

    def script_calls(self) -> int:
        """Script calls (EVAL, EVALSHA) Redis has run since it started, from INFO commandstats."""
        stats = self.client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("eval", "evalsha"))

    def delete(self, key: str) -> int:
        return int(self.client.delete(key))

    def exists(self, key: str) -> bool:
        return bool(self.client.exists(key))

    def close(self) -> None:
        self.unpin()
        self.client.close()


def bucket_key(stage: str, method: str, resource: str) -> str:
    """The Redis key of a method throttle's bucket (config/compile.py's _route_stages, state/redis.py)."""
    api_id = stable_id(f"{API_TITLE}|{DEFINITION.resolve()}")  # compile_gateway's ApiInfo.api_id
    return f"{{{NAMESPACE}}}:bucket:throttle:{api_id}:{stage}:{method} {resource}"


# --- servers -----------------------------------------------------------------------------------------


def gateway_argv(port: int, stage: str, state: str, account_throttle: str, keys_state: str) -> list[str]:
    return [
        *(sys.executable, "-m", "portway", "serve", str(DEFINITION), "--functions", str(FUNCTIONS)),
        *("--stage", stage, "--state", state, "--account-throttle", account_throttle),
        *("--keys-state", keys_state, "--host", HOST, "--port", str(port), "--log-level", "warning"),
    ]


def check_target(server: Server, target: TrafficTarget, key_value: str | None) -> None:
    """200 with the known body, the expected pipeline; a keyed route refuses a request without its key."""
    pipeline = route_pipeline(server, target.route)
    if pipeline != target.pipeline:
        raise BenchError(f"{server.name}: GET {target.route} runs {pipeline!r}, expected {target.pipeline!r}")
    headers = {"x-api-key": key_value} if target.keyed and key_value else None
    # The cache's first request is a miss (the Lambda answers); the second must be a hit with the same answer.
    for _ in range(2 if target.key == "c" else 1):
        server.expect_hello(target.path, headers)
    if target.keyed:
        status, body = http_get(server.port, target.path)
        if status != 403:
            raise BenchError(f"{server.name}: GET {target.path} without a key answered {status} {body!r}")


def portway_cli(*args: str) -> Any:
    """Run ``portway ARGS --json`` (the usage-plans / keys commands) and parse its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "portway", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise BenchError(f"portway {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


def create_key(keys_state: str) -> tuple[str, str, str]:
    """A usage plan no run comes near, covering the keyed stage, and a key in it: (plan, key, value)."""
    plan = portway_cli(
        *("usage-plans", "create", "--name", "traffic-bench", "--rate", str(HUGE), "--burst", str(HUGE)),
        *("--quota", KEY_QUOTA, "--stage", f"{API_TITLE}:keyed", "--state", keys_state),
    )
    key = portway_cli(
        *("keys", "create", "--name", "traffic-bench", "--plan", str(plan["id"]), "--state", keys_state)
    )
    return str(plan["id"]), str(key["id"]), str(key["value"])


# --- part 1: throughput ------------------------------------------------------------------------------


class RedisMeter:
    """run.py's Beside for a measurement over Redis: the Redis server's CPU (counted apart, not as noise)
    and the script calls it ran, read around the measured run."""

    def __init__(self, side: RedisSide) -> None:
        self.side = side
        self.cpu: float | None = None  # Redis's CPU seconds during the run
        self.scripts = 0  # the script calls it ran meanwhile
        self._before: tuple[int, float | None] = (0, None)

    def start(self) -> None:
        scripts = self.side.script_calls()  # first: the INFO commands' own CPU stays out of the figure
        self._before = (scripts, self.side.cpu_seconds())

    def stop(self) -> float | None:
        scripts, cpu = self._before
        self.cpu = _delta(self.side.cpu_seconds(), cpu)
        self.scripts = self.side.script_calls() - scripts
        return self.cpu


def measure_target(
    load: Load,
    server: Server,
    target: TrafficTarget,
    round_no: int,
    args: argparse.Namespace,
    key_value: str,
    redis_side: RedisSide | None,
) -> TrafficMeasurement:
    """run.py's measure(), with the API key where the route requires one and Redis's share where it is
    the route's store."""
    headers = [f"x-api-key: {key_value}"] if target.keyed else []
    meter = RedisMeter(redis_side) if redis_side is not None else None
    m = measure(TrafficMeasurement, load, server, target, round_no, args, headers, meter)
    if meter is not None:
        m.redis_cpu_us_per_request = per_request(meter.cpu, m.requests)
        m.redis_scripts = meter.scripts
    return m


def _line(m: TrafficMeasurement) -> str:
    redis_cpu = (
        f" + Redis {m.redis_cpu_us_per_request:.0f} µs" if m.redis_cpu_us_per_request is not None else ""
    )
    if m.redis_scripts:
        redis_cpu += f" ({m.requests / m.redis_scripts:.1f} requests per EVALSHA)"
    return measurement_line(m, redis_cpu)


def summarise(
    runs: Sequence[TrafficMeasurement], pipelines: dict[str, str]
) -> tuple[dict[str, TrafficSummary], list[TrafficRatio]]:
    summaries = {
        target.key: TrafficSummary(
            target=target.key,
            label=target.label,
            pipeline=pipelines.get(target.key, target.pipeline),
            redis_cpu_us_per_request=median(m.redis_cpu_us_per_request for m in mine),
            redis_requests_per_script=median(
                m.requests / m.redis_scripts if m.redis_scripts else None for m in mine
            ),
            **figures(mine),
        )
        for target, mine in by_target(TARGET_LIST, runs)
    }
    ratios = [
        TrafficRatio(name, value, per_round, TARGETS[name])
        for name, value, per_round in rps_ratios(summaries, "p", TARGETS)
    ]
    return summaries, ratios


def cpu_ratios(summaries: dict[str, TrafficSummary]) -> dict[str, float]:
    """x/p as the gateway's CPU per request gives it (the Lambda workers and Redis run elsewhere)."""

    def cost(key: str, with_redis: bool = False) -> float | None:
        summary = summaries.get(key)
        if summary is None or not summary.server_cpu_us_per_request:
            return None
        own = summary.server_cpu_us_per_request - (summary.workers_cpu_us_per_request or 0.0)
        return own + ((summary.redis_cpu_us_per_request or 0.0) if with_redis else 0.0)

    ratios = cost_ratios(cost, "p", TARGETS)
    base = cost("p")
    with_redis = cost("r", with_redis=True)
    if base and with_redis and summaries["r"].redis_cpu_us_per_request is not None:
        ratios["r/p incl. Redis"] = base / with_redis
    return ratios


def throughput_report(
    summaries: dict[str, TrafficSummary], ratios: Sequence[TrafficRatio], by_cpu: dict[str, float]
) -> str:
    header = (
        "",
        "target",
        "pipeline",
        "req/s",
        "per round",
        "p50",
        "p99",
        "server CPU/req",
        "Redis CPU/req",
        "others",
        "errors",
    )
    rows = [
        (
            s.target,
            s.label,
            s.pipeline,
            *figure_cells(s),
            f"{s.redis_cpu_us_per_request:.0f} µs" if s.redis_cpu_us_per_request is not None else "-",
            others_cell(s.others_cpu),
            str(s.errors),
        )
        for s in summaries.values()
    ]
    lines = table([header, *rows], left=3)
    for s in summaries.values():
        if s.redis_requests_per_script is not None:
            lines.append(
                f"{s.target}: Redis ran one take script per {s.redis_requests_per_script:.1f} requests "
                "(the store batches concurrent requests)"
            )
    lines.append("")
    for r in ratios:
        lines.append(ratio_line(r.name, r.value, r.per_round, r.target, r.verdict))
    if by_cpu:
        lines.append(by_cpu_line("by the gateway's CPU per request", by_cpu))
    return "\n".join(lines)


def throughput(
    args: argparse.Namespace,
    wrk: str,
    pinning: Pinning,
    tmp: Path,
    keys_state: str,
    key_value: str,
    redis_side: RedisSide,
) -> dict[str, Any]:
    script = tmp / "report.lua"
    script.write_text(WRK_SCRIPT)
    load = Load(wrk, script, args.threads, args.connections, pinning.load_cpus)
    redis_note = redis_side.pin(None if args.no_pin or args.no_pin_redis else pinning.load_cpus)
    print(f"part 1, throughput: {pinning.note}; {redis_note}", flush=True)
    procs: dict[str, Server] = {}
    for target in TARGET_LIST:
        port = free_port()
        state = args.redis if target.redis else "memory"
        procs[target.key] = Server(
            f"gateway-{target.key}",
            gateway_argv(port, target.stage, state, target.account_throttle, keys_state),
            port,
            tmp / f"gateway-{target.key}.log",
            pinning.server_cpus,
            pinning.worker_cpus,
        )
    pipelines: dict[str, str] = {}

    def ready(round_no: int) -> None:
        for target in TARGET_LIST:
            server = procs[target.key]
            server.wait_ready([])
            check_target(server, target, key_value)
            pipelines[target.key] = route_pipeline(server, target.route)
        print(f"round {round_no}: servers started, every route answered 200 {EXPECTED_BODY!r}", flush=True)

    def take(target: TrafficTarget, round_no: int) -> TrafficMeasurement:
        side = redis_side if target.redis else None
        return measure_target(load, procs[target.key], target, round_no, args, key_value, side)

    try:
        runs, discarded = measure_rounds(args, procs.values(), TARGET_LIST, ready, take, _line)
    finally:
        redis_side.unpin()
    summaries, ratios = summarise(runs, pipelines)
    by_cpu = cpu_ratios(summaries)
    print()
    print(throughput_report(summaries, ratios, by_cpu))
    warn_of_failures(summaries.values())
    cached = summaries.get("c")
    if cached is not None and (cached.workers_cpu_us_per_request or 0.0) >= 1:
        print(
            "\nwarning: the Lambda workers worked during the cache hits' measurement "
            f"({cached.workers_cpu_us_per_request:.0f} µs per request): some requests missed the cache"
        )
    warn_of_noise(runs, ": rerun on a quiet machine.")
    return {
        "pinning": {**pinning_json(pinning), "redis": redis_note},
        "targets": {
            t.key: {
                "label": t.label,
                "path": t.path,
                "state": args.redis if t.redis else "memory",
                "account_throttle": t.account_throttle,
                "pipeline": pipelines.get(t.key),
            }
            for t in TARGET_LIST
        },
        "summary": {key: asdict(s) for key, s in summaries.items()},
        "ratios": {r.name: {**asdict(r), "verdict": r.verdict} for r in ratios},
        "cpu_cost_ratios": by_cpu,
        "runs": [asdict(m) for m in runs],
        "discarded_runs": [asdict(m) for m in discarded],
    }


# --- part 2: accuracy --------------------------------------------------------------------------------


def accuracy_limits() -> tuple[float, int]:
    """The accuracy route's method throttle, as traffic_functions.yaml sets it."""
    settings = load_functions(FUNCTIONS).stage_settings.get(ACCURACY_STAGE)
    setting = settings.for_method("GET", "/mock") if settings is not None else None
    if setting is None or setting.throttling_rate_limit is None or setting.throttling_burst_limit is None:
        raise BenchError(f"{FUNCTIONS}: stages.{ACCURACY_STAGE} sets no throttle on /mock/GET")
    return setting.throttling_rate_limit, setting.throttling_burst_limit


def node_layout(nodes: int, args: argparse.Namespace) -> tuple[list[tuple[set[int], set[int]] | None], str]:
    """(server CPUs, wrk CPUs) per node, and how, in words."""
    if args.no_pin or not hasattr(os, "sched_setaffinity"):
        return [None] * nodes, "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [None] * nodes, f"not pinned: only CPU {cpus}"
    if nodes == 1:
        return [({cpus[0]}, {cpus[1]})], f"the node on CPU {cpus[0]}, wrk on CPU {cpus[1]}"
    if len(cpus) >= 2 * nodes:
        layout = [({cpus[i]}, {cpus[nodes + i]}) for i in range(nodes)]
        where = "; ".join(
            f"node {i + 1} on CPU {cpus[i]}, its wrk on CPU {cpus[nodes + i]}" for i in range(nodes)
        )
        return [(s, w) for s, w in layout], where
    # Fewer CPUs than processes: one node per CPU, each node's wrk on the next node's CPU (never its own).
    layout = [({cpus[i % len(cpus)]}, {cpus[(i + 1) % len(cpus)]}) for i in range(nodes)]
    where = "; ".join(
        f"node {i + 1} on CPU {cpus[i % len(cpus)]}, its wrk on CPU {cpus[(i + 1) % len(cpus)]}"
        for i in range(nodes)
    )
    return [(s, w) for s, w in layout], where + " (each CPU runs one node and the other node's wrk)"


def accuracy_run(
    nodes: int,
    args: argparse.Namespace,
    wrk: str,
    tmp: Path,
    keys_state: str,
    redis_side: RedisSide,
    rate: float,
    burst: int,
) -> AccuracyRun:
    script = tmp / "status.lua"
    script.write_text(STATUS_SCRIPT)
    layout, where = node_layout(nodes, args)
    servers: list[Server] = []
    loads: list[Load] = []
    for i, cpus in enumerate(layout):
        port = free_port()
        servers.append(
            Server(
                f"node-{i + 1}",
                gateway_argv(port, ACCURACY_STAGE, args.redis, "off", keys_state),
                port,
                tmp / f"node{nodes}-{i + 1}.log",
                cpus[0] if cpus else None,
            )
        )
        loads.append(Load(wrk, script, args.threads, args.connections, cpus[1] if cpus else None))
    key = bucket_key(ACCURACY_STAGE, "GET", "/mock")
    path = f"/{ACCURACY_STAGE}/mock"
    procs: list[tuple[subprocess.Popen[str], float]] = []
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready([])
            pipeline = route_pipeline(server, "/mock")
            if pipeline != "throttle → compress → integration":
                raise BenchError(f"{server.name}: GET /mock runs {pipeline!r}, expected a throttle first")
            status, body = http_get(server.port, path)
            if status != 200 or body != EXPECTED_BODY:
                raise BenchError(f"{server.name}: GET {path} answered {status} {body[:200]!r}")
        if args.warmup > 0:  # every node, at once: connections to Redis made, code paths warm
            warm: list[subprocess.Popen[bytes]] = [
                subprocess.Popen(
                    load.argv(server.port, path, args.warmup),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=load.pin,
                )
                for server, load in zip(servers, loads, strict=True)
            ]
            for warming in warm:
                try:
                    warming.wait(args.warmup + WRK_GRACE_S)
                except subprocess.TimeoutExpired:
                    warming.kill()
                    warming.wait()
                    raise BenchError("wrk's warm-up did not finish in time") from None
        deleted = redis_side.delete(key)  # a fresh, full bucket for this run
        if redis_side.exists(key):
            raise BenchError(f"Redis key {key!r} still there after DEL")
        origin = time.monotonic()
        for server, load in zip(servers, loads, strict=True):
            process = subprocess.Popen(
                load.argv(server.port, path, args.accuracy_duration),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                preexec_fn=load.pin,
            )
            procs.append((process, time.monotonic() - origin))
        node_runs: list[NodeRun] = []
        deadline = time.monotonic() + args.accuracy_duration + WRK_GRACE_S
        for (process, started), server, load in zip(procs, servers, loads, strict=True):
            try:
                out, err = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"wrk did not finish within {args.accuracy_duration + WRK_GRACE_S:.0f}s"
                ) from None
            raw = wrk_result(process.returncode, out, err)
            run = NodeRun(
                port=server.port,
                server_cpus=sorted(server.cpus) if server.cpus else None,
                wrk_cpus=sorted(load.cpus) if load.cpus else None,
                requests=int(raw["requests"]),
                duration_s=raw["duration_us"] / 1e6,
                started_s=started,
                statuses={str(k): int(v) for k, v in raw["statuses"].items()},
                errors=wrk_errors(raw),
            )
            twos = sum(n for status, n in run.statuses.items() if status.startswith("2"))
            if twos != run.admitted:
                print(
                    f"warning: {server.name}: {twos} 2xx counted by status, {run.admitted} by wrk's errors",
                    file=sys.stderr,
                )
            node_runs.append(run)
        if not redis_side.exists(key):
            raise BenchError(
                f"the bucket's Redis key {key!r} is not there after the run: bench/traffic.py's key naming "
                "no longer matches the gateway's, so the bucket was not cleared"
            )
    finally:
        for process, _ in procs:
            if process.poll() is None:
                process.kill()
                process.wait()
        for server in servers:
            server.stop()
    window = max(r.started_s + r.duration_s for r in node_runs) - min(r.started_s for r in node_runs)
    expected = rate * window + burst
    admitted = sum(r.admitted for r in node_runs)
    ratio = admitted / expected if expected else 0.0
    result = AccuracyRun(
        nodes=nodes,
        rate=rate,
        burst=burst,
        window_s=window,
        expected=expected,
        admitted=admitted,
        ratio=ratio,
        within=abs(ratio - 1) <= ACCURACY_TOLERANCE,
        pinning=where,
        node_runs=node_runs,
    )
    print(f"  {nodes} node(s): {where}; bucket key cleared ({deleted} deleted) before the run")
    for i, r in enumerate(node_runs, 1):
        others = {s: n for s, n in sorted(r.statuses.items()) if s not in ("200", "429")}
        print(
            f"    node {i}: {r.requests:,} requests in {r.duration_s:.2f} s "
            f"({r.requests / r.duration_s:,.0f}/s), "
            f"200: {r.statuses.get('200', 0):,}  429: {r.statuses.get('429', 0):,}"
            + (f"  other statuses: {others}" if others else "")
            + (f"  ERRORS {r.errors}" if set(r.errors) - {"non-2xx/3xx"} else "")
        )
    return result


def accuracy_report(runs: Sequence[AccuracyRun]) -> str:
    lines = []
    for run in runs:
        verdict = "within 5%" if run.within else "OFF BY MORE THAN 5%"
        lines.append(
            f"{run.nodes} node(s): admitted {run.admitted:,} in {run.window_s:.2f} s = "
            f"{run.admitted / run.window_s:,.1f}/s; expected {run.rate:g}/s * {run.window_s:.2f} s "
            f"+ {run.burst} = "
            f"{run.expected:,.0f}; achieved/expected = {run.ratio:.3f}   {verdict}"
        )
    return "\n".join(lines)


def accuracy(
    args: argparse.Namespace, wrk: str, tmp: Path, keys_state: str, redis_side: RedisSide
) -> dict[str, Any]:
    rate, burst = accuracy_limits()
    print(
        f"\npart 2, accuracy: GET /{ACCURACY_STAGE}/mock throttled at {rate:g}/s, burst {burst}, over "
        f"{args.redis} (Redis where it runs, CPUs {redis_side.affinity()}); "
        f"wrk -t{args.threads} -c{args.connections} -d{args.accuracy_duration}s per node",
        flush=True,
    )
    runs: list[AccuracyRun] = []
    for _ in range(args.accuracy_repeats):
        for nodes in (1, 2):
            runs.append(accuracy_run(nodes, args, wrk, tmp, keys_state, redis_side, rate, burst))
    print()
    print(accuracy_report(runs))
    return {
        "stage": ACCURACY_STAGE,
        "rate": rate,
        "burst": burst,
        "duration_s": args.accuracy_duration,
        "tolerance": ACCURACY_TOLERANCE,
        "bucket_key": bucket_key(ACCURACY_STAGE, "GET", "/mock"),
        "runs": [asdict(r) for r in runs],
    }


# --- main --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What throttling, caching and API keys cost a Mock route, and how exactly a throttle "
        "holds over Redis with one and two gateway nodes.",
    )
    parser.add_argument("--only", choices=["throughput", "accuracy"], default=None, help="run one part only")
    add_measurement_options(parser, "p, t, r, c, k")
    parser.add_argument(
        "--accuracy-duration",
        type=_positive(int),
        default=10,
        help="whole seconds of load per accuracy run (default: %(default)s)",
    )
    parser.add_argument(
        "--accuracy-repeats",
        type=_positive(int),
        default=1,
        help="accuracy runs of 1 and 2 nodes (default: %(default)s)",
    )
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="the Redis URL (default: %(default)s)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers, wrk or Redis to CPUs")
    parser.add_argument(
        "--no-pin-redis",
        action="store_true",
        help="leave Redis where it runs in part 1 (default: beside wrk, off the gateway's CPU)",
    )
    add_cpu_options(
        parser, "part 1's server CPUs (default: the first one)", "part 1's wrk CPUs (default: the second one)"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: bench/results/…)")
    parser.set_defaults(worker_cpus=None, workers_with_server=False)  # for run.choose_pinning
    args = parser.parse_args(argv)
    check_measurement_options(parser, args)
    if not args.redis.startswith(("redis://", "unix://")):
        parser.error("--redis must be a redis:// or unix:// URL")
    return args


@contextlib.contextmanager
def redis_connection(url: str) -> Iterator[RedisSide]:
    side = RedisSide(url)
    try:
        yield side
    finally:
        side.close()


def run(args: argparse.Namespace) -> int:
    wrk = ensure_wrk()
    pinning = choose_pinning(args)
    started = datetime.now(UTC)
    parts = [args.only] if args.only else ["throughput", "accuracy"]
    estimate = (
        args.rounds * len(TARGET_LIST) * (args.duration + args.warmup) if "throughput" in parts else 0
    ) + (args.accuracy_repeats * 2 * (args.accuracy_duration + args.warmup) if "accuracy" in parts else 0)
    print(
        f"Portway traffic benchmark: wrk -t{args.threads} -c{args.connections}, {', '.join(parts)}; "
        f"~{estimate:.0f}s of load (plus server start-ups)",
        flush=True,
    )
    document: dict[str, Any] = {"started": started.isoformat()}
    with tempfile.TemporaryDirectory(prefix="portway-traffic-") as tmp, redis_connection(args.redis) as side:
        tmp_dir = Path(tmp)
        keys_state = f"sqlite:///{tmp_dir / 'keys.db'}"
        plan_id, key_id, key_value = create_key(keys_state)
        print(
            f"usage plan {plan_id} (rate {HUGE:.0e}/s, burst {HUGE:.0e}, quota {KEY_QUOTA}) "
            f"and API key {key_id} "
            f"created with `portway usage-plans create` / `portway keys create` in {keys_state}",
            flush=True,
        )
        if "throughput" in parts:
            document["throughput"] = throughput(args, wrk, pinning, tmp_dir, keys_state, key_value, side)
        if "accuracy" in parts:
            document["accuracy"] = accuracy(args, wrk, tmp_dir, keys_state, side)
        redis_version = side.version
    document.update(
        finished=datetime.now(UTC).isoformat(),
        machine={**machine_info(wrk), "redis": redis_version, "clk_tck": CLK_TCK},
        config={
            **measurement_config(args),
            "redis": args.redis,
            "definition": str(DEFINITION.relative_to(ROOT)),
            "functions": str(FUNCTIONS.relative_to(ROOT)),
            "targets": TARGETS,
        },
    )
    write_results(args.out, "traffic", started, document)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
