"""What monitoring costs a Mock route: metrics and a JSON access log, on against off, in one run.

Requests/s of one ``portway serve`` process per target (bench/apps/monitoring_api.yaml, GET /dev/mock, a plain
Mock route; stages in bench/apps/monitoring_functions.yaml; every process ``--account-throttle off``), with
wrk as a bounded load from a second process on 127.0.0.1, of

  (o) everything off: ``--no-metrics --access-log off``;
  (x) metrics only: the default metrics, ``--access-log off`` (which part of the cost is the log's);
  (m) metrics and the JSON access log to a file: ``--access-log FILE --access-log-format json``, the file in
      a temporary folder: the issue's "metrics + JSON access logging on";
  (s) the same with the log to stdout (``--access-log -``), the server's stdout being /dev/null;
  (a) m with the admin listener (``--admin-port``: Prometheus, dashboard, JSON API) up, not scraped meanwhile;

and prints m/o against the target 0.85 (s/o and a/o too: the same features), x/o without a target, and the
gateway's CPU per request over o's. run.py's method: servers pinned to one CPU and wrk to another, a warm-up
before every measurement, rounds in a rotating order with fresh server processes every round, medians,
per-round spread, CPU per request from /proc (the access log's writer thread is in the gateway's process:
counted), NOISY measurements retried.

A benchmark whose feature silently did nothing would be worthless, so every measurement is checked:

- m and a: the access log file got, during the measured run, at least one line per request wrk counted, and
  every line is a JSON object describing GET /mock answered 200 (the access log's preset ``json`` format);
- a: the admin listener's ``apigateway_count_total`` for GET /mock grew by at least wrk's request count (the
  metrics were kept);
- s: the gateway wrote (``wchar`` of /proc/PID/io: every byte it wrote, sockets and /dev/null included) at
  least 80% of an access log line per request more than o did;
- o and x: no access log file was made.

    .venv/bin/python bench/monitoring.py           # 3 rounds of 5 targets (1 s + 5 s): about 2.5 minutes

The exit code is 0 whether or not the target is met (it is a measurement); 2 when it could not measure or a
check failed (the figures are printed first).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from run import (
    BENCH,
    EXPECTED_BODY,
    HOST,
    ROOT,
    WRK_SCRIPT,
    BenchError,
    Load,
    Measurement,
    Pinning,
    Server,
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
    pinning_json,
    ratio_line,
    route_pipeline,
    rps_ratios,
    run_guarded,
    table,
    warn_of_failures,
    warn_of_noise,
    write_results,
)

DEFINITION = BENCH / "apps" / "monitoring_api.yaml"
FUNCTIONS = BENCH / "apps" / "monitoring_functions.yaml"
STAGE = "dev"
ROUTE = "/mock"
PATH = f"/{STAGE}{ROUTE}"
PIPELINE = "compress → integration"  # monitoring is no stage: every target's route table must show this
TARGET = 0.85
# None: no target, reported only.
TARGETS: dict[str, float | None] = {"m/o": TARGET, "s/o": TARGET, "a/o": TARGET, "x/o": None}
# The OpenTelemetry variables that would switch tracing on in the gateways: not inherited.
OTEL_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SETTLE_S = 2.0  # at most this long for the access log file to stop growing (the writer thread to catch up)
QUIET_S = 0.5  # not grown for this long: the writer thread has written what was queued (it may batch)
LINE_SHARE = 0.8  # s must write this share of an access log line per request more than o
COUNT_METRIC = re.compile(
    r'^apigateway_count_total\{(?=[^}]*method="GET")(?=[^}]*resource="/mock")[^}]*\}\s+([0-9.e+]+)\s*$',
    re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class MonitoringTarget:
    key: str
    label: str
    metrics: bool
    log: str | None  # None: off; "file": a file in the temporary folder; "stdout": stdout, to /dev/null
    admin: bool = False

    @property
    def path(self) -> str:
        return PATH

    @property
    def switches(self) -> str:
        """What is on, as the table shows it."""
        parts = ["metrics" if self.metrics else "no metrics"]
        parts.append(f"JSON log to {self.log}" if self.log else "no access log")
        if self.admin:
            parts.append("admin port")
        return ", ".join(parts)


TARGET_LIST = (
    MonitoringTarget("o", "all off", metrics=False, log=None),
    MonitoringTarget("x", "metrics only", metrics=True, log=None),
    MonitoringTarget("m", "metrics + log file", metrics=True, log="file"),
    MonitoringTarget("s", "metrics + log stdout", metrics=True, log="stdout"),
    MonitoringTarget("a", "m + admin listener", metrics=True, log="file", admin=True),
)


@dataclass(slots=True)
class MonitoringMeasurement(Measurement):
    written_bytes_per_request: float | None = None  # /proc/PID/io wchar over the run, per request
    log_lines: int | None = None  # access log entries for GET /mock (200) written for the measured run
    log_bad_lines: int | None = None  # lines in that window that are not such an entry
    log_bytes_per_line: float | None = None
    log_behind: int | None = None  # requests whose lines were not in the file yet when wrk ended
    metrics_count: int | None = None  # growth of apigateway_count_total{GET /mock} over the run (a)
    problems: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MonitoringSummary:
    target: str
    label: str
    switches: str
    rps: float
    rps_rounds: list[float]
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float | None
    workers_cpu_us_per_request: float | None
    written_bytes_per_request: float | None
    log_bytes_per_line: float | None
    others_cpu: float | None
    errors: int


@dataclass(slots=True)
class MonitoringRatio:
    name: str
    value: float
    per_round: list[float]
    target: float | None

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "(no target)"
        return "PASS" if self.value >= self.target else "FAIL"


# --- servers -----------------------------------------------------------------------------------------------


@dataclass
class StdoutToNull(Server):
    """A server whose stdout is /dev/null (its stderr, with the route table, goes to its log as usual)."""

    def start(self) -> None:
        cpus = self.cpus

        def pin() -> None:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
                preexec_fn=pin,
            )


@dataclass(frozen=True, slots=True)
class Gateway:
    target: MonitoringTarget
    server: Server
    access_log: Path  # where m and a write theirs; o and x must not make it (s writes to stdout)
    admin_port: int | None


def gateway(target: MonitoringTarget, tmp: Path, pinning: Pinning) -> Gateway:
    port = free_port()
    access_log = tmp / f"access-{target.key}.log"
    argv = [
        *(sys.executable, "-m", "portway", "serve", str(DEFINITION), "--functions", str(FUNCTIONS)),
        *("--stage", STAGE, "--account-throttle", "off"),
        *("--host", HOST, "--port", str(port), "--log-level", "warning"),
    ]
    if not target.metrics:
        argv.append("--no-metrics")
    if target.log is None:
        argv += ["--access-log", "off"]
    else:
        destination = str(access_log) if target.log == "file" else "-"
        argv += ["--access-log", destination, "--access-log-format", "json"]
    admin_port = free_port() if target.admin else None
    if admin_port is not None:
        argv += ["--admin-port", str(admin_port)]
    kind = StdoutToNull if target.log == "stdout" else Server
    server = kind(f"gateway-{target.key}", argv, port, tmp / f"gateway-{target.key}.log", pinning.server_cpus)
    return Gateway(target, server, access_log, admin_port)


def written_bytes(pid: int) -> int | None:
    """Bytes the process has written (wchar of /proc/PID/io: files, pipes, sockets, /dev/null)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def settled_size(path: Path) -> int:
    """The file's size once it has not grown for QUIET_S (the writer thread wrote what was queued, also if
    it writes in timed batches)."""
    deadline = time.monotonic() + SETTLE_S
    size = file_size(path)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET_S:
        time.sleep(0.02)
        now = file_size(path)
        if now != size:
            size, quiet_since = now, time.monotonic()
    return size


def route_count(admin_port: int) -> int:
    """apigateway_count_total of GET /mock, scraped from the admin listener's /metrics."""
    status, body = http_get(admin_port, "/metrics", {"Accept": "text/plain"})
    if status != 200:
        raise BenchError(f"the admin listener's /metrics answered {status} {body[:200]!r}")
    found = COUNT_METRIC.search(body.decode())
    if found is None:
        raise BenchError("no apigateway_count_total for GET /mock in the admin listener's /metrics")
    return int(float(found.group(1)))


def entries(data: bytes) -> tuple[int, list[bytes]]:
    """The access log entries of GET /mock answered 200 among ``data``'s lines, and the other lines."""
    good = 0
    bad: list[bytes] = []
    for line in data.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(line)
            continue
        if (
            isinstance(entry, dict)
            and entry.get("requestId")
            and entry.get("httpMethod") == "GET"
            and entry.get("resourcePath") == ROUTE
            and entry.get("status") == "200"
        ):
            good += 1
        else:
            bad.append(line)
    return good, bad


def check_ready(gw: Gateway) -> str:
    """The route's pipeline (as served), 200 with the known body, and the monitoring there as switched: the
    access log file has the request's entry (m, a) or is not made (o, x); the admin listener counts it."""
    server = gw.server
    pipeline = route_pipeline(server, ROUTE)
    if pipeline != PIPELINE:
        raise BenchError(f"{server.name}: GET {ROUTE} runs {pipeline!r}, expected {PIPELINE!r}")
    before = settled_size(gw.access_log)
    server.expect_hello(PATH)
    if gw.target.log == "file":
        deadline = time.monotonic() + SETTLE_S
        while file_size(gw.access_log) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        with gw.access_log.open("rb") as log:
            log.seek(before)
            good, bad = entries(log.read())
        if good != 1 or bad:
            raise BenchError(
                f"{server.name}: one request wrote {good} access log entries to {gw.access_log} "
                f"and {len(bad)} other lines ({bad[:1]!r}):\n{server.log_tail()}"
            )
    elif gw.access_log.exists():
        raise BenchError(f"{server.name}: made {gw.access_log}, which it was not told to write")
    if gw.admin_port is not None and route_count(gw.admin_port) < 1:
        raise BenchError(f"{server.name}: the admin listener's metrics did not count the request")
    return pipeline


class Probe:
    """run.py's Beside for one measurement: reads, just before and just after the measured run, what the
    gateway wrote (wchar), where its access log file ended and the admin listener's count; :meth:`check`
    then waits for the log's last lines and checks them against wrk's request count. Adds no CPU figure."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.offset = 0
        self.size_at_stop = 0
        self.count = 0
        self.written: tuple[int | None, int | None] = (None, None)

    def start(self) -> None:
        if self.gw.target.log == "file":
            self.offset = settled_size(self.gw.access_log)  # the warm-up's lines all written first
        if self.gw.admin_port is not None:
            self.count = route_count(self.gw.admin_port)
        self.written = (written_bytes(self.gw.server.pid()), None)

    def stop(self) -> float | None:
        self.written = (self.written[0], written_bytes(self.gw.server.pid()))
        if self.gw.target.log == "file":
            self.size_at_stop = file_size(self.gw.access_log)
        return None

    def check(self, m: MonitoringMeasurement) -> None:
        """Fill ``m``'s monitoring figures; what failed goes to ``m.problems``."""
        before, after = self.written
        if before is not None and after is not None and m.requests:
            m.written_bytes_per_request = (after - before) / m.requests
        gw = self.gw
        if gw.admin_port is not None:
            m.metrics_count = route_count(gw.admin_port) - self.count
            if m.metrics_count < m.requests:
                m.problems.append(
                    f"{gw.server.name}, round {m.round}: the metrics counted {m.metrics_count:,} requests, "
                    f"wrk {m.requests:,}"
                )
        if gw.target.log != "file":
            return
        # The writer thread may still be writing the run's last lines: wait until they are all there or the
        # file stops growing.
        deadline = time.monotonic() + SETTLE_S
        with gw.access_log.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
            quiet_since = time.monotonic()
            while (
                data.count(b"\n") < m.requests
                and time.monotonic() - quiet_since < QUIET_S
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
                more = log.read()
                if more:
                    data, quiet_since = data + more, time.monotonic()
        good, bad = entries(data)
        m.log_lines, m.log_bad_lines = good, len(bad)
        m.log_bytes_per_line = len(data) / (good + len(bad)) if good + len(bad) else None
        m.log_behind = max(0, m.requests - data[: self.size_at_stop - self.offset].count(b"\n"))
        if good < m.requests:
            m.problems.append(
                f"{gw.server.name}, round {m.round}: {good:,} access log entries in {gw.access_log.name} for "
                f"{m.requests:,} requests wrk made"
            )
        if bad:
            m.problems.append(
                f"{gw.server.name}, round {m.round}: {len(bad):,} lines of {gw.access_log.name} are no "
                f"JSON entry of GET {ROUTE} answered 200, e.g. {bad[0][:200]!r}"
            )


def written_check(summaries: dict[str, MonitoringSummary]) -> list[str]:
    """s logs to /dev/null, so its lines cannot be read: it must have written about a line per request more
    than o (sockets included in both). The problems found."""
    s, o, m = summaries.get("s"), summaries.get("o"), summaries.get("m") or summaries.get("a")
    if s is None or o is None:
        return []
    line = (m.log_bytes_per_line if m is not None else None) or 0.0
    if s.written_bytes_per_request is None or o.written_bytes_per_request is None or not line:
        return ["s: what the gateways wrote could not be read from /proc: its access log is not checked"]
    extra = s.written_bytes_per_request - o.written_bytes_per_request
    if extra < LINE_SHARE * line:
        return [
            f"s wrote {extra:.0f} bytes per request more than o, less than {LINE_SHARE:.0%} of an access "
            f"log line ({line:.0f} bytes): its access log to stdout did not write a line per request"
        ]
    return []


# --- figures -----------------------------------------------------------------------------------------------


def summarise(
    runs: Sequence[MonitoringMeasurement],
) -> tuple[dict[str, MonitoringSummary], list[MonitoringRatio]]:
    summaries = {
        target.key: MonitoringSummary(
            target=target.key,
            label=target.label,
            switches=target.switches,
            written_bytes_per_request=median(m.written_bytes_per_request for m in mine),
            log_bytes_per_line=median(m.log_bytes_per_line for m in mine),
            **figures(mine),
        )
        for target, mine in by_target(TARGET_LIST, runs)
    }
    ratios = [
        MonitoringRatio(name, value, per_round, TARGETS[name])
        for name, value, per_round in rps_ratios(summaries, "o", TARGETS)
    ]
    return summaries, ratios


def gateway_cost(summary: MonitoringSummary | None) -> float | None:
    return summary.server_cpu_us_per_request if summary is not None else None


def report(
    summaries: dict[str, MonitoringSummary], ratios: Sequence[MonitoringRatio], by_cpu: dict[str, float]
) -> str:
    header = (
        "",
        "target",
        "on",
        "req/s",
        "per round",
        "p50",
        "p99",
        "server CPU/req",
        "written/req",
        "others",
        "errors",
    )
    rows = [
        (
            s.target,
            s.label,
            s.switches,
            *figure_cells(s),
            f"{s.written_bytes_per_request:.0f} B" if s.written_bytes_per_request is not None else "-",
            others_cell(s.others_cpu),
            str(s.errors),
        )
        for s in summaries.values()
    ]
    lines = table([header, *rows], left=3)
    lines.append("")
    for r in ratios:
        lines.append(ratio_line(r.name, r.value, r.per_round, r.target, r.verdict))
    if by_cpu:
        lines.append(by_cpu_line("by the gateway's CPU per request", by_cpu))
    base = gateway_cost(summaries.get("o"))
    extra = {
        key: cost - base
        for key, s in summaries.items()
        if key != "o" and base is not None and (cost := gateway_cost(s)) is not None
    }
    if extra:
        lines.append(
            "monitoring's CPU per request (the gateway's, over o's): "
            + "   ".join(f"{key} {value:+.1f} µs" for key, value in extra.items())
        )
    return "\n".join(lines)


def checks_report(runs: Sequence[MonitoringMeasurement], problems: Sequence[str]) -> str:
    logged = [m for m in runs if m.log_lines is not None]
    counted = [m for m in runs if m.metrics_count is not None]
    lines = []
    if logged:
        behind = max(m.log_behind or 0 for m in logged)
        lines.append(
            f"access log files (m, a): {sum(m.log_lines or 0 for m in logged):,} JSON entries for "
            f"{sum(m.requests for m in logged):,} requests wrk made in {len(logged)} measured runs, "
            f"{sum(m.log_bad_lines or 0 for m in logged)} other lines; at most {behind:,} lines were still "
            "queued when wrk ended"
        )
    if counted:
        grew = sum(m.metrics_count or 0 for m in counted)
        lines.append(
            f"admin metrics (a): apigateway_count_total grew by {grew:,} "
            f"for {sum(m.requests for m in counted):,} requests"
        )
    lines.append("checks: " + ("every one passed" if not problems else f"{len(problems)} FAILED"))
    lines.extend(f"  {problem}" for problem in problems)
    return "\n".join(lines)


def _line(m: MonitoringMeasurement) -> str:
    extra = ""
    if m.log_lines is not None:
        ok = "ok" if m.log_lines >= m.requests and not m.log_bad_lines else "SHORT OR BAD"
        extra += f"  log {m.log_lines:,}/{m.requests:,} {ok}"
    if m.metrics_count is not None:
        extra += f"  metrics {m.metrics_count:,}"
    if m.written_bytes_per_request is not None:
        extra += f"  wrote {m.written_bytes_per_request:.0f} B/req"
    return measurement_line(m, extra)


# --- main --------------------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace, wrk: str, pinning: Pinning, tmp: Path) -> dict[str, Any]:
    script = tmp / "report.lua"
    script.write_text(WRK_SCRIPT)
    load = Load(wrk, script, args.threads, args.connections, pinning.load_cpus)
    gateways = {target.key: gateway(target, tmp, pinning) for target in TARGET_LIST}
    pipelines: dict[str, str] = {}
    problems: list[str] = []

    def ready(round_no: int) -> None:
        for key, gw in gateways.items():
            gw.server.wait_ready([])
            pipelines[key] = check_ready(gw)
        print(
            f"round {round_no}: servers started, every target answered 200 {EXPECTED_BODY!r}, "
            "logged and counted as switched",
            flush=True,
        )

    def take(target: MonitoringTarget, round_no: int) -> MonitoringMeasurement:
        gw = gateways[target.key]
        probe = Probe(gw)
        m = measure(MonitoringMeasurement, load, gw.server, target, round_no, args, beside=probe)
        probe.check(m)
        problems.extend(m.problems)  # a retried measurement's failure counts too
        return m

    runs, discarded = measure_rounds(
        args, [gw.server for gw in gateways.values()], TARGET_LIST, ready, take, _line
    )
    for gw in gateways.values():
        if gw.target.log != "file" and gw.access_log.exists():
            problems.append(f"{gw.server.name} made {gw.access_log.name}, which it was not told to write")
    summaries, ratios = summarise(runs)
    problems.extend(written_check(summaries))
    by_cpu = cost_ratios(lambda key: gateway_cost(summaries.get(key)), "o", TARGETS)
    print()
    print(report(summaries, ratios, by_cpu))
    warn_of_failures(summaries.values())
    warn_of_noise(runs, ": rerun on a quiet machine.")
    print()
    print(checks_report(runs, problems))
    return {
        "pinning": pinning_json(pinning),
        "targets": {
            t.key: {
                "label": t.label,
                "on": t.switches,
                "argv": gateways[t.key].server.argv[2:],
                "pipeline": pipelines.get(t.key),
            }
            for t in TARGET_LIST
        },
        "summary": {key: asdict(s) for key, s in summaries.items()},
        "ratios": {r.name: {**asdict(r), "verdict": r.verdict} for r in ratios},
        "cpu_cost_ratios": by_cpu,
        "problems": problems,
        "runs": [asdict(m) for m in runs],
        "discarded_runs": [asdict(m) for m in discarded],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What metrics and a JSON access log cost a Mock route (on against off), with checks "
        "that every request was really logged and counted.",
    )
    add_measurement_options(parser, "o, x, m, s, a", "; the least disturbed measurement is kept")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and wrk to CPUs")
    add_cpu_options(
        parser,
        "CPUs for the gateways, e.g. 0 (default: the first one allowed)",
        "CPUs for wrk, e.g. 1 (default: the second one allowed)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: bench/results/…)")
    parser.set_defaults(worker_cpus=None, workers_with_server=False)  # for run.choose_pinning
    args = parser.parse_args(argv)
    check_measurement_options(parser, args, " (wrk needs a connection per thread)")
    return args


def run(args: argparse.Namespace) -> int:
    wrk = ensure_wrk()
    pinning = choose_pinning(args)
    started = datetime.now(UTC)
    dropped = [name for name in OTEL_VARIABLES if os.environ.pop(name, None) is not None]
    estimate = args.rounds * len(TARGET_LIST) * (args.duration + args.warmup)
    print(
        f"Portway monitoring benchmark: wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
        f"(warm-up {args.warmup}s each), {args.rounds} rounds, ~{estimate:.0f}s of load "
        f"(more if measurements are retried)\n{pinning.note}"
        + (f"\n{', '.join(dropped)} not passed on: no tracing in any target" if dropped else ""),
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="portway-monitoring-") as tmp:
        document: dict[str, Any] = {"started": started.isoformat()}
        document["throughput"] = throughput(args, wrk, pinning, Path(tmp))
    document.update(
        finished=datetime.now(UTC).isoformat(),
        machine=machine_info(wrk),
        config={
            **measurement_config(args),
            "definition": str(DEFINITION.relative_to(ROOT)),
            "functions": str(FUNCTIONS.relative_to(ROOT)),
            "targets": TARGETS,
        },
    )
    write_results(args.out, "monitoring", started, document)
    problems = document["throughput"]["problems"]
    if problems:
        print(
            f"benchmark failed: {len(problems)} check(s) failed: the monitoring did not do what it was "
            "switched to do (see above)",
            file=sys.stderr,
        )
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
