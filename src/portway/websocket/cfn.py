"""WebSocket APIs in SAM / CloudFormation templates: the ``AWS::ApiGatewayV2::*`` resources of a ``WEBSOCKET``
API, its routes' Lambda functions being the template's ``AWS::Serverless::Function`` resources.

What is read (the CloudFormation reference names):

- ``AWS::ApiGatewayV2::Api`` with ``ProtocolType: WEBSOCKET``: ``Name``, ``RouteSelectionExpression``
  (required, as AWS requires it), ``ApiKeySelectionExpression``, ``Description``;
- ``AWS::ApiGatewayV2::Route``: ``RouteKey``, ``Target`` (``integrations/ID``, usually
  ``!Join ['/', [integrations, !Ref Integ]]``), ``AuthorizationType`` (``NONE``, or ``CUSTOM`` with an
  ``AuthorizerId``, on ``$connect`` only), ``ApiKeyRequired``, ``RouteResponseSelectionExpression``;
- ``AWS::ApiGatewayV2::RouteResponse`` with ``RouteResponseKey: $default``: its route is two-way;
- ``AWS::ApiGatewayV2::Integration``: ``AWS_PROXY`` (``IntegrationUri`` the function's invocation URI, e.g.
  ``!Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations``, or its
  ARN), ``TimeoutInMillis``; ``MOCK``, answering the ``$default`` response template of its
  ``AWS::ApiGatewayV2::IntegrationResponse`` (as written: it is not rendered);
- ``AWS::ApiGatewayV2::Authorizer``: ``AuthorizerType: REQUEST``, ``AuthorizerUri``, ``IdentitySource``;
- ``AWS::ApiGatewayV2::Stage``: ``StageName``, ``StageVariables``, ``DefaultRouteSettings`` and
  ``RouteSettings`` (throttling); ``AWS::ApiGatewayV2::Deployment`` changes nothing.

Intrinsics are evaluated as for any SAM template (:class:`~portway.config.cfn.Resolver`); a function's ``Ref``
is its name and its ``Arn`` the Lambda ARN of that name, as :mod:`portway.config.sam` resolves them, and its
entry is read the same way (``Handler``, ``CodeUri``, ``Runtime``, ``Globals.Function`` …). Resources
Portway does not run are listed as not emulated. One API per process: a template with several WebSocket
APIs is refused.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portway.config.cfn import ResolveError, Resolver
from portway.config.errors import DefinitionErrors, Problem, json_path
from portway.config.model import Deployment, FunctionEntry, StageSettings
from portway.config.sam import FUNCTION, _function, _merge, _unknown_type
from portway.websocket.definition import (
    STAGE_NAME,
    api_id_for,
    check_api_key_selection,
    check_authorizer_route,
    check_identity_source,
    check_route_key,
    check_route_selection,
    check_timeout,
    route_settings,
)
from portway.websocket.model import (
    DISCONNECT,
    INTEGRATION_TIMEOUT_MS,
    WebSocketApi,
    WsAuthorizer,
    WsIntegration,
    WsLambda,
    WsMock,
    WsRoute,
    lambda_invocation_uri,
)
from portway.websocket.selection import ROUTE_RESPONSE_KEY

__all__ = ["is_websocket_template", "parse_websocket_template"]

API = "AWS::ApiGatewayV2::Api"
ROUTE = "AWS::ApiGatewayV2::Route"
ROUTE_RESPONSE = "AWS::ApiGatewayV2::RouteResponse"
INTEGRATION = "AWS::ApiGatewayV2::Integration"
INTEGRATION_RESPONSE = "AWS::ApiGatewayV2::IntegrationResponse"
AUTHORIZER = "AWS::ApiGatewayV2::Authorizer"
STAGE = "AWS::ApiGatewayV2::Stage"
DEPLOYMENT = "AWS::ApiGatewayV2::Deployment"
_PARTS = (ROUTE, ROUTE_RESPONSE, INTEGRATION, INTEGRATION_RESPONSE, AUTHORIZER, STAGE, DEPLOYMENT)
# The function properties Portway reads (Policies, Events … may hold intrinsics it need not evaluate).
_FUNCTION_PROPERTIES = (
    "FunctionName",
    "Handler",
    "CodeUri",
    "Runtime",
    "Timeout",
    "MemorySize",
    "Environment",
)
_INVOCATION_URI = re.compile(
    r"^arn:aws[a-z-]*:apigateway:[a-z0-9-]+:lambda:path/2015-03-31/functions/(.+)/invocations$"
)
_FUNCTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d+:function:([A-Za-z0-9_-]+)(:[A-Za-z0-9$_-]+)?$"
)
_STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_TARGET = re.compile(r"^integrations/(.+)$")
ACCOUNT_ID = "123456789012"


def _protocol(resource: Any) -> Any:
    if not isinstance(resource, Mapping) or resource.get("Type") != API:
        return None
    properties = resource.get("Properties")
    return properties.get("ProtocolType") if isinstance(properties, Mapping) else None


def is_websocket_template(document: Any) -> bool:
    """Whether a template makes an ``AWS::ApiGatewayV2::Api`` with ``ProtocolType: WEBSOCKET``.

    Check it before :func:`portway.config.sam.is_sam`: a SAM template with a WebSocket API is one too.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("Resources"), Mapping):
        return False
    return any(_protocol(resource) == "WEBSOCKET" for resource in document["Resources"].values())


@dataclass(slots=True)
class _Part:
    """One ``AWS::ApiGatewayV2::*`` resource of the API: its properties, resolved, and where it is."""

    logical_id: str
    props: dict[str, Any]
    where: str


@dataclass(slots=True)
class _Parts:
    routes: list[_Part] = field(default_factory=list)
    route_responses: list[_Part] = field(default_factory=list)
    integrations: dict[str, _Part] = field(default_factory=dict)
    integration_responses: list[_Part] = field(default_factory=list)
    authorizers: dict[str, _Part] = field(default_factory=dict)
    stages: list[_Part] = field(default_factory=list)


def parse_websocket_template(
    document: Mapping[str, Any],
    file: Path,
    parameter_overrides: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> WebSocketApi:
    """The WebSocket API a template makes, its functions as its ``deployment``; or every problem."""
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(file, path, message))

    resources: Mapping[str, Any] = document["Resources"]
    globals_ = document.get("Globals")
    global_function = (globals_.get("Function") or {}) if isinstance(globals_, Mapping) else {}

    def properties_of(logical_id: str) -> dict[str, Any]:
        own = resources[logical_id].get("Properties") or {}
        merged = _merge(global_function, own) if isinstance(own, Mapping) else {}
        return {key: merged[key] for key in _FUNCTION_PROPERTIES if key in merged}

    def ref_of(logical_id: str, resolver: Resolver) -> Any:
        resource = resources[logical_id]
        if isinstance(resource, Mapping) and resource.get("Type") == FUNCTION:
            name = properties_of(logical_id).get("FunctionName")
            if name is not None:
                return resolver.resolve(name, f"{json_path('Resources', logical_id)}.Properties.FunctionName")
        return logical_id

    def attribute_of(logical_id: str, attribute: str, resolver: Resolver) -> Any:
        if attribute == "Arn" and resources[logical_id].get("Type") == FUNCTION:
            return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{ref_of(logical_id, resolver)}"
        return f"arn:aws:portway:{region}:{ACCOUNT_ID}:{logical_id}/{attribute}"

    resolver = Resolver(
        document,
        parameter_overrides=parameter_overrides,
        region=region,
        account_id=ACCOUNT_ID,
        ref_of=ref_of,
        attribute_of=attribute_of,
    )

    def resolved(logical_id: str, where: str) -> dict[str, Any] | None:
        raw = resources[logical_id].get("Properties") or {}
        try:
            props = resolver.resolve(raw, f"{where}.Properties")
        except ResolveError as exc:
            add(exc.path, exc.message)
            return None
        if not isinstance(props, dict):
            add(f"{where}.Properties", "must be a mapping")
            return None
        return props

    apis: list[tuple[str, str]] = []
    not_emulated: list[str] = []
    for logical_id, resource in resources.items():
        where = json_path("Resources", str(logical_id))
        if not isinstance(resource, Mapping) or not isinstance(resource.get("Type"), str):
            add(where, "a resource must be a mapping with a Type")
        elif _unknown_type(resource["Type"]):
            add(f"{where}.Type", f"{logical_id}: unknown resource type {resource['Type']!r}")
        elif _protocol(resource) == "WEBSOCKET":
            apis.append((str(logical_id), where))
    if not apis:
        add(
            "$.Resources", "no AWS::ApiGatewayV2::Api with ProtocolType: WEBSOCKET: no WebSocket API to serve"
        )
    elif len(apis) > 1:
        listed = ", ".join(logical_id for logical_id, _ in apis)
        add(
            "$.Resources",
            f"this template makes {len(apis)} WebSocket APIs ({listed}): Portway serves one API "
            "per process; keep one per template for now",
        )
    if problems:
        raise DefinitionErrors(problems)
    ((api_logical_id, api_where),) = apis
    resolved_api = resolved(api_logical_id, api_where)
    api_props = resolved_api or {}

    # The template's functions, by name (what a function's Ref gives).
    functions: dict[str, FunctionEntry] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION:
            continue
        where = json_path("Resources", str(logical_id))
        try:
            props = resolver.resolve(properties_of(logical_id), f"{where}.Properties")
            name = ref_of(logical_id, resolver)
        except ResolveError as exc:
            add(exc.path, exc.message)
            continue
        entry = _function(str(logical_id), name, props, file, where, problems)
        if entry is not None:
            functions[entry.name] = entry

    # The API's parts; everything else (another API's parts too) is not emulated.
    parts = _Parts()
    for logical_id, resource in resources.items():
        kind = resource["Type"]
        where = json_path("Resources", str(logical_id))
        if kind == FUNCTION or logical_id == api_logical_id:
            continue
        if kind not in _PARTS:
            not_emulated.append(f"{logical_id} ({kind})")
            continue
        props = resolved(str(logical_id), where)
        if props is None:
            continue
        if props.get("ApiId") != api_logical_id:
            not_emulated.append(f"{logical_id} ({kind})")
            continue
        part = _Part(str(logical_id), props, where)
        if kind == ROUTE:
            parts.routes.append(part)
        elif kind == ROUTE_RESPONSE:
            parts.route_responses.append(part)
        elif kind == INTEGRATION:
            parts.integrations[part.logical_id] = part
        elif kind == INTEGRATION_RESPONSE:
            parts.integration_responses.append(part)
        elif kind == AUTHORIZER:
            parts.authorizers[part.logical_id] = part
        elif kind == STAGE:
            parts.stages.append(part)

    stage, variables, stage_where = _stage(parts, not_emulated, add)
    reader = _Reader(file, functions, variables, region, parts, add)
    routes = reader.routes()
    settings = _stage_settings(parts, stage_where, set(routes), add)

    name = api_props.get("Name", api_logical_id)
    if not isinstance(name, str) or not name:
        add(f"{api_where}.Properties.Name", "must be a non-empty string")
        name = str(api_logical_id)
    for unsupported in ("Body", "BodyS3Location", "Target", "CredentialsArn"):
        if unsupported in api_props:
            add(
                f"{api_where}.Properties.{unsupported}",
                f"{api_logical_id}: {unsupported} is not read for WebSocket APIs: define the routes as "
                "AWS::ApiGatewayV2::Route resources",
            )
    expression = api_props.get("RouteSelectionExpression")
    if expression is None and resolved_api is not None:
        add(
            f"{api_where}.Properties",
            f"{api_logical_id}: a WebSocket API needs a RouteSelectionExpression (like $request.body.action)",
        )
    elif expression is not None:
        why = check_route_selection(expression, set(routes))
        if why is not None:
            add(f"{api_where}.Properties.RouteSelectionExpression", f"{api_logical_id}: {why}")
    key_selection = api_props.get("ApiKeySelectionExpression")
    if key_selection is not None:
        why = check_api_key_selection(key_selection)
        if why is not None:
            add(f"{api_where}.Properties.ApiKeySelectionExpression", f"{api_logical_id}: {why}")
    description = api_props.get("Description")
    if problems:
        raise DefinitionErrors(dict.fromkeys(problems))
    assert isinstance(expression, str)
    return WebSocketApi(
        name=name,
        api_id=api_id_for(name, file),
        source=file,
        routes=routes,
        route_selection_expression=expression,
        api_key_selection_expression=key_selection,
        description=description if isinstance(description, str) else None,
        stage=stage,
        stage_variables=variables,
        stage_settings=settings,
        deployment=Deployment(
            source=file,
            functions=functions,
            stage_variables={stage: variables} if stage is not None else {},
            stage_settings={stage: settings} if stage is not None and settings is not None else {},
        ),
        not_emulated=tuple(dict.fromkeys(not_emulated)),
        where=api_where,
    )


def _stage(parts: _Parts, not_emulated: list[str], add: Any) -> tuple[str | None, dict[str, str], str]:
    """The API's stage (its first, when it has several: the others are listed as not emulated)."""
    if not parts.stages:
        return None, {}, ""
    first, *others = parts.stages
    not_emulated.extend(f"{other.logical_id} ({STAGE}: Portway serves one stage)" for other in others)
    name = first.props.get("StageName")
    if not isinstance(name, str) or not (STAGE_NAME.match(name) or name == "$default"):
        add(
            f"{first.where}.Properties.StageName",
            f"{first.logical_id}: needs a StageName (1-128 letters, digits, '-' or '_')",
        )
        name = None
    raw = first.props.get("StageVariables") or {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str | int | float) for v in raw.values()):
        add(f"{first.where}.Properties.StageVariables", f"{first.logical_id}: must map names to strings")
        raw = {}
    return name, {str(k): str(v) for k, v in raw.items()}, first.where


def _typed_settings(raw: Any) -> Any:
    """Route settings as CloudFormation reads them: a parameter's "5" for a number is the number."""
    if not isinstance(raw, Mapping):
        return raw
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, str) and key in ("ThrottlingBurstLimit", "ThrottlingRateLimit"):
            text = value.strip()
            with contextlib.suppress(ValueError):
                value = int(text) if key == "ThrottlingBurstLimit" else float(text)
        out[str(key)] = value
    return out


def _stage_settings(parts: _Parts, where: str, route_keys: set[str], add: Any) -> StageSettings | None:
    if not parts.stages:
        return None
    props = parts.stages[0].props
    by_route = props.get("RouteSettings")
    if isinstance(by_route, Mapping):
        by_route = {key: _typed_settings(value) for key, value in by_route.items()}
    return route_settings(
        _typed_settings(props.get("DefaultRouteSettings")),
        by_route,
        route_keys,
        f"{where}.Properties.DefaultRouteSettings",
        f"{where}.Properties.RouteSettings",
        add,
        where,
        spell=lambda name: name[:1].upper() + name[1:],
    )


def _flag(value: Any) -> bool | None:
    """A Boolean property (a parameter gives "true" / "false")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


class _Reader:
    """Routes, their integrations and authorizers, read from the API's parts."""

    def __init__(
        self,
        file: Path,
        functions: Mapping[str, FunctionEntry],
        stage_variables: Mapping[str, str],
        region: str,
        parts: _Parts,
        add: Any,
    ) -> None:
        self.file = file
        self.functions = functions
        self.stage_variables = stage_variables
        self.region = region
        self.parts = parts
        self.add = add

    def function(self, uri: Any, where: str, owner: str) -> str | None:
        """The template's function an integration or authorizer URI names, or None after saying why."""
        if not isinstance(uri, str):
            self.add(where, f"{owner}: needs the Lambda function's invocation URI (or ARN)")
            return None
        missing = [name for name in _STAGE_VARIABLE.findall(uri) if name not in self.stage_variables]
        if missing:
            self.add(where, f"{owner}: stage variable {missing[0]!r} is not set by the API's stage")
            return None
        uri = _STAGE_VARIABLE.sub(lambda match: self.stage_variables[match.group(1)], uri)
        invocation = _INVOCATION_URI.match(uri)
        arn = invocation.group(1) if invocation is not None else uri
        found = _FUNCTION_ARN.match(arn)
        if found is None:
            self.add(
                where,
                f"{owner}: {uri!r} is not a Lambda invocation URI "
                "(arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations)",
            )
            return None
        name = found.group(1)
        if name not in self.functions:
            self.add(
                where,
                f"{owner}: Lambda function {name!r} is not an AWS::Serverless::Function of this template "
                "(Portway runs those: Handler + CodeUri)",
            )
            return None
        return name

    def integration(self, logical_id: str) -> WsIntegration | None:
        part = self.parts.integrations[logical_id]
        props, where = part.props, f"{part.where}.Properties"
        kind = props.get("IntegrationType")
        if kind == "AWS_PROXY":
            timeout = props.get("TimeoutInMillis", INTEGRATION_TIMEOUT_MS)
            if isinstance(timeout, str) and timeout.strip().isdigit():
                timeout = int(timeout)
            why = check_timeout(timeout)
            if why is not None:
                self.add(f"{where}.TimeoutInMillis", f"{logical_id}: {why}")
                return None
            function = self.function(props.get("IntegrationUri"), f"{where}.IntegrationUri", logical_id)
            if function is None:
                return None
            uri = lambda_invocation_uri(function, self.region, ACCOUNT_ID)
            return WsLambda(function, uri, timeout, f"{where}.IntegrationUri")
        if kind == "MOCK":
            return WsMock(self.mock_body(logical_id), where)
        self.add(
            f"{where}.IntegrationType",
            f"{logical_id}: IntegrationType {kind!r} is not emulated: Portway runs AWS_PROXY (Lambda) and "
            "MOCK integrations",
        )
        return None

    def mock_body(self, integration: str) -> str | None:
        """What a MOCK integration answers: its $default integration response's template, as written."""
        for part in self.parts.integration_responses:
            if part.props.get("IntegrationId") != integration:
                continue
            templates = part.props.get("ResponseTemplates") or {}
            if not isinstance(templates, Mapping):
                continue
            if ROUTE_RESPONSE_KEY in templates:
                return str(templates[ROUTE_RESPONSE_KEY])
            if len(templates) == 1:
                return str(next(iter(templates.values())))
        return None

    def authorizer(self, logical_id: Any, where: str, route: str) -> WsAuthorizer | None:
        part = self.parts.authorizers.get(logical_id) if isinstance(logical_id, str) else None
        if part is None:
            self.add(where, f"{route}: AuthorizerId names no AWS::ApiGatewayV2::Authorizer of this API")
            return None
        props, here = part.props, f"{part.where}.Properties"
        if props.get("AuthorizerType") != "REQUEST":
            self.add(
                f"{here}.AuthorizerType",
                f"{part.logical_id}: WebSocket APIs use REQUEST (Lambda) authorizers, not "
                f"{props.get('AuthorizerType')!r}",
            )
            return None
        sources = props.get("IdentitySource") or []
        if isinstance(sources, str):
            sources = [source.strip() for source in sources.split(",")]
        ok = isinstance(sources, list)
        if not ok:
            self.add(f"{here}.IdentitySource", f"{part.logical_id}: must be a list of identity sources")
        for index, source in enumerate(sources if isinstance(sources, list) else []):
            why = check_identity_source(source)
            if why is not None:
                self.add(f"{here}.IdentitySource[{index}]", f"{part.logical_id}: {why}")
                ok = False
        function = self.function(props.get("AuthorizerUri"), f"{here}.AuthorizerUri", part.logical_id)
        if function is None or not ok:
            return None
        return WsAuthorizer(
            name=str(props.get("Name", part.logical_id)),
            function=function,
            uri=lambda_invocation_uri(function, self.region, ACCOUNT_ID),
            identity_sources=tuple(sources),
            where=part.where,
        )

    def routes(self) -> dict[str, WsRoute]:
        two_way = self.route_responses()
        routes: dict[str, WsRoute] = {}
        for part in self.parts.routes:
            route = self.route(part, part.logical_id in two_way)
            if route is None:
                continue
            if route.route_key in routes:
                self.add(
                    f"{part.where}.Properties.RouteKey",
                    f"{part.logical_id}: route key {route.route_key!r} is already "
                    f"{routes[route.route_key].where}",
                )
                continue
            routes[route.route_key] = route
        return routes

    def route_responses(self) -> set[str]:
        """The routes (logical ids) with a $default route response."""
        found: set[str] = set()
        for part in self.parts.route_responses:
            key = part.props.get("RouteResponseKey")
            if key != ROUTE_RESPONSE_KEY:
                self.add(
                    f"{part.where}.Properties.RouteResponseKey",
                    f"{part.logical_id}: must be {ROUTE_RESPONSE_KEY} "
                    "(the only route response key AWS supports)",
                )
                continue
            route = part.props.get("RouteId")
            if not any(route == other.logical_id for other in self.parts.routes):
                self.add(f"{part.where}.Properties.RouteId", f"{part.logical_id}: names no route of this API")
                continue
            found.add(str(route))
        return found

    def route(self, part: _Part, two_way: bool) -> WsRoute | None:
        props, where, logical_id = part.props, f"{part.where}.Properties", part.logical_id
        key = props.get("RouteKey")
        why = check_route_key(key)
        if why is not None:
            self.add(f"{where}.RouteKey", f"{logical_id}: {why}")
            return None
        assert isinstance(key, str)
        ok = True
        if two_way and key == DISCONNECT:
            self.add(where, f"{logical_id}: $disconnect cannot answer (a RouteResponse): its client is gone")
            ok = False
        response_selection = props.get("RouteResponseSelectionExpression")
        if response_selection is not None and response_selection != ROUTE_RESPONSE_KEY:
            self.add(
                f"{where}.RouteResponseSelectionExpression",
                f"{logical_id}: must be {ROUTE_RESPONSE_KEY} (the only route response key AWS supports)",
            )
            ok = False
        key_required = _flag(props.get("ApiKeyRequired", False))
        if key_required is None:
            self.add(f"{where}.ApiKeyRequired", f"{logical_id}: must be true or false")
            ok = False
        authorization = props.get("AuthorizationType", "NONE")
        authorizer = None
        if authorization == "CUSTOM":
            why = check_authorizer_route(key)
            if why is not None:
                self.add(f"{where}.AuthorizationType", f"{logical_id}: {why}")
                ok = False
            else:
                authorizer = self.authorizer(props.get("AuthorizerId"), f"{where}.AuthorizerId", logical_id)
                ok = ok and authorizer is not None
        elif authorization == "NONE":
            if props.get("AuthorizerId") is not None:
                self.add(
                    f"{where}.AuthorizerId",
                    f"{logical_id}: an AuthorizerId goes with AuthorizationType: CUSTOM",
                )
                ok = False
        else:
            self.add(
                f"{where}.AuthorizationType",
                f"{logical_id}: AuthorizationType {authorization!r} is not emulated (Portway runs NONE and "
                "CUSTOM, a Lambda REQUEST authorizer)",
            )
            ok = False
        target = props.get("Target")
        match = _TARGET.match(target) if isinstance(target, str) else None
        integration: WsIntegration | None = None
        if target is None:
            self.add(where, f"{logical_id}: has no Target (integrations/ID): nothing would answer {key}")
        elif match is None or match.group(1) not in self.parts.integrations:
            self.add(
                f"{where}.Target",
                f"{logical_id}: Target {target!r} names no AWS::ApiGatewayV2::Integration of this API "
                "(write !Join ['/', [integrations, !Ref Integration]])",
            )
        else:
            integration = self.integration(match.group(1))
        if integration is None or not ok:
            return None
        return WsRoute(
            route_key=key,
            integration=integration,
            route_response=two_way,
            route_response_selection_expression=response_selection,
            authorization_type="CUSTOM" if authorizer is not None else "NONE",
            authorizer=authorizer,
            api_key_required=bool(key_required),
            where=part.where,
        )
