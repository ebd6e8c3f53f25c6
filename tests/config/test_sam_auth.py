"""A SAM template's protection settings (authorizers, CORS, gateway responses, request validation) mapped to
the same model objects an OpenAPI definition gives, as SAM writes them into the API's definition; or named
problems, one line each with the logical id and the property path.

Templates are written under ``tmp_path`` (their functions run ``app.handler``), loaded and compiled directly:
compiling starts no process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from portway.config.loader import load_definition
from portway.config.model import ApiDefinition, IntegrationResponse, IntegrationType, Operation, Parameter
from tests.config.test_sam_stage_settings import (
    api_event,
    compiled,
    function,
    http_api,
    http_event,
    problem_at,
    problems_of,
    rest_api,
    stages_of,
    write_template,
)

FUNCTION_ARN = {"Fn::GetAtt": ["AuthFn", "Arn"]}
AUTHORIZER_FN = {"Type": "AWS::Serverless::Function", "Properties": {}}
LAMBDA_URI = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:AuthFn/invocations"
)
ON_API: dict[str, Any] = {"RestApiId": {"Ref": "Api"}}
ON_HTTP_API: dict[str, Any] = {"ApiId": {"Ref": "Api"}}


def ops(api: ApiDefinition) -> dict[tuple[str, str], Operation]:
    return {(op.method, op.resource): op for op in api.operations}


def guards(api: ApiDefinition) -> dict[tuple[str, str], tuple[str | None, tuple[str, ...]]]:
    """Each route's authorizer and scopes."""
    return {(op.method, op.resource): (op.authorizer, op.authorization_scopes) for op in api.operations}


def messages(problems: list[Any]) -> str:
    return "\n".join(f"{p.path} | {p.message}" for p in problems)


def expect(problems: list[Any], expected: dict[str, tuple[str, str]]) -> None:
    """Exactly these problems: path -> (logical id the message starts with, words in it)."""
    for path, (owner, words) in expected.items():
        problem = problem_at(problems, path)
        assert problem.message.startswith(f"{owner}: "), problem
        assert words in problem.message, problem
    assert len(problems) == len(expected), messages(problems)


# --- REST API authorizers -----------------------------------------------------------------------------------


def test_a_lambda_token_authorizer_is_the_security_scheme_sam_writes(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                Auth={
                    "DefaultAuthorizer": "Token",
                    "Authorizers": {
                        "Token": {
                            "FunctionArn": FUNCTION_ARN,
                            "Identity": {
                                "Header": "X-Token",
                                "ValidationExpression": "^Bearer [a-z]+$",
                                "ReauthorizeEvery": {"Ref": "Ttl"},
                            },
                        }
                    },
                }
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(E=api_event("/items", **ON_API)),
        },
        Parameters={"Ttl": {"Type": "Number", "Default": 30}},
    )
    api = load_definition(template)
    auth = api.authorizers["Token"]
    assert auth.where == "$.Resources.Api.Properties.Auth.Authorizers.Token"
    assert auth.scheme == {
        "type": "apiKey",
        "name": "X-Token",
        "in": "header",
        "x-amazon-apigateway-authtype": "custom",
        "x-amazon-apigateway-authorizer": {
            "type": "token",
            "authorizerUri": LAMBDA_URI,
            "authorizerResultTtlInSeconds": "30",  # a parameter's string, as the stage reads it
            "identityValidationExpression": "^Bearer [a-z]+$",
        },
    }
    assert guards(api) == {("GET", "/items"): ("Token", ())}
    assert stages_of(compiled(api))[("GET", "/items")].startswith("authorizer → ")


def test_a_lambda_request_authorizer_lists_its_identity_sources(tmp_path: Path) -> None:
    identity = {
        "Headers": ["X-Tenant"],
        "QueryStrings": ["session"],
        "StageVariables": ["tier"],
        "Context": ["identity.sourceIp"],
        "ReauthorizeEvery": 0,
    }
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                Variables={"tier": "gold"},
                Auth={
                    "Authorizers": {
                        "Tenant": {
                            "FunctionArn": {"Fn::Sub": "${AuthFn.Arn}"},
                            "FunctionPayloadType": "REQUEST",
                            "Identity": identity,
                        },
                        # With no cache, no identity source is needed.
                        "Open": {
                            "FunctionArn": FUNCTION_ARN,
                            "FunctionPayloadType": "REQUEST",
                            "Identity": {"ReauthorizeEvery": 0},
                        },
                    }
                },
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(
                E=api_event("/items", **ON_API, Auth={"Authorizer": "Tenant"}),
                F=api_event("/open", **ON_API, Auth={"Authorizer": "Open"}),
            ),
        },
    )
    api = load_definition(template)
    scheme = api.authorizers["Tenant"].scheme
    assert (scheme["name"], scheme["in"]) == ("Unused", "header")
    assert scheme["x-amazon-apigateway-authorizer"] == {
        "type": "request",
        "authorizerUri": LAMBDA_URI,
        "authorizerResultTtlInSeconds": 0,
        "identitySource": "method.request.header.X-Tenant, method.request.querystring.session, "
        "stageVariables.tier, context.identity.sourceIp",
    }
    assert "identitySource" not in api.authorizers["Open"].scheme["x-amazon-apigateway-authorizer"]
    assert guards(api) == {("GET", "/items"): ("Tenant", ()), ("GET", "/open"): ("Open", ())}
    compiled(api)


def test_a_cognito_authorizer_and_its_scopes(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Pool": {"Type": "AWS::Cognito::UserPool", "Properties": {}},
            "Api": rest_api(
                Auth={
                    "DefaultAuthorizer": "Users",
                    "Authorizers": {
                        "Users": {
                            "UserPoolArn": {"Fn::GetAtt": ["Pool", "Arn"]},
                            "AuthorizationScopes": ["orders/read"],
                            "Identity": {"Header": "X-Id-Token", "ValidationExpression": "^client-1$"},
                            "x-portway-issuer": "http://127.0.0.1:9/pool",
                            "x-portway-jwks": "keys.json",
                        }
                    },
                }
            ),
            "Fn": function(
                Default=api_event("/default", **ON_API),
                Own=api_event(
                    "/own", **ON_API, Auth={"Authorizer": "Users", "AuthorizationScopes": ["a", "b"]}
                ),
                NoScopes=api_event(
                    "/none", **ON_API, Auth={"Authorizer": "Users", "AuthorizationScopes": []}
                ),
                Named=api_event("/named", **ON_API, Auth={"Authorizer": "Users"}),
            ),
        },
    )
    api = load_definition(template)
    assert api.authorizers["Users"].scheme == {
        "type": "apiKey",
        "name": "X-Id-Token",
        "in": "header",
        "x-amazon-apigateway-authtype": "cognito_user_pools",
        "x-amazon-apigateway-authorizer": {
            "type": "cognito_user_pools",
            "providerARNs": ["arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_Pool"],
            "identityValidationExpression": "^client-1$",
        },
        "x-portway-issuer": "http://127.0.0.1:9/pool",
        "x-portway-jwks": "keys.json",
    }
    assert guards(api) == {
        ("GET", "/default"): ("Users", ("orders/read",)),  # the authorizer's scopes
        ("GET", "/own"): ("Users", ("a", "b")),  # the event's, over them
        ("GET", "/none"): ("Users", ()),
        ("GET", "/named"): ("Users", ("orders/read",)),
    }
    assert "AWS::Cognito::UserPool" in " ".join(api.not_emulated)


def test_default_authorizer_none_and_another_authorizer(tmp_path: Path) -> None:
    authorizers = {"Main": {"FunctionArn": FUNCTION_ARN}, "Other": {"FunctionArn": FUNCTION_ARN}}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Auth={"DefaultAuthorizer": "Main", "Authorizers": authorizers}),
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(
                Guarded=api_event("/guarded", **ON_API),
                KeyOnly=api_event("/key", **ON_API, Auth={"ApiKeyRequired": True}),  # still the default
                Other=api_event("/other", **ON_API, Auth={"Authorizer": "Other"}),
                Open=api_event("/open", **ON_API, Auth={"Authorizer": "NONE"}),
            ),
        },
    )
    api = load_definition(template)
    assert guards(api) == {
        ("GET", "/guarded"): ("Main", ()),
        ("GET", "/key"): ("Main", ()),
        ("GET", "/other"): ("Other", ()),
        ("GET", "/open"): (None, ()),
    }
    stages = stages_of(compiled(api))
    assert not stages[("GET", "/open")].startswith("authorizer")
    assert stages[("GET", "/key")].startswith("authorizer → api_key → ")


def test_globals_api_auth_guards_the_implicit_api(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(E=api_event("/items"), Open=api_event("/open", Auth={"Authorizer": "NONE"})),
        },
        globals_={
            "Api": {
                "Auth": {"DefaultAuthorizer": "Main", "Authorizers": {"Main": {"FunctionArn": FUNCTION_ARN}}}
            }
        },
    )
    api = load_definition(template)
    assert api.authorizers["Main"].where == "$.Globals.Api.Auth.Authorizers.Main"
    assert guards(api) == {("GET", "/items"): ("Main", ()), ("GET", "/open"): (None, ())}


def test_x_portway_handler_runs_an_authorizer_the_template_does_not_define(tmp_path: Path) -> None:
    (tmp_path / "auth.py").write_text("def check(event, context):\n    raise Exception('Unauthorized')\n")
    elsewhere = "arn:aws:lambda:eu-west-1:123456789012:function:shared-authorizer"
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                Auth={
                    "DefaultAuthorizer": "Shared",
                    "Authorizers": {"Shared": {"FunctionArn": elsewhere, "x-portway-handler": "auth.check"}},
                }
            ),
            "Fn": function(E=api_event("/items", **ON_API)),
        },
    )
    api = load_definition(template)
    scheme = api.authorizers["Shared"].scheme
    assert scheme["x-portway-handler"] == "auth.check"
    assert scheme["x-amazon-apigateway-authorizer"]["authorizerUri"] == (
        f"arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/{elsewhere}/invocations"
    )
    assert "shared-authorizer" in compiled(api).functions


def test_definition_body_security_schemes_reach_the_model(tmp_path: Path) -> None:
    uri = {
        "Fn::Sub": "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
    }
    integration = {"type": "aws_proxy", "httpMethod": "POST", "uri": uri}
    body = {
        "openapi": "3.0.1",
        "info": {"title": "Body", "version": "1"},
        "components": {
            "securitySchemes": {
                "BodyAuth": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "x-amazon-apigateway-authtype": "custom",
                    "x-amazon-apigateway-authorizer": {"type": "token", "authorizerUri": LAMBDA_URI},
                }
            }
        },
        "paths": {
            "/body": {
                "get": {"security": [{"BodyAuth": []}], "x-amazon-apigateway-integration": integration}
            },
            "/plain": {"get": {"x-amazon-apigateway-integration": integration}},
        },
    }
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                DefinitionBody=body,
                Auth={"DefaultAuthorizer": "Sam", "Authorizers": {"Sam": {"FunctionArn": FUNCTION_ARN}}},
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {}},
        },
    )
    api = load_definition(template)
    assert set(api.authorizers) == {"BodyAuth", "Sam"}
    assert api.authorizers["BodyAuth"].where == (
        "$.Resources.Api.Properties.DefinitionBody.components.securitySchemes['BodyAuth']"
    )
    # The body's own security stays; the default guards the rest.
    assert guards(api) == {("GET", "/body"): ("BodyAuth", ()), ("GET", "/plain"): ("Sam", ())}
    compiled(api)


# --- HTTP API authorizers -----------------------------------------------------------------------------------


def test_http_api_jwt_and_lambda_authorizers(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": http_api(
                Auth={
                    "DefaultAuthorizer": "Jwt",
                    "Authorizers": {
                        "Jwt": {
                            "IdentitySource": "$request.header.Authorization",
                            "AuthorizationScopes": ["read"],
                            "JwtConfiguration": {"issuer": "https://issuer.example.com", "audience": ["app"]},
                        },
                        "Lambda": {
                            "FunctionArn": FUNCTION_ARN,
                            "AuthorizerPayloadFormatVersion": 2.0,
                            "EnableSimpleResponses": True,
                            "Identity": {"Headers": ["Authorization"], "ReauthorizeEvery": 60},
                        },
                    },
                }
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(
                Default=http_event("/default", **ON_HTTP_API),
                Scoped=http_event("/scoped", **ON_HTTP_API, Auth={"AuthorizationScopes": ["write"]}),
                Emptied=http_event(
                    "/emptied", **ON_HTTP_API, Auth={"Authorizer": "Jwt", "AuthorizationScopes": []}
                ),
                Lambda=http_event("/lambda", **ON_HTTP_API, Auth={"Authorizer": "Lambda"}),
                Open=http_event("/open", **ON_HTTP_API, Auth={"Authorizer": "NONE"}),
                Preflight=http_event("/default", "OPTIONS", **ON_HTTP_API),  # the default skips OPTIONS
            ),
        },
    )
    api = load_definition(template)
    assert api.authorizers["Jwt"].scheme == {
        "type": "oauth2",
        "x-amazon-apigateway-authorizer": {
            "jwtConfiguration": {"issuer": "https://issuer.example.com", "audience": ["app"]},
            "identitySource": "$request.header.Authorization",
            "type": "jwt",
        },
    }
    assert api.authorizers["Lambda"].scheme == {
        "type": "apiKey",
        "name": "Unused",
        "in": "header",
        "x-amazon-apigateway-authorizer": {
            "type": "request",
            "authorizerUri": LAMBDA_URI,
            "authorizerPayloadFormatVersion": "2.0",
            "authorizerResultTtlInSeconds": 60,
            "identitySource": ["$request.header.Authorization"],
            "enableSimpleResponses": True,
        },
    }
    assert guards(api) == {
        ("GET", "/default"): ("Jwt", ("read",)),
        ("GET", "/scoped"): ("Jwt", ("write",)),  # an event's Auth without Authorizer: the default's
        ("GET", "/emptied"): ("Jwt", ("read",)),  # an empty list keeps the authorizer's (HTTP APIs)
        ("GET", "/lambda"): ("Lambda", ()),
        ("GET", "/open"): (None, ()),
        ("OPTIONS", "/default"): (None, ()),
    }
    stages = stages_of(compiled(api))
    assert stages[("GET", "/default")].startswith("jwt → ")
    assert stages[("GET", "/lambda")].startswith("authorizer → ")


# --- CORS ---------------------------------------------------------------------------------------------------


def test_rest_cors_adds_the_mock_options_methods_sam_adds(tmp_path: Path) -> None:
    cors = {
        "AllowOrigin": "'https://shop.example'",
        "AllowHeaders": "'Content-Type'",
        "MaxAge": "'600'",
        "AllowCredentials": True,
    }
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Cors=cors),
            "Fn": function(
                Get=api_event("/items", **ON_API),
                Post=api_event("/items", "post", **ON_API),
                Any=api_event("/any", "any", **ON_API),
                Own=api_event("/own", "options", **ON_API),  # a path's own OPTIONS method stays
            ),
        },
    )
    api = load_definition(template)
    routes = ops(api)
    options = routes[("OPTIONS", "/items")]
    assert options.integration.type is IntegrationType.MOCK
    assert options.integration.request_templates == {"application/json": '{\n  "statusCode" : 200\n}\n'}
    assert options.integration.responses == (
        IntegrationResponse(
            selection_pattern="default",
            status_code=200,
            response_templates={"application/json": "{}\n"},
            response_parameters={
                "method.response.header.Access-Control-Allow-Origin": "'https://shop.example'",
                "method.response.header.Access-Control-Allow-Headers": "'Content-Type'",
                "method.response.header.Access-Control-Allow-Methods": "'GET,OPTIONS,POST'",
                "method.response.header.Access-Control-Max-Age": "'600'",
                "method.response.header.Access-Control-Allow-Credentials": "'true'",
            },
        ),
    )
    assert options.where == "$.Resources.Api.Properties.Cors"
    any_methods = routes[("OPTIONS", "/any")].integration.responses[0].response_parameters
    assert any_methods["method.response.header.Access-Control-Allow-Methods"] == (
        "'DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'"
    )
    assert routes[("OPTIONS", "/own")].integration.type is IntegrationType.AWS_PROXY
    assert stages_of(compiled(api))[("OPTIONS", "/items")] == "throttle → compress → integration"


def test_rest_cors_as_a_string_from_globals_on_the_implicit_api(tmp_path: Path) -> None:
    template = write_template(
        tmp_path, {"Fn": function(E=api_event("/items"))}, globals_={"Api": {"Cors": "'*'"}}
    )
    parameters = (
        ops(load_definition(template))[("OPTIONS", "/items")].integration.responses[0].response_parameters
    )
    assert parameters == {
        "method.response.header.Access-Control-Allow-Origin": "'*'",
        "method.response.header.Access-Control-Allow-Methods": "'GET,OPTIONS'",
    }


def test_preflights_take_the_default_authorizer_and_api_key_unless_told_not_to(tmp_path: Path) -> None:
    def guarded(**auth: Any) -> ApiDefinition:
        folder = tmp_path / str(len(auth))
        folder.mkdir()
        template = write_template(
            folder,
            {
                "Api": rest_api(
                    Cors="'*'",
                    Auth={
                        "ApiKeyRequired": True,
                        "DefaultAuthorizer": "Main",
                        "Authorizers": {"Main": {"FunctionArn": FUNCTION_ARN}},
                        **auth,
                    },
                ),
                "AuthFn": AUTHORIZER_FN,
                "Fn": function(E=api_event("/items", **ON_API)),
            },
        )
        return load_definition(template)

    preflight = ops(guarded())[("OPTIONS", "/items")]
    assert (preflight.authorizer, preflight.api_key_required) == ("Main", True)  # SAM's defaults
    open_preflight = ops(
        guarded(AddDefaultAuthorizerToCorsPreflight=False, AddApiKeyRequiredToCorsPreflight=False)
    )[("OPTIONS", "/items")]
    assert (open_preflight.authorizer, open_preflight.api_key_required) == (None, False)


def test_http_api_cors_configuration(tmp_path: Path) -> None:
    def cors_of(configuration: Any, **globals_: Any) -> Any:
        folder = tmp_path / f"t{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        properties = {"CorsConfiguration": configuration} if configuration is not None else {}
        template = write_template(
            folder,
            {"Api": http_api(**properties), "Fn": function(E=http_event("/items", **ON_HTTP_API))},
            globals_=globals_,
            Parameters={"Age": {"Type": "Number", "Default": 300}},
        )
        return load_definition(template).cors

    assert cors_of(True) == {"allowOrigins": ["*"]}
    assert cors_of(False) is None
    assert cors_of(
        {
            "AllowOrigins": ["https://shop.example"],
            "AllowMethods": ["GET"],
            "AllowHeaders": ["authorization"],
            "ExposeHeaders": ["x-id"],
            "MaxAge": {"Ref": "Age"},
            "AllowCredentials": True,
        }
    ) == {
        "allowOrigins": ["https://shop.example"],
        "allowMethods": ["GET"],
        "allowHeaders": ["authorization"],
        "exposeHeaders": ["x-id"],
        "maxAge": 300,
        "allowCredentials": True,
    }
    # Globals.HttpApi gives it to the API; its own merges over (lists add up, as SAM's Globals do).
    assert cors_of(None, HttpApi={"CorsConfiguration": {"AllowOrigins": ["https://a.example"]}}) == {
        "allowOrigins": ["https://a.example"]
    }
    assert cors_of(
        {"AllowOrigins": ["https://b.example"], "MaxAge": 5},
        HttpApi={"CorsConfiguration": {"AllowOrigins": ["https://a.example"]}},
    ) == {"allowOrigins": ["https://a.example", "https://b.example"], "maxAge": 5}


# --- gateway responses and request validation ---------------------------------------------------------------


def test_gateway_responses_are_the_extension_sam_writes(tmp_path: Path) -> None:
    responses = {
        "UNAUTHORIZED": {
            "StatusCode": 401,
            "ResponseParameters": {
                "Headers": {"Access-Control-Allow-Origin": "'*'", "X-Trace": "method.request.header.X-Trace"}
            },
            "ResponseTemplates": {"application/json": '{"error": $context.error.messageString}'},
        },
        "DEFAULT_5XX": {"ResponseTemplates": {"application/json": '{"oops": true}'}},
    }
    template = write_template(
        tmp_path,
        {"Fn": function(E=api_event("/items"))},
        globals_={"Api": {"GatewayResponses": responses}},
    )
    api = load_definition(template)
    assert api.gateway_responses == {
        "UNAUTHORIZED": {
            "statusCode": "401",
            "responseParameters": {
                "gatewayresponse.header.Access-Control-Allow-Origin": "'*'",
                "gatewayresponse.header.X-Trace": "method.request.header.X-Trace",
            },
            "responseTemplates": {"application/json": '{"error": $context.error.messageString}'},
        },
        "DEFAULT_5XX": {"responseTemplates": {"application/json": '{"oops": true}'}},
    }
    compiled(api)


def test_request_models_and_parameters(tmp_path: Path) -> None:
    pet = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Models={"Pet": pet}),
            "Fn": function(
                Add=api_event(
                    "/pets",
                    "post",
                    **ON_API,
                    RequestModel={"Model": "Pet", "Required": True, "ValidateBody": True},
                    RequestParameters=[
                        "method.request.header.X-Trace",
                        {"method.request.querystring.page": {"Required": True, "Caching": True}},
                    ],
                ),
                Find=api_event(
                    "/pets",
                    **ON_API,
                    RequestModel={"Model": "Pet", "ValidateParameters": True},
                    RequestParameters=[{"method.request.querystring.name": {"Required": "true"}}],
                ),
                Doc=api_event("/doc", "put", **ON_API, RequestModel={"Model": "Pet"}),  # documents only
            ),
        },
    )
    api = load_definition(template)
    ref = {"$ref": "#/Resources/Api/Properties/Models/Pet"}
    add, find, doc = ops(api)[("POST", "/pets")], ops(api)[("GET", "/pets")], ops(api)[("PUT", "/doc")]
    events = "$.Resources.Fn.Properties.Events"
    assert (add.body_schemas, add.request_validator) == ({"application/json": ref}, "body-only")
    assert add.parameters == (
        Parameter("X-Trace", "header", False, f"{events}.Add.Properties.RequestParameters[0]"),
        Parameter(
            "page",
            "query",
            True,
            f"{events}.Add.Properties.RequestParameters[1]['method.request.querystring.page']",
        ),
    )
    assert add.cache_key_parameters == ("method.request.querystring.page",)
    assert find.request_validator == "params-only"
    assert [(p.name, p.required) for p in find.parameters] == [("name", True)]
    assert (doc.body_schemas, doc.request_validator) == ({"application/json": ref}, None)
    validators = api.request_validators
    assert {name: (v.body, v.parameters) for name, v in validators.items()} == {
        "body-only": (True, False),
        "params-only": (False, True),
    }
    assert api.document == {"Resources": {"Api": {"Properties": {"Models": {"Pet": pet}}}}}
    stages = stages_of(compiled(api))
    assert "validate" in stages[("POST", "/pets")]
    assert "validate" not in stages[("PUT", "/doc")]


def test_model_problems_point_into_the_template(tmp_path: Path) -> None:
    bad = {"type": "object", "properties": {"name": {"type": "text"}}}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Models={"Pet": bad}),
            "Fn": function(
                Add=api_event("/pets", "post", **ON_API, RequestModel={"Model": "Pet", "ValidateBody": True})
            ),
        },
    )
    (problem,) = problems_of(template)
    assert problem.path.startswith("$.Resources.Api.Properties.Models.Pet.properties.name")


# --- problems -----------------------------------------------------------------------------------------------


def test_bad_rest_authorizers_name_the_logical_id_and_the_property_path(tmp_path: Path) -> None:
    node = {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": "nodejs20.x"}}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                Auth={
                    "DefaultAuthorizer": "Missing",
                    "Authorizers": {
                        "NoFunction": {},
                        "Elsewhere": {"FunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:other"},
                        "NotAnArn": {"FunctionArn": {"Ref": "AuthFn"}},
                        "Node": {"FunctionArn": {"Fn::GetAtt": ["NodeFn", "Arn"]}},
                        "BadType": {"FunctionArn": FUNCTION_ARN, "FunctionPayloadType": "COOKIE"},
                        "NoIdentity": {"FunctionArn": FUNCTION_ARN, "FunctionPayloadType": "REQUEST"},
                        "LongTtl": {"FunctionArn": FUNCTION_ARN, "Identity": {"ReauthorizeEvery": 7200}},
                        "BadRegex": {"FunctionArn": FUNCTION_ARN, "Identity": {"ValidationExpression": "("}},
                        "Typo": {"FunctionArn": FUNCTION_ARN, "Identity": {"Headers": ["X-Token"]}},
                        "Pool": {"UserPoolArn": "my-pool"},
                    },
                }
            ),
            "AuthFn": AUTHORIZER_FN,
            "NodeFn": node,
            "Fn": function(
                Ghost=api_event("/ghost", **ON_API, Auth={"Authorizer": "Ghost"}),
                Iam=api_event("/iam", **ON_API, Auth={"Authorizer": "AWS_IAM"}),
                Scopes=api_event(
                    "/scopes", **ON_API, Auth={"Authorizer": "Pool", "AuthorizationScopes": "read"}
                ),
            ),
        },
    )
    base = "$.Resources.Api.Properties.Auth"
    auth = f"{base}.Authorizers"
    events = "$.Resources.Fn.Properties.Events"
    expect(
        problems_of(template),
        {
            f"{base}.DefaultAuthorizer": ("Api", "'Missing' was not defined in 'Authorizers'"),
            f"{auth}.NoFunction.FunctionArn": ("Api", "needs FunctionArn"),
            f"{auth}.Elsewhere.FunctionArn": ("Api", "'other' is not one of this template's functions"),
            f"{auth}.NotAnArn.FunctionArn": ("Api", "'AuthFn' is not a Lambda function ARN"),
            f"{auth}.Node.FunctionArn": ("Api", "cannot run here: runtime 'nodejs20.x'"),
            f"{auth}.BadType.FunctionPayloadType": ("Api", "invalid 'FunctionPayloadType'"),
            f"{auth}.NoIdentity.Identity": ("Api", "must specify Identity with at least one of Headers"),
            f"{auth}.LongTtl.Identity.ReauthorizeEvery": ("Api", "from 0 to 3600"),
            f"{auth}.BadRegex.Identity.ValidationExpression": ("Api", "not a valid regular expression"),
            f"{auth}.Typo.Identity.Headers": ("Api", "unknown property (known here: Header,"),
            f"{auth}.Pool.UserPoolArn": ("Api", "not arn:aws:cognito-idp:REGION:ACCOUNT:userpool/POOL_ID"),
            f"{events}.Ghost.Properties.Auth.Authorizer": (
                "Fn",
                "[Ghost] on API method [get] for path [/ghost]",
            ),
            f"{events}.Iam.Properties.Auth.Authorizer": ("Fn", "AWS_IAM authorization"),
            f"{events}.Scopes.Properties.Auth.AuthorizationScopes": ("Fn", "must be a list"),
        },
    )


def test_none_needs_a_default_and_an_authorizer_needs_authorizers(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Fn": function(
                Open=api_event("/open", Auth={"Authorizer": "NONE"}),
                Named=api_event("/named", Auth={"Authorizer": "Main"}),
            )
        },
        globals_={"Api": {"Auth": {"DefaultAuthorizer": "AWS_IAM", "Unknown": 1}}},
    )
    events = "$.Resources.Fn.Properties.Events"
    expect(
        problems_of(template),
        {
            f"{events}.Open.Properties.Auth.Authorizer": (
                "Fn",
                "'NONE' is only a valid value when a Default",
            ),
            f"{events}.Named.Properties.Auth.Authorizer": ("Fn", "does not define any Authorizers"),
            "$.Globals.Api.Auth.DefaultAuthorizer": ("ServerlessRestApi", "AWS_IAM authorization"),
            "$.Globals.Api.Auth.Unknown": ("ServerlessRestApi", "unknown property"),
        },
    )


def test_bad_http_api_authorizers(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": http_api(
                Auth={
                    "Authorizers": {
                        "NoSource": {"JwtConfiguration": {"issuer": "https://i.example", "audience": ["a"]}},
                        "Capitals": {
                            "IdentitySource": "$request.header.Authorization",
                            "JwtConfiguration": {"Issuer": "https://i.example", "audience": ["a"]},
                        },
                        "NoAudience": {
                            "IdentitySource": "$request.header.Authorization",
                            "JwtConfiguration": {"issuer": "https://i.example"},
                        },
                        "NoVersion": {"FunctionArn": FUNCTION_ARN},
                        "JwtOnly": {
                            "FunctionArn": FUNCTION_ARN,
                            "AuthorizerPayloadFormatVersion": "2.0",
                            "IdentitySource": "$request.header.X",
                        },
                        "Simple10": {
                            "FunctionArn": FUNCTION_ARN,
                            "AuthorizerPayloadFormatVersion": "1.0",
                            "EnableSimpleResponses": True,
                        },
                        "Oidc": {"OpenIdConnectUrl": "https://i.example/.well-known/openid-configuration"},
                    }
                }
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": function(E=http_event("/items", **ON_HTTP_API, Auth={"AuthorizationScopes": ["read"]})),
        },
    )
    auth = "$.Resources.Api.Properties.Auth.Authorizers"
    expect(
        problems_of(template),
        {
            f"{auth}.NoSource": ("Api", "NoSource OAuth2 Authorizer must define 'IdentitySource'"),
            f"{auth}.Capitals.JwtConfiguration.Issuer": ("Api", "(write it 'issuer')"),
            f"{auth}.NoAudience.JwtConfiguration.audience": ("Api", "must list 1 to 50 audiences"),
            f"{auth}.NoVersion": ("Api", "must define 'AuthorizerPayloadFormatVersion'"),
            f"{auth}.JwtOnly.IdentitySource": ("Api", "must be defined only for OAuth2 Authorizer"),
            f"{auth}.Simple10.EnableSimpleResponses": ("Api", "need authorizerPayloadFormatVersion '2.0'"),
            f"{auth}.Oidc.OpenIdConnectUrl": ("Api", "no longer a supported property"),
            "$.Resources.Fn.Properties.Events.E.Properties.Auth": (
                "Fn",
                "requires either an explicit 'Authorizer'",
            ),
        },
    )


def test_bad_cors_gateway_responses_models_and_requests(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                Cors={"AllowOrigin": "'*'", "AllowCredentials": True, "MaxAge": 600, "AllowMethods": "GET"},
                GatewayResponses={
                    "BOGUS": {"StatusCode": 400},
                    "UNAUTHORIZED": {"StatusCode": "four hundred"},
                    "ACCESS_DENIED": {"ResponseParameters": {"Headers": {"X-Trace": "$context.requestId"}}},
                    "THROTTLED": {"ResponseParameters": {"Bodies": {}}},
                },
                Models={"Pet": {"type": "object"}, "Typeless": {"properties": {}}},
            ),
            "Fn": function(
                Ghost=api_event("/ghost", "post", **ON_API, RequestModel={"Model": "Dog"}),
                Loose=api_event(
                    "/loose", "post", **ON_API, RequestModel={"Model": "Pet", "ValidateBody": "yes"}
                ),
                Names=api_event(
                    "/names",
                    **ON_API,
                    RequestParameters=[
                        "header.X",
                        {"method.request.header.Y": {"Required": True, "Cache": True}},
                    ],
                ),
            ),
        },
    )
    api = "$.Resources.Api.Properties"
    events = "$.Resources.Fn.Properties.Events"
    expect(
        problems_of(template),
        {
            f"{api}.Cors.MaxAge": ("Api", "in quotes, like \"'600'\""),
            f"{api}.Cors.AllowMethods": ("Api", "'GET' is not a static value in single quotes"),
            f"{api}.Cors.AllowCredentials": ("Api", "'AllowCredentials' can not be true"),
            f"{api}.GatewayResponses.BOGUS": ("Api", "unknown gateway response type 'BOGUS'"),
            f"{api}.GatewayResponses.UNAUTHORIZED.StatusCode": ("Api", "must be numeric"),
            f"{api}.GatewayResponses.ACCESS_DENIED.ResponseParameters.Headers.X-Trace": (
                "Api",
                "static value",
            ),
            f"{api}.GatewayResponses.THROTTLED.ResponseParameters.Bodies": (
                "Api",
                "Invalid gateway response",
            ),
            f"{api}.Models.Typeless": ("Api", "'Models' schema is missing 'type'"),
            f"{events}.Ghost.Properties.RequestModel.Model": ("Fn", "wasn't defined in the API's Models"),
            f"{events}.Loose.Properties.RequestModel": ("Fn", "must be a boolean type"),
            f"{events}.Names.Properties.RequestParameters[0]": ("Fn", "Keys must be in the format"),
            f"{events}.Names.Properties.RequestParameters[1]['method.request.header.Y']": (
                "Fn",
                "Values must be an object",
            ),
        },
    )


def test_bad_http_api_cors_configuration(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Fn": function(E=http_event("/items")),
        },
        globals_={
            "HttpApi": {
                "CorsConfiguration": {
                    "AllowOrigins": ["*"],
                    "AllowCredentials": True,
                    "MaxAge": 100_000,
                    "AllowMethods": ["FETCH"],
                }
            }
        },
    )
    cors = "$.Globals.HttpApi.CorsConfiguration"
    expect(
        problems_of(template),
        {
            f"{cors}.AllowCredentials": ("ServerlessHttpApi", "cannot be true when allowOrigins has '*'"),
            f"{cors}.MaxAge": ("ServerlessHttpApi", "from -1 to 86400"),
            f"{cors}.AllowMethods[0]": ("ServerlessHttpApi", "'FETCH'"),
        },
    )


def test_a_definition_uri_takes_no_protection_settings(tmp_path: Path) -> None:
    integration = {
        "type": "aws_proxy",
        "httpMethod": "POST",
        "uri": "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        "arn:aws:lambda:us-east-1:123456789012:function:Fn/invocations",
    }
    document = {
        "openapi": "3.0.1",
        "info": {"title": "File", "version": "1"},
        "paths": {"/items": {"get": {"x-amazon-apigateway-integration": integration}}},
    }
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(document))
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                DefinitionUri="api.yaml",
                Cors="'*'",
                Auth={"DefaultAuthorizer": "Main", "Authorizers": {"Main": {"FunctionArn": FUNCTION_ARN}}},
            ),
            "AuthFn": AUTHORIZER_FN,
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {}},
        },
    )
    api = "$.Resources.Api.Properties"
    expect(
        problems_of(template),
        {
            f"{api}.Cors": ("Api", "works only with an inline DefinitionBody"),
            f"{api}.Auth.Authorizers": ("Api", "works only with an inline DefinitionBody"),
            f"{api}.Auth.DefaultAuthorizer": ("Api", "works only with an inline DefinitionBody"),
        },
    )
