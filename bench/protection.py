"""What request protection costs a Mock route: JWT and Lambda authorizers, body validation, a web ACL.

Requests/s of one ``portway serve`` process per target (bench/apps/protection_api.yaml, a REST API; stages in
bench/apps/protection_functions.yaml; every process ``--account-throttle off``), with wrk as a bounded load
from a second process on 127.0.0.1, of

  (n) GET /plain/mock: the Mock route, no protection (its pipeline is compress → integration: checked in the
      server's own route table, as for every target);
  (j) GET /plain/jwt: the same Mock integration behind a Cognito user pool authorizer (the REST API kind of
      JWT authorizer: one definition holds j and l, and a Lambda TOKEN authorizer exists on REST APIs only).
      An RS256 key pair is made at start; its public key set is the authorizer's ``x-portway-jwks`` file
      and wrk sends ``Authorization: Bearer`` an ID token signed with it (the pool's issuer, its client as
      ``aud``, ``token_use: id``, valid for 12 hours). The authorizer remembers verified tokens, so after
      the first request each one is a cache hit (a dict lookup and the claims for the integration);
  (l) GET /plain/lambda: a Lambda TOKEN authorizer (bench/apps/authorizers.py, allows every method),
      ``authorizerResultTtlInSeconds: 300``: after the first request every one is a cache hit; wrk sends the
      token (a miss would show as Lambda workers' CPU: warned of);
  (v) POST /plain/orders: a request validator checks a 10-field JSON body (219 bytes) against the
      Order model (draft 4: types, 8 required, enums, patterns, formats, bounds, an array); wrk sends it (a
      Lua script sets the method and body, run.py's report script beside it);
  (w) GET /guarded/mock: the Mock route behind the ``guarded`` stage's web ACL of 10 rules that lets the
      request through (IP set, per-client rate-based rule with a limit far above any run's count, byte
      match on the path, regex matches on the User-Agent header and the query string, a size constraint,
      SQL injection and XSS on the query arguments and on the body);

and prints j/n, l/n, v/n and w/n against the target 0.7 each. Every request carries the same query string
and User-Agent (something for the web ACL's rules to inspect). Before measuring, every round, each target must
answer 200 ``{"hello":"world"}`` and refuse what it is there to refuse (j without a token and with a token
signed by another key → 401, l without a token → 401, v with a bad body → 400, w with SQL injection or a
script in the query → 403). run.py's method: servers pinned to one CPU and wrk to another (the authorizer's
Lambda worker beside wrk), a warm-up before every measurement, rounds in a rotating order with fresh server
processes every round, medians, per-round spread, CPU per request from /proc, NOISY measurements retried.

    .venv/bin/python bench/protection.py           # 3 rounds of 5 targets (1 s + 5 s): about 2 minutes

The exit code is 0 whether or not the targets are met (it is a measurement); 2 when it could not measure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from joserfc import jwt
from joserfc.jwk import RSAKey
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
    Ratio,
    Server,
    Summary,
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
    machine_info,
    measure,
    measure_rounds,
    measurement_config,
    measurement_line,
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

DEFINITION = BENCH / "apps" / "protection_api.yaml"
FUNCTIONS = BENCH / "apps" / "protection_functions.yaml"
TARGET = 0.7
TARGETS: dict[str, float] = {"j/n": TARGET, "l/n": TARGET, "v/n": TARGET, "w/n": TARGET}

# The user pool of protection_api.yaml's ``pool`` scheme: its providerARNs name it, tokens name its issuer.
USER_POOL_ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_PortwayBench"
POOL_CLIENT = "portway-bench-client"
KEY_ID = "portway-bench-rs256"
TOKEN_LIFETIME_S = 12 * 3600
LAMBDA_TOKEN = "lambda-bench-token"  # the Lambda authorizer allows any token: this one, every request
QUERY = "?page=2&sort=price&q=blue+shoes"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
JSON = "application/json"
UNAUTHORIZED = b'{"message":"Unauthorized"}'
BAD_BODY = b'{"message":"Invalid request body"}'
FORBIDDEN = b'{"message":"Forbidden"}'

# The body v sends: all ten fields of the Order model, each valid.
ORDER = {
    "orderId": "ord-004217",
    "customerId": "c-88123",
    "email": "jane.doe@example.com",
    "quantity": 3,
    "unitPrice": 19.99,
    "currency": "EUR",
    "status": "paid",
    "express": True,
    "tags": ["gift", "priority"],
    "createdAt": "2026-11-26T10:40:53Z",
}
BAD_ORDER = {**ORDER, "quantity": "three", "currency": "XYZ"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the target must refuse, checked before measuring: ``what`` it is, for the messages."""

    what: str
    status: int
    answer: bytes
    headers: dict[str, str]
    query: str = QUERY
    body: bytes | None = None


@dataclass(frozen=True, slots=True)
class ProtectionTarget:
    key: str
    label: str
    stage: str
    method: str
    route: str  # the resource, served at /STAGE/route
    pipeline: str  # the route's stages, as the server's route table must show them
    headers: dict[str, str]  # what wrk sends (with -H) and the checks send
    body: bytes | None = None  # the request body (POST)
    refusals: tuple[Refusal, ...] = ()

    @property
    def path(self) -> str:
        return f"/{self.stage}{self.route}{QUERY}"

    def wrk_headers(self) -> list[str]:
        return [f"{name}: {value}" for name, value in self.headers.items()]


@dataclass(slots=True)
class ProtectionSummary(Summary):
    pipeline: str = ""
    non_2xx: int = 0  # answers that were not 2xx or 3xx (wrk's status errors)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The key pair made for this run and the tokens signed with it."""

    public_jwks: dict[str, Any]
    claims: dict[str, Any]
    token: str  # an ID token of the pool, valid
    forged: str  # the same claims signed by another key under the same kid: must be refused


def make_credentials() -> Credentials:
    key = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
    stranger = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
    now = int(time.time())
    claims: dict[str, Any] = {  # a Cognito ID token's claims
        "sub": "5f3c8e2a-0b7d-4c1e-9a6f-bench0000001",
        "aud": POOL_CLIENT,
        "iss": USER_POOL_ISSUER,
        "token_use": "id",
        "cognito:username": "bench-user",
        "email": "bench-user@example.com",
        "email_verified": True,
        "auth_time": now,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_S,
    }
    header = {"alg": "RS256", "kid": KEY_ID}
    return Credentials(
        public_jwks={"keys": [key.as_dict(private=False)]},
        claims=claims,
        token=jwt.encode(header, claims, key, algorithms=["RS256"]),
        forged=jwt.encode(header, claims, stranger, algorithms=["RS256"]),
    )


def prepare_definition(tmp: Path, credentials: Credentials) -> Path:
    """protection_api.yaml copied into ``tmp`` with the public key set beside it, where the user pool
    scheme's ``x-portway-jwks`` (a path relative to the definition) points."""
    text = DEFINITION.read_text()
    jwks = yaml.safe_load(text)["components"]["securitySchemes"]["pool"]["x-portway-jwks"]
    definition = tmp / DEFINITION.name
    definition.write_text(text)
    key_set = tmp / jwks
    key_set.parent.mkdir(parents=True, exist_ok=True)
    key_set.write_bytes(orjson.dumps(credentials.public_jwks))
    return definition


def target_list(credentials: Credentials) -> tuple[ProtectionTarget, ...]:
    browser = {"User-Agent": USER_AGENT}
    bearer = {**browser, "Authorization": f"Bearer {credentials.token}"}
    json_body = {**browser, "Content-Type": JSON}
    return (
        ProtectionTarget("n", "no protection", "plain", "GET", "/mock", "compress → integration", browser),
        ProtectionTarget(
            "j",
            "JWT, Cognito user pool",
            "plain",
            "GET",
            "/jwt",
            "cognito → compress → integration",
            bearer,
            refusals=(
                Refusal("without a token", 401, UNAUTHORIZED, browser),
                Refusal(
                    "with a token signed by another key",
                    401,
                    UNAUTHORIZED,
                    {**browser, "Authorization": f"Bearer {credentials.forged}"},
                ),
            ),
        ),
        ProtectionTarget(
            "l",
            "Lambda TOKEN, cached",
            "plain",
            "GET",
            "/lambda",
            "authorizer → compress → integration",
            {**browser, "Authorization": f"Bearer {LAMBDA_TOKEN}"},
            refusals=(Refusal("without a token", 401, UNAUTHORIZED, browser),),
        ),
        ProtectionTarget(
            "v",
            "body validation",
            "plain",
            "POST",
            "/orders",
            "compress → validate → integration",
            json_body,
            body=orjson.dumps(ORDER),
            refusals=(Refusal("with a bad body", 400, BAD_BODY, json_body, body=orjson.dumps(BAD_ORDER)),),
        ),
        ProtectionTarget(
            "w",
            "web ACL, 10 rules",
            "guarded",
            "GET",
            "/mock",
            "waf → compress → integration",
            browser,
            refusals=(
                Refusal(
                    "with SQL injection in the query", 403, FORBIDDEN, browser, "?q=1%27%20OR%20%271%27=%271"
                ),
                Refusal(
                    "with a script in the query",
                    403,
                    FORBIDDEN,
                    browser,
                    "?q=%3Cscript%3Ealert(1)%3C/script%3E",
                ),
            ),
        ),
    )


def post_script(body: bytes) -> str:
    """run.py's report script, with the method and body wrk sends (headers go with -H)."""
    text = body.decode()
    if "]==]" in text:
        raise BenchError("the body would end the Lua string early")
    return f'{WRK_SCRIPT}\nwrk.method = "POST"\nwrk.body = [==[{text}]==]\n'


def gateway_argv(definition: Path, stage: str, port: int) -> list[str]:
    return [
        *(sys.executable, "-m", "portway", "serve", str(definition), "--functions", str(FUNCTIONS)),
        *("--stage", stage, "--account-throttle", "off"),
        *("--host", HOST, "--port", str(port), "--log-level", "warning"),
    ]


def check_target(server: Server, target: ProtectionTarget) -> str:
    """The expected pipeline, 200 with the known body (twice: the second from the authorizers' caches), and
    every refusal; the pipeline as served."""
    pipeline = route_pipeline(server, target.route, target.method)
    if pipeline != target.pipeline:
        raise BenchError(
            f"{server.name}: {target.method} {target.route} runs {pipeline!r}, expected {target.pipeline!r}"
        )
    for _ in range(2):
        server.expect_hello(target.path, target.headers, target.method, target.body)
    for refusal in target.refusals:
        path = f"/{target.stage}{target.route}{refusal.query}"
        server.expect(refusal.status, refusal.answer, path, refusal.headers, target.method, refusal.body)
    return pipeline


# --- figures -----------------------------------------------------------------------------------------------


def summarise(
    targets: Sequence[ProtectionTarget], runs: Sequence[Measurement], pipelines: dict[str, str]
) -> tuple[dict[str, ProtectionSummary], list[Ratio]]:
    summaries = {
        target.key: ProtectionSummary(
            target=target.key,
            label=target.label,
            pipeline=pipelines.get(target.key, target.pipeline),
            non_2xx=sum(m.errors.get("non-2xx/3xx", 0) for m in mine),
            **figures(mine),
        )
        for target, mine in by_target(targets, runs)
    }
    ratios = [
        Ratio(name, value, per_round, TARGETS[name], value >= TARGETS[name])
        for name, value, per_round in rps_ratios(summaries, "n", TARGETS)
    ]
    return summaries, ratios


def gateway_cost(summary: ProtectionSummary | None, workers_apart: bool) -> float | None:
    """The gateway's CPU per request: without the Lambda workers' share when they run on another CPU."""
    if summary is None or not summary.server_cpu_us_per_request:
        return None
    workers = summary.workers_cpu_us_per_request or 0.0
    return summary.server_cpu_us_per_request - (workers if workers_apart else 0.0)


def report(
    summaries: dict[str, ProtectionSummary],
    ratios: Sequence[Ratio],
    by_cpu: dict[str, float],
    workers_apart: bool,
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
        "others",
        "non-2xx",
        "errors",
    )
    rows = [
        (
            s.target,
            s.label,
            s.pipeline,
            *figure_cells(s),
            others_cell(s.others_cpu),
            str(s.non_2xx),
            str(s.errors - s.non_2xx),
        )
        for s in summaries.values()
    ]
    lines = table([header, *rows], left=3)
    lines.append("")
    for r in ratios:
        lines.append(ratio_line(r.name, r.value, r.per_round, r.target, "PASS" if r.passed else "FAIL"))
    if by_cpu:
        lines.append(by_cpu_line("by the gateway's CPU per request", by_cpu))
    base = gateway_cost(summaries.get("n"), workers_apart)
    extra = {
        key: cost - base
        for key, s in summaries.items()
        if key != "n" and base is not None and (cost := gateway_cost(s, workers_apart)) is not None
    }
    if extra:
        lines.append(
            "the protection's CPU per request (the gateway's, over n's): "
            + "   ".join(f"{key} {value:+.0f} µs" for key, value in extra.items())
        )
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------------


def throughput(
    args: argparse.Namespace,
    wrk: str,
    pinning: Pinning,
    tmp: Path,
    definition: Path,
    targets: Sequence[ProtectionTarget],
) -> dict[str, Any]:
    script = tmp / "report.lua"
    script.write_text(WRK_SCRIPT)
    loads: dict[str, Load] = {}
    procs: dict[str, Server] = {}
    for target in targets:
        if target.body is not None:
            posting = tmp / f"post-{target.key}.lua"
            posting.write_text(post_script(target.body))
            loads[target.key] = Load(wrk, posting, args.threads, args.connections, pinning.load_cpus)
        else:
            loads[target.key] = Load(wrk, script, args.threads, args.connections, pinning.load_cpus)
        port = free_port()
        procs[target.key] = Server(
            f"gateway-{target.key}",
            gateway_argv(definition, target.stage, port),
            port,
            tmp / f"gateway-{target.key}.log",
            pinning.server_cpus,
            pinning.worker_cpus,
        )
    pipelines: dict[str, str] = {}

    def ready(round_no: int) -> None:
        for target in targets:
            server = procs[target.key]
            server.wait_ready([])
            pipelines[target.key] = check_target(server, target)
        print(
            f"round {round_no}: servers started, every target answered 200 {EXPECTED_BODY!r} "
            f"and refused what it should",
            flush=True,
        )

    def take(target: ProtectionTarget, round_no: int) -> Measurement:
        load, server = loads[target.key], procs[target.key]
        return measure(Measurement, load, server, target, round_no, args, target.wrk_headers())

    runs, discarded = measure_rounds(args, procs.values(), targets, ready, take, measurement_line)
    summaries, ratios = summarise(targets, runs, pipelines)
    workers_apart = pinning.worker_cpus is not None and pinning.worker_cpus != pinning.server_cpus
    by_cpu = cost_ratios(lambda key: gateway_cost(summaries.get(key), workers_apart), "n", TARGETS)
    print()
    print(report(summaries, ratios, by_cpu, workers_apart))
    warn_of_failures(summaries.values())
    cached = summaries.get("l")
    if cached is not None and (cached.workers_cpu_us_per_request or 0.0) >= 1:
        print(
            "\nwarning: the Lambda authorizer's worker worked during l's measurement "
            f"({cached.workers_cpu_us_per_request:.0f} µs per request): some requests missed its cache"
        )
    warn_of_noise(runs, ": rerun on a quiet machine.")
    return {
        "pinning": pinning_json(pinning),
        "targets": {
            t.key: {
                "label": t.label,
                "method": t.method,
                "path": t.path,
                "stage": t.stage,
                "headers": sorted(t.headers),  # names only: the values hold the tokens
                "body_bytes": len(t.body) if t.body is not None else None,
                "pipeline": pipelines.get(t.key),
                "refusals": [{"what": r.what, "status": r.status, "query": r.query} for r in t.refusals],
            }
            for t in targets
        },
        "summary": {key: asdict(s) for key, s in summaries.items()},
        "ratios": {r.name: asdict(r) for r in ratios},
        "cpu_cost_ratios": by_cpu,
        "runs": [asdict(m) for m in runs],
        "discarded_runs": [asdict(m) for m in discarded],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What JWT and Lambda authorizers, body validation and a web ACL cost a Mock route.",
    )
    add_measurement_options(parser, "n, j, l, v, w", "; the least disturbed measurement is kept")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers and wrk to CPUs")
    add_cpu_options(
        parser,
        "CPUs for the gateways, e.g. 0 (default: the first one allowed)",
        "CPUs for wrk and the authorizer's Lambda worker, e.g. 1 (default: the second one allowed)",
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
    credentials = make_credentials()
    targets = target_list(credentials)
    estimate = args.rounds * len(targets) * (args.duration + args.warmup)
    print(
        f"Portway protection benchmark: wrk -t{args.threads} -c{args.connections} -d{args.duration}s "
        f"(warm-up {args.warmup}s each), {args.rounds} rounds, ~{estimate:.0f}s of load "
        f"(more if measurements are retried)\n{pinning.note}\n"
        f"RS256 key {KEY_ID!r} made; ID token for {USER_POOL_ISSUER} valid {TOKEN_LIFETIME_S // 3600} h",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="portway-protection-") as tmp:
        tmp_dir = Path(tmp)
        definition = prepare_definition(tmp_dir, credentials)
        document: dict[str, Any] = {"started": started.isoformat()}
        document["throughput"] = throughput(args, wrk, pinning, tmp_dir, definition, targets)
    document.update(
        finished=datetime.now(UTC).isoformat(),
        machine=machine_info(wrk),
        config={
            **measurement_config(args),
            "definition": str(DEFINITION.relative_to(ROOT)),
            "functions": str(FUNCTIONS.relative_to(ROOT)),
            "query": QUERY,
            "user_agent": USER_AGENT,
            "token": {"alg": "RS256", "kid": KEY_ID, "claims": credentials.claims},
            "order_body": ORDER,
            "targets": TARGETS,
        },
    )
    write_results(args.out, "protection", started, document)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_guarded(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
