"""`portway serve template.yaml`: SAM templates served over real sockets, Docker-free."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import GatewayFactory

SAM = Path(__file__).parent / "sam"


def portway(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, bounded in time."""
    return subprocess.run(
        [sys.executable, "-m", "portway", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_sam_init_hello_world(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(SAM / "hello" / "template.yaml", stage=None)
    assert gw.base == f"{gw.url}/Prod"  # the implicit REST API's stage, as SAM names it
    response = httpx.get(f"{gw.base}/hello")
    assert response.status_code == 200
    assert response.json() == {"message": "hello world"}
    assert httpx.get(f"{gw.base}/nope").status_code == 403


def test_http_api_with_globals_parameters_and_sub(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(SAM / "shop" / "template.yaml", stage=None)
    listed = httpx.get(f"{gw.base}/orders").json()
    assert listed == {
        "function": "shop-dev-list",
        "env": {
            "TABLE": "Orders",
            "STAGE": "dev",
            "GREETING": "hello from us-east-1",
            "MODE": "test",
            "QUEUE_ARN": "arn:aws:portway:us-east-1:123456789012:Queue/Arn",
        },
        "route": "GET /orders",
    }
    one = httpx.get(f"{gw.base}/orders/42").json()
    assert one["id"] == "42"
    assert one["function"] == "GetOrder"
    assert one["memory"] == "256"
    assert 0 < one["timeout_ms"] <= 5000


def test_parameter_overrides_reach_the_functions(tmp_path: Path) -> None:
    result = portway("routes", SAM / "shop" / "template.yaml", "--parameter-overrides", "Stage=prod")
    assert result.returncode == 0, result.stderr
    assert "lambda shop-prod-list (orders.list_orders, payload 2.0)" in result.stdout


def test_bad_templates_name_the_logical_id_and_field(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        "  NoCode:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: app.handler, Runtime: python3.12, CodeUri: missing/,\n"
        "      Events: {E: {Type: Api, Properties: {Path: /a, Method: get}}}}\n"
        "  Node:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: index.handler, Runtime: nodejs20.x,\n"
        "      Events: {E: {Type: Api, Properties: {Path: /b, Method: get}}}}\n"
        "  Loop:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: app.handler, Runtime: python3.12, FunctionName: !Ref Loop2}\n"
        "  Loop2:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: app.handler, Runtime: python3.12, FunctionName: !Ref Loop}\n"
    )
    result = portway("check", template)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("$.Resources.NoCode.Properties.CodeUri" in line and "not found" in line for line in lines), (
        lines
    )
    assert not any("Node" in line for line in lines), lines  # a non-Python function is served as a 502
    assert any("cyclic reference" in line for line in lines), lines


def test_a_non_python_function_is_served_as_502_saying_why(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'py'}\n"
    )
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.12}}\n"
        "Resources:\n"
        "  Py:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: app.handler,\n"
        "      Events: {E: {Type: Api, Properties: {Path: /py, Method: get}}}}\n"
        "  Node:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: index.handler, Runtime: nodejs20.x, CodeUri: js/,\n"
        "      Events: {E: {Type: Api, Properties: {Path: /js, Method: get}}}}\n"
    )
    gw = gateway_factory(template, stage=None)
    assert httpx.get(f"{gw.base}/py").text == "py"
    response = httpx.get(f"{gw.base}/js")
    assert response.status_code == 502
    assert response.json() == {
        "message": "Portway cannot run function Node: runtime 'nodejs20.x': Portway runs Python (python3.x) "
        "functions only"
    }


def test_explicit_http_api_with_two_functions(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(SAM / "explicit" / "template.yaml", stage=None)
    assert gw.base == f"{gw.url}/v1"
    assert httpx.get(f"{gw.base}/greet/ada").json() == {
        "hello": "ada",
        "stage": "v1",
        "color": "blue",
        "function": "greeter",
    }
    assert httpx.get(f"{gw.base}/health").text == "ok"
    assert httpx.get(f"{gw.base}/nope").json() == {"message": "Not Found"}


def test_a_template_making_two_apis_is_refused_naming_them(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 'x'\n")
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.12}}\n"
        "Resources:\n"
        "  A:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: app.handler, Events: {\n"
        "      R: {Type: Api, Properties: {Path: /r, Method: get}},\n"
        "      H: {Type: HttpApi, Properties: {Path: /h, Method: get}}}}\n"
    )
    result = portway("check", template)
    assert result.returncode == 1
    assert "ServerlessRestApi (REST), ServerlessHttpApi (HTTP)" in result.stderr


def test_unknown_types_and_missing_handlers_are_named(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 'x'\n")
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.12, CodeUri: src/}}\n"
        "Resources:\n"
        "  Typo:\n    Type: AWS::Serverless::Funtion\n"
        "  Odd:\n    Type: NotAType\n"
        "  Table:\n    Type: AWS::DynamoDB::Table\n"
        "  Lost:\n    Type: AWS::Serverless::Function\n"
        "    Properties: {Handler: nowhere.handler,\n"
        "      Events: {E: {Type: Api, Properties: {Path: /x, Method: get}}}}\n"
    )
    result = portway("check", template)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("$.Resources.Typo.Type" in line and "unknown resource type" in line for line in lines), lines
    assert any("$.Resources.Odd.Type" in line for line in lines), lines
    assert not any("Table" in line for line in lines), lines  # known to AWS, just not emulated
    assert any("$.Resources.Lost.Properties.Handler" in line and "nowhere.py" in line for line in lines), (
        lines
    )
