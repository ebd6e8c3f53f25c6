"""Portway's benchmark: the gateway's throughput against a bare ASGI hello-world on the same server.

One run measures requests/s, with wrk as a bounded load from a second process on 127.0.0.1, of

  (a) a bare ASGI hello-world on uvicorn + uvloop + httptools (bench/hello.py, the gateway's settings),
  (b) a Mock route of one ``portway serve`` process (GET /dev/mock),
  (c) a Lambda proxy route with a trivial handler, same gateway process (GET /dev/hello),

and prints b/a and c/a against the targets. Every measurement follows a warm-up; rounds alternate a/b/c
(in a rotating order) and the medians are compared. Results also go to bench/results/*.json.

By default the servers, and the gateway's Lambda workers with them, run on the first CPU and wrk on the
second: each target gets one CPU for all of its server-side work. The CPU time the server side spends per
request is read from /proc, and so is the CPU that other processes took meanwhile: a measurement they
disturbed is taken again (--retries) and flagged NOISY if it stays disturbed.

    .venv/bin/python bench/run.py                 # about 1 to 2 minutes with the defaults
    .venv/bin/python bench/run.py --rounds 5 --duration 10 --connections 64

The exit code is 0 whether or not the targets are met (it is a measurement); 2 when it could not measure.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
DEFINITION = BENCH / "apps" / "bench_api.yaml"
HTTP_DEFINITION = BENCH / "apps" / "bench_http_api.yaml"
FUNCTIONS = BENCH / "apps" / "functions.yaml"
HELLO = BENCH / "hello.py"
HOST = "127.0.0.1"
STAGE = "dev"
EXPECTED_BODY = b'{"hello":"world"}'
# b/a and c/a are the core gateway issue's targets; d/a (an HTTP API's payload-2.0 route) is held to c/a's.
TARGETS: dict[str, float] = {"b/a": 0.6, "c/a": 0.3, "d/a": 0.3}

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
WRK_SOCKET_TIMEOUT = "2s"
WRK_GRACE_S = 20.0  # on top of a run's duration before wrk is killed
# Other processes using more CPU than this during a measurement make its req/s unreliable.
NOISY_OTHERS_CPU = 0.15
CLK_TCK = os.sysconf("SC_CLK_TCK")

# wrk's done() hook prints one JSON line we parse, instead of scraping its human-readable report. Every
# script's hook writes it with WRK_REPORT's function: wrk's counts and errors (what wrk_result and wrk_errors
# read), then the members the script adds (a string.format format and its values).
WRK_REPORT = r"""
function portway_report(summary, members, ...)
  local e = summary.errors
  io.write(string.format(
    'PORTWAY_BENCH {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,'
    .. members .. '}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, ...))
end
"""
WRK_SCRIPT = (
    WRK_REPORT
    + r"""
done = function(summary, latency, requests)
  portway_report(summary, '"mean_us":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d',
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max)
end
"""
)
WRK_MARKER = "PORTWAY_BENCH "


class BenchError(Exception):
    """The benchmark cannot measure (a server did not start, wrk is missing or failed…)."""


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    label: str
    server: str  # the name of the Server that serves it
    path: str


TARGET_LIST = (
    Target("a", "bare ASGI hello-world", "hello", "/"),
    Target("b", "Mock route", "gateway", f"/{STAGE}/mock"),
    Target("c", "Lambda proxy route", "gateway", f"/{STAGE}/hello"),
    Target("d", "HTTP API payload 2.0", "http-gateway", "/hello"),
)


@dataclass(slots=True)
class Measurement:
    target: str
    round: int
    requests: int
    duration_s: float
    rps: float
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    # CPU time per request of the server process and of its children (the Lambda workers), during the run
    server_cpu_us_per_request: float | None
    workers_cpu_us_per_request: float | None
    wrk_cpu: float  # CPUs busy with wrk, on average over the run (1.0 is one CPU all along)
    others_cpu: float | None  # CPUs busy with anything else on the machine: noise
    attempt: int = 1

    @property
    def noisy(self) -> bool:
        return self.others_cpu is not None and self.others_cpu > NOISY_OTHERS_CPU


M = TypeVar("M", bound=Measurement)


class Measured(Protocol):
    """What the shared measuring code needs of a target (run.py's and traffic.py's)."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def path(self) -> str: ...


T = TypeVar("T", bound=Measured)


@dataclass(slots=True)
class Summary:
    target: str
    label: str
    rps: float
    rps_rounds: list[float]
    p50_ms: float
    p99_ms: float
    server_cpu_us_per_request: float | None
    workers_cpu_us_per_request: float | None
    others_cpu: float | None
    errors: int


@dataclass(slots=True)
class Ratio:
    name: str
    value: float
    per_round: list[float]
    target: float
    passed: bool


@dataclass(slots=True)
class Pinning:
    server_cpus: set[int] | None
    load_cpus: set[int] | None
    worker_cpus: set[int] | None  # the gateway's Lambda workers; None: as the gateway (inherited)
    note: str


# --- processes ---------------------------------------------------------------------------------------


def _children(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as (pid, start time), read from /proc (none where there is none)."""
    parents: dict[int, list[tuple[int, int]]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            stat = _read_stat(int(entry.name))
            if stat is not None:
                parents.setdefault(int(stat[1]), []).append((int(entry.name), int(stat[19])))
    found: list[tuple[int, int]] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _read_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields from the state on (0 state, 1 ppid, 11 utime, 12 stime, 19 start time)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def _cpu_seconds(pid: int) -> float | None:
    stat = _read_stat(pid)
    return (int(stat[11]) + int(stat[12])) / CLK_TCK if stat is not None else None


def _machine_busy_seconds() -> float | None:
    """CPU time the whole machine spent on processes (user, nice, system) and lost to steal."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, steal = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[8])
    return (user + nice + system + steal) / CLK_TCK


def _waited_children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class CpuSample:
    server: float | None
    workers: dict[int, float]  # the server's children (Lambda workers) by pid
    machine: float | None
    load: float  # every child we waited for: the wrk runs

    @classmethod
    def take(cls, server: Server) -> CpuSample:
        workers = {pid: _cpu_seconds(pid) for pid in server.children()}
        return cls(
            server=_cpu_seconds(server.pid()),
            workers={pid: cpu for pid, cpu in workers.items() if cpu is not None},
            machine=_machine_busy_seconds(),
            load=_waited_children_seconds(),
        )

    def workers_since(self, before: CpuSample) -> float:
        """Workers' CPU since ``before``; one started meanwhile counts in full (one gone is lost)."""
        return sum(cpu - before.workers.get(pid, 0.0) for pid, cpu in self.workers.items())


def _delta(after: float | None, before: float | None) -> float | None:
    return after - before if after is not None and before is not None else None


@dataclass
class Server:
    """One server process under test, started in its own session so that Ctrl-C reaches only us."""

    name: str
    argv: list[str]
    port: int
    log: Path
    cpus: set[int] | None
    worker_cpus: set[int] | None = None
    process: subprocess.Popen[bytes] | None = None
    descendants: list[tuple[int, int]] = field(default_factory=list)

    def start(self) -> None:
        cpus = self.cpus

        def pin() -> None:  # runs in the child: its Lambda workers inherit the affinity
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pin,
            )

    def wait_ready(self, paths: Sequence[str]) -> None:
        """Poll the port until it accepts, then check every path answers 200 with the expected body."""
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{self.name} not listening after {READY_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.05)
        for path in paths:
            self.expect_hello(path)
        self.descendants = _children(self.process.pid)

    def expect_hello(
        self, path: str, headers: dict[str, str] | None = None, method: str = "GET", body: bytes | None = None
    ) -> None:
        """``method path`` (GET by default) must answer 200 with the expected body (else BenchError, with the
        server's log)."""
        self.expect(200, EXPECTED_BODY, path, headers, method, body)

    def expect(
        self,
        status: int,
        expected: bytes | None,
        path: str,
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes | None = None,
    ) -> None:
        """``method path`` must answer ``status``, with the body ``expected`` unless that is None (else
        BenchError, with the server's log)."""
        got, answer = http_request(self.port, method, path, headers, body)
        if got != status or (expected is not None and answer != expected):
            wanted = f"{status} {expected!r}" if expected is not None else str(status)
            raise BenchError(
                f"{self.name}: {method} {path} answered {got} {answer[:200]!r}, "
                f"expected {wanted}:\n{self.log_tail()}"
            )

    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def children(self) -> list[int]:
        return [pid for pid, _ in _children(self.pid())]

    def pin_workers(self) -> None:
        """Move the server's children (Lambda workers, which may start at any time) to their CPUs."""
        if self.worker_cpus is not None:
            for pid in self.children():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(pid, self.worker_cpus)

    def stop(self) -> None:
        """SIGTERM (the gateway then stops its workers), SIGKILL if it lingers, then any worker left."""
        process = self.process
        if process is None:
            return
        self.descendants = sorted({*self.descendants, *_children(process.pid)})
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"warning: {self.name} ignored SIGTERM for {STOP_TIMEOUT_S:.0f}s: killing it")
                process.kill()
                process.wait()
        for pid, start in self.descendants:
            # A worker whose gateway died exits at the end of its socket; one still there is killed here,
            # by pid, when /proc shows the very same process (same start time: never a reused pid).
            stat = _read_stat(pid)
            if stat is not None and int(stat[19]) == start:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return http_request(port, "GET", path, headers)


def http_request(
    port: int, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:``port``: the status and body (0 and the error when it failed)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Accept": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError as exc:
        return 0, str(exc).encode()
    finally:
        connection.close()


def route_pipeline(server: Server, route: str, method: str = "GET") -> str:
    """The route's stages as the running gateway printed them in its route table (its log's start)."""
    for line in server.log.read_text(errors="replace").splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if len(cells) == 4 and cells[0] == method and cells[1] == route:
            return cells[3]
    raise BenchError(f"{server.name}: no {method} {route} in its route table:\n{server.log_tail()}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP unwind as KeyboardInterrupt, so that the servers are always stopped.

    SIGINT is handled even when inherited as ignored (a shell's background job); an ignored SIGHUP (nohup)
    stays ignored."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            previous[sig] = signal.signal(sig, raise_interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- load --------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is not None:
        return wrk
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError(
            "wrk is not installed and this script can install it only as root with apt-get: "
            "run `sudo apt-get install -y wrk` (or install wrk by other means) and try again"
        )
    print("wrk is missing: apt-get install -y wrk …", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        subprocess.run(install, env=env, check=False)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("apt-get could not install wrk; install it and try again")
    return wrk


@dataclass(frozen=True, slots=True)
class Load:
    wrk: str
    script: Path
    threads: int
    connections: int
    cpus: set[int] | None

    def argv(self, port: int, path: str, duration_s: int, headers: Sequence[str] = ()) -> list[str]:
        """wrk's command line for one run; ``headers`` are extra request headers, like ``"x-api-key: …"``."""
        return [
            self.wrk,
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{duration_s}s",
            f"--timeout={WRK_SOCKET_TIMEOUT}",
            *(arg for header in headers for arg in ("-H", header)),
            "-s",
            str(self.script),
            f"http://{HOST}:{port}{path}",
        ]

    def pin(self) -> None:
        """Runs in wrk's process before it starts: onto the load's CPUs."""
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)

    def run(self, port: int, path: str, duration_s: int, headers: Sequence[str] = ()) -> dict[str, Any]:
        """One bounded wrk run (its connections, its duration, killed past a grace period)."""
        try:
            done = subprocess.run(
                self.argv(port, path, duration_s, headers),
                capture_output=True,
                text=True,
                timeout=duration_s + WRK_GRACE_S,
                check=False,
                preexec_fn=self.pin,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"wrk did not finish within {duration_s + WRK_GRACE_S:.0f}s") from None
        return wrk_result(done.returncode, done.stdout, done.stderr)


def wrk_result(returncode: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The JSON line our done() hook printed (WRK_MARKER), or BenchError with what wrk said."""
    for line in stdout.splitlines():
        if line.startswith(WRK_MARKER):
            result: dict[str, Any] = json.loads(line[len(WRK_MARKER) :])
            return result
    raise BenchError(f"wrk failed ({returncode}): {stderr.strip() or stdout.strip()}")


def wrk_errors(raw: dict[str, Any]) -> dict[str, int]:
    """wrk's failed requests by kind (only the kinds that happened)."""
    return {
        name: int(raw[key])
        for name, key in (
            ("connect", "connect_errors"),
            ("read", "read_errors"),
            ("write", "write_errors"),
            ("non-2xx/3xx", "status_errors"),
            ("timeout", "timeouts"),
        )
        if raw[key]
    }


class Beside(Protocol):
    """Another process the load keeps busy beside the server (traffic.py's Redis): its CPU is counted apart,
    not as noise. Read just before the measured run and just after it."""

    def start(self) -> None: ...

    def stop(self) -> float | None:
        """Its CPU seconds since start(), None where they cannot be read."""
        ...


def per_request(cpu_s: float | None, requests: int) -> float | None:
    """CPU seconds over a run as µs per request."""
    return cpu_s * 1e6 / requests if cpu_s is not None and requests else None


def measure(
    kind: type[M],
    load: Load,
    server: Server,
    target: Measured,
    round_no: int,
    args: argparse.Namespace,
    headers: Sequence[str] = (),
    beside: Beside | None = None,
) -> M:
    """A warm-up, then one measured wrk run of ``target`` with the CPU that everyone spent meanwhile."""
    if args.warmup > 0:
        load.run(server.port, target.path, args.warmup, headers)
    server.pin_workers()
    if beside is not None:
        beside.start()
    before = CpuSample.take(server)
    raw = load.run(server.port, target.path, args.duration, headers)
    after = CpuSample.take(server)
    beside_cpu = beside.stop() if beside is not None else None
    duration_s = raw["duration_us"] / 1e6
    requests = int(raw["requests"])
    server_cpu = _delta(after.server, before.server)
    workers_cpu = after.workers_since(before)
    own_cpu = server_cpu + workers_cpu if server_cpu is not None else None
    wrk_cpu = after.load - before.load
    machine = _delta(after.machine, before.machine)
    others = (
        max(0.0, machine - own_cpu - wrk_cpu - (beside_cpu or 0.0))
        if machine is not None and own_cpu is not None
        else None
    )
    return kind(
        target=target.key,
        round=round_no,
        requests=requests,
        duration_s=duration_s,
        rps=requests / duration_s if duration_s else 0.0,
        mean_ms=raw["mean_us"] / 1000,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=wrk_errors(raw),
        server_cpu_us_per_request=per_request(own_cpu, requests),
        workers_cpu_us_per_request=per_request(workers_cpu, requests) if after.workers else None,
        wrk_cpu=wrk_cpu / duration_s if duration_s else 0.0,
        others_cpu=others / duration_s if others is not None and duration_s else None,
    )


def measure_rounds(
    args: argparse.Namespace,
    servers: Collection[Server],
    targets: Sequence[T],
    ready: Callable[[int], None],
    take: Callable[[T, int], M],
    line: Callable[[M], str],
) -> tuple[list[M], list[M]]:
    """``args.rounds`` rounds of every target, each round with fresh servers (``ready`` checks them) and in
    a rotated order; a measurement that other processes disturbed is taken again (``args.retries``) and the
    least disturbed one kept. The measurements kept, and those dropped. The servers are stopped at the end."""
    runs: list[M] = []
    discarded: list[M] = []
    try:
        for round_no in range(1, args.rounds + 1):
            # Fresh server processes every round: one process's memory layout and hash seed can move
            # its figure by several percent, and the median should span several of them.
            for server in servers:
                server.stop()
                server.start()
            ready(round_no)
            shift = (round_no - 1) % len(targets)
            for target in [*targets[shift:], *targets[:shift]]:  # rotate: no target always goes first
                m = take(target, round_no)
                print(f"  round {round_no} {target.key} {target.label:<22} {line(m)}", flush=True)
                for attempt in range(2, args.retries + 2):
                    if not m.noisy:
                        break
                    # Disturbed by other processes: measure again, keep the least disturbed.
                    again = take(target, round_no)
                    again.attempt = attempt
                    print(f"    again {target.key} {target.label:<22} {line(again)}", flush=True)
                    kept, dropped = (
                        (again, m) if (again.others_cpu or 0) < (m.others_cpu or 0) else (m, again)
                    )
                    discarded.append(dropped)
                    m = kept
                runs.append(m)
    finally:
        for server in servers:
            server.stop()
    return runs, discarded


# --- set-up ------------------------------------------------------------------------------------------


def choose_pinning(args: argparse.Namespace) -> Pinning:
    """By default each server on one CPU and wrk on another; the gateway's Lambda workers run beside wrk,
    off the gateway's CPU, as Lambda runs functions outside API Gateway: the targets are about one gateway
    process. ``--workers-with-server`` puts them on the server's CPU (the whole cost on one CPU)."""
    if args.no_pin:
        return Pinning(None, None, None, "not pinned (--no-pin): every process may run on every CPU")
    if not hasattr(os, "sched_setaffinity"):
        return Pinning(None, None, None, "not pinned: this platform has no sched_setaffinity")
    available = sorted(os.sched_getaffinity(0))
    server = set(args.server_cpus) if args.server_cpus else {available[0]}
    load = set(args.load_cpus) if args.load_cpus else set(available[1:2])
    if not load:
        return Pinning(None, None, None, f"not pinned: only CPU {available} is available")
    if server & load:
        print("warning: server and wrk share CPUs; the figures will suffer from it", file=sys.stderr)
    if args.worker_cpus:
        workers: set[int] | None = set(args.worker_cpus)
    elif args.workers_with_server:
        workers = None
    else:
        workers = load
    where = f"on CPU {_cpus(workers)}" if workers else "with the gateway"
    return Pinning(
        server,
        load,
        workers,
        f"servers on CPU {_cpus(server)}, the gateway's Lambda workers {where}, wrk on CPU {_cpus(load)}",
    )


def _cpus(cpus: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus)) if cpus else "any"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "missing"


def pinning_json(pinning: Pinning) -> dict[str, Any]:
    return {
        "server_cpus": sorted(pinning.server_cpus) if pinning.server_cpus else None,
        "load_cpus": sorted(pinning.load_cpus) if pinning.load_cpus else None,
        "worker_cpus": sorted(pinning.worker_cpus) if pinning.worker_cpus else None,
        "note": pinning.note,
    }


def machine_info(wrk: str) -> dict[str, Any]:
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wrk": wrk_version.splitlines()[0] if wrk_version else "?",
        "packages": {
            name: _version(name) for name in ("portway", "uvicorn", "uvloop", "httptools", "orjson")
        },
    }


def servers(log_dir: Path, pinning: Pinning, functions: Path) -> dict[str, Server]:
    python = sys.executable
    hello_port, gateway_port, http_port = free_port(), free_port(), free_port()
    hello = [python, str(HELLO), "--host", HOST, "--port", str(hello_port)]
    gateway = [
        *(python, "-m", "portway", "serve", str(DEFINITION), "--functions", str(functions)),
        *("--host", HOST, "--port", str(gateway_port), "--log-level", "warning"),
        # The account-level throttle (AWS's default 10,000 req/s) would refuse part of this load: it is
        # measured on its own by bench/traffic.py.
        *("--account-throttle", "off"),
    ]
    http_gateway = [
        *(python, "-m", "portway", "serve", str(HTTP_DEFINITION), "--functions", str(functions)),
        *("--host", HOST, "--port", str(http_port), "--log-level", "warning"),
        *("--account-throttle", "off"),
    ]
    return {
        "hello": Server("hello", hello, hello_port, log_dir / "hello.log", pinning.server_cpus),
        "gateway": Server(
            "gateway",
            gateway,
            gateway_port,
            log_dir / "gateway.log",
            pinning.server_cpus,
            pinning.worker_cpus,
        ),
        "http-gateway": Server(
            "http-gateway",
            http_gateway,
            http_port,
            log_dir / "http-gateway.log",
            pinning.server_cpus,
            pinning.worker_cpus,
        ),
    }


# --- report ------------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    """The median of the values there are (None where there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def by_target(targets: Iterable[T], runs: Sequence[M]) -> Iterator[tuple[T, list[M]]]:
    """Every target that was measured, with its measurements."""
    for target in targets:
        mine = [m for m in runs if m.target == target.key]
        if mine:
            yield target, mine


def figures(mine: Sequence[Measurement]) -> dict[str, Any]:
    """A target's figures over its rounds, as the fields every summary has: medians, the round by round
    req/s, the worst disturbance and every error."""
    others = [m.others_cpu for m in mine if m.others_cpu is not None]
    return {
        "rps": statistics.median(m.rps for m in mine),
        "rps_rounds": [m.rps for m in mine],
        "p50_ms": statistics.median(m.p50_ms for m in mine),
        "p99_ms": statistics.median(m.p99_ms for m in mine),
        "server_cpu_us_per_request": median(m.server_cpu_us_per_request for m in mine),
        "workers_cpu_us_per_request": median(m.workers_cpu_us_per_request for m in mine),
        "others_cpu": max(others) if others else None,
        "errors": sum(sum(m.errors.values()) for m in mine),
    }


class Figured(Protocol):
    """What the shared report code reads of a summary (run.py's Summary, traffic.py's TrafficSummary)."""

    @property
    def rps(self) -> float: ...
    @property
    def rps_rounds(self) -> list[float]: ...
    @property
    def p50_ms(self) -> float: ...
    @property
    def p99_ms(self) -> float: ...
    @property
    def server_cpu_us_per_request(self) -> float | None: ...
    @property
    def workers_cpu_us_per_request(self) -> float | None: ...
    @property
    def errors(self) -> int: ...


def rps_ratios(
    summaries: Mapping[str, Figured], base: str, names: Iterable[str]
) -> Iterator[tuple[str, float, list[float]]]:
    """For every name "x/BASE" whose x and base were measured: x's req/s over base's, and round by round."""
    under = summaries.get(base)
    for name in names:
        key = name.split("/")[0]
        if under is None or key not in summaries or not under.rps:
            continue
        per_round = [
            round(x / y, 3) if y else 0.0
            for x, y in zip(summaries[key].rps_rounds, under.rps_rounds, strict=False)
        ]
        yield name, summaries[key].rps / under.rps, per_round


def cost_ratios(cost: Callable[[str], float | None], base: str, names: Iterable[str]) -> dict[str, float]:
    """For every name "x/BASE": cost(base) / cost(x), where both are known."""
    under = cost(base)
    ratios: dict[str, float] = {}
    for name in names:
        other = cost(name.split("/")[0])
        if under and other:
            ratios[name] = under / other
    return ratios


def summarise(runs: Sequence[Measurement]) -> tuple[dict[str, Summary], list[Ratio]]:
    summaries = {
        target.key: Summary(target=target.key, label=target.label, **figures(mine))
        for target, mine in by_target(TARGET_LIST, runs)
    }
    ratios = [
        Ratio(name, value, per_round, TARGETS[name], value >= TARGETS[name])
        for name, value, per_round in rps_ratios(summaries, "a", TARGETS)
    ]
    return summaries, ratios


def cpu_ratios(summaries: dict[str, Summary], workers_apart: bool) -> dict[str, float]:
    """b/a and c/a as the servers' CPU would give them if it were the bottleneck: cost(a) / cost(x).

    A cross-check that other load on the machine disturbs less than it disturbs req/s. The cost is what
    runs on the servers' CPU: without the Lambda workers' share when they run elsewhere."""

    def cost(key: str) -> float | None:
        summary = summaries.get(key)
        if summary is None or not summary.server_cpu_us_per_request:
            return None
        workers = summary.workers_cpu_us_per_request or 0.0
        return summary.server_cpu_us_per_request - (workers if workers_apart else 0.0)

    return cost_ratios(cost, "a", TARGETS)


def _cpu_cell(total: float | None, workers: float | None) -> str:
    if total is None:
        return "-"
    # Workers show only where they worked: the Mock route's gateway has idle ones.
    return f"{total:.0f} µs" + (
        f" ({workers:.0f} in workers)" if workers is not None and workers >= 1 else ""
    )


def figure_cells(s: Figured) -> tuple[str, str, str, str, str]:
    """A summary's req/s, req/s per round, p50, p99 and server CPU per request, as a table shows them."""
    return (
        f"{s.rps:,.0f}",
        " ".join(f"{r:,.0f}" for r in s.rps_rounds),
        f"{s.p50_ms:.2f} ms",
        f"{s.p99_ms:.2f} ms",
        _cpu_cell(s.server_cpu_us_per_request, s.workers_cpu_us_per_request),
    )


def others_cell(others_cpu: float | None) -> str:
    return f"{others_cpu:.2f}" if others_cpu is not None else "-"


def table(rows: Sequence[Sequence[str]], left: int) -> list[str]:
    """The rows as columns, the first ``left`` of them aligned left, under the first row a rule."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def ratio_line(
    name: str, value: float, per_round: Sequence[float], target: float | None, verdict: str
) -> str:
    spread = f"rounds {min(per_round):.2f} to {max(per_round):.2f}" if per_round else ""
    goal = f"target >= {target:.2f}" if target is not None else "no target     "
    return f"{name} = {value:.2f}   {goal}   {verdict}   ({spread})"


def by_cpu_line(title: str, by_cpu: dict[str, float]) -> str:
    return (
        f"{title}: "
        + "   ".join(f"{name} = {value:.2f}" for name, value in by_cpu.items())
        + "   (cross-check, not the verdict)"
    )


def report(summaries: dict[str, Summary], ratios: Sequence[Ratio], by_cpu: dict[str, float]) -> str:
    header = ("", "target", "req/s", "per round", "p50", "p99", "server CPU/req", "others", "errors")
    rows = [
        (s.target, s.label, *figure_cells(s), others_cell(s.others_cpu), str(s.errors))
        for s in summaries.values()
    ]
    lines = table([header, *rows], left=2)
    lines.append("")
    for r in ratios:
        lines.append(ratio_line(r.name, r.value, r.per_round, r.target, "PASS" if r.passed else "FAIL"))
    if by_cpu:
        lines.append(by_cpu_line("by server CPU per request", by_cpu))
    return "\n".join(lines)


def warn_of_failures(summaries: Iterable[Figured]) -> None:
    if any(s.errors for s in summaries):
        print("\nwarning: some requests failed (see the errors column): those figures are not comparable")


def warn_of_noise(runs: Sequence[Measurement], advice: str) -> None:
    """The warning that other processes disturbed measurements, and ``advice`` after it."""
    noisy = [m for m in runs if m.noisy]
    if noisy:
        print(
            f"\nwarning: other processes kept more than {NOISY_OTHERS_CPU:.2f} CPU busy during "
            f"{len(noisy)} of {len(runs)} measurements{advice}"
        )


# --- main --------------------------------------------------------------------------------------------


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    return parse


def _cpu_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 0 or 0,1; got {text!r}") from None


def add_measurement_options(
    parser: argparse.ArgumentParser, rounds_of: str, retries_detail: str = ""
) -> None:
    """--duration, --warmup, --connections, --threads, --rounds ("rounds of ``rounds_of``") and --retries
    (``retries_detail`` ends its first sentence): what measure() and measure_rounds() read."""
    parser.add_argument(
        "--duration",
        type=_positive(int),
        default=5,
        help="whole seconds per measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="whole seconds of warm-up before each measurement, 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--connections", type=_positive(int), default=32, help="wrk connections (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=_positive(int), default=1, help="wrk threads (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds", type=_positive(int), default=3, help=f"rounds of {rounds_of} (default: %(default)s)"
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help=f"measure again, up to this many times, when other processes kept more than {NOISY_OTHERS_CPU} "
        f"CPU busy{retries_detail} (default: %(default)s)",
    )


def add_cpu_options(parser: argparse.ArgumentParser, server_help: str, load_help: str) -> None:
    """--server-cpus and --load-cpus, for choose_pinning()."""
    parser.add_argument("--server-cpus", type=_cpu_list, default=None, help=server_help)
    parser.add_argument("--load-cpus", type=_cpu_list, default=None, help=load_help)


def check_measurement_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, threads_detail: str = ""
) -> None:
    if args.warmup < 0 or args.retries < 0:
        parser.error("--warmup and --retries must be >= 0")
    if args.connections < args.threads:
        parser.error(f"--connections must be >= --threads{threads_detail}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of Portway's Mock and Lambda proxy routes against a bare ASGI hello-world.",
    )
    add_measurement_options(
        parser, "a, b, c; medians are compared", "; the least disturbed measurement is kept"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and wrk to CPUs")
    add_cpu_options(
        parser,
        "CPUs for the servers and their Lambda workers, e.g. 0 (default: the first one allowed)",
        "CPUs for wrk, e.g. 1 (default: the second one allowed)",
    )
    parser.add_argument(
        "--worker-cpus",
        type=_cpu_list,
        default=None,
        help="CPUs for the gateway's Lambda workers (default: wrk's, off the gateway's CPU)",
    )
    parser.add_argument(
        "--workers-with-server",
        action="store_true",
        help="run the gateway's Lambda workers on the gateway's CPU (a Lambda request's cost on one CPU)",
    )
    parser.add_argument(
        "--functions",
        type=Path,
        default=FUNCTIONS,
        help="the gateway's functions file (default: bench/apps/functions.yaml)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results file (default: bench/results/bench-TIMESTAMP.json)",
    )
    args = parser.parse_args(argv)
    check_measurement_options(parser, args, " (wrk needs a connection per thread)")
    return args


def measurement_line(m: Measurement, beside: str = "") -> str:
    """One measurement's figures; ``beside`` follows its CPU per request (another process's share)."""
    cpu = _cpu_cell(m.server_cpu_us_per_request, m.workers_cpu_us_per_request)
    others = f"  others {m.others_cpu:.2f} CPU" if m.others_cpu is not None else ""
    noisy = "  NOISY" if m.noisy else ""
    errors = f"  ERRORS {m.errors}" if m.errors else ""
    return (
        f"{m.rps:>8,.0f} req/s  p50 {m.p50_ms:6.2f} ms  p99 {m.p99_ms:6.2f} ms  "
        f"CPU/req {cpu}{beside}{others}{noisy}{errors}"
    )


def measurement_config(args: argparse.Namespace) -> dict[str, Any]:
    """The options of add_measurement_options(), for the JSON results."""
    return {
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "connections": args.connections,
        "threads": args.threads,
        "rounds": args.rounds,
        "retries": args.retries,
    }


def write_results(out: Path | None, prefix: str, started: datetime, document: dict[str, Any]) -> None:
    """The JSON results to ``out``, by default bench/results/PREFIX-TIMESTAMP.json; says where."""
    path = out or RESULTS / f"{prefix}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def run(args: argparse.Namespace) -> int:
    wrk = ensure_wrk()
    pinning = choose_pinning(args)
    started = datetime.now(UTC)
    estimate = args.rounds * len(TARGET_LIST) * (args.duration + args.warmup)
    print(
        f"Portway benchmark: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
        f"(warm-up {args.warmup:g}s each), {args.rounds} rounds, ~{estimate:.0f}s of load "
        f"(more if measurements are retried)\n{pinning.note}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="portway-bench-") as tmp:
        tmp_dir = Path(tmp)
        script = tmp_dir / "report.lua"
        script.write_text(WRK_SCRIPT)
        load = Load(wrk, script, args.threads, args.connections, pinning.load_cpus)
        procs = servers(tmp_dir, pinning, args.functions.resolve())

        def ready(round_no: int) -> None:
            for name, server in procs.items():
                server.wait_ready([t.path for t in TARGET_LIST if t.server == name])
            workers = len(procs["gateway"].descendants)
            print(
                f"round {round_no}: servers started (gateway with {workers} warm Lambda worker(s))",
                flush=True,
            )

        def take(target: Target, round_no: int) -> Measurement:
            return measure(Measurement, load, procs[target.server], target, round_no, args)

        runs, discarded = measure_rounds(args, procs.values(), TARGET_LIST, ready, take, measurement_line)
    summaries, ratios = summarise(runs)
    print()
    workers_apart = pinning.worker_cpus is not None and pinning.worker_cpus != pinning.server_cpus
    by_cpu = cpu_ratios(summaries, workers_apart)
    print(report(summaries, ratios, by_cpu))
    warn_of_failures(summaries.values())
    warn_of_noise(
        runs,
        " (column 'others': the worst round's figure).\n"
        "         Their req/s and ratios are disturbed: rerun on a quiet machine.",
    )
    document = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": machine_info(wrk),
        "config": {
            **measurement_config(args),
            "noisy_others_cpu": NOISY_OTHERS_CPU,
            "pinning": pinning_json(pinning),
            "definition": str(DEFINITION.relative_to(ROOT)),
            "functions": str(args.functions),
            "targets": {t.key: {"label": t.label, "path": t.path} for t in TARGET_LIST},
        },
        "summary": {key: asdict(s) for key, s in summaries.items()},
        "ratios": {r.name: asdict(r) for r in ratios},
        "cpu_cost_ratios": by_cpu,
        "runs": [asdict(m) for m in runs],
        "discarded_runs": [asdict(m) for m in discarded],
    }
    write_results(args.out, "bench", started, document)
    return 0


def run_guarded(benchmark: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run ``benchmark``: 2 when it could not measure, 130 when interrupted (the servers are stopped)."""
    try:
        with interrupts_as_keyboard():
            return benchmark(args)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
