"""Loading and compiling definitions: every problem names its file and JSON path, all at once.

These tests write small definition, functions and handler files under ``tmp_path`` and call the loaders and
the compiler directly; compiling starts no process (only the last tests, which import handlers, do).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from portway.config.compile import Resources, compile_gateway
from portway.config.errors import DefinitionError, DefinitionErrors, Problem, json_path
from portway.config.loader import find_functions_file, load_definition, load_deployment
from portway.config.model import IntegrationType
from portway.gateway import Gateway
from portway.lambdas.runtime import LambdaRuntime
from portway.service import Service, ServiceOptions

LAMBDA_URI = (
    "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:eu-west-1:123456789012:function:{name}/invocations"
)
INTEGRATION = "x-amazon-apigateway-integration"
ANY_METHOD = "x-amazon-apigateway-any-method"

HANDLERS = """\
def handler(event, context):
    return {"statusCode": 200, "body": "main"}


def other(event, context):
    return {"statusCode": 200, "body": "other"}
"""

FUNCTIONS = """\
functions:
  products:
    handler: app.handler
    timeout: 7
    memory: 256
    environment: {TABLE: products}
"""


# --- helpers ---------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def lambda_op(name: str = "products", **extra: Any) -> dict[str, Any]:
    return {
        INTEGRATION: {"type": "aws_proxy", "httpMethod": "POST", "uri": LAMBDA_URI.format(name=name)},
        **extra,
    }


def mock_op(status: int = 200) -> dict[str, Any]:
    return {
        INTEGRATION: {
            "type": "mock",
            "requestTemplates": {"application/json": f'{{"statusCode": {status}}}'},
            "responses": {"default": {"statusCode": str(status)}},
        }
    }


def openapi(paths: Mapping[str, Any], version: str = "3.0.1") -> dict[str, Any]:
    return {"openapi": version, "info": {"title": "Test API", "version": "1"}, "paths": dict(paths)}


def write_json(path: Path, document: Mapping[str, Any]) -> Path:
    return write(path, json.dumps(document, indent=2))


def app_dir(tmp_path: Path) -> Path:
    """A folder with the handler module ``app`` and a functions file binding ``products`` to it."""
    write(tmp_path / "app.py", HANDLERS)
    write(tmp_path / "functions.yaml", FUNCTIONS)
    return tmp_path


def compile_files(
    definition: Path,
    functions: Path | None = None,
    *,
    stage: str = "dev",
    stage_variables: Mapping[str, str] | None = None,
) -> Gateway:
    api = load_definition(definition)
    deployment = load_deployment(functions)
    return compile_gateway(
        api,
        deployment,
        Resources(runtime=LambdaRuntime({})),
        stage=stage,
        stage_variables=stage_variables,
    )


def problems_of(
    definition: Path,
    functions: Path | None = None,
    *,
    stage: str = "dev",
    stage_variables: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Every problem a load + compile reports; fails the test if there are none."""
    try:
        compile_files(definition, functions, stage=stage, stage_variables=stage_variables)
    except DefinitionError as exc:
        return [exc.problem]
    except DefinitionErrors as exc:
        problems = list(exc.problems)
    else:
        pytest.fail(f"{definition} compiled without problems")
    assert problems, "DefinitionErrors raised with no problems"
    return problems


def problem_at(problems: Sequence[Problem], file: Path, path: str) -> Problem:
    """The one problem reported for ``file`` at JSON path ``path``."""
    found = [p for p in problems if p.file == file and p.path == path]
    listing = "\n".join(f"  {p.file} | {p.path} | {p.message}" for p in problems)
    assert len(found) == 1, f"expected one problem at {file} {path}, got:\n{listing}"
    return found[0]


def table(gateway: Gateway) -> list[tuple[str, str, str]]:
    return sorted((r.method, r.resource, r.integration.describe()) for r in gateway.routes())


def assert_one_line(problem: Problem) -> None:
    text = str(problem)
    assert "\n" not in text
    assert str(problem.file) in text
    if problem.path:
        assert problem.path in text


# --- json_path ---------------------------------------------------------------------------------------


def test_json_path_quotes_what_is_not_an_identifier() -> None:
    assert json_path() == "$"
    assert json_path("paths", "/items/{id}", "get") == "$.paths['/items/{id}'].get"
    assert json_path("paths", "/a", ANY_METHOD) == f"$.paths['/a'].{ANY_METHOD}"
    assert json_path("functions", "my-fn", "handler") == "$.functions.my-fn.handler"
    assert json_path("responses", "4\\d{2}") == "$.responses['4\\\\d{2}']"
    assert json_path("x", "it's") == "$.x['it\\'s']"
    assert json_path("items", 0) == "$.items[0]"
    assert json_path("200") == "$['200']"


# --- good definitions ------------------------------------------------------------------------------

SWAGGER_JSON: dict[str, Any] = {
    "swagger": "2.0",
    "info": {"title": "Test API", "version": "1"},
    "basePath": "/",
    "schemes": ["https"],
    "paths": {
        "/": {"get": mock_op()},
        "/products": {
            "get": lambda_op(),
            "post": lambda_op(parameters=[{"name": "body", "in": "body", "schema": {"type": "object"}}]),
        },
        "/products/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
            ANY_METHOD: lambda_op(),
        },
        "/products/special": {"get": mock_op(201)},
        "/files/{proxy+}": {ANY_METHOD: lambda_op()},
    },
}

OPENAPI_31_YAML = f"""\
openapi: 3.1.0
info:
  title: Test API
  version: "1"
paths:
  /:
    get:
      {INTEGRATION}:
        type: mock
        requestTemplates:
          application/json: '{{"statusCode": 200}}'
        responses:
          default:
            statusCode: "200"
  /products:
    get:
      {INTEGRATION}:
        type: AWS_PROXY
        httpMethod: POST
        uri: {LAMBDA_URI.format(name="products")}
    post:
      requestBody:
        content:
          application/json:
            schema: {{type: object}}
      {INTEGRATION}:
        type: aws_proxy
        httpMethod: POST
        uri: {LAMBDA_URI.format(name="products")}
  /products/{{id}}:
    parameters:
      - name: id
        in: path
        required: true
        schema: {{type: string}}
    {ANY_METHOD}:
      {INTEGRATION}:
        type: aws_proxy
        httpMethod: POST
        uri: {LAMBDA_URI.format(name="products")}
  /products/special:
    get:
      {INTEGRATION}:
        type: mock
        requestTemplates:
          application/json: '{{"statusCode": 201}}'
        responses:
          default:
            statusCode: "201"
  /files/{{proxy+}}:
    {ANY_METHOD}:
      {INTEGRATION}:
        type: aws_proxy
        httpMethod: POST
        uri: {LAMBDA_URI.format(name="products")}
"""


def test_swagger_2_json_and_openapi_31_yaml_are_routed_the_same(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    swagger = compile_files(write_json(base / "swagger.json", SWAGGER_JSON), base / "functions.yaml")
    oas = compile_files(write(base / "openapi.yaml", OPENAPI_31_YAML), base / "functions.yaml")

    expected = [
        ("ANY", "/files/{proxy+}", "lambda products (app.handler)"),
        ("ANY", "/products/{id}", "lambda products (app.handler)"),
        ("GET", "/", "mock (200)"),
        ("GET", "/products", "lambda products (app.handler)"),
        ("GET", "/products/special", "mock (201)"),
        ("POST", "/products", "lambda products (app.handler)"),
    ]
    assert table(swagger) == expected
    assert table(oas) == expected
    assert swagger.api.title == oas.api.title == "Test API"
    assert swagger.api.kind == oas.api.kind == "REST"

    requests = [
        ("GET", "/", "/", {}),
        ("GET", "/products", "/products", {}),
        ("POST", "/products/", "/products", {}),
        ("DELETE", "/products/42", "/products/{id}", {"id": "42"}),
        ("GET", "/products/special", "/products/special", {}),
        ("PUT", "/files/a/b%20c.txt", "/files/{proxy+}", {"proxy": "a/b c.txt"}),
    ]
    for gateway in (swagger, oas):
        for method, path, resource, params in requests:
            match = gateway.router.match(method, path)
            assert match is not None, (method, path)
            assert (match.resource, match.path_parameters) == (resource, params)
        assert gateway.router.match("DELETE", "/products") is None
        assert gateway.router.match("GET", "/files") is None

    for gateway in (swagger, oas):
        spec = gateway.functions["products"]
        assert spec.code_dir == tmp_path
        assert (spec.module, spec.attribute) == ("app", "handler")
        assert spec.timeout_s == 7.0
        assert spec.memory_mb == 256
        assert dict(spec.environment) == {"TABLE": "products"}
        assert spec.region == "eu-west-1"
        origin = gateway.function_origins["products"]
        assert (origin.file, origin.where) == (tmp_path / "functions.yaml", "$.functions.products.handler")


def test_operation_where_and_integration_where_are_json_paths(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    api = load_definition(write(base / "openapi.yaml", OPENAPI_31_YAML))
    ops = {(op.method, op.resource): op for op in api.operations}
    any_op = ops[("ANY", "/products/{id}")]
    assert any_op.where == f"$.paths['/products/{{id}}'].{ANY_METHOD}"
    assert any_op.integration.where == f"$.paths['/products/{{id}}'].{ANY_METHOD}.{INTEGRATION}"
    assert ops[("GET", "/products")].integration.type is IntegrationType.AWS_PROXY


@pytest.mark.parametrize(
    "function",
    [
        "arn:aws:lambda:eu-west-1:123456789012:function:products",
        "arn:aws:lambda:eu-west-1:123456789012:function:products:live",
        "arn:aws:lambda:eu-west-1:123456789012:function:products:$LATEST",
        "products",
        "123456789012:function:products",
    ],
)
def test_lambda_uri_forms_resolve_the_function_name(tmp_path: Path, function: str) -> None:
    base = app_dir(tmp_path)
    uri = f"arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/{function}/invocations"
    definition = write_json(
        base / "api.json",
        openapi({"/p": {"get": {INTEGRATION: {"type": "aws_proxy", "httpMethod": "POST", "uri": uri}}}}),
    )
    gateway = compile_files(definition, base / "functions.yaml")
    assert table(gateway) == [("GET", "/p", "lambda products (app.handler)")]


def test_stage_variable_in_lambda_uri_resolves_from_cli_and_functions_file(tmp_path: Path) -> None:
    write(tmp_path / "app.py", HANDLERS)
    functions = write(
        tmp_path / "functions.yaml",
        "functions:\n  products: app.handler\n  other: app.other\n"
        "stages:\n  dev:\n    variables: {fn: products}\n  prod:\n    variables: {fn: other}\n",
    )
    definition = write_json(
        tmp_path / "api.json", openapi({"/p": {"get": lambda_op("${stageVariables.fn}")}})
    )
    assert table(compile_files(definition, functions)) == [("GET", "/p", "lambda products (app.handler)")]
    prod = compile_files(definition, functions, stage="prod")
    assert table(prod) == [("GET", "/p", "lambda other (app.other)")]
    assert prod.stage == "prod"
    # --stage-variable wins over the functions file's stages.STAGE.variables
    cli = compile_files(definition, functions, stage_variables={"fn": "other"})
    assert table(cli) == [("GET", "/p", "lambda other (app.other)")]
    assert cli.stage_variables["fn"] == "other"


def test_x_portway_handler_wins_over_the_functions_file(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    definition = write_json(
        base / "api.json",
        openapi(
            {
                "/fs": {"get": lambda_op()},
                "/direct": {"get": lambda_op("other-fn", **{"x-portway-handler": "app.other"})},
                "/bare": {
                    "post": {
                        "x-portway-handler": "app.handler",
                        INTEGRATION: {"type": "aws_proxy", "httpMethod": "POST"},
                    }
                },
            }
        ),
    )
    # the functions file binds products to app.handler; the operation names app.other for the same function
    write(
        base / "functions.yaml",
        FUNCTIONS + "  other-fn:\n    handler: app.handler\n    timeout: 5\n",
    )
    gateway = compile_files(definition, base / "functions.yaml")
    assert table(gateway) == [
        ("GET", "/direct", "lambda other-fn (app.other)"),
        ("GET", "/fs", "lambda products (app.handler)"),
        ("POST", "/bare", "lambda app-handler (app.handler)"),
    ]
    direct = gateway.functions["other-fn"]
    assert (direct.module, direct.attribute) == ("app", "other")
    assert direct.timeout_s == 5.0  # the function's settings still come from the functions file
    origin = gateway.function_origins["other-fn"]
    assert (origin.file, origin.where) == (definition, "$.paths['/direct'].get.x-portway-handler")


def test_x_portway_handler_module_is_relative_to_the_definition_folder(tmp_path: Path) -> None:
    write(tmp_path / "api" / "handlers" / "app.py", HANDLERS)
    write(tmp_path / "app.py", HANDLERS)  # a decoy beside the functions file
    functions = write(tmp_path / "config" / "functions.yaml", "functions: {}\n")
    definition = write_json(
        tmp_path / "api" / "openapi.json",
        openapi(
            {
                "/a": {"get": {"x-portway-handler": "app.handler", INTEGRATION: {"type": "aws_proxy"}}},
                "/b": {
                    "get": {"x-portway-handler": "handlers/app.other", INTEGRATION: {"type": "aws_proxy"}}
                },
            }
        ),
    )
    problems = problems_of(definition, functions)
    problem = problem_at(problems, definition, "$.paths['/a'].get.x-portway-handler")
    assert str(tmp_path / "api" / "app.py") in problem.message
    assert "not found" in problem.message
    assert len(problems) == 1

    write(tmp_path / "api" / "app.py", HANDLERS)
    gateway = compile_files(definition, functions)
    assert {spec.code_dir for spec in gateway.functions.values()} == {
        tmp_path / "api",
        tmp_path / "api" / "handlers",
    }


def test_functions_file_handler_is_relative_to_the_functions_file(tmp_path: Path) -> None:
    write(tmp_path / "deploy" / "src" / "products.py", HANDLERS)
    functions = write(
        tmp_path / "deploy" / "functions.yaml", "functions:\n  products: src/products.handler\n"
    )
    definition = write_json(tmp_path / "api" / "api.json", openapi({"/p": {"get": lambda_op()}}))
    gateway = compile_files(definition, functions)
    spec = gateway.functions["products"]
    assert (spec.code_dir, spec.module, spec.attribute) == (
        tmp_path / "deploy" / "src",
        "products",
        "handler",
    )
    assert table(gateway) == [("GET", "/p", "lambda products (products.handler)")]


def test_default_functions_file_is_found_beside_the_definition(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/": {"get": mock_op()}}))
    assert find_functions_file(definition, None) is None
    write(tmp_path / "functions.yaml", FUNCTIONS)
    assert find_functions_file(definition, None) == tmp_path / "functions.yaml"
    assert find_functions_file(definition, tmp_path / "other.yaml") == tmp_path / "other.yaml"


def test_functions_file_defaults_and_shorthand(tmp_path: Path) -> None:
    functions = write(
        tmp_path / "functions.yaml",
        "functions:\n  short: app.handler\n  full:\n    handler: src/pkg.mod.fn\n"
        "    environment: {DEBUG: true, N: 3}\n    concurrency: 2\n    description: it is\n"
        "stages:\n  dev:\n    variables: {port: 8080, name: x}\n",
    )
    deployment = load_deployment(functions)
    assert deployment.source == functions
    short, full = deployment.functions["short"], deployment.functions["full"]
    assert (short.handler, short.timeout_s, short.memory_mb, short.concurrency) == (
        "app.handler",
        3.0,
        128,
        4,
    )
    assert short.base_dir == tmp_path
    assert short.where == "$.functions.short"
    assert full.handler == "src/pkg.mod.fn"
    assert dict(full.environment) == {"DEBUG": "true", "N": "3"}
    assert full.concurrency == 2
    assert deployment.stage_variables == {"dev": {"port": "8080", "name": "x"}}
    assert load_deployment(None).functions == {}
    assert load_deployment(write(tmp_path / "empty.yaml", "")).functions == {}


# --- bad input: the file itself --------------------------------------------------------------------


def test_missing_definition_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    (problem,) = problems_of(missing)
    assert problem.file == missing
    assert problem.message == "file not found"
    assert_one_line(problem)


def test_missing_functions_file(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/": {"get": mock_op()}}))
    (problem,) = problems_of(definition, tmp_path / "nope.yaml")
    assert problem.file == tmp_path / "nope.yaml"
    assert "not found" in problem.message


def test_definition_is_a_directory(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path)
    assert problem.file == tmp_path
    assert "directory" in problem.message


def test_non_utf8_definition(tmp_path: Path) -> None:
    definition = tmp_path / "latin1.yaml"
    definition.write_bytes(b"openapi: 3.0.1\ninfo:\n  title: Caf\xe9\npaths: {}\n")
    (problem,) = problems_of(definition)
    assert problem.file == definition
    assert "not UTF-8" in problem.message
    assert "byte 33" in problem.message  # where the bad byte is
    assert_one_line(problem)


def test_non_utf8_functions_file(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/": {"get": mock_op()}}))
    functions = tmp_path / "functions.yaml"
    functions.write_bytes(b"functions:\n  f\xff: app.handler\n")
    (problem,) = problems_of(definition, functions)
    assert problem.file == functions
    assert "not UTF-8" in problem.message


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    definition = tmp_path / "bom.json"
    definition.write_bytes(b"\xef\xbb\xbf" + json.dumps(openapi({"/": {"get": mock_op()}})).encode())
    assert table(compile_files(definition)) == [("GET", "/", "mock (200)")]


@pytest.mark.parametrize(
    ("name", "text", "line_column"),
    [
        ("broken.yaml", "openapi: 3.0.1\npaths:\n  /a: [\n", "line 4, column 1"),
        ("broken.yaml", "openapi: 3.0.1\npaths:\n  /a:\n   get: {}\n  bad: : x\n", "line 5, column"),
        (
            "broken.json",
            '{\n  "openapi": "3.0.1",\n  "paths": {\n    "/a": {,}\n  }\n}\n',
            "line 4, column 12",
        ),
        ("tabs.yaml", "openapi: 3.0.1\npaths:\n\t/a: {}\n", "line 3, column 1"),
    ],
)
def test_malformed_yaml_or_json_names_line_and_column(
    tmp_path: Path, name: str, text: str, line_column: str
) -> None:
    definition = write(tmp_path / name, text)
    (problem,) = problems_of(definition)
    assert problem.file == definition
    assert problem.message.startswith("not valid YAML/JSON: ")
    assert line_column in problem.message
    assert_one_line(problem)


def test_yaml_duplicate_keys_are_refused(tmp_path: Path) -> None:
    definition = write(
        tmp_path / "dup.yaml",
        "openapi: 3.0.1\npaths:\n  /a:\n    get:\n      x: 1\n    post: {}\n    get:\n      x: 2\n",
    )
    (problem,) = problems_of(definition)
    assert problem.file == definition
    assert "duplicate key 'get'" in problem.message
    assert "line 7, column 5" in problem.message
    assert "first defined on line 4" in problem.message


def test_json_duplicate_keys_are_refused(tmp_path: Path) -> None:
    definition = write(
        tmp_path / "dup.json",
        '{"openapi": "3.0.1", "paths": {"/a": {}, "/b": {}, "/a": {}}}',
    )
    (problem,) = problems_of(definition)
    assert "duplicate key '/a'" in problem.message


def test_duplicate_keys_in_the_functions_file_are_refused(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/": {"get": mock_op()}}))
    functions = write(
        tmp_path / "functions.yaml", "functions:\n  products: app.handler\n  products: app.other\n"
    )
    (problem,) = problems_of(definition, functions)
    assert problem.file == functions
    assert "duplicate key 'products'" in problem.message
    assert "line 3" in problem.message


def test_yaml_merge_key_override_is_not_a_duplicate(tmp_path: Path) -> None:
    """YAML merge keys (``<<: *anchor``) are meant to be overridden by the mapping's own keys."""
    write(tmp_path / "app.py", HANDLERS)
    definition = write(
        tmp_path / "merge.yaml",
        f"""\
openapi: 3.0.1
x-defaults:
  lambda: &lambda
    type: aws_proxy
    httpMethod: POST
    timeoutInMillis: 29000
paths:
  /a:
    get:
      x-portway-handler: app.handler
      {INTEGRATION}:
        <<: *lambda
        timeoutInMillis: 5000
""",
    )
    gateway = compile_files(definition)
    (op,) = gateway.api.operations
    assert op.integration.timeout_ms == 5000


def test_sam_template_is_detected(tmp_path: Path) -> None:
    template = write(
        tmp_path / "template.yaml",
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\n"
        "Resources:\n  Api:\n    Type: AWS::Serverless::Api\n",
    )
    (problem,) = problems_of(template)
    assert (problem.file, problem.path) == (template, "$.Resources.Api.Properties.StageName")
    assert "Api: needs a StageName" in problem.message
    assert_one_line(problem)


def test_not_an_openapi_document(tmp_path: Path) -> None:
    for name, text in [("list.yaml", "- a\n- b\n"), ("empty.yaml", ""), ("other.json", '{"name": "x"}')]:
        definition = write(tmp_path / name, text)
        (problem,) = problems_of(definition)
        assert (problem.file, problem.path) == (definition, "$")
        assert "not an OpenAPI 3 or Swagger 2 document" in problem.message


@pytest.mark.parametrize(
    ("document", "path"),
    [
        pytest.param({"openapi": "4.0.0", "paths": {}}, "$.openapi", id="openapi-4.0.0"),
        pytest.param({"openapi": "3.2.0", "paths": {}}, "$.openapi", id="openapi-3.2.0"),
        pytest.param({"swagger": "1.2", "paths": {}}, "$.swagger", id="swagger-1.2"),
        # the version must go with its key: Swagger is 2.0, OpenAPI is 3.x
        pytest.param({"openapi": "2.0", "paths": {}}, "$.openapi", id="openapi-2.0"),
        pytest.param({"swagger": "3.0", "paths": {}}, "$.swagger", id="swagger-3.0"),
    ],
)
def test_unsupported_versions(tmp_path: Path, document: dict[str, Any], path: str) -> None:
    definition = write_json(tmp_path / "api.json", document)
    problem = problem_at(problems_of(definition), definition, path)
    assert "unsupported version" in problem.message


def test_unquoted_yaml_versions_are_accepted(tmp_path: Path) -> None:
    for text in ("swagger: 2.0\n", "openapi: 3.0\n", "openapi: 3.1\n"):
        definition = write(
            tmp_path / "api.yaml", text + "paths:\n  /:\n    get:\n      " + INTEGRATION + ": {type: mock}\n"
        )
        assert table(compile_files(definition)) == [("GET", "/", "mock (no responses)")]


# --- bad input: the definition's content -----------------------------------------------------------


def test_unknown_integration_type(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi({"/a": {"get": {INTEGRATION: {"type": "lambda_magic", "uri": "x"}}}}),
    )
    (problem,) = problems_of(definition)
    assert (problem.file, problem.path) == (definition, f"$.paths['/a'].get.{INTEGRATION}.type")
    assert "GET /a" in problem.message
    assert "unknown integration type 'lambda_magic'" in problem.message
    assert "aws_proxy" in problem.message
    assert_one_line(problem)


@pytest.mark.parametrize(
    ("kind", "label"),
    [("aws", "'aws' integration"), ("AWS", "'aws' integration"), ("http", "'http' integration")],
)
def test_aws_and_http_integrations_are_refused_naming_the_operation(
    tmp_path: Path, kind: str, label: str
) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/orders/{id}": {
                    "put": {
                        "operationId": "updateOrder",
                        INTEGRATION: {
                            "type": kind,
                            "httpMethod": "POST",
                            "uri": "https://example.com/orders",
                            "requestTemplates": {"application/json": '{"id": "$input.params(\'id\')"}'},
                        },
                    }
                }
            }
        ),
    )
    (problem,) = problems_of(definition)
    assert problem.file == definition
    assert problem.path == f"$.paths['/orders/{{id}}'].put.{INTEGRATION}.type"
    assert "PUT /orders/{id}" in problem.message
    assert label in problem.message
    assert "not supported yet" in problem.message
    assert_one_line(problem)


def test_missing_integration_and_missing_type(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi({"/a": {"get": {"responses": {"200": {"description": "ok"}}}, "post": {INTEGRATION: {}}}}),
    )
    problems = problems_of(definition)
    assert INTEGRATION in problem_at(problems, definition, "$.paths['/a'].get").message
    assert (
        "missing integration type"
        in problem_at(problems, definition, f"$.paths['/a'].post.{INTEGRATION}.type").message
    )


def test_unresolvable_function_name_with_a_functions_file(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    definition = write_json(base / "api.json", openapi({"/a": {"get": lambda_op("nosuchfn")}}))
    (problem,) = problems_of(definition, base / "functions.yaml")
    assert (problem.file, problem.path) == (definition, f"$.paths['/a'].get.{INTEGRATION}.uri")
    assert "GET /a" in problem.message
    assert "'nosuchfn'" in problem.message
    assert str(base / "functions.yaml") in problem.message
    assert_one_line(problem)


def test_unresolvable_function_name_without_a_functions_file(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/a": {"get": lambda_op("nosuchfn")}}))
    (problem,) = problems_of(definition)
    assert (problem.file, problem.path) == (definition, f"$.paths['/a'].get.{INTEGRATION}.uri")
    assert "'nosuchfn'" in problem.message
    assert "--functions" in problem.message
    assert "x-portway-handler" in problem.message


def test_uri_that_is_not_a_lambda_invocation(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/a": {
                    "get": {
                        INTEGRATION: {
                            "type": "aws_proxy",
                            "uri": "arn:aws:apigateway:eu-west-1:s3:path/bucket/key",
                        }
                    }
                }
            }
        ),
    )
    (problem,) = problems_of(definition)
    assert problem.path == f"$.paths['/a'].get.{INTEGRATION}.uri"
    assert "not a Lambda invocation uri" in problem.message


def test_missing_handler_file_named_by_the_functions_file(tmp_path: Path) -> None:
    functions = write(tmp_path / "functions.yaml", "functions:\n  products: src/products.handler\n")
    write(tmp_path / "src" / "other.py", HANDLERS)
    definition = write_json(tmp_path / "api" / "api.json", openapi({"/p": {"get": lambda_op()}}))
    (problem,) = problems_of(definition, functions)
    assert (problem.file, problem.path) == (functions, "$.functions.products.handler")
    assert "'products'" in problem.message
    assert str(tmp_path / "src" / "products.py") in problem.message
    assert "not found" in problem.message
    assert_one_line(problem)


def test_missing_handler_folder(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {"/p": {"get": {"x-portway-handler": "nowhere/app.handler", INTEGRATION: {"type": "aws_proxy"}}}}
        ),
    )
    (problem,) = problems_of(definition)
    assert (problem.file, problem.path) == (definition, "$.paths['/p'].get.x-portway-handler")
    assert f"handler folder {tmp_path / 'nowhere'} not found" in problem.message


def test_package_handler_module_is_found(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "__init__.py", HANDLERS)
    write(tmp_path / "pkg" / "sub.py", HANDLERS)
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/a": {"get": {"x-portway-handler": "pkg.handler", INTEGRATION: {"type": "aws_proxy"}}},
                "/b": {"get": {"x-portway-handler": "pkg.sub.other", INTEGRATION: {"type": "aws_proxy"}}},
            }
        ),
    )
    assert table(compile_files(definition)) == [
        ("GET", "/a", "lambda pkg-handler (pkg.handler)"),
        ("GET", "/b", "lambda pkg-sub-other (pkg.sub.other)"),
    ]


@pytest.mark.parametrize("handler", ["nodots", "app.", "app.1st", 42, "has space.fn"])
def test_bad_x_portway_handler(tmp_path: Path, handler: object) -> None:
    write(tmp_path / "app.py", HANDLERS)
    definition = write_json(
        tmp_path / "api.json",
        openapi({"/a": {"get": {"x-portway-handler": handler, INTEGRATION: {"type": "aws_proxy"}}}}),
    )
    (problem,) = problems_of(definition)
    assert (problem.file, problem.path) == (definition, "$.paths['/a'].get.x-portway-handler")
    assert "module" in problem.message or "identifier" in problem.message
    assert_one_line(problem)


def test_stage_variable_missing_from_lambda_uri(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    definition = write_json(
        base / "api.json", openapi({"/a": {"get": lambda_op("${stageVariables.fnName}")}})
    )
    (problem,) = problems_of(definition, base / "functions.yaml", stage="prod")
    assert (problem.file, problem.path) == (definition, f"$.paths['/a'].get.{INTEGRATION}.uri")
    assert "stage variable 'fnName'" in problem.message
    assert "'prod'" in problem.message
    assert "--stage-variable fnName=VALUE" in problem.message
    assert "stages.prod.variables" in problem.message


def test_stage_variable_missing_from_http_proxy_uri(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {"/u": {"get": {INTEGRATION: {"type": "http_proxy", "uri": "http://h:${stageVariables.port}/x"}}}}
        ),
    )
    (problem,) = problems_of(definition)
    assert problem.path == f"$.paths['/u'].get.{INTEGRATION}.uri"
    assert "stage variable 'port'" in problem.message
    gateway = compile_files(definition, stage_variables={"port": "8080"})
    assert table(gateway) == [("GET", "/u", "http_proxy ANY http://h:8080/x")]


def test_duplicate_route_clashing_variable_names(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/items/{id}": {"get": mock_op()},
                "/items/{itemId}/parts": {"get": mock_op()},
                "/files/{proxy+}": {ANY_METHOD: mock_op()},
                "/files/{path+}": {"get": mock_op()},
            }
        ),
    )
    problems = problems_of(definition)
    assert len(problems) == 2
    first = problem_at(problems, definition, "$.paths['/items/{itemId}/parts'].get")
    assert "{id}" in first.message
    assert "/items/{itemId}/parts" in first.message
    second = problem_at(problems, definition, "$.paths['/files/{path+}'].get")
    assert "{proxy}" in second.message


def test_method_keys_are_lower_case_and_known(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {"/a": {"GET": mock_op(), "fetch": mock_op(), "get": mock_op(), "parameters": [], "x-note": 1}}
        ),
    )
    problems = problems_of(definition)
    assert len(problems) == 2
    assert "'get'" in problem_at(problems, definition, "$.paths['/a'].GET").message
    assert "unknown method 'fetch'" in problem_at(problems, definition, "$.paths['/a'].fetch").message


@pytest.mark.parametrize(
    ("resource", "words"),
    [
        ("items", "must start with '/'"),
        ("/items/", "must not end with '/'"),
        ("/items//x", "empty segment"),
        ("/items/{id", "whole segment"),
        ("/items/a{id}", "whole segment"),
        ("/{proxy+}/x", "must be the last path part"),
        ("/{a}/{a}", "appears twice"),
        ("/{a b}", "invalid name"),
    ],
)
def test_bad_resource_paths(tmp_path: Path, resource: str, words: str) -> None:
    definition = write_json(tmp_path / "api.json", openapi({resource: {"get": mock_op()}}))
    problem = problem_at(problems_of(definition), definition, json_path("paths", resource))
    assert words in problem.message


def test_non_string_path_key_is_reported(tmp_path: Path) -> None:
    """A YAML path key that is not a string (``200:``) must be reported, not silently dropped."""
    definition = write(
        tmp_path / "api.yaml",
        f"openapi: 3.0.1\npaths:\n  200:\n    get:\n      {INTEGRATION}: {{type: mock}}\n"
        f"  /ok:\n    get:\n      {INTEGRATION}: {{type: mock}}\n",
    )
    (problem,) = problems_of(definition)
    assert problem.file == definition
    assert problem.path == "$.paths['200']"
    assert "'/'" in problem.message


def test_integration_field_problems(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/a": {
                    "get": {
                        INTEGRATION: {
                            "type": "aws_proxy",
                            "uri": LAMBDA_URI.format(name="f"),
                            "httpMethod": "GET",
                        }
                    },
                    "put": {INTEGRATION: {"type": "aws_proxy"}},
                    "post": {INTEGRATION: {"type": "http_proxy", "uri": "ftp://x"}},
                    "delete": {INTEGRATION: {"type": "mock", "timeoutInMillis": 30_000}},
                    "patch": {INTEGRATION: {"type": "mock", "passthroughBehavior": "SOMETIMES"}},
                    "head": {INTEGRATION: {"type": "mock", "responses": {"default": {"statusCode": "99"}}}},
                    "options": {INTEGRATION: {"type": "mock", "requestTemplates": {"application/json": 1}}},
                }
            }
        ),
    )
    problems = problems_of(definition)
    where = f"$.paths['/a'].{{}}.{INTEGRATION}"
    assert "POST" in problem_at(problems, definition, where.format("get") + ".httpMethod").message
    assert "Lambda function uri" in problem_at(problems, definition, where.format("put") + ".uri").message
    assert "http(s)://" in problem_at(problems, definition, where.format("post") + ".uri").message
    assert "29000" in problem_at(problems, definition, where.format("delete") + ".timeoutInMillis").message
    assert (
        "WHEN_NO_MATCH"
        in problem_at(problems, definition, where.format("patch") + ".passthroughBehavior").message
    )
    assert (
        "status code"
        in problem_at(problems, definition, where.format("head") + ".responses['default'].statusCode").message
    )
    problem_at(problems, definition, where.format("options") + ".requestTemplates")
    assert len(problems) == 7


def test_many_definition_problems_are_reported_at_once(tmp_path: Path) -> None:
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/a": {
                    "get": {INTEGRATION: {"type": "aws"}},
                    "post": {INTEGRATION: {"type": "http"}},
                    "put": {INTEGRATION: {"type": "weird"}},
                },
                "/b/": {"get": mock_op()},
                "/c": {"get": {"x-portway-handler": "bad", INTEGRATION: {"type": "aws_proxy"}}},
                "/ok": {"get": mock_op()},
            }
        ),
    )
    problems = problems_of(definition)
    assert sorted(p.path for p in problems) == sorted(
        [
            f"$.paths['/a'].get.{INTEGRATION}.type",
            f"$.paths['/a'].post.{INTEGRATION}.type",
            f"$.paths['/a'].put.{INTEGRATION}.type",
            "$.paths['/b/']",
            "$.paths['/c'].get.x-portway-handler",
        ]
    )
    assert all(p.file == definition for p in problems)
    for problem in problems:
        assert_one_line(problem)


def test_many_compile_problems_are_reported_at_once(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    functions = write(base / "functions.yaml", FUNCTIONS + "  ghost: ghost.handler\n")
    definition = write_json(
        base / "api.json",
        openapi(
            {
                "/fs": {"get": lambda_op()},
                "/unknown": {"get": lambda_op("nosuchfn")},
                "/ghost": {"get": lambda_op("ghost")},
                "/nofile": {
                    "get": {"x-portway-handler": "missing.handler", INTEGRATION: {"type": "aws_proxy"}}
                },
                "/sv": {"get": lambda_op("${stageVariables.fn}")},
                "/up": {
                    "get": {INTEGRATION: {"type": "http_proxy", "uri": "http://h:${stageVariables.port}/"}}
                },
                "/x/{a}": {"get": mock_op()},
                "/x/{b}": {"post": mock_op()},
                "/ok": {"get": mock_op()},
            }
        ),
    )
    problems = problems_of(definition, functions)
    expected = {
        (definition, f"$.paths['/unknown'].get.{INTEGRATION}.uri"),
        (functions, "$.functions.ghost.handler"),
        (definition, "$.paths['/nofile'].get.x-portway-handler"),
        (definition, f"$.paths['/sv'].get.{INTEGRATION}.uri"),
        (definition, f"$.paths['/up'].get.{INTEGRATION}.uri"),
        (definition, "$.paths['/x/{b}'].post"),
    }
    assert {(p.file, p.path) for p in problems} == expected
    assert len(problems) == len(expected)
    for problem in problems:
        assert_one_line(problem)


def test_same_function_bound_to_two_handlers(tmp_path: Path) -> None:
    base = app_dir(tmp_path)
    definition = write_json(
        base / "api.json",
        openapi(
            {
                "/a": {"get": lambda_op()},
                "/b": {"get": lambda_op(**{"x-portway-handler": "app.other"})},
            }
        ),
    )
    (problem,) = problems_of(definition, base / "functions.yaml")
    assert (problem.file, problem.path) == (definition, "$.paths['/b'].get.x-portway-handler")
    assert "two different handlers" in problem.message


def test_bad_stage_name(tmp_path: Path) -> None:
    definition = write_json(tmp_path / "api.json", openapi({"/": {"get": mock_op()}}))
    (problem,) = problems_of(definition, stage="my stage")
    assert problem.file == definition
    assert "stage name 'my stage'" in problem.message


# --- bad input: the functions file -----------------------------------------------------------------


def test_functions_file_problems_are_reported_at_once(tmp_path: Path) -> None:
    functions = write(
        tmp_path / "functions.yaml",
        """\
functions:
  products:
    handler: app.handler
    timeout: 0
    memroy: 256
  slow:
    handler: app.handler
    timeout: 901
  fast:
    handler: nodots
    memory: 64
    concurrency: 0
  typed:
    handler: app.1st
    timeout: "10"
    environment: [A, B]
  bool:
    handler: app.handler
    timeout: true
  bad name!:
    handler: app.handler
  empty:
stages:
  dev:
    variables: [a]
extra: 1
""",
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    problems = caught.value.problems
    assert all(p.file == functions for p in problems)
    expected = {
        "$.extra": "unknown key",
        "$.functions.products.timeout": "above 0 and at most 900",
        "$.functions.products.memroy": "unknown setting",
        "$.functions.slow.timeout": "at most 900",
        "$.functions.fast.handler": "'nodots'",
        "$.functions.fast.memory": "128",
        "$.functions.fast.concurrency": "1 to 1000",
        "$.functions.typed.handler": "'app.1st'",
        "$.functions.typed.timeout": "seconds",
        "$.functions.typed.environment": "mapping",
        "$.functions.bool.timeout": "seconds",
        "$.functions['bad name!']": "function name",
        "$.functions.empty": "handler",
        "$.stages.dev.variables": "mapping",
    }
    for path, words in expected.items():
        assert words in problem_at(problems, functions, path).message, path
    assert len(problems) == len(expected)
    for problem in problems:
        assert_one_line(problem)


def test_unknown_setting_lists_the_known_ones(tmp_path: Path) -> None:
    functions = write(
        tmp_path / "functions.yaml", "functions:\n  f:\n    handler: a.b\n    runtime: python3.12\n"
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    (problem,) = caught.value.problems
    assert problem.path == "$.functions.f.runtime"
    for known in ("handler", "timeout", "memory", "environment", "concurrency"):
        assert known in problem.message


def test_unknown_key_under_a_stage_is_reported(tmp_path: Path) -> None:
    """A misspelt ``variables`` must be reported, as unknown keys at the top and per function are."""
    functions = write(
        tmp_path / "functions.yaml",
        "functions:\n  products: app.handler\nstages:\n  dev:\n    varaibles: {fn: products}\n",
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    (problem,) = caught.value.problems
    assert (problem.file, problem.path) == (functions, "$.stages.dev.varaibles")
    assert "unknown" in problem.message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("- a\n", "$"),
        ("functions: [a, b]\n", "$.functions"),
        ("stages: [dev]\n", "$.stages"),
        ("functions:\n  f: 42\n", "$.functions.f"),
    ],
)
def test_functions_file_shape_problems(tmp_path: Path, text: str, path: str) -> None:
    functions = write(tmp_path / "functions.yaml", text)
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    problem_at(caught.value.problems, functions, path)


def test_functions_file_bad_handler_fails_the_compile(tmp_path: Path) -> None:
    """load_deployment refuses a bad handler string: compile never sees it."""
    definition = write_json(tmp_path / "api.json", openapi({"/p": {"get": lambda_op()}}))
    functions = write(tmp_path / "functions.yaml", "functions:\n  products:\n    handler: app-handler\n")
    (problem,) = problems_of(definition, functions)
    assert (problem.file, problem.path) == (functions, "$.functions.products.handler")
    assert "'path/to/module.function'" in problem.message


# --- import errors: the handlers are imported by a warm worker (Service.start, plain asyncio) -----


async def test_handler_import_problems_name_where_the_handler_was_named(tmp_path: Path) -> None:
    write(tmp_path / "app.py", HANDLERS)
    write(
        tmp_path / "broken.py",
        "import portway_no_such_module_anywhere\n\ndef handler(e, c):\n    return {}\n",
    )
    write(tmp_path / "syntax.py", "def handler(e, c)\n    return {}\n")
    write(tmp_path / "raises.py", "raise RuntimeError('no config')\n")
    functions = write(
        tmp_path / "functions.yaml",
        "functions:\n  products: app.handler\n  broken: broken.handler\n  missingfn: app.nothing\n"
        "  syntax: syntax.handler\n",
    )
    definition = write_json(
        tmp_path / "api.json",
        openapi(
            {
                "/ok": {"get": lambda_op()},
                "/broken": {"get": lambda_op("broken")},
                "/missingfn": {"get": lambda_op("missingfn")},
                "/syntax": {"get": lambda_op("syntax")},
                "/raises": {
                    "get": {"x-portway-handler": "raises.handler", INTEGRATION: {"type": "aws_proxy"}}
                },
            }
        ),
    )
    service = Service(ServiceOptions(definition=definition, functions=functions))
    try:
        problems = await service.start()
    finally:
        await service.close()
    broken = problem_at(problems, functions, "$.functions.broken.handler")
    assert "Runtime.ImportModuleError" in broken.message
    assert "portway_no_such_module_anywhere" in broken.message
    missing = problem_at(problems, functions, "$.functions.missingfn.handler")
    assert "Runtime.HandlerNotFound" in missing.message
    assert "'nothing'" in missing.message
    assert (
        "Runtime.UserCodeSyntaxError" in problem_at(problems, functions, "$.functions.syntax.handler").message
    )
    raises = problem_at(problems, definition, "$.paths['/raises'].get.x-portway-handler")
    assert "RuntimeError" in raises.message
    assert "no config" in raises.message
    assert len(problems) == 4
    for problem in problems:
        assert_one_line(problem)


def test_reserved_lambda_environment_variables_are_refused(tmp_path: Path) -> None:
    functions = write(
        tmp_path / "functions.yaml",
        "functions:\n  products:\n    handler: app.handler\n"
        "    environment: {AWS_REGION: eu-west-1, _HANDLER: x.y, TABLE: products}\n",
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    problems = caught.value.problems
    assert {p.path for p in problems} == {
        "$.functions.products.environment.AWS_REGION",
        "$.functions.products.environment._HANDLER",
    }
    assert all("reserved" in p.message for p in problems)


def test_access_log_settings_problems_name_their_path(tmp_path: Path) -> None:
    functions = write(
        tmp_path / "functions.yaml",
        """\
functions:
  f: app.handler
stages:
  listed:
    accessLogSettings: [a]
  unknown:
    accessLogSettings: {format: $context.requestId, destination: here}
  empty:
    accessLogSettings: {format: "  "}
  number:
    accessLogSettings: {format: 42}
  fine:
    accessLogSettings: {format: clf, destinationArn: "arn:aws:logs:us-east-1:1:log-group:x"}
""",
    )
    with pytest.raises(DefinitionErrors) as caught:
        load_deployment(functions)
    problems = caught.value.problems
    expected = {
        "$.stages.listed.accessLogSettings": "must be a mapping with a format",
        "$.stages.unknown.accessLogSettings.destination": "unknown access log setting",
        "$.stages.empty.accessLogSettings.format": "non-empty format string",
        "$.stages.number.accessLogSettings.format": "non-empty format string",
    }
    for path, words in expected.items():
        assert words in problem_at(problems, functions, path).message, path
    assert len(problems) == len(expected)
