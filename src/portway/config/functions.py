"""The functions file: Lambda function names bound to local Python handlers, and stage variables.

```yaml
functions:
  products:
    handler: src/products.handler   # path/to/module.function, relative to this file
    timeout: 10                     # function timeout in seconds (Lambda's default: 3)
    memory: 256                     # MB, reported to the handler as Lambda does
    concurrency: 4                  # warm workers at most; further requests queue
    environment: {TABLE: products}
stages:
  dev:
    variables: {fn: products}
    methodSettings:                 # REST APIs, as the Stage resource names them; "*/*": every method
      "*/*": {throttlingRateLimit: 100, throttlingBurstLimit: 50}
      "/products/{id}/GET": {cachingEnabled: true, cacheTtlInSeconds: 60}
    cacheClusterEnabled: true       # the stage's response cache (cacheClusterSize: its bound, in GB)
    webAcl: {defaultAction: allow, rules: [...]}   # a web ACL (AWS WAF's rules): see portway.stages.waf
    accessLogSettings: {format: '{"requestId":"$context.requestId"}'}   # or a preset: clf, json, xml, csv
    defaultRouteSettings: {...}     # HTTP APIs: every route's default, and
    routeSettings: {"GET /items": {...}}   # per route key
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from portway.config.errors import DefinitionErrors, Problem, json_path
from portway.config.model import ALL_METHODS_KEY, Deployment, FunctionEntry, MethodSetting, StageSettings
from portway.config.source import load_document
from portway.lambdas.spec import RESERVED_ENVIRONMENT

__all__ = [
    "CACHE_CLUSTER_SIZES",
    "IGNORED_METHOD_KEYS",
    "IGNORED_ROUTE_KEYS",
    "METHOD_SETTING_KEYS",
    "Add",
    "cache_cluster",
    "load_functions",
    "method_setting",
    "method_settings_key",
]

Add = Callable[[str, str], None]  # reports one problem: (JSON path, message)

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HANDLER = re.compile(r"^([^\s]+/)?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FUNCTION_KEYS = {"handler", "timeout", "memory", "environment", "concurrency", "description"}
MAX_TIMEOUT_S = 900
MEMORY_RANGE = (128, 10_240)
_STAGE_KEYS = {
    "variables",
    "methodSettings",
    "defaultRouteSettings",
    "routeSettings",
    "cacheClusterEnabled",
    "cacheClusterSize",
    "webAcl",
    "accessLogSettings",
}
CACHE_CLUSTER_SIZES = ("0.5", "1.6", "6.1", "13.5", "28.4", "58.2", "118", "237")  # GB, as AWS offers them
CACHE_TTL_MAX_S = 3600
CACHE_CONTROL_STRATEGIES = (
    "FAIL_WITH_403",
    "SUCCEED_WITH_RESPONSE_HEADER",
    "SUCCEED_WITHOUT_RESPONSE_HEADER",
)
# The method settings Portway applies, as the Stage resource names them (a SAM template capitalises them).
METHOD_SETTING_KEYS = frozenset(
    {
        "throttlingRateLimit",
        "throttlingBurstLimit",
        "cachingEnabled",
        "cacheTtlInSeconds",
        "requireAuthorizationForCacheControl",
        "unauthorizedCacheControlHeaderStrategy",
    }
)
# Method settings API Gateway has that change nothing in Portway (yet): accepted, so real exports load.
IGNORED_METHOD_KEYS = frozenset({"metricsEnabled", "loggingLevel", "dataTraceEnabled", "cacheDataEncrypted"})
IGNORED_ROUTE_KEYS = frozenset({"detailedMetricsEnabled", "loggingLevel", "dataTraceEnabled"})


def load_functions(file: Path) -> Deployment:
    """Read a functions file; every problem is reported with its JSON path."""
    document = load_document(file)
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(file, path, message))

    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        add("$", "must be a mapping with 'functions' (and optionally 'stages')")
        raise DefinitionErrors(problems)
    for key in document:
        if key not in {"functions", "stages"}:
            add(json_path(str(key)), "unknown key: expected 'functions' or 'stages'")
    functions: dict[str, FunctionEntry] = {}
    raw_functions = document.get("functions") or {}
    if not isinstance(raw_functions, Mapping):
        add(json_path("functions"), "must be a mapping of function names to settings")
        raw_functions = {}
    for name, spec in raw_functions.items():
        entry = _function(str(name), spec, file, add)
        if entry is not None:
            functions[entry.name] = entry
    stages: dict[str, dict[str, str]] = {}
    settings: dict[str, StageSettings] = {}
    raw_stages = document.get("stages") or {}
    if not isinstance(raw_stages, Mapping):
        add(json_path("stages"), "must be a mapping of stage names to settings")
        raw_stages = {}
    for stage, spec in raw_stages.items():
        where = json_path("stages", str(stage))
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            add(where, f"must be a mapping (known settings: {', '.join(sorted(_STAGE_KEYS))})")
            continue
        for key in spec:
            if key not in _STAGE_KEYS:
                add(f"{where}.{key}", f"unknown setting (known: {', '.join(sorted(_STAGE_KEYS))})")
        variables = spec.get("variables", {})
        if not isinstance(variables, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in variables.items()
        ):
            add(f"{where}.variables", "must be a mapping of variable names to string values")
        else:
            stages[str(stage)] = {k: str(v) for k, v in variables.items()}
        parsed = _stage_settings(spec, where, add)
        if parsed is not None:
            settings[str(stage)] = parsed
    if problems:
        raise DefinitionErrors(problems)
    return Deployment(source=file, functions=functions, stage_variables=stages, stage_settings=settings)


def _stage_settings(spec: Mapping[str, Any], where: str, add: Add) -> StageSettings | None:
    """A stage's methodSettings / route settings and cache cluster; None when it sets none of them."""
    if not any(key in spec for key in _STAGE_KEYS - {"variables"}):
        return None
    method_settings: dict[tuple[str, str], MethodSetting] = {}
    raw = spec.get("methodSettings")
    if raw is not None:
        if not isinstance(raw, Mapping):
            add(f"{where}.methodSettings", "must be a mapping of 'RESOURCE/METHOD' (or '*/*') to settings")
        else:
            for key, value in raw.items():
                here = f"{where}.methodSettings['{key}']"
                target = method_settings_key(str(key))
                if target is None:
                    add(here, "the key must be '*/*' or a resource path and a method, like '/items/{id}/GET'")
                    continue
                setting = method_setting(value, here, add, known=METHOD_SETTING_KEYS | IGNORED_METHOD_KEYS)
                if setting is not None:
                    method_settings[target] = setting
    default_route = spec.get("defaultRouteSettings")
    if default_route is not None:
        setting = method_setting(
            default_route,
            f"{where}.defaultRouteSettings",
            add,
            known=METHOD_SETTING_KEYS | IGNORED_ROUTE_KEYS,
        )
        if setting is not None:
            method_settings[ALL_METHODS_KEY] = setting
    routes = spec.get("routeSettings")
    if routes is not None:
        if not isinstance(routes, Mapping):
            add(f"{where}.routeSettings", "must be a mapping of route keys ('GET /items') to settings")
        else:
            for key, value in routes.items():
                here = f"{where}.routeSettings['{key}']"
                setting = method_setting(value, here, add, known=METHOD_SETTING_KEYS | IGNORED_ROUTE_KEYS)
                if setting is not None:
                    method_settings[(str(key), "*")] = setting
    enabled, size = cache_cluster(
        spec.get("cacheClusterEnabled", False),
        spec.get("cacheClusterSize", "0.5"),
        f"{where}.cacheClusterEnabled",
        f"{where}.cacheClusterSize",
        add,
    )
    web_acl = spec.get("webAcl")  # checked where it is used (stages/waf.py), with the rest of the pipeline
    if web_acl is not None and not isinstance(web_acl, Mapping):
        add(f"{where}.webAcl", "must be a mapping with 'rules' (see portway.stages.waf)")
        web_acl = None
    log_format, log_where = access_log_settings(
        spec.get("accessLogSettings"), f"{where}.accessLogSettings", add
    )
    return StageSettings(
        method_settings=method_settings,
        cache_cluster_enabled=enabled,
        cache_cluster_size_gb=size,
        web_acl=web_acl,
        access_log_format=log_format,
        access_log_where=log_where,
        where=where,
    )


def access_log_settings(raw: Any, where: str, add: Add, format_key: str = "format") -> tuple[str | None, str]:
    """A stage's access log settings: its format (checked when the gateway is compiled, with the
    variables it names) and where that was written. The destination (a log group's ARN) is not used:
    lines go where ``portway serve --access-log`` sends them."""
    if raw is None:
        return None, ""
    if not isinstance(raw, Mapping):
        add(where, f"must be a mapping with a {format_key} (and optionally a destination ARN)")
        return None, ""
    allowed = {format_key, "destinationArn", "DestinationArn"}
    for key in raw:
        if key not in allowed:
            add(f"{where}.{key}", f"unknown access log setting (known: {', '.join(sorted(allowed))})")
    text = raw.get(format_key)
    if text is None:
        return None, ""
    if not isinstance(text, str) or not text.strip():
        add(f"{where}.{format_key}", "must be a non-empty format string ($context variables) or a preset")
        return None, ""
    return text, f"{where}.{format_key}"


def cache_cluster(
    enabled: Any, size: Any, enabled_where: str, size_where: str, add: Add
) -> tuple[bool, float]:
    """A stage's cache cluster: whether it is on, and its size in GB (bad values reported, then off / 0.5)."""
    if not isinstance(enabled, bool):
        add(enabled_where, "must be true or false")
        enabled = False
    text = str(size)
    if text not in CACHE_CLUSTER_SIZES:
        add(size_where, f"must be one of {', '.join(CACHE_CLUSTER_SIZES)} (GB)")
        text = "0.5"
    return enabled, float(text)


def method_settings_key(key: str) -> tuple[str, str] | None:
    """`/items/{id}/GET` (or AWS's escaped `~1items~1{id}/GET`) → (resource, METHOD); `*/*` → ("*", "*")."""
    resource, slash, method = key.replace("~1", "/").rpartition("/")
    if not slash or not method:
        return None
    if resource == "*":
        return ("*", "*") if method == "*" else None
    if not resource.startswith("/"):
        resource = f"/{resource}"
    method = method.upper()
    if method != "*" and method not in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"}:
        return None
    return resource, method


def _as_written(name: str) -> str:
    return name


def method_setting(
    raw: Any,
    where: str,
    add: Add,
    *,
    known: Collection[str] = METHOD_SETTING_KEYS | IGNORED_METHOD_KEYS,
    spell: Callable[[str], str] = _as_written,
) -> MethodSetting | None:
    """One method's (or route's) settings, or None after reporting every bad value.

    ``known``: the settings accepted, named as the functions file names them (those of METHOD_SETTING_KEYS
    not in it are unknown here); ``spell``: how the file at hand writes a name (a SAM template: capitalised).
    """
    names = {spell(name): name for name in known}
    if not isinstance(raw, Mapping):
        shown = [spell(name) for name in ("throttlingRateLimit", "throttlingBurstLimit", "cachingEnabled")]
        add(where, f"must be a mapping of settings ({', '.join(n for n in shown if names.get(n))} …)")
        return None
    ok = True
    for key in raw:
        if key not in names:
            add(f"{where}.{key}", f"unknown setting (known: {', '.join(sorted(names))})")
            ok = False

    def get(name: str) -> tuple[Any, str]:
        return (raw.get(spell(name)) if name in known else None), f"{where}.{spell(name)}"

    rate, rate_where = get("throttlingRateLimit")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1e12
    ):
        add(rate_where, "must be a number of requests per second, 0 or more")
        ok = False
    burst, burst_where = get("throttlingBurstLimit")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 0):
        add(burst_where, "must be a whole number of requests, 0 or more")
        ok = False
    caching, caching_where = get("cachingEnabled")
    if caching is not None and not isinstance(caching, bool):
        add(caching_where, "must be true or false")
        ok = False
    ttl, ttl_where = get("cacheTtlInSeconds")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= CACHE_TTL_MAX_S
    ):
        add(ttl_where, f"must be a whole number of seconds from 0 to {CACHE_TTL_MAX_S}")
        ok = False
    require, require_where = get("requireAuthorizationForCacheControl")
    if require is not None and not isinstance(require, bool):
        add(require_where, "must be true or false")
        ok = False
    strategy, strategy_where = get("unauthorizedCacheControlHeaderStrategy")
    if strategy is not None and strategy not in CACHE_CONTROL_STRATEGIES:
        add(strategy_where, f"must be one of {', '.join(CACHE_CONTROL_STRATEGIES)}")
        ok = False
    if not ok:
        return None
    return MethodSetting(
        throttling_rate_limit=float(rate) if rate is not None else None,
        throttling_burst_limit=burst,
        caching_enabled=caching,
        cache_ttl_s=ttl,
        require_authorization_for_cache_control=require,
        unauthorized_cache_control_header_strategy=strategy,
        where=where,
    )


def _function(name: str, spec: Any, file: Path, add: Any) -> FunctionEntry | None:
    where = json_path("functions", name)
    ok = True
    if not _FUNCTION_NAME.match(name):
        add(where, "a Lambda function name has 1-64 letters, digits, '-' or '_'")
        ok = False
    if isinstance(spec, str):
        spec = {"handler": spec}
    if not isinstance(spec, Mapping):
        add(where, "must be a mapping with at least 'handler: path/to/module.function'")
        return None
    for key in spec:
        if key not in _FUNCTION_KEYS:
            add(f"{where}.{key}", f"unknown setting (known: {', '.join(sorted(_FUNCTION_KEYS))})")
            ok = False
    handler = spec.get("handler")
    if not isinstance(handler, str) or not _HANDLER.match(handler):
        add(f"{where}.handler", f"must be 'path/to/module.function', got {handler!r}")
        ok = False
    timeout = spec.get("timeout", 3)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S:
        add(f"{where}.timeout", f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}")
        ok = False
    memory = spec.get("memory", 128)
    if (
        isinstance(memory, bool)
        or not isinstance(memory, int)
        or not (MEMORY_RANGE[0] <= memory <= MEMORY_RANGE[1])
    ):
        add(f"{where}.memory", f"must be a whole number of MB from {MEMORY_RANGE[0]} to {MEMORY_RANGE[1]}")
        ok = False
    concurrency = spec.get("concurrency", 4)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
        add(f"{where}.concurrency", "must be a whole number from 1 to 1000")
        ok = False
    environment = spec.get("environment") or {}
    if not isinstance(environment, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in environment.items()
    ):
        add(f"{where}.environment", "must be a mapping of variable names to string values")
        ok = False
    else:
        for key in environment:
            if key in RESERVED_ENVIRONMENT:
                add(f"{where}.environment.{key}", "is reserved: Lambda sets it itself and refuses it here")
                ok = False
    if not ok:
        return None
    return FunctionEntry(
        name=name,
        handler=str(handler),
        base_dir=file.parent,
        timeout_s=float(timeout),
        memory_mb=int(memory),
        environment={k: _env_value(v) for k, v in environment.items()},
        concurrency=int(concurrency),
        where=where,
    )


def _env_value(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
