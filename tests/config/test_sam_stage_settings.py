"""A SAM template's stage settings: MethodSettings, cache cluster, compression, API keys and HTTP API route
settings, mapped to the same StageSettings a functions file's ``stages.NAME`` gives, or named problems.

The templates are written under ``tmp_path`` (with the handler module they name) and loaded and compiled
directly; compiling starts no process.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from portway.config.compile import Resources, compile_gateway
from portway.config.errors import DefinitionErrors, Problem
from portway.config.loader import load_definition
from portway.config.model import ALL_METHODS_KEY, ApiDefinition, MethodSetting, StageSettings
from portway.gateway import Gateway
from portway.lambdas.runtime import LambdaRuntime
from portway.observability.access_log import AccessLogWriter

HANDLER = "def handler(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"


# --- helpers ---------------------------------------------------------------------------------------


def write_template(
    tmp_path: Path,
    resources: dict[str, Any],
    *,
    globals_: dict[str, Any] | None = None,
    **top: Any,
) -> Path:
    """A SAM template of these resources (functions run ``app.handler``), its Globals and top-level keys."""
    (tmp_path / "app.py").write_text(HANDLER)
    document = {
        "Transform": "AWS::Serverless-2016-10-31",
        **top,
        "Globals": {"Function": {"Runtime": "python3.12", "Handler": "app.handler"}, **(globals_ or {})},
        "Resources": resources,
    }
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def function(**events: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Function", "Properties": {"Events": events}}


def api_event(path: str, method: str = "get", **properties: Any) -> dict[str, Any]:
    return {"Type": "Api", "Properties": {"Path": path, "Method": method, **properties}}


def http_event(path: str, method: str = "GET", **properties: Any) -> dict[str, Any]:
    return {"Type": "HttpApi", "Properties": {"Path": path, "Method": method, **properties}}


def rest_api(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::Api", "Properties": {"StageName": "live", **properties}}


def http_api(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::Serverless::HttpApi", "Properties": properties}


def settings_of(api: ApiDefinition) -> StageSettings:
    assert api.deployment is not None
    assert api.default_stage is not None
    return api.deployment.stage_settings[api.default_stage]


def compiled(api: ApiDefinition) -> Gateway:
    assert api.deployment is not None
    return compile_gateway(api, api.deployment, Resources(runtime=LambdaRuntime({})), stage=None)


def stages_of(gateway: Gateway) -> dict[tuple[str, str], str]:
    return {(r.method, r.resource): r.describe_stages() for r in gateway.routes()}


def key_required(api: ApiDefinition) -> dict[tuple[str, str], bool]:
    return {(op.method, op.resource): op.api_key_required for op in api.operations}


def problems_of(template: Path, parameter_overrides: dict[str, str] | None = None) -> list[Problem]:
    """Every problem a load + compile reports; fails the test if there are none."""
    with pytest.raises(DefinitionErrors) as raised:
        compiled(load_definition(template, parameter_overrides))
    problems = list(raised.value.problems)
    assert problems
    for problem in problems:  # one line each, naming the file and the path
        text = str(problem)
        assert "\n" not in text
        assert f"{template}: {problem.path}: " in text
    return problems


def problem_at(problems: list[Problem], path: str) -> Problem:
    found = [p for p in problems if p.path == path]
    listing = "\n".join(f"  {p.path} | {p.message}" for p in problems)
    assert len(found) == 1, f"expected one problem at {path}, got:\n{listing}"
    return found[0]


# --- the mapping -----------------------------------------------------------------------------------


def test_a_template_without_settings_keeps_every_default(tmp_path: Path) -> None:
    api = load_definition(write_template(tmp_path, {"Fn": function(E=api_event("/items"))}))
    assert api.deployment is not None
    assert api.deployment.stage_settings == {}
    assert (api.api_key_source, api.minimum_compression_size) == ("HEADER", None)
    assert key_required(api) == {("GET", "/items"): False}
    assert stages_of(compiled(api))[("GET", "/items")] == "throttle → compress → integration"  # account only


def test_globals_api_method_settings_reach_the_implicit_api(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(List=api_event("/items"), Make=api_event("/items", "post"))},
        globals_={
            "Api": {
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": 100,
                        "ThrottlingBurstLimit": 50,
                        "MetricsEnabled": True,  # accepted, changes nothing in Portway
                        "LoggingLevel": "INFO",
                        "DataTraceEnabled": False,
                        "CacheDataEncrypted": False,
                    },
                    {"ResourcePath": "/~1items", "HttpMethod": "GET", "ThrottlingBurstLimit": 5},
                ]
            }
        },
    )
    api = load_definition(template)
    settings = settings_of(api)
    assert api.default_stage == "Prod"
    assert settings.method_settings[ALL_METHODS_KEY] == MethodSetting(
        throttling_rate_limit=100.0,
        throttling_burst_limit=50,
        where="$.Globals.Api.MethodSettings[0]",
    )
    own = settings.method_settings[("/items", "GET")]
    assert (own.throttling_rate_limit, own.throttling_burst_limit) == (None, 5)
    # the all-methods default under the method's own entry, field by field
    merged = settings.for_method("GET", "/items")
    assert (merged.throttling_rate_limit, merged.throttling_burst_limit) == (100.0, 5)
    assert settings.for_method("POST", "/items").throttling_burst_limit == 50
    assert not settings.cache_cluster_enabled


@pytest.mark.parametrize(
    ("resource_path", "http_method", "key"),
    [
        pytest.param("/~1items~1{id}", "GET", ("/items/{id}", "GET"), id="escaped"),
        pytest.param("/items/{id}", "get", ("/items/{id}", "GET"), id="unescaped"),
        pytest.param("/~1items", "*", ("/items", "*"), id="every-method-of-a-resource"),
        pytest.param("/", "GET", ("/", "GET"), id="root"),
        pytest.param("/*", "*", ALL_METHODS_KEY, id="every-method"),
    ],
)
def test_resource_paths_as_cloudformation_writes_them(
    tmp_path: Path, resource_path: str, http_method: str, key: tuple[str, str]
) -> None:
    setting = {"ResourcePath": resource_path, "HttpMethod": http_method, "ThrottlingBurstLimit": 1}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(MethodSettings=[setting]),
            "Fn": function(
                Root=api_event("/", RestApiId={"Ref": "Api"}),
                List=api_event("/items", RestApiId={"Ref": "Api"}),
                One=api_event("/items/{id}", RestApiId={"Ref": "Api"}),
            ),
        },
    )
    api = load_definition(template)
    assert list(settings_of(api).method_settings) == [key]
    assert settings_of(api).method_settings[key].where == "$.Resources.Api.Properties.MethodSettings[0]"
    compiled(api)  # the key names a route of the API


def test_cache_cluster_compression_and_key_source(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                CacheClusterEnabled=True,
                CacheClusterSize="6.1",
                MinimumCompressionSize=0,
                ApiKeySourceType="AUTHORIZER",
                MethodSettings=[
                    {"ResourcePath": "/~1items", "HttpMethod": "GET", "CachingEnabled": True},
                    {"ResourcePath": "/*", "HttpMethod": "*", "CacheTtlInSeconds": 60},
                ],
            ),
            "Fn": function(
                List=api_event("/items", RestApiId={"Ref": "Api"}),
                Other=api_event("/other", RestApiId={"Ref": "Api"}),
            ),
        },
    )
    api = load_definition(template)
    settings = settings_of(api)
    assert (settings.cache_cluster_enabled, settings.cache_cluster_size_gb) == (True, 6.1)
    assert (api.minimum_compression_size, api.api_key_source) == (0, "AUTHORIZER")
    merged = settings.for_method("GET", "/items")
    assert (merged.caching_enabled, merged.cache_ttl_s) == (True, 60)
    stages = stages_of(compiled(api))
    assert stages[("GET", "/items")] == "throttle → compress → cache → integration"
    assert stages[("GET", "/other")] == "throttle → compress → integration"  # caching is /items' alone


def test_the_resources_own_settings_over_globals(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                CacheClusterEnabled=True,
                MethodSettings=[{"ResourcePath": "/*", "HttpMethod": "*", "CachingEnabled": True}],
                Auth={"DefaultAuthorizer": "NONE"},  # the Globals' Auth.ApiKeyRequired still applies
            ),
            "Fn": function(List=api_event("/items", RestApiId={"Ref": "Api"})),
        },
        globals_={
            "Api": {
                "CacheClusterEnabled": False,
                "CacheClusterSize": "1.6",
                "MinimumCompressionSize": 1024,
                "Auth": {"ApiKeyRequired": True},
                "MethodSettings": [
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingRateLimit": 10,
                        "CachingEnabled": False,
                    }
                ],
            }
        },
    )
    api = load_definition(template)
    settings = settings_of(api)
    default = settings.method_settings[ALL_METHODS_KEY]
    assert (default.throttling_rate_limit, default.caching_enabled) == (10.0, True)  # merged, own wins
    assert default.where == "$.Resources.Api.Properties.MethodSettings[0]"
    assert (settings.cache_cluster_enabled, settings.cache_cluster_size_gb) == (True, 1.6)
    assert api.minimum_compression_size == 1024
    assert key_required(api) == {("GET", "/items"): True}


def test_api_keys_on_the_api_and_on_each_event(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Auth={"ApiKeyRequired": True}),
            "Fn": function(
                Keyed=api_event("/keyed", RestApiId={"Ref": "Api"}),
                Open=api_event("/open", RestApiId={"Ref": "Api"}, Auth={"ApiKeyRequired": False}),
                # an Auth without ApiKeyRequired ('NONE' needs a DefaultAuthorizer: test_sam_auth.py)
                Scoped=api_event("/other", RestApiId={"Ref": "Api"}, Auth={"AuthorizationScopes": ["read"]}),
            ),
        },
    )
    api = load_definition(template)
    assert key_required(api) == {("GET", "/keyed"): True, ("GET", "/open"): False, ("GET", "/other"): True}
    stages = stages_of(compiled(api))
    assert stages[("GET", "/keyed")].startswith("api_key → ")
    assert not stages[("GET", "/open")].startswith("api_key")


def test_an_event_alone_can_require_a_key_on_the_implicit_api(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(Keyed=api_event("/keyed", Auth={"ApiKeyRequired": True}), Open=api_event("/open"))},
    )
    assert key_required(load_definition(template)) == {("GET", "/keyed"): True, ("GET", "/open"): False}


def test_definition_body_methods_follow_the_api_and_its_properties_win(tmp_path: Path) -> None:
    uri = {
        "Fn::Sub": "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
    }
    body = {
        "openapi": "3.0.1",
        "info": {"title": "Body", "version": "1"},
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-minimum-compression-size": 50,
        "paths": {
            "/body": {
                "get": {
                    "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": uri}
                }
            }
        },
    }
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(
                DefinitionBody=body, ApiKeySourceType="AUTHORIZER", Auth={"ApiKeyRequired": True}
            ),
            "Fn": {"Type": "AWS::Serverless::Function", "Properties": {}},
        },
    )
    api = load_definition(template)
    assert key_required(api) == {("GET", "/body"): True}
    assert api.api_key_source == "AUTHORIZER"  # the property over the body's extension
    assert api.minimum_compression_size == 50  # the body's, no property says otherwise


def test_intrinsics_resolve_and_parameters_convert_to_the_property_type(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HANDLER)
    template = tmp_path / "template.yaml"
    template.write_text(
        """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Burst: {Type: Number, Default: 7}
  Rate: {Type: Number, Default: "2.5"}
  Cache: {Type: String, Default: "true"}
  Size: {Type: String, Default: "0.5"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
Globals:
  Function: {Runtime: python3.12, Handler: app.handler}
  Api:
    CacheClusterEnabled: !Ref Cache
    CacheClusterSize: !Ref Size
    MinimumCompressionSize: !If [IsProd, 1024, !Ref AWS::NoValue]
    MethodSettings:
      - ResourcePath: /*
        HttpMethod: "*"
        ThrottlingBurstLimit: !Ref Burst
        ThrottlingRateLimit: !Ref Rate
        CachingEnabled: !Ref Cache
        CacheTtlInSeconds: !If [IsProd, 300, 5]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        E:
          Type: Api
          Properties: {Path: /items, Method: get, Auth: {ApiKeyRequired: !Equals [!Ref Env, prod]}}
"""
    )
    dev = load_definition(template)
    default = settings_of(dev).method_settings[ALL_METHODS_KEY]
    assert (default.throttling_burst_limit, default.throttling_rate_limit) == (7, 2.5)
    assert (default.caching_enabled, default.cache_ttl_s) == (True, 5)
    assert settings_of(dev).cache_cluster_enabled is True
    assert dev.minimum_compression_size is None
    assert key_required(dev) == {("GET", "/items"): False}
    prod = load_definition(template, {"Env": "prod", "Burst": "9", "Size": "1.6"})
    default = settings_of(prod).method_settings[ALL_METHODS_KEY]
    assert (default.throttling_burst_limit, default.cache_ttl_s) == (9, 300)
    assert settings_of(prod).cache_cluster_size_gb == 1.6
    assert prod.minimum_compression_size == 1024
    assert key_required(prod) == {("GET", "/items"): True}


def test_http_api_default_and_per_route_settings(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": http_api(
                DefaultRouteSettings={"ThrottlingBurstLimit": 100, "DetailedMetricsEnabled": True},
                RouteSettings={"GET /items": {"ThrottlingRateLimit": 5, "ThrottlingBurstLimit": 10}},
            ),
            "Fn": function(
                List=http_event("/items", ApiId={"Ref": "Api"}, RouteSettings={"ThrottlingBurstLimit": 2}),
                Any=http_event("/any", "ANY", ApiId={"Ref": "Api"}, RouteSettings={"ThrottlingRateLimit": 1}),
            ),
        },
        globals_={
            "HttpApi": {"DefaultRouteSettings": {"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 60}}
        },
    )
    api = load_definition(template)
    settings = settings_of(api)
    default = settings.method_settings[ALL_METHODS_KEY]
    assert (default.throttling_rate_limit, default.throttling_burst_limit) == (50.0, 100)
    items = settings.method_settings[("GET /items", "*")]
    assert (items.throttling_rate_limit, items.throttling_burst_limit) == (5.0, 2)  # the event's burst wins
    assert items.where == "$.Resources.Fn.Properties.Events.List.Properties.RouteSettings"
    assert settings.method_settings[("ANY /any", "*")].throttling_rate_limit == 1.0
    assert stages_of(compiled(api))[("GET", "/items")] == "throttle → integration"


def test_the_implicit_http_api_takes_globals_httpapi(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(Root=http_event("/items"), Rest={"Type": "HttpApi"})},
        globals_={"HttpApi": {"RouteSettings": {"$default": {"ThrottlingBurstLimit": 3}}}},
    )
    api = load_definition(template)
    assert settings_of(api).method_settings[("$default", "*")].throttling_burst_limit == 3
    compiled(api)


@pytest.mark.parametrize(
    ("create", "prefix"),
    [("PER_API", "Api"), ("SHARED", "Serverless"), ("NONE", None)],
)
def test_a_usage_plan_makes_nothing_and_is_listed_as_not_emulated(
    tmp_path: Path, create: str, prefix: str | None
) -> None:
    plan = {"CreateUsagePlan": create, "Quota": {"Limit": 100, "Period": "DAY"}, "Throttle": {"RateLimit": 5}}
    template = write_template(
        tmp_path,
        {
            "Api": rest_api(Auth={"ApiKeyRequired": True, "UsagePlan": plan}),
            "Fn": function(E=api_event("/items", RestApiId={"Ref": "Api"})),
        },
    )
    api = load_definition(template)
    made = [entry for entry in api.not_emulated if "AWS::ApiGateway::" in entry]
    if prefix is None:
        assert made == []
    else:
        assert made == [
            f"{prefix}UsagePlan (AWS::ApiGateway::UsagePlan)",
            f"{prefix}ApiKey (AWS::ApiGateway::ApiKey)",
            f"{prefix}UsagePlanKey (AWS::ApiGateway::UsagePlanKey)",
        ]
    assert key_required(api) == {("GET", "/items"): True}
    compiled(api)


# --- problems --------------------------------------------------------------------------------------


def test_bad_rest_settings_name_the_logical_id_and_the_property_path(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "MyApi": rest_api(
                MethodSettings=[
                    {
                        "ResourcePath": "/*",
                        "HttpMethod": "*",
                        "ThrottlingBurstLimit": -1,
                        "ThrottlingRateLimit": "fast",
                        "CachingEnabled": "yes",
                        "CacheTtlInSeconds": 4000,
                    },
                    # API Gateway has these; CloudFormation's MethodSetting does not
                    {"ResourcePath": "/*", "HttpMethod": "*", "RequireAuthorizationForCacheControl": True},
                    {"ResourcePath": "/~1items", "ThrottlingBurstLimit": 1},
                    {"ResourcePath": "/~1items", "HttpMethod": "FETCH"},
                    {"ResourcePath": "items", "HttpMethod": "GET"},
                    {"ResourcePath": "/*", "HttpMethod": "GET"},
                    "throttle",
                ],
                CacheClusterEnabled="maybe",
                CacheClusterSize="3",
                MinimumCompressionSize=-1,
                ApiKeySourceType="QUERY",
                Auth={"ApiKeyRequired": "sometimes", "UsagePlan": {"CreateUsagePlan": "ALWAYS"}},
            ),
            "Fn": function(
                E=api_event("/items", RestApiId={"Ref": "MyApi"}, Auth={"ApiKeyRequired": "please"}),
            ),
        },
    )
    problems = problems_of(template)
    base = "$.Resources.MyApi.Properties"
    expected = {
        f"{base}.MethodSettings[0].ThrottlingBurstLimit": "whole number of requests",
        f"{base}.MethodSettings[0].ThrottlingRateLimit": "number of requests per second",
        f"{base}.MethodSettings[0].CachingEnabled": "true or false",
        f"{base}.MethodSettings[0].CacheTtlInSeconds": "from 0 to 3600",
        f"{base}.MethodSettings[1].RequireAuthorizationForCacheControl": "unknown setting (known: Cache",
        f"{base}.MethodSettings[2]": "needs a ResourcePath and an HttpMethod",
        f"{base}.MethodSettings[3].HttpMethod": "'FETCH'",
        f"{base}.MethodSettings[4].ResourcePath": "must start with '/'",
        f"{base}.MethodSettings[5]": "goes with HttpMethod '*'",
        f"{base}.MethodSettings[6]": "must be a mapping",
        f"{base}.CacheClusterEnabled": "true or false",
        f"{base}.CacheClusterSize": "must be one of 0.5, 1.6",
        f"{base}.MinimumCompressionSize": "whole number of bytes",
        f"{base}.ApiKeySourceType": "HEADER or AUTHORIZER",
        f"{base}.Auth.ApiKeyRequired": "true or false",
        f"{base}.Auth.UsagePlan.CreateUsagePlan": "PER_API, SHARED, NONE",
        "$.Resources.Fn.Properties.Events.E.Properties.Auth.ApiKeyRequired": "true or false",
    }
    for path, words in expected.items():
        problem = problem_at(problems, path)
        owner = "Fn" if ".Events." in path else "MyApi"
        assert problem.message.startswith(f"{owner}: "), problem
        assert words in problem.message, problem
    assert len(problems) == len(expected), problems


def test_method_settings_for_a_route_the_api_lacks(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(E=api_event("/items"))},
        globals_={
            "Api": {
                "MethodSettings": [{"ResourcePath": "/~1nope", "HttpMethod": "GET", "CachingEnabled": True}]
            }
        },
    )
    (problem,) = problems_of(template)
    assert problem.path == "$.Globals.Api.MethodSettings[0]"
    assert "/nope/GET: no such route" in problem.message


def test_bad_http_route_settings(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": http_api(
                DefaultRouteSettings={"CachingEnabled": True},  # not an HTTP API route setting
                RouteSettings=["GET /items"],
            ),
            "Fn": function(
                E=http_event("/items", ApiId={"Ref": "Api"}, RouteSettings={"ThrottlingBurstLimit": 1.5}),
            ),
        },
    )
    problems = problems_of(template)
    unknown = problem_at(problems, "$.Resources.Api.Properties.DefaultRouteSettings.CachingEnabled")
    assert unknown.message.startswith("Api: unknown setting (known: DataTraceEnabled, DetailedMetricsEnabled")
    listed = problem_at(problems, "$.Resources.Api.Properties.RouteSettings")
    assert listed.message == "Api: must be a mapping of route keys ('GET /items', '$default') to settings"
    event = problem_at(
        problems, "$.Resources.Fn.Properties.Events.E.Properties.RouteSettings.ThrottlingBurstLimit"
    )
    assert event.message == "Fn: must be a whole number of requests, 0 or more"
    assert len(problems) == 3


def test_a_route_setting_for_a_missing_route(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {
            "Api": http_api(RouteSettings={"GET /nope": {"ThrottlingBurstLimit": 1}}),
            "Fn": function(E=http_event("/items", ApiId={"Ref": "Api"})),
        },
    )
    (problem,) = problems_of(template)
    assert problem.path == "$.Resources.Api.Properties.RouteSettings['GET /nope']"
    assert "GET /nope: no such route" in problem.message


def test_a_bad_global_is_reported_once_for_the_api_it_reaches(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(A=api_event("/a"), B=api_event("/b"))},
        globals_={
            "Api": {"MethodSettings": [{"ResourcePath": "/*", "HttpMethod": "*", "ThrottlingBurstLimit": -5}]}
        },
    )
    (problem,) = problems_of(template)
    assert problem.path == "$.Globals.Api.MethodSettings[0].ThrottlingBurstLimit"
    assert problem.message == "ServerlessRestApi: must be a whole number of requests, 0 or more"


def test_an_unresolvable_intrinsic_names_its_path(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        {"Fn": function(E=api_event("/a"))},
        globals_={"Api": {"CacheClusterEnabled": {"Ref": "Missing"}}},
    )
    (problem,) = problems_of(template)
    assert problem.path == "$.Globals.Api.CacheClusterEnabled"
    assert "'Missing'" in problem.message


def test_access_log_settings_reach_the_stage_and_a_bad_format_names_its_path(tmp_path: Path) -> None:
    """SAM's AccessLogSetting (REST) / AccessLogSettings (HTTP): the Format is the stage's access log format,
    checked when the gateway is compiled with an access log; the DestinationArn is not used."""
    destination = "arn:aws:logs:us-east-1:123456789012:log-group:api"
    for folder, resources, expected in (
        (
            "rest",
            {
                "Rest": rest_api(AccessLogSetting={"DestinationArn": destination, "Format": "clf"}),
                "Fn": function(Get=api_event("/items", RestApiId={"Ref": "Rest"})),
            },
            "clf",
        ),
        (
            "http",
            {
                "Http": http_api(
                    AccessLogSettings={"DestinationArn": destination, "Format": "$context.requestId"}
                ),
                "Fn": function(Put=http_event("/items", "PUT", ApiId={"Ref": "Http"})),
            },
            "$context.requestId",
        ),
    ):
        (tmp_path / folder).mkdir()
        template = write_template(tmp_path / folder, resources)
        assert settings_of(load_definition(template)).access_log_format == expected
    bad = write_template(
        tmp_path,
        {
            "Rest": rest_api(AccessLogSetting={"Format": "$context.requestId $context.nope"}),
            "Fn": function(Get=api_event("/items", RestApiId={"Ref": "Rest"})),
        },
    )
    api = load_definition(bad)
    assert api.deployment is not None
    writer = AccessLogWriter(io.StringIO())
    try:
        with pytest.raises(DefinitionErrors) as raised:
            compile_gateway(
                api, api.deployment, Resources(runtime=LambdaRuntime({}), access_log=writer), stage=None
            )
    finally:
        writer.close()
    (problem,) = raised.value.problems
    assert problem.path == "$.Resources.Rest.Properties.AccessLogSetting.Format"
    assert "$context.nope" in problem.message
