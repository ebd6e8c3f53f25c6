"""The native WebSocket API definition: one YAML (or JSON) document, its functions in the functions file.

The document is marked by a top-level ``websocket: 1`` (the format's version), as ``openapi: 3.0.0`` marks
an OpenAPI document::

    websocket: 1
    name: Chat API
    description: a chat room                       # optional
    routeSelectionExpression: $request.body.action  # the default
    apiKeySelectionExpression: $request.header.x-api-key  # or $context.authorizer.usageIdentifierKey
    routes:
      $connect:
        function: connect                          # a function of the functions file
        authorizer: {function: auth, identitySource: [route.request.querystring.token]}
        apiKeyRequired: false
      $disconnect: disconnect                      # shorthand for {function: disconnect}
      sendmessage: {function: sendmessage, timeoutMillis: 10000}   # integration timeout, 50 to 29000 ms
      echo: {function: echo, routeResponse: true}  # two-way: what the function returns is sent back
      ping: {mock: {body: '{"pong": true}'}, routeResponse: true}  # MOCK: answers its body
      $default: {function: fallback}
    stage:                                         # optional (or just `stage: dev`)
      name: dev
      variables: {table: chat}
      defaultRouteSettings: {throttlingRateLimit: 100, throttlingBurstLimit: 50}
      routeSettings: {sendmessage: {throttlingRateLimit: 10}}
    limits: {idleTimeoutSeconds: 600, maxConnectionSeconds: 7200, frameBytes: 32768, messageBytes: 131072}

The functions file is the one REST APIs use (``functions.yaml`` beside the definition)::

    functions:
      connect: {handler: handlers.connect}

The checks shared with SAM/CloudFormation templates (:mod:`.cfn`) live here too: route keys, authorizers
(``$connect`` only), identity sources, selection expressions, limits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from portway.config.errors import DefinitionErrors, Problem, json_path
from portway.config.functions import IGNORED_ROUTE_KEYS, Add, load_functions, method_setting
from portway.config.model import ALL_METHODS_KEY, Deployment, MethodSetting, StageSettings
from portway.config.source import load_document
from portway.integrations.events import stable_id
from portway.websocket.model import (
    CONNECT,
    DEFAULT,
    DEFAULT_ROUTE_SELECTION,
    DISCONNECT,
    PREDEFINED_ROUTES,
    WebSocketApi,
    WsAuthorizer,
    WsIntegration,
    WsLambda,
    WsLimits,
    WsMock,
    WsRoute,
    lambda_invocation_uri,
)
from portway.websocket.selection import (
    API_KEY_SELECTIONS,
    ROUTE_RESPONSE_KEY,
    ExpressionError,
    parse_expression,
)

__all__ = [
    "FORMAT_VERSION",
    "LIMIT_RANGES",
    "MARKER",
    "ROUTE_SETTING_KEYS",
    "TIMEOUT_RANGE_MS",
    "api_id_for",
    "check_api_key_selection",
    "check_authorizer_route",
    "check_functions",
    "check_identity_source",
    "check_route_key",
    "check_route_selection",
    "check_timeout",
    "is_websocket",
    "load_websocket",
    "parse_websocket",
    "route_settings",
]

MARKER = "websocket"  # the top-level key that marks a native WebSocket API document
FORMAT_VERSION = 1
TIMEOUT_RANGE_MS = (50, 29_000)
# limits key -> (WsLimits field, smallest, largest); AWS's own are the defaults.
LIMIT_RANGES: dict[str, tuple[str, int, int]] = {
    "idleTimeoutSeconds": ("idle_timeout_s", 1, 7200),
    "maxConnectionSeconds": ("max_connection_s", 1, 86_400),
    "frameBytes": ("frame_bytes", 1, 16 * 1024 * 1024),
    "messageBytes": ("message_bytes", 1, 16 * 1024 * 1024),
}
STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_IDENTITY_SOURCE = re.compile(
    r"^(route\.request\.(header|querystring)\.\S+|stageVariables\.[A-Za-z0-9_]+|context\.[A-Za-z0-9_.]+)$"
)
_TOP_KEYS = (
    MARKER,
    "name",
    "description",
    "routeSelectionExpression",
    "apiKeySelectionExpression",
    "routes",
    "stage",
    "limits",
)
_ROUTE_KEYS = (
    "function",
    "mock",
    "authorizer",
    "routeResponse",
    "routeResponseSelectionExpression",
    "apiKeyRequired",
    "timeoutMillis",
)
_STAGE_KEYS = ("name", "variables", "defaultRouteSettings", "routeSettings")
# Route settings Portway applies (the rest are accepted, so exports load): throttling.
ROUTE_SETTING_KEYS = frozenset({"throttlingRateLimit", "throttlingBurstLimit", *IGNORED_ROUTE_KEYS})


def is_websocket(document: Any) -> bool:
    """Whether ``document`` is a native WebSocket API definition (it has the ``websocket`` marker)."""
    return isinstance(document, Mapping) and MARKER in document


def api_id_for(name: str, file: Path) -> str:
    """The API's id: the same for the same name and file, as REST and HTTP APIs' are."""
    return stable_id(f"{name}|{file.resolve()}")


# --- checks shared with SAM/CloudFormation templates -------------------------------------------------------


def check_route_key(key: Any) -> str | None:
    """Why ``key`` cannot be a route key, or None."""
    if not isinstance(key, str) or not key:
        return "a route key is a non-empty string"
    if key.startswith("$") and key not in PREDEFINED_ROUTES:
        return (
            f"route key {key!r}: the '$' prefix is reserved for $connect, $disconnect and $default "
            "(route keys are case-sensitive)"
        )
    return None


def check_identity_source(source: Any) -> str | None:
    """Why ``source`` cannot be a WebSocket authorizer's identity source, or None."""
    if not isinstance(source, str) or not _IDENTITY_SOURCE.match(source):
        return (
            f"identity source {source!r}: use route.request.header.NAME, route.request.querystring.NAME, "
            "stageVariables.NAME or context.NAME"
        )
    return None


def check_api_key_selection(expression: Any) -> str | None:
    if expression not in API_KEY_SELECTIONS:
        return f"must be one of {', '.join(API_KEY_SELECTIONS)}"
    return None


def check_timeout(value: Any) -> str | None:
    low, high = TIMEOUT_RANGE_MS
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"must be a whole number of milliseconds from {low} to {high}"
    return None


def check_route_selection(expression: Any, route_keys: set[str]) -> str | None:
    """Why the route selection expression cannot route the API's messages, or None."""
    if not isinstance(expression, str):
        return "must be a string like $request.body.action"
    try:
        parsed = parse_expression(expression)
    except ExpressionError as exc:
        return str(exc)
    static = parsed.static
    messages = route_keys - {CONNECT, DISCONNECT}
    if static is not None and static not in messages and DEFAULT not in route_keys:
        routes = ", ".join(sorted(messages)) or "none"
        return (
            f"every message evaluates to {static!r}, which names no route (routes: {routes}) and there is "
            "no $default route: every message would be refused"
        )
    return None


def check_authorizer_route(route_key: str) -> str | None:
    """Why the route cannot have an authorizer, or None."""
    if route_key != CONNECT:
        return f"{route_key}: only the $connect route may have an authorizer (it guards the whole connection)"
    return None


def check_functions(api: WebSocketApi, deployment: Deployment) -> None:
    """Every function the API names must be in ``deployment`` (the functions file): raises
    :class:`DefinitionErrors` naming each route or authorizer whose function is not."""
    problems: list[Problem] = []
    where_to_add = (
        f"add it to the functions file ({deployment.source})"
        if deployment.source is not None
        else "pass --functions FILE, or put a functions.yaml beside the definition"
    )
    for route in api.routes.values():
        named: list[tuple[str, str]] = []
        if isinstance(route.integration, WsLambda):
            named.append((route.integration.function, route.integration.where))
        if route.authorizer is not None:
            named.append((route.authorizer.function, f"{route.authorizer.where}.function"))
        for function, where in named:
            if function not in deployment.functions:
                problems.append(
                    Problem(
                        api.source,
                        where,
                        f"{route.route_key}: Lambda function {function!r} has no local handler: "
                        + where_to_add,
                    )
                )
    if problems:
        raise DefinitionErrors(problems)


# --- the native form ---------------------------------------------------------------------------------------


def parse_websocket(document: Mapping[str, Any], file: Path) -> WebSocketApi:
    """The WebSocket API a native document defines, or :class:`DefinitionErrors` with every problem."""
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(file, path, message))

    for key in document:
        if key not in _TOP_KEYS:
            add(json_path(str(key)), f"unknown key (known: {', '.join(_TOP_KEYS)})")
    if document.get(MARKER) != FORMAT_VERSION:
        add(json_path(MARKER), f"must be {FORMAT_VERSION} (the version of this format)")
    name = document.get("name", file.stem)
    if not isinstance(name, str) or not name.strip():
        add(json_path("name"), "must be a non-empty string")
        name = file.stem
    description = document.get("description")
    if description is not None and not isinstance(description, str):
        add(json_path("description"), "must be a string")
        description = None
    routes = _routes(document.get("routes"), add)
    expression = document.get("routeSelectionExpression", DEFAULT_ROUTE_SELECTION)
    why = check_route_selection(expression, set(routes))
    if why is not None:
        add(json_path("routeSelectionExpression"), why)
    api_key_selection = document.get("apiKeySelectionExpression")
    if api_key_selection is not None:
        why = check_api_key_selection(api_key_selection)
        if why is not None:
            add(json_path("apiKeySelectionExpression"), why)
    stage, variables, settings = _stage(document.get("stage"), set(routes), add)
    limits = _limits(document.get("limits"), add)
    if problems:
        raise DefinitionErrors(problems)
    return WebSocketApi(
        name=name,
        api_id=api_id_for(name, file),
        source=file,
        routes=routes,
        route_selection_expression=expression,
        api_key_selection_expression=api_key_selection,
        description=description,
        stage=stage,
        stage_variables=variables,
        stage_settings=settings,
        limits=limits,
    )


def load_websocket(file: Path, functions_file: Path | None = None) -> WebSocketApi:
    """Read a native definition and its functions file (``functions_file``, else a ``functions.yaml`` beside
    it if there is one), every function checked; the functions are the API's ``deployment``."""
    api = parse_websocket(_document(file), file)
    if functions_file is None:
        candidate = file.parent / "functions.yaml"
        functions_file = candidate if candidate.is_file() else None
    deployment = load_functions(functions_file) if functions_file is not None else Deployment()
    check_functions(api, deployment)
    return replace(api, deployment=deployment)


def _document(file: Path) -> Mapping[str, Any]:
    document = load_document(file)
    if not is_websocket(document):
        raise DefinitionErrors([Problem(file, "$", f"not a WebSocket API definition (no '{MARKER}: 1' key)")])
    assert isinstance(document, Mapping)
    return document


def _routes(raw: Any, add: Add) -> dict[str, WsRoute]:
    where = json_path("routes")
    if raw is None:
        add(where, "a WebSocket API needs routes ($connect, $disconnect, $default or your own keys)")
        return {}
    if not isinstance(raw, Mapping):
        add(where, "must be a mapping of route keys to routes")
        return {}
    routes: dict[str, WsRoute] = {}
    for key, spec in raw.items():
        here = json_path("routes", str(key))
        why = check_route_key(key)
        if why is not None:
            add(here, why)
            continue
        route = _route(str(key), spec, here, add)
        if route is not None:
            routes[route.route_key] = route
    return routes


def _route(key: str, spec: Any, where: str, add: Add) -> WsRoute | None:
    if isinstance(spec, str):
        spec = {"function": spec}
    if not isinstance(spec, Mapping):
        add(where, "must be a mapping with a function (or a mock), or just a function's name")
        return None
    ok = True
    for name in spec:
        if name not in _ROUTE_KEYS:
            add(f"{where}.{name}", f"unknown setting (known: {', '.join(_ROUTE_KEYS)})")
            ok = False
    integration = _integration(spec, where, add)
    two_way = spec.get("routeResponse", False)
    if not isinstance(two_way, bool):
        add(f"{where}.routeResponse", "must be true or false")
        ok = False
    elif two_way and key == DISCONNECT:
        add(f"{where}.routeResponse", "$disconnect cannot answer: its client is gone")
        ok = False
    response_selection = spec.get("routeResponseSelectionExpression")
    if response_selection is not None and response_selection != ROUTE_RESPONSE_KEY:
        add(
            f"{where}.routeResponseSelectionExpression",
            f"must be {ROUTE_RESPONSE_KEY} (the only route response key AWS supports)",
        )
        ok = False
    if two_way is True and response_selection is None:
        response_selection = ROUTE_RESPONSE_KEY
    key_required = spec.get("apiKeyRequired", False)
    if not isinstance(key_required, bool):
        add(f"{where}.apiKeyRequired", "must be true or false")
        ok = False
    authorizer = None
    if spec.get("authorizer") is not None:
        why = check_authorizer_route(key)
        if why is not None:
            add(f"{where}.authorizer", why)
            ok = False
        else:
            authorizer = _authorizer(spec["authorizer"], f"{where}.authorizer", add)
            ok = ok and authorizer is not None
    if integration is None or not ok:
        return None
    return WsRoute(
        route_key=key,
        integration=integration,
        route_response=bool(two_way),
        route_response_selection_expression=response_selection,
        authorization_type="CUSTOM" if authorizer is not None else "NONE",
        authorizer=authorizer,
        api_key_required=bool(key_required),
        where=where,
    )


def _integration(spec: Mapping[str, Any], where: str, add: Add) -> WsIntegration | None:
    function, mock = spec.get("function"), spec.get("mock")
    if (function is None) == (mock is None):
        add(where, "needs either a function (a Lambda proxy integration) or a mock, not both")
        return None
    timeout = spec.get("timeoutMillis", TIMEOUT_RANGE_MS[1])
    why = check_timeout(timeout)
    if why is not None:
        add(f"{where}.timeoutMillis", why)
        return None
    if function is not None:
        if not isinstance(function, str) or not function:
            add(f"{where}.function", "must be the name of a function of the functions file")
            return None
        return WsLambda(function, lambda_invocation_uri(function), timeout, f"{where}.function")
    if spec.get("timeoutMillis") is not None:
        add(f"{where}.timeoutMillis", "a mock has no backend to wait for")
        return None
    if not isinstance(mock, Mapping) or set(mock) - {"body"}:
        add(f"{where}.mock", "must be a mapping with (optionally) the body a two-way route answers")
        return None
    body = mock.get("body")
    if body is not None and not isinstance(body, str):
        add(f"{where}.mock.body", "must be a string (the text sent back)")
        return None
    return WsMock(body, f"{where}.mock")


def _authorizer(spec: Any, where: str, add: Add) -> WsAuthorizer | None:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("function"), str) or not spec["function"]:
        add(where, "must be a mapping with a function (and identitySource)")
        return None
    ok = True
    for name in spec:
        if name not in ("function", "identitySource", "name"):
            add(f"{where}.{name}", "unknown setting (known: function, identitySource, name)")
            ok = False
    sources = spec.get("identitySource", [])
    if isinstance(sources, str):
        sources = [part.strip() for part in sources.split(",")]
    if not isinstance(sources, list):
        add(f"{where}.identitySource", "must be a list like [route.request.header.Auth]")
        return None
    for index, source in enumerate(sources):
        why = check_identity_source(source)
        if why is not None:
            add(f"{where}.identitySource[{index}]", why)
            ok = False
    function = str(spec["function"])
    name = spec.get("name", function)
    if not isinstance(name, str):
        add(f"{where}.name", "must be a string")
        ok = False
    if not ok:
        return None
    return WsAuthorizer(str(name), function, lambda_invocation_uri(function), tuple(sources), where)


def _stage(
    raw: Any, route_keys: set[str], add: Add
) -> tuple[str | None, dict[str, str], StageSettings | None]:
    where = json_path("stage")
    if raw is None:
        return None, {}, None
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        add(where, "must be a stage name, or a mapping with its name and variables")
        return None, {}, None
    for key in raw:
        if key not in _STAGE_KEYS:
            add(f"{where}.{key}", f"unknown setting (known: {', '.join(_STAGE_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not STAGE_NAME.match(name):
        add(f"{where}.name", "a stage name has 1-128 letters, digits, '-' or '_'")
        name = None
    variables = raw.get("variables") or {}
    if not isinstance(variables, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
        for k, v in variables.items()
    ):
        add(f"{where}.variables", "must be a mapping of variable names to string values")
        variables = {}
    settings = route_settings(
        raw.get("defaultRouteSettings"),
        raw.get("routeSettings"),
        route_keys,
        f"{where}.defaultRouteSettings",
        f"{where}.routeSettings",
        add,
        where,
    )
    return name, {str(k): str(v) for k, v in variables.items()}, settings


def route_settings(
    default: Any,
    by_route: Any,
    route_keys: set[str],
    default_where: str,
    routes_where: str,
    add: Add,
    where: str,
    spell: Callable[[str], str] = str,
) -> StageSettings | None:
    """A stage's throttling: ``defaultRouteSettings`` under ("*", "*"), ``routeSettings`` under
    (route key, "*"); None when it sets neither. ``spell``: how the file writes a setting's name (a
    CloudFormation template capitalises them)."""
    settings: dict[tuple[str, str], MethodSetting] = {}
    if default is not None:
        setting = method_setting(default, default_where, add, known=ROUTE_SETTING_KEYS, spell=spell)
        if setting is not None:
            settings[ALL_METHODS_KEY] = setting
    if by_route is not None:
        if not isinstance(by_route, Mapping):
            add(routes_where, "must be a mapping of route keys to settings")
        else:
            for key, raw in by_route.items():
                here = f"{routes_where}['{key}']"
                if key not in route_keys:
                    add(here, f"{key}: no such route")
                    continue
                setting = method_setting(raw, here, add, known=ROUTE_SETTING_KEYS, spell=spell)
                if setting is not None:
                    settings[(str(key), "*")] = setting
    if not settings:
        return None
    return StageSettings(method_settings=settings, where=where)


def _limits(raw: Any, add: Add) -> WsLimits:
    where = json_path("limits")
    if raw is None:
        return WsLimits()
    if not isinstance(raw, Mapping):
        add(where, f"must be a mapping ({', '.join(LIMIT_RANGES)})")
        return WsLimits()
    values: dict[str, int] = {}
    for key, value in raw.items():
        known = LIMIT_RANGES.get(str(key))
        if known is None:
            add(f"{where}.{key}", f"unknown limit (known: {', '.join(LIMIT_RANGES)})")
            continue
        attribute, low, high = known
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            add(f"{where}.{key}", f"must be a whole number from {low} to {high}")
            continue
        values[attribute] = value
    limits = WsLimits(**values, where=where)
    if limits.frame_bytes > limits.message_bytes:
        add(f"{where}.frameBytes", "a frame cannot be larger than a whole message (messageBytes)")
    if limits.idle_timeout_s > limits.max_connection_s:
        add(
            f"{where}.idleTimeoutSeconds",
            "cannot be longer than a connection may last (maxConnectionSeconds)",
        )
    return limits
