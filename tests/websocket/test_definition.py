"""WebSocket API definitions: the native YAML form and SAM/CloudFormation templates, every problem with its
file and JSON path."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from portway.config.cfn import load_template
from portway.config.errors import DefinitionErrors, Problem
from portway.config.functions import load_functions
from portway.config.model import ALL_METHODS_KEY
from portway.config.sam import is_sam
from portway.lambdas.spec import parse_handler
from portway.websocket.cfn import is_websocket_template, parse_websocket_template
from portway.websocket.definition import (
    check_functions,
    is_websocket,
    load_websocket,
    parse_websocket,
)
from portway.websocket.model import DEFAULT_ROUTE_SELECTION, WsLambda, WsLimits, WsMock
from portway.websocket.selection import select_route

HERE = Path(__file__).parent
NATIVE = HERE / "native" / "chat.yaml"
CHAT_APP = HERE / "chat_app" / "template.yaml"


# --- the native form ------------------------------------------------------------------------------------


def test_the_native_chat_api_loads() -> None:
    api = load_websocket(NATIVE)
    assert (api.name, api.description, api.kind) == ("Chat API", "a chat room", "WEBSOCKET")
    assert api.route_selection_expression == "$request.body.action"
    assert list(api.routes) == ["$connect", "$disconnect", "sendmessage", "echo", "ping", "$default"]
    connect = api.routes["$connect"]
    assert connect.authorization_type == "CUSTOM"
    assert connect.authorizer is not None
    assert (connect.authorizer.function, connect.authorizer.identity_sources) == (
        "auth",
        ("route.request.querystring.token",),
    )
    assert connect.where == "$.routes['$connect']"
    send = api.routes["sendmessage"].integration
    assert isinstance(send, WsLambda)
    assert (send.function, send.timeout_ms) == ("sendmessage", 10_000)
    assert send.uri.endswith(":function:sendmessage/invocations")
    echo = api.routes["echo"]
    assert (echo.route_response, echo.route_response_selection_expression) == (True, "$default")
    assert not api.routes["sendmessage"].route_response
    ping = api.routes["ping"]
    assert ping.integration == WsMock('{"pong": true}', "$.routes.ping.mock")
    assert ping.route_response
    assert (api.stage, dict(api.stage_variables)) == ("dev", {"room": "lobby"})
    assert api.stage_settings is not None
    default = api.stage_settings.method_settings[ALL_METHODS_KEY]
    assert (default.throttling_rate_limit, default.throttling_burst_limit) == (100.0, 50)
    assert api.stage_settings.method_settings[("sendmessage", "*")].throttling_rate_limit == 10.0
    assert api.limits == WsLimits(600, 7200, 32768, 131072, "$.limits")
    assert api.functions() == ("connect", "disconnect", "sendmessage", "echo", "fallback", "auth")
    assert api.deployment is not None
    assert set(api.deployment.functions) >= set(api.functions())


def test_the_api_id_is_stable() -> None:
    first, second = load_websocket(NATIVE), load_websocket(NATIVE)
    assert first.api_id == second.api_id
    assert len(first.api_id) == 10
    assert first.api_id.isalnum()
    assert first.api_id.islower()


def test_a_minimal_document_takes_aws_defaults(tmp_path: Path) -> None:
    file = tmp_path / "api.yaml"
    api = parse_websocket({"websocket": 1, "routes": {"$default": "fallback"}}, file)
    assert api.name == "api"  # the file's name when the document names none
    assert api.route_selection_expression == DEFAULT_ROUTE_SELECTION == "$request.body.action"
    assert api.limits == WsLimits(
        idle_timeout_s=600, max_connection_s=7200, frame_bytes=32768, message_bytes=131072
    )
    assert (api.stage, api.stage_settings, api.api_key_selection_expression) == (None, None, None)
    route = api.routes["$default"]
    assert isinstance(route.integration, WsLambda)
    assert route.integration.function == "fallback"
    assert (route.authorization_type, route.api_key_required, route.route_response) == ("NONE", False, False)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"websocket": 1}, True),
        ({"openapi": "3.0.0", "paths": {}}, False),
        ({"Resources": {}}, False),
        ("websocket", False),
        (None, False),
    ],
)
def test_the_marker_says_what_the_document_is(document: Any, expected: bool) -> None:
    assert is_websocket(document) is expected


BASE: dict[str, Any] = {
    "websocket": 1,
    "name": "Chat",
    "routes": {
        "$connect": {"function": "connect"},
        "sendmessage": {"function": "send"},
        "$default": {"function": "fallback"},
    },
}


def problems_of(changes: dict[str, Any], file: Path) -> list[Problem]:
    document = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("/")
        holder = document
        for key in parents:
            holder = holder.setdefault(key, {})
        if value is DELETE:
            del holder[last]
        else:
            holder[last] = value
    with pytest.raises(DefinitionErrors) as caught:
        parse_websocket(document, file)
    return list(caught.value.problems)


DELETE = object()


@pytest.mark.parametrize(
    ("changes", "path", "says"),
    [
        ({"websocket": 2}, "$.websocket", "must be 1"),
        ({"extra": True}, "$.extra", "unknown key"),
        ({"name": ""}, "$.name", "non-empty"),
        ({"routes": DELETE}, "$.routes", "needs routes"),
        ({"routes": ["$connect"]}, "$.routes", "mapping"),
        ({"routes/$custom": {"function": "x"}}, "$.routes['$custom']", "reserved"),
        (
            {"routes/sendmessage/authorizer": {"function": "auth"}},
            "$.routes.sendmessage.authorizer",
            "only the $connect",
        ),
        (
            {
                "routes/$connect/authorizer": {
                    "function": "auth",
                    "identitySource": ["method.request.header.A"],
                }
            },
            "$.routes['$connect'].authorizer.identitySource[0]",
            "route.request.header.NAME",
        ),
        (
            {"routes/$connect/authorizer": {"identitySource": []}},
            "$.routes['$connect'].authorizer",
            "function",
        ),
        ({"routes/sendmessage/mock": {"body": "x"}}, "$.routes.sendmessage", "not both"),
        ({"routes/sendmessage": {"routeResponse": True}}, "$.routes.sendmessage", "either a function"),
        ({"routes/sendmessage/routeResponse": "yes"}, "$.routes.sendmessage.routeResponse", "true or false"),
        (
            {"routes/sendmessage/routeResponseSelectionExpression": "$other"},
            "$.routes.sendmessage.routeResponseSelectionExpression",
            "$default",
        ),
        (
            {"routes/$disconnect": {"function": "d", "routeResponse": True}},
            "$.routes['$disconnect'].routeResponse",
            "gone",
        ),
        ({"routes/sendmessage/timeoutMillis": 30_000}, "$.routes.sendmessage.timeoutMillis", "50 to 29000"),
        ({"routes/sendmessage/timeoutMillis": 10}, "$.routes.sendmessage.timeoutMillis", "50 to 29000"),
        ({"routes/sendmessage/apiKeyRequired": 1}, "$.routes.sendmessage.apiKeyRequired", "true or false"),
        ({"routes/sendmessage/retries": 3}, "$.routes.sendmessage.retries", "unknown setting"),
        ({"routes/sendmessage": {"mock": {"body": 5}}}, "$.routes.sendmessage.mock.body", "string"),
        ({"routes/sendmessage": {"mock": {"status": 200}}}, "$.routes.sendmessage.mock", "body"),
        ({"routes/sendmessage": 7}, "$.routes.sendmessage", "mapping"),
        (
            {"routeSelectionExpression": "$request.header.action"},
            "$.routeSelectionExpression",
            "$request.body",
        ),
        ({"routeSelectionExpression": "${request.body.action"}, "$.routeSelectionExpression", "never closed"),
        ({"apiKeySelectionExpression": "$request.header.key"}, "$.apiKeySelectionExpression", "x-api-key"),
        ({"limits": {"frameBytes": 0}}, "$.limits.frameBytes", "from 1 to"),
        ({"limits": {"idleTimeoutSeconds": 7201}}, "$.limits.idleTimeoutSeconds", "from 1 to 7200"),
        ({"limits": {"messageBytes": "big"}}, "$.limits.messageBytes", "whole number"),
        (
            {"limits": {"frameBytes": 65536, "messageBytes": 32768}},
            "$.limits.frameBytes",
            "larger than a whole",
        ),
        (
            {"limits": {"idleTimeoutSeconds": 900, "maxConnectionSeconds": 600}},
            "$.limits.idleTimeoutSeconds",
            "longer",
        ),
        ({"limits": {"pingSeconds": 1}}, "$.limits.pingSeconds", "unknown limit"),
        ({"limits": 5}, "$.limits", "mapping"),
        ({"stage": {"name": "no spaces"}}, "$.stage.name", "stage name"),
        ({"stage": {"name": "dev", "variables": {"a": ["b"]}}}, "$.stage.variables", "string values"),
        (
            {"stage": {"name": "dev", "routeSettings": {"nope": {}}}},
            "$.stage.routeSettings['nope']",
            "no such route",
        ),
        (
            {"stage": {"name": "dev", "defaultRouteSettings": {"throttlingRateLimit": -1}}},
            "$.stage.defaultRouteSettings.throttlingRateLimit",
            "0 or more",
        ),
        (
            {"stage": {"name": "dev", "defaultRouteSettings": {"cachingEnabled": True}}},
            "$.stage.defaultRouteSettings.cachingEnabled",
            "unknown setting",
        ),
    ],
)
def test_each_problem_names_its_json_path(
    tmp_path: Path, changes: dict[str, Any], path: str, says: str
) -> None:
    file = tmp_path / "api.yaml"
    problems = problems_of(changes, file)
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}: {[str(p) for p in problems]}"
    assert says in found[0].message
    assert found[0].file == file


def test_a_static_expression_naming_no_route_is_refused(tmp_path: Path) -> None:
    document = {"websocket": 1, "routeSelectionExpression": "chat", "routes": {"$connect": "c", "echo": "e"}}
    with pytest.raises(DefinitionErrors) as caught:
        parse_websocket(document, tmp_path / "api.yaml")
    (problem,) = caught.value.problems
    assert problem.path == "$.routeSelectionExpression"
    assert "names no route" in problem.message
    # With a $default to fall back to, or a route of that name, it is fine.
    parse_websocket(
        {**document, "routes": {"$connect": "c", "echo": "e", "$default": "d"}}, tmp_path / "a.yaml"
    )
    parse_websocket({**document, "routes": {"chat": "c"}}, tmp_path / "a.yaml")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        {
            "websocket": 3,
            "routes/$bad": {"function": "x"},
            "routes/sendmessage/authorizer": {"function": "a"},
            "limits": {"frameBytes": -1},
        },
        tmp_path / "api.yaml",
    )
    assert {p.path for p in problems} >= {
        "$.websocket",
        "$.routes['$bad']",
        "$.routes.sendmessage.authorizer",
        "$.limits.frameBytes",
    }


def write(folder: Path, name: str, text: str) -> Path:
    file = folder / name
    file.write_text(textwrap.dedent(text), encoding="utf-8")
    return file


def test_functions_missing_from_the_functions_file_are_named(tmp_path: Path) -> None:
    definition = write(
        tmp_path,
        "chat.yaml",
        """\
        websocket: 1
        routes:
          $connect:
            function: connect
            authorizer: {function: auth, identitySource: [route.request.header.Auth]}
          sendmessage: {function: send}
        """,
    )
    write(tmp_path, "functions.yaml", "functions:\n  connect: {handler: app.connect}\n")
    with pytest.raises(DefinitionErrors) as caught:
        load_websocket(definition)
    problems = {p.path: p for p in caught.value.problems}
    assert set(problems) == {"$.routes['$connect'].authorizer.function", "$.routes.sendmessage.function"}
    assert all(p.file == definition for p in problems.values())
    assert "'send'" in problems["$.routes.sendmessage.function"].message
    assert "functions.yaml" in problems["$.routes.sendmessage.function"].message


def test_without_a_functions_file_every_function_is_missing(tmp_path: Path) -> None:
    definition = write(tmp_path, "chat.yaml", "websocket: 1\nroutes: {$default: fallback}\n")
    with pytest.raises(DefinitionErrors, match="--functions FILE"):
        load_websocket(definition)
    api = parse_websocket(yaml.safe_load(definition.read_text()), definition)
    check_functions(api, load_functions(NATIVE.parent / "functions.yaml"))  # it names "fallback"


def test_load_websocket_refuses_other_documents(tmp_path: Path) -> None:
    other = write(tmp_path, "openapi.yaml", "openapi: 3.0.0\npaths: {}\n")
    with pytest.raises(DefinitionErrors, match="not a WebSocket API definition"):
        load_websocket(other)


# --- SAM / CloudFormation templates ---------------------------------------------------------------------


def test_the_aws_chat_app_template_loads() -> None:
    document = load_template(CHAT_APP)
    assert is_websocket_template(document)
    assert is_sam(document)  # which is why the loader asks is_websocket_template first
    api = parse_websocket_template(document, CHAT_APP)
    assert api.name == "SimpleChatWebSocket"
    assert api.route_selection_expression == "$request.body.message"
    assert list(api.routes) == ["$connect", "$disconnect", "sendmessage"]
    functions = {key: route.integration for key, route in api.routes.items()}
    assert {key: f.function for key, f in functions.items() if isinstance(f, WsLambda)} == {
        "$connect": "OnConnectFunction",
        "$disconnect": "OnDisconnectFunction",
        "sendmessage": "SendMessageFunction",
    }
    assert api.routes["$connect"].where == "$.Resources.ConnectRoute"
    assert api.routes["$connect"].integration.where == "$.Resources.ConnectInteg.Properties.IntegrationUri"
    assert (api.stage, dict(api.stage_variables), api.stage_settings) == ("Prod", {}, None)
    assert api.where == "$.Resources.SimpleChatWebSocket"
    assert api.deployment is not None
    entry = api.deployment.functions["OnConnectFunction"]
    assert (entry.handler, entry.memory_mb, dict(entry.environment)) == (
        "onconnect/app.handler",
        256,
        {"TABLE_NAME": "simplechat-connections-table"},
    )
    # The runtime's view of it: the code folder on sys.path, module "app", function "handler".
    assert parse_handler(entry.base_dir, entry.handler) == (CHAT_APP.parent / "onconnect", "app", "handler")
    assert set(api.not_emulated) == {
        "ConnectionsTable (AWS::DynamoDB::Table)",
        "OnConnectPermission (AWS::Lambda::Permission)",
        "OnDisconnectPermission (AWS::Lambda::Permission)",
        "SendMessagePermission (AWS::Lambda::Permission)",
        "CloudFrontOriginAccessIdentity (AWS::CloudFront::CloudFrontOriginAccessIdentity)",
        "CloudfrontDistribution (AWS::CloudFront::Distribution)",
        "S3Bucket (AWS::S3::Bucket)",
        "S3BucketPolicy (AWS::S3::BucketPolicy)",
    }
    # Its clients send {"message": "sendmessage", "data": "hello"}.
    selected = select_route(
        api.route_selection_expression, api.routes, '{"message": "sendmessage", "data": "hi"}'
    )
    assert selected.route_key == "sendmessage"
    assert select_route(api.route_selection_expression, api.routes, '{"message": "x"}').refused


def test_templates_without_a_websocket_api_are_not_websocket_templates() -> None:
    http_api = {
        "Resources": {"Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "HTTP"}}}
    }
    assert not is_websocket_template(http_api)
    assert not is_websocket_template({"Resources": {"Fn": {"Type": "AWS::Serverless::Function"}}})
    assert not is_websocket_template({"websocket": 1})
    assert not is_websocket_template(None)


FULL = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Chat with everything
Parameters:
  Burst:
    Type: String
    Default: "20"
Globals:
  Function:
    Runtime: python3.12
    CodeUri: src/
    Timeout: 10
Resources:
  Chat:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: Chat
      Description: the chat API
      ProtocolType: WEBSOCKET
      RouteSelectionExpression: ${request.body.action}
      ApiKeySelectionExpression: $request.header.x-api-key
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Auth
      ApiKeyRequired: "true"
      Target: !Join ['/', [integrations, !Ref ConnectInteg]]
  ConnectInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Chat
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/\\
        ${ConnectFn.Arn}/invocations"
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Chat
      Name: token-auth
      AuthorizerType: REQUEST
      AuthorizerUri: !Join
        - ''
        - - 'arn:aws:apigateway:'
          - !Ref AWS::Region
          - ':lambda:path/2015-03-31/functions/'
          - !GetAtt AuthFn.Arn
          - /invocations
      IdentitySource: [route.request.header.Auth, route.request.querystring.token]
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: echo
      RouteResponseSelectionExpression: $default
      Target: integrations/EchoInteg
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Chat
      RouteId: !Ref EchoRoute
      RouteResponseKey: $default
  EchoInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Chat
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt EchoFn.Arn
      TimeoutInMillis: 5000
  PingRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: ping
      RouteResponseSelectionExpression: $default
      Target: !Sub integrations/${PingInteg}
  PingResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties:
      ApiId: !Ref Chat
      RouteId: !Ref PingRoute
      RouteResponseKey: $default
  PingInteg:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Chat
      IntegrationType: MOCK
      TemplateSelectionExpression: \\$default
      RequestTemplates:
        $default: '{"statusCode": 200}'
  PingIntegResponse:
    Type: AWS::ApiGatewayV2::IntegrationResponse
    Properties:
      ApiId: !Ref Chat
      IntegrationId: !Ref PingInteg
      IntegrationResponseKey: $default
      ResponseTemplates:
        $default: '{"pong": true}'
  DefaultRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Chat
      RouteKey: $default
      Target: !Join ['/', [integrations, !Ref EchoInteg]]
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Chat
      StageName: live
      StageVariables: {room: lobby, size: 3}
      DefaultRouteSettings:
        ThrottlingBurstLimit: !Ref Burst
        ThrottlingRateLimit: 10
        DataTraceEnabled: false
      RouteSettings:
        echo: {ThrottlingRateLimit: 1}
  Deployment:
    Type: AWS::ApiGatewayV2::Deployment
    Properties:
      ApiId: !Ref Chat
  ConnectFn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: chat-connect
      Handler: app.connect
  EchoFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.echo
      MemorySize: 512
  AuthFn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.auth
  OtherApi:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      ProtocolType: HTTP
  OtherRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref OtherApi
      RouteKey: GET /x
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def connect(e, c):\n    return {}\n", encoding="utf-8")
    return tmp_path


def template_file(folder: Path, text: str = FULL) -> tuple[dict[str, Any], Path]:
    file = folder / "template.yaml"
    file.write_text(text, encoding="utf-8")
    document = load_template(file)
    assert isinstance(document, dict)
    return document, file


def test_every_websocket_resource_is_read(project: Path) -> None:
    document, file = template_file(project)
    api = parse_websocket_template(document, file)
    assert (api.name, api.description) == ("Chat", "the chat API")
    assert api.route_selection_expression == "${request.body.action}"
    assert api.api_key_selection_expression == "$request.header.x-api-key"
    assert list(api.routes) == ["$connect", "echo", "ping", "$default"]
    connect = api.routes["$connect"]
    assert (connect.authorization_type, connect.api_key_required) == ("CUSTOM", True)
    assert connect.authorizer is not None
    assert (connect.authorizer.name, connect.authorizer.function, connect.authorizer.identity_sources) == (
        "token-auth",
        "AuthFn",
        ("route.request.header.Auth", "route.request.querystring.token"),
    )
    assert isinstance(connect.integration, WsLambda)
    assert connect.integration.function == "chat-connect"  # its FunctionName
    echo = api.routes["echo"]
    assert (echo.route_response, echo.route_response_selection_expression) == (True, "$default")
    assert isinstance(echo.integration, WsLambda)
    assert (echo.integration.function, echo.integration.timeout_ms) == ("EchoFn", 5000)
    ping = api.routes["ping"]
    assert ping.integration == WsMock('{"pong": true}', "$.Resources.PingInteg.Properties")
    assert ping.route_response
    default = api.routes["$default"]
    assert not default.route_response
    assert default.integration == echo.integration
    assert (api.stage, dict(api.stage_variables)) == ("live", {"room": "lobby", "size": "3"})
    assert api.stage_settings is not None
    settings = api.stage_settings.method_settings
    assert (
        settings[ALL_METHODS_KEY].throttling_rate_limit,
        settings[ALL_METHODS_KEY].throttling_burst_limit,
    ) == (
        10.0,
        20,
    )
    assert settings[("echo", "*")].throttling_rate_limit == 1.0
    assert api.deployment is not None
    assert set(api.deployment.functions) == {"chat-connect", "EchoFn", "AuthFn"}
    assert api.deployment.functions["EchoFn"].timeout_s == 10.0  # from Globals.Function
    assert api.deployment.stage_variables == {"live": {"room": "lobby", "size": "3"}}
    assert api.deployment.stage_settings == {"live": api.stage_settings}
    assert set(api.not_emulated) == {
        "OtherApi (AWS::ApiGatewayV2::Api)",
        "OtherRoute (AWS::ApiGatewayV2::Route)",
    }
    assert api.functions() == ("chat-connect", "EchoFn", "AuthFn")


def template_problems(folder: Path, text: str) -> list[Problem]:
    document, file = template_file(folder, text)
    with pytest.raises(DefinitionErrors) as caught:
        parse_websocket_template(document, file)
    problems = list(caught.value.problems)
    assert all(p.file == file for p in problems)
    return problems


ECHO_TARGET = "      Target: integrations/EchoInteg\n"
ECHO_KEY = "      RouteKey: echo\n"


@pytest.mark.parametrize(
    ("replacements", "path", "says"),
    [
        (
            {ECHO_TARGET: "      Target: integrations/Nowhere\n"},
            "$.Resources.EchoRoute.Properties.Target",
            "names no AWS::ApiGatewayV2::Integration",
        ),
        ({ECHO_TARGET: ""}, "$.Resources.EchoRoute.Properties", "has no Target"),
        (
            {"!GetAtt EchoFn.Arn": "arn:aws:lambda:us-east-1:123456789012:function:gone"},
            "$.Resources.EchoInteg.Properties.IntegrationUri",
            "'gone' is not an AWS::Serverless::Function",
        ),
        (
            {"!GetAtt EchoFn.Arn": "https://example.com"},
            "$.Resources.EchoInteg.Properties.IntegrationUri",
            "not a Lambda invocation URI",
        ),
        (
            {ECHO_KEY: ECHO_KEY + "      AuthorizationType: CUSTOM\n      AuthorizerId: !Ref Auth\n"},
            "$.Resources.EchoRoute.Properties.AuthorizationType",
            "only the $connect route",
        ),
        (
            {"      AuthorizationType: CUSTOM\n": "      AuthorizationType: AWS_IAM\n"},
            "$.Resources.ConnectRoute.Properties.AuthorizationType",
            "not emulated",
        ),
        (
            {"      AuthorizationType: CUSTOM\n": ""},
            "$.Resources.ConnectRoute.Properties.AuthorizerId",
            "AuthorizationType: CUSTOM",
        ),
        (
            {"AuthorizerId: !Ref Auth": "AuthorizerId: abc123"},
            "$.Resources.ConnectRoute.Properties.AuthorizerId",
            "names no AWS::ApiGatewayV2::Authorizer",
        ),
        (
            {"AuthorizerType: REQUEST": "AuthorizerType: JWT"},
            "$.Resources.Auth.Properties.AuthorizerType",
            "REQUEST",
        ),
        (
            {"route.request.querystring.token]": "$request.querystring.token]"},
            "$.Resources.Auth.Properties.IdentitySource[1]",
            "identity source",
        ),
        (
            {"IntegrationType: MOCK": "IntegrationType: HTTP_PROXY"},
            "$.Resources.PingInteg.Properties.IntegrationType",
            "not emulated",
        ),
        (
            {"TimeoutInMillis: 5000": "TimeoutInMillis: 30000"},
            "$.Resources.EchoInteg.Properties.TimeoutInMillis",
            "29000",
        ),
        ({ECHO_KEY: "      RouteKey: $echo\n"}, "$.Resources.EchoRoute.Properties.RouteKey", "reserved"),
        ({ECHO_KEY: "      RouteKey: ping\n"}, "$.Resources.PingRoute.Properties.RouteKey", "already"),
        (
            {"$default\n" + ECHO_TARGET: "$other\n" + ECHO_TARGET},
            "$.Resources.EchoRoute.Properties.RouteResponseSelectionExpression",
            "$default",
        ),
        (
            {"EchoRoute\n      RouteResponseKey: $default": "EchoRoute\n      RouteResponseKey: $other"},
            "$.Resources.EchoResponse.Properties.RouteResponseKey",
            "$default",
        ),
        (
            {"      RouteSelectionExpression: ${request.body.action}\n": ""},
            "$.Resources.Chat.Properties",
            "needs a RouteSelectionExpression",
        ),
        (
            {"Expression: ${request.body.action}": "Expression: $request.header.a"},
            "$.Resources.Chat.Properties.RouteSelectionExpression",
            "$request.body.PATH",
        ),
        (
            {"$request.header.x-api-key": "$request.header.key"},
            "$.Resources.Chat.Properties.ApiKeySelectionExpression",
            "x-api-key",
        ),
        (
            {"      ProtocolType: HTTP\n": "      ProtocolType: WEBSOCKET\n"},
            "$.Resources",
            "2 WebSocket APIs",
        ),
        ({"StageName: live": "StageName: 'not ok'"}, "$.Resources.Stage.Properties.StageName", "StageName"),
        (
            {"        echo: {ThrottlingRateLimit: 1}": "        nope: {ThrottlingRateLimit: 1}"},
            "$.Resources.Stage.Properties.RouteSettings['nope']",
            "no such route",
        ),
        (
            {"      Handler: app.echo\n": "      Handler: missing.echo\n"},
            "$.Resources.EchoFn.Properties.Handler",
            "not found",
        ),
    ],
)
def test_each_template_problem_names_its_resource(
    project: Path, replacements: dict[str, str], path: str, says: str
) -> None:
    text = FULL
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    problems = template_problems(project, text)
    found = [p for p in problems if p.path == path]
    assert found, f"no problem at {path}: {[str(p) for p in problems]}"
    assert says in found[0].message


def test_an_unknown_intrinsic_is_a_problem_where_it_is(project: Path) -> None:
    text = FULL.replace("StageName: live", "StageName: !ImportValue shared-stage")
    problems = template_problems(project, text)
    assert [p.path for p in problems] == ["$.Resources.Stage.Properties.StageName.Fn::ImportValue"]


def test_a_template_with_no_websocket_api_says_so(project: Path) -> None:
    document, file = template_file(project, FULL.replace("ProtocolType: WEBSOCKET", "ProtocolType: HTTP"))
    with pytest.raises(DefinitionErrors, match="no AWS::ApiGatewayV2::Api with ProtocolType: WEBSOCKET"):
        parse_websocket_template(document, file)
