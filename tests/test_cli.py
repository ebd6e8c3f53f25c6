"""The real ``portway`` command in a subprocess: check, routes and serve on good and bad definitions."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cli_runner import portway
from tests.conftest import APPS

E2E_VARIABLES = ("--stage-variable", "upstreamPort=1", "--stage-variable", "closedPort=2")
INTEGRATION = "x-amazon-apigateway-integration"
LAMBDA_URI = (
    "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
    "arn:aws:lambda:us-east-1:123456789012:function:{name}/invocations"
)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def assert_only_problems(result: subprocess.CompletedProcess[str], count: int) -> list[str]:
    """Exit 1, and stderr is exactly ``count`` one-line problems."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert_no_traceback(result)
    lines = result.stderr.splitlines()
    assert lines == error_lines(result), result.stderr
    assert len(lines) == count, result.stderr
    return lines


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_api(path: Path, paths: dict[str, Any]) -> Path:
    document = {"openapi": "3.0.1", "info": {"title": "CLI API", "version": "1"}, "paths": paths}
    return write(path, json.dumps(document, indent=2))


def lambda_op(name: str) -> dict[str, Any]:
    return {INTEGRATION: {"type": "aws_proxy", "httpMethod": "POST", "uri": LAMBDA_URI.format(name=name)}}


# --- check -----------------------------------------------------------------------------------------


def test_check_passes_on_the_e2e_app() -> None:
    result = portway("check", APPS / "rest_api.yaml", "--functions", APPS / "functions.yaml", *E2E_VARIABLES)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok: 16 routes, 6 functions, every handler imports"


def test_check_reports_a_handler_import_error(tmp_path: Path) -> None:
    write(tmp_path / "good.py", "def handler(event, context):\n    return {'statusCode': 200}\n")
    write(
        tmp_path / "broken.py",
        "import portway_no_such_dependency\n\n\ndef handler(event, context):\n    return {}\n",
    )
    functions = write(
        tmp_path / "functions.yaml", "functions:\n  good: good.handler\n  broken: broken.handler\n"
    )
    definition = write_api(
        tmp_path / "api.json", {"/good": {"get": lambda_op("good")}, "/broken": {"get": lambda_op("broken")}}
    )
    started = time.monotonic()
    result = portway("check", definition, "--functions", functions)
    elapsed = time.monotonic() - started
    (line,) = assert_only_problems(result, 1)
    assert line.startswith(f"error: {functions}: $.functions.broken.handler: function 'broken': ")
    assert "Runtime.ImportModuleError" in line
    assert "Unable to import module 'broken'" in line
    assert "portway_no_such_dependency" in line
    assert result.stdout == ""
    assert elapsed < 8, f"check took {elapsed:.1f} s"


def test_routes_finds_the_functions_file_beside_the_definition(tmp_path: Path) -> None:
    write(tmp_path / "good.py", "def handler(event, context):\n    return {'statusCode': 200}\n")
    write(tmp_path / "functions.yaml", "functions:\n  good: good.handler\n")
    definition = write_api(tmp_path / "api.json", {"/good": {"get": lambda_op("good")}})
    result = portway("routes", definition)
    assert result.returncode == 0, result.stderr
    assert "lambda good (good.handler)" in result.stdout


def test_check_on_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    definition = write(tmp_path / "api.yaml", "openapi: 3.0.1\npaths:\n  /a:\n    get: [unclosed\n")
    result = portway("check", definition)
    (line,) = assert_only_problems(result, 1)
    assert line.startswith(f"error: {definition}: not valid YAML/JSON: ")
    assert re.search(r"line \d+, column \d+", line), line
    assert result.stdout == ""


def test_check_on_a_missing_file(tmp_path: Path) -> None:
    result = portway("check", tmp_path / "nope.yaml")
    (line,) = assert_only_problems(result, 1)
    assert line == f"error: {tmp_path / 'nope.yaml'}: file not found"


def test_check_on_a_sam_template(tmp_path: Path) -> None:
    template = write(
        tmp_path / "template.yaml",
        "AWSTemplateFormatVersion: '2010-09-09'\nTransform: AWS::Serverless-2016-10-31\nResources: {}\n",
    )
    (line,) = assert_only_problems(portway("check", template), 1)
    assert str(template) in line
    assert "SAM" in line


def test_check_prints_every_problem_with_file_and_json_path(tmp_path: Path) -> None:
    definition = write_api(
        tmp_path / "api.json",
        {
            "/orders": {
                "get": {INTEGRATION: {"type": "aws", "uri": "arn:aws:apigateway:x"}},
                "post": {INTEGRATION: {"type": "http", "uri": "https://example.com"}},
                "put": {INTEGRATION: {"type": "websocket"}},
            },
            "/ok": {"get": {INTEGRATION: {"type": "mock"}}},
        },
    )
    lines = assert_only_problems(portway("check", definition), 3)
    where = f"$.paths['/orders'].{{}}.{INTEGRATION}.type"
    get, post, put = sorted(lines, key=lambda line: ("GET /" not in line, "POST /" not in line))
    assert get.startswith(f"error: {definition}: {where.format('get')}: GET /orders: ")
    assert "'aws' integration" in get
    assert "not supported yet" in get
    assert post.startswith(f"error: {definition}: {where.format('post')}: POST /orders: ")
    assert "'http' integration" in post
    assert put.startswith(f"error: {definition}: {where.format('put')}: PUT /orders: ")
    assert "unknown integration type 'websocket'" in put


def test_check_reports_compile_problems_across_files(tmp_path: Path) -> None:
    functions = write(tmp_path / "functions.yaml", "functions:\n  ghost: ghost.handler\n")
    definition = write_api(
        tmp_path / "api.json",
        {
            "/ghost": {"get": lambda_op("ghost")},
            "/nobody": {"get": lambda_op("nobody")},
            "/items/{id}": {"get": {INTEGRATION: {"type": "mock"}}},
            "/items/{itemId}/x": {"get": {INTEGRATION: {"type": "mock"}}},
        },
    )
    lines = assert_only_problems(portway("check", definition, "--functions", functions), 3)
    assert any(
        line.startswith(f"error: {functions}: $.functions.ghost.handler: ") and "not found" in line
        for line in lines
    ), lines
    assert any(
        line.startswith(f"error: {definition}: $.paths['/nobody'].get.{INTEGRATION}.uri: ")
        and "'nobody'" in line
        for line in lines
    ), lines
    assert any(
        line.startswith(f"error: {definition}: $.paths['/items/{{itemId}}/x'].get: ") and "{id}" in line
        for line in lines
    ), lines


def test_check_reports_definition_and_functions_file_problems_together(tmp_path: Path) -> None:
    """Both files are read independently: one run of check shows the problems of both."""
    functions = write(
        tmp_path / "functions.yaml", "functions:\n  fn:\n    handler: h.handler\n    timeout: 0\n"
    )
    definition = write_api(tmp_path / "api.json", {"/a": {"get": {INTEGRATION: {"type": "aws"}}}})
    lines = assert_only_problems(portway("check", definition, "--functions", functions), 2)
    assert any(
        line.startswith(f"error: {definition}: $.paths['/a'].get.{INTEGRATION}.type: ") for line in lines
    )
    assert any(line.startswith(f"error: {functions}: $.functions.fn.timeout: ") for line in lines)


def test_check_without_required_stage_variables(tmp_path: Path) -> None:
    result = portway("check", APPS / "rest_api.yaml", "--functions", APPS / "functions.yaml")
    lines = assert_only_problems(result, 3)
    assert all("stage variable" in line and "--stage-variable" in line for line in lines)
    assert any("$.paths['/refused'].get.x-amazon-apigateway-integration.uri" in line for line in lines)


def test_bad_stage_variable_argument_is_a_usage_error() -> None:
    result = portway("check", APPS / "rest_api.yaml", "--stage-variable", "novalue")
    assert result.returncode == 2
    assert "NAME=VALUE" in result.stderr
    assert_no_traceback(result)


# --- routes ----------------------------------------------------------------------------------------


def test_routes_prints_the_route_table() -> None:
    result = portway("routes", APPS / "rest_api.yaml", "--functions", APPS / "functions.yaml", *E2E_VARIABLES)
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    lines = result.stdout.splitlines()
    assert lines[0] == "E2E REST API (REST API), stage dev: served under /dev"
    assert lines[1].split() == ["METHOD", "RESOURCE", "INTEGRATION", "STAGES"]
    rows = {tuple(re.split(r"\s{2,}", line.strip())) for line in lines[2:]}
    expected = {
        ("GET", "/", "mock (200)", "throttle → compress → integration"),
        ("GET", "/direct", "lambda handlers-shaped (handlers.shaped)", "throttle → compress → integration"),
        ("ANY", "/echo", "lambda echo (handlers.echo)", "throttle → compress → integration"),
        ("ANY", "/echo/{proxy+}", "lambda echo (handlers.echo)", "throttle → compress → integration"),
        ("GET", "/fail", "lambda fail (handlers.fail)", "throttle → compress → integration"),
        ("GET", "/items/special", "mock (200)", "throttle → compress → integration"),
        ("GET", "/items/{id}", "lambda echo (handlers.echo)", "throttle → compress → integration"),
        ("GET", "/mock", "mock (404,200)", "throttle → compress → integration"),
        ("POST", "/mock", "mock (404,200)", "throttle → compress → integration"),
        ("GET", "/mock/nodefault", "mock (200)", "throttle → compress → integration"),
        ("GET", "/refused", "http_proxy GET http://127.0.0.1:2/nothing", "throttle → compress → integration"),
        ("GET", "/shaped", "lambda shaped (handlers.shaped)", "throttle → compress → integration"),
        ("POST", "/size", "lambda size (handlers.size)", "throttle → compress → integration"),
        ("GET", "/slow", "lambda slow (handlers.fail)", "throttle → compress → integration"),
        (
            "ANY",
            "/upstream/{proxy+}",
            "http_proxy ANY http://127.0.0.1:1/{proxy}",
            "throttle → compress → integration",
        ),
        (
            "GET",
            "/users/{userId}/orders",
            "http_proxy GET http://127.0.0.1:1/api/users/{id}/orders",
            "throttle → compress → integration",
        ),
    }
    assert rows == expected
    assert len(lines) == 2 + len(expected)
    # columns line up: every row's resource starts where the header's RESOURCE does
    column = lines[1].index("RESOURCE")
    assert all(line[column - 2 : column] == "  " and line[column] == "/" for line in lines[2:])


def test_routes_with_a_stage(tmp_path: Path) -> None:
    write(tmp_path / "h.py", "def handler(event, context):\n    return {}\n")
    write(
        tmp_path / "functions.yaml",
        "functions:\n  a: h.handler\n  b: h.handler\nstages:\n  prod:\n    variables: {fn: b}\n",
    )
    definition = write_api(tmp_path / "api.json", {"/x": {"get": lambda_op("${stageVariables.fn}")}})
    result = portway("routes", definition, "--stage", "prod")
    assert result.returncode == 0, result.stderr
    assert "stage prod: served under /prod" in result.stdout
    assert "lambda b (h.handler)" in result.stdout
    override = portway("routes", definition, "--stage", "prod", "--stage-variable", "fn=a")
    assert "lambda a (h.handler)" in override.stdout


def test_routes_on_a_bad_definition(tmp_path: Path) -> None:
    definition = write_api(
        tmp_path / "api.json",
        {"/a": {"get": {"x-portway-handler": "missing.handler", INTEGRATION: {"type": "aws_proxy"}}}},
    )
    (line,) = assert_only_problems(portway("routes", definition), 1)
    assert line.startswith(f"error: {definition}: $.paths['/a'].get.x-portway-handler: ")
    assert "not found" in line


# --- serve -----------------------------------------------------------------------------------------


def test_serve_on_a_bad_definition_exits_quickly(tmp_path: Path) -> None:
    definition = write_api(
        tmp_path / "api.json",
        {
            "/a": {"get": {INTEGRATION: {"type": "aws"}}},
            "/b": {"get": {INTEGRATION: {"type": "mock"}}},
        },
    )
    started = time.monotonic()
    result = portway("serve", definition, "--port", "0")
    elapsed = time.monotonic() - started
    (line,) = assert_only_problems(result, 1)
    assert line.startswith(f"error: {definition}: $.paths['/a'].get.{INTEGRATION}.type: GET /a: ")
    assert result.stdout == ""
    assert elapsed < 10, f"serve took {elapsed:.1f} s to refuse"


def test_serve_on_malformed_yaml_exits_quickly(tmp_path: Path) -> None:
    definition = write(tmp_path / "api.yaml", "openapi: 3.0.1\npaths:\n  /a:\n    get:\n  - x\n")
    result = portway("serve", definition, "--port", "0")
    (line,) = assert_only_problems(result, 1)
    assert line.startswith(f"error: {definition}: not valid YAML/JSON: line ")
