"""The ``portway`` command: serve, routes, check; keys, usage-plans, usage; cache flush."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from portway import cli_usage
from portway.app import Served
from portway.config.compile import cache_prefix
from portway.config.errors import DefinitionErrors, Problem
from portway.gateway import Gateway
from portway.observability.access_log import LogStreamHandler
from portway.service import DEFAULT_KEYS_STATE, Service, ServiceOptions, run_event_loop
from portway.stages.throttle import ACCOUNT_LIMIT, Limit
from portway.state.factory import open_store
from portway.state.store import StoreError
from portway.websocket.gateway import WebSocketGateway

__all__ = ["main"]

T = TypeVar("T")
EXIT_PROBLEMS = 1


def _stage_variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _account_throttle(text: str) -> Limit | None:
    if text.lower() == "off":
        return None
    rate, sep, burst = text.partition("/")
    try:
        limit = Limit(float(rate), int(burst))
    except ValueError:
        limit = None
    if not sep or limit is None or limit.rate < 0 or limit.burst < 0:
        raise argparse.ArgumentTypeError(f"expected RATE/BURST (like 10000/5000) or 'off', got {text!r}")
    return limit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portway", description="Run Amazon API Gateway definitions locally, with Python Lambda handlers."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def definition_args(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "definition", type=Path, help="OpenAPI 3 / Swagger 2 file with API Gateway extensions"
        )
        sub.add_argument(
            "--functions",
            type=Path,
            default=None,
            help="functions file binding Lambda function names to handlers (default: functions.yaml beside "
            "the definition, if present)",
        )
        sub.add_argument(
            "--stage",
            default=None,
            help="stage name, served as the first path part (default: dev for a REST API; an HTTP API's "
            "$default stage, served at the root)",
        )
        sub.add_argument(
            "--stage-variable",
            action="append",
            type=_stage_variable,
            default=[],
            metavar="NAME=VALUE",
            help="set a stage variable (repeatable; wins over the functions file's stages.STAGE.variables)",
        )

    def overrides(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--parameter-overrides",
            nargs="+",
            type=_stage_variable,
            default=[],
            metavar="NAME=VALUE",
            help="values for a SAM template's Parameters (as sam deploy takes them)",
        )

    serve = commands.add_parser("serve", help="serve the API")
    overrides(serve)
    definition_args(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--reload", action="store_true", help="pick up definition and handler code changes")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--state",
        default="memory",
        metavar="URL",
        help="where throttle buckets and cached responses live: 'memory' (this process, the default) or "
        "redis://HOST:PORT/DB, shared by every gateway node using it",
    )
    serve.add_argument(
        "--keys-state",
        default=None,
        metavar="URL",
        help="where API keys, usage plans and quota counters live (default: the --state Redis, else "
        f"{DEFAULT_KEYS_STATE}); the `portway keys` commands take the same --state",
    )
    serve.add_argument(
        "--account-throttle",
        type=_account_throttle,
        default=ACCOUNT_LIMIT,
        metavar="RATE/BURST",
        help="account-level throttle over every route, requests/s and burst (AWS's default 10000/5000), "
        "or 'off'",
    )
    monitoring = serve.add_argument_group("monitoring")
    monitoring.add_argument(
        "--admin-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics (/metrics), the dashboard (/) and its JSON API (/api/…) on this port",
    )
    monitoring.add_argument(
        "--admin-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the admin listener's address (default 127.0.0.1; any other needs --admin-token)",
    )
    monitoring.add_argument(
        "--admin-token",
        default=os.environ.get("PORTWAY_ADMIN_TOKEN"),
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on the admin listener (default: $PORTWAY_ADMIN_TOKEN)",
    )
    monitoring.add_argument("--no-metrics", action="store_true", help="keep no metrics (and no dashboard)")
    monitoring.add_argument(
        "--access-log",
        default="-",
        metavar="DEST",
        help="where access log lines go, with the Lambda handlers' output and the gateway's own log: '-' "
        "(stdout, the default), 'stderr', a file, or 'off'",
    )
    monitoring.add_argument(
        "--access-log-format",
        default=None,
        metavar="FORMAT",
        help="a preset (clf, json, xml, csv) or a format with $context variables (default: the stage's "
        "accessLogSettings.format, else json)",
    )
    monitoring.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="export OpenTelemetry spans over OTLP/HTTP to this collector (default: "
        "$OTEL_EXPORTER_OTLP_ENDPOINT if set; needs `pip install 'portway[otel]'`)",
    )
    cli_usage.register(commands)
    cache = commands.add_parser("cache", help="the stage's response cache")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    flush = cache_commands.add_parser(
        "flush",
        help="drop every cached response of one API stage (as FlushStageCache does)",
        description="Drop every cached response of one API stage. With --state redis://… the shared cache "
        "is flushed directly; a gateway on the in-process memory store flushes its own cache on SIGUSR1 "
        "(give --pid).",
    )
    definition_args(flush)
    overrides(flush)
    flush_target = flush.add_mutually_exclusive_group(required=True)
    flush_target.add_argument("--state", metavar="URL", help="the store the gateways cache in (redis://…)")
    flush_target.add_argument("--pid", type=int, help="a `portway serve` process using the memory store")
    for name, text in (
        ("routes", "print the compiled route table"),
        ("check", "validate and import every handler"),
    ):
        sub = commands.add_parser(name, help=text)
        definition_args(sub)
        overrides(sub)
    return parser


def _options(args: argparse.Namespace) -> ServiceOptions:
    return ServiceOptions(
        definition=args.definition,
        functions=args.functions,
        stage=args.stage,
        stage_variables=dict(args.stage_variable),
        parameter_overrides=dict(args.parameter_overrides),
        host=getattr(args, "host", "127.0.0.1"),
        port=getattr(args, "port", 3000),
        reload=getattr(args, "reload", False),
        state=getattr(args, "state", "memory"),
        keys_state=getattr(args, "keys_state", None),
        account_limit=getattr(args, "account_throttle", ACCOUNT_LIMIT),
        metrics=not getattr(args, "no_metrics", False),
        admin_host=getattr(args, "admin_host", "127.0.0.1"),
        admin_port=getattr(args, "admin_port", None),
        admin_token=getattr(args, "admin_token", None),
        access_log=_access_log(getattr(args, "access_log", "off")),
        access_log_format=getattr(args, "access_log_format", None),
        otlp_endpoint=getattr(args, "otlp_endpoint", None),
    )


def _access_log(destination: str) -> str | None:
    return None if destination.lower() in ("off", "none", "") else destination


def _print_problems(problems: Sequence[Problem]) -> int:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS


def route_table(gateway: Served) -> str:
    if isinstance(gateway, WebSocketGateway):
        pairs = [("ROUTE KEY", "INTEGRATION"), *gateway.describe_routes()]
        width = max(len(key) for key, _ in pairs)
        return "\n".join(f"{key:<{width}}  {target}" for key, target in pairs)
    rows = [("METHOD", "RESOURCE", "INTEGRATION", "STAGES")]
    for route in sorted(gateway.routes(), key=lambda r: (r.resource, r.method)):
        rows.append((route.method, route.resource, route.integration.describe(), route.describe_stages()))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        for row in rows
    )


def _served_under(gateway: Served) -> str:
    if isinstance(gateway, WebSocketGateway):
        return f"{gateway.prefix} (WebSocket)"
    return gateway.prefix or "/"


def _routes(options: ServiceOptions) -> int:
    service = Service(options)
    try:
        gateway = service.compile()
    except DefinitionErrors as exc:
        return _print_problems(exc.problems)
    print(
        f"{gateway.api.title} ({gateway.api.kind} API), stage {gateway.stage}: "
        f"served under {_served_under(gateway)}"
    )
    print(route_table(gateway))
    return 0


async def _flush_cache(options: ServiceOptions, state: str) -> int:
    service = Service(options)
    try:
        gateway = service.compile()
    except DefinitionErrors as exc:
        return _print_problems(exc.problems)
    if not isinstance(gateway, Gateway):
        print("error: a WebSocket API has no response cache", file=sys.stderr)
        return EXIT_PROBLEMS
    try:
        store = open_store(state)
    except ValueError as exc:
        print(f"error: --state: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    if store.name == "memory":
        print(
            "error: --state memory: an in-process cache lives inside its `portway serve` process; flush it "
            "with --pid PID (the process flushes on SIGUSR1)",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    try:
        dropped = await store.cache_drop(cache_prefix(gateway.api_info.api_id, gateway.stage))
    except StoreError as exc:
        print(f"error: --state {state}: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        await store.close()
        await service.close()
    print(f"flushed {dropped} cached response(s) of {gateway.api.title}, stage {gateway.stage}")
    return 0


def _signal_flush(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGUSR1)
    except OSError as exc:
        print(f"error: --pid {pid}: {exc.strerror}", file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"asked process {pid} to flush its response cache")
    return 0


async def _check(options: ServiceOptions) -> int:
    service = Service(options)
    try:
        problems = await service.start()
    finally:
        await service.close()
    if problems:
        return _print_problems(problems)
    assert service.app is not None
    gateway = service.app.gateway
    print(f"ok: {len(gateway.routes())} routes, {len(gateway.functions)} functions, every handler imports")
    return 0


async def _serve(options: ServiceOptions, log_level: str) -> int:
    try:
        service = Service(options)
    except (ValueError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    log_format = "%(asctime)s %(levelname)-5s %(name)s %(message)s"
    writer = service.resources.access_log
    if writer is not None:
        # The handlers' output and the gateway's own log go where the access log goes, in one stream.
        handler: logging.Handler = LogStreamHandler(writer)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(log_format))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    problems = await service.start()
    if problems:
        await service.close()
        return _print_problems(problems)
    assert service.app is not None
    gateway = service.app.gateway
    scheme = "ws" if isinstance(gateway, WebSocketGateway) else "http"
    print(
        f"Portway: {gateway.api.title} ({gateway.api.kind} API) on "
        f"{scheme}://{options.host}:{options.port}{gateway.prefix}",
        file=sys.stderr,
    )
    if isinstance(gateway, WebSocketGateway):
        print(
            f"@connections API: http://{options.host}:{options.port}{gateway.prefix}/@connections/{{id}}",
            file=sys.stderr,
        )
    print(route_table(gateway), file=sys.stderr, flush=True)
    await service.serve()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in cli_usage.COMMANDS:
        return cli_usage.run(args)
    if args.command == "cache" and args.pid is not None:
        return _signal_flush(args.pid)
    options = _options(args)
    if args.command == "cache":
        return run_event_loop(_flush_cache(options, args.state))
    if args.command == "routes":
        return _routes(options)
    if args.command == "check":
        return run_event_loop(_check(options))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run_event_loop(_serve(options, args.log_level))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
