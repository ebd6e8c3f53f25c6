"""What a WebSocket API definition says, as frozen data: the loaders (:mod:`.definition` for the native YAML
form, :mod:`.cfn` for SAM/CloudFormation templates) produce it, the server reads it.

Named as API Gateway names them (``AWS::ApiGatewayV2::Api`` / ``Route`` / ``Integration`` / ``Authorizer``):
https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from portway.config.model import Deployment, StageSettings

__all__ = [
    "CONNECT",
    "DEFAULT",
    "DEFAULT_ROUTE_SELECTION",
    "DISCONNECT",
    "INTEGRATION_TIMEOUT_MS",
    "PREDEFINED_ROUTES",
    "WebSocketApi",
    "WsAuthorizer",
    "WsIntegration",
    "WsLambda",
    "WsLimits",
    "WsMock",
    "WsRoute",
    "lambda_invocation_uri",
]

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"
PREDEFINED_ROUTES = (CONNECT, DISCONNECT, DEFAULT)  # custom route keys may not start with "$"
DEFAULT_ROUTE_SELECTION = "$request.body.action"
INTEGRATION_TIMEOUT_MS = 29_000  # WebSocket APIs: 50 ms to 29 s, 29 s by default


def lambda_invocation_uri(function: str, region: str = "us-east-1", account_id: str = "123456789012") -> str:
    """The integration URI API Gateway invokes a Lambda function by (what ``FunctionRegistry`` reads)."""
    return (
        f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
        f"arn:aws:lambda:{region}:{account_id}:function:{function}/invocations"
    )


@dataclass(frozen=True, slots=True)
class WsLambda:
    """A Lambda proxy (``AWS_PROXY``) integration: the function API Gateway invokes with the route's event."""

    function: str  # the Lambda function's name: a functions-file entry, or a SAM function's name
    uri: str  # its invocation URI: arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/ARN/invocations
    timeout_ms: int = INTEGRATION_TIMEOUT_MS
    where: str = ""  # JSON path of the integration (the route's function, or the Integration resource)


@dataclass(frozen=True, slots=True)
class WsMock:
    """A ``MOCK`` integration: no backend; a two-way route answers ``body`` (static text, sent as written)."""

    body: str | None = None  # None: nothing is sent back
    where: str = ""


WsIntegration = WsLambda | WsMock


@dataclass(frozen=True, slots=True)
class WsAuthorizer:
    """A Lambda ``REQUEST`` authorizer, run before ``$connect`` (the only route that may have one).

    ``identity_sources``: ``route.request.header.NAME``, ``route.request.querystring.NAME``,
    ``stageVariables.NAME`` or ``context.NAME``; when any is missing or empty the connection is refused (401)
    without invoking the function. WebSocket authorizers have no result cache.
    """

    name: str
    function: str
    uri: str
    identity_sources: tuple[str, ...] = ()
    where: str = ""


@dataclass(frozen=True, slots=True)
class WsRoute:
    route_key: str  # "$connect", "$disconnect", "$default" or a custom key (case-sensitive, no leading "$")
    integration: WsIntegration
    # Two-way: a RouteResponse with key $default exists, so what the integration returns is sent back.
    route_response: bool = False
    route_response_selection_expression: str | None = None  # only "$default" is supported by AWS
    authorization_type: str = "NONE"  # "NONE", or "CUSTOM" (with an authorizer; $connect only)
    authorizer: WsAuthorizer | None = None
    api_key_required: bool = False
    where: str = ""  # JSON path of the route


@dataclass(frozen=True, slots=True)
class WsLimits:
    """A connection's limits; the defaults are API Gateway's (a frame or message over them closes the
    connection with 1009; an idle or too-old connection is closed with 1001)."""

    idle_timeout_s: int = 600
    max_connection_s: int = 7200
    frame_bytes: int = 32 * 1024
    message_bytes: int = 128 * 1024
    where: str = ""


@dataclass(frozen=True, slots=True)
class WebSocketApi:
    name: str
    api_id: str  # stable for the same name and file, as the REST/HTTP APIs' ids are
    source: Path
    routes: Mapping[str, WsRoute]  # by route key
    route_selection_expression: str = DEFAULT_ROUTE_SELECTION
    api_key_selection_expression: str | None = None  # $request.header.x-api-key or ...usageIdentifierKey
    description: str | None = None
    stage: str | None = None  # the definition's stage, if it names one
    stage_variables: Mapping[str, str] = field(default_factory=dict)
    # Throttling by route: defaultRouteSettings under ("*", "*"), routeSettings under (route key, "*").
    stage_settings: StageSettings | None = None
    limits: WsLimits = field(default_factory=WsLimits)
    # A SAM template names its functions itself; the native form's are in the functions file (None here).
    deployment: Deployment | None = None
    not_emulated: tuple[str, ...] = ()  # resources Portway does not run, "Logical (Type)"
    where: str = "$"  # JSON path of the API (the native document, or the AWS::ApiGatewayV2::Api resource)

    @property
    def kind(self) -> str:
        return "WEBSOCKET"

    @property
    def title(self) -> str:
        """The API's name, as the HTTP side's definitions call it."""
        return self.name

    def functions(self) -> tuple[str, ...]:
        """Every Lambda function the API invokes (integrations, then authorizers), each once."""
        names: dict[str, None] = {}
        for route in self.routes.values():
            if isinstance(route.integration, WsLambda):
                names[route.integration.function] = None
        for route in self.routes.values():
            if route.authorizer is not None:
                names[route.authorizer.function] = None
        return tuple(names)
