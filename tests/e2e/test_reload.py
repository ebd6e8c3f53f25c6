"""`portway serve --reload`: handler code and definition changes are picked up without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import GatewayFactory

DEFINITION = """\
openapi: 3.0.1
info: {title: Reload, version: "1"}
paths:
  /hello:
    get:
      x-portway-handler: app.handler
      x-amazon-apigateway-integration: {type: aws_proxy, httpMethod: POST}
"""
EXTRA_ROUTE = """\
  /extra:
    get:
      x-amazon-apigateway-integration:
        type: mock
        requestTemplates: {application/json: '{"statusCode": 200}'}
        responses: {default: {statusCode: "200", responseTemplates: {application/json: '{"extra": true}'}}}
"""


def handler_source(text: str) -> str:
    return f"def handler(event, context):\n    return {{'statusCode': 200, 'body': {text!r}}}\n"


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_reload_picks_up_code_and_definition_changes(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    (tmp_path / "openapi.yaml").write_text(DEFINITION)
    (tmp_path / "app.py").write_text(handler_source("v1"))
    gw = gateway_factory(tmp_path / "openapi.yaml", reload=True)
    with httpx.Client(base_url=gw.base, timeout=10) as client:
        assert client.get("/hello").text == "v1"
        time.sleep(0.3)  # let the watcher settle before the first change

        (tmp_path / "app.py").write_text(handler_source("v2"))
        assert eventually(lambda: client.get("/hello").text == "v2")

        (tmp_path / "openapi.yaml").write_text(DEFINITION + EXTRA_ROUTE)
        assert eventually(lambda: client.get("/extra").status_code == 200)
        assert client.get("/extra").json() == {"extra": True}

        # A definition with a problem is refused: the last good one keeps serving.
        (tmp_path / "openapi.yaml").write_text(DEFINITION.replace("aws_proxy", "no_such_type") + EXTRA_ROUTE)
        time.sleep(1.0)
        assert client.get("/hello").text == "v2"
        assert client.get("/extra").status_code == 200

        # Handler code that no longer imports fails its requests (502) until it is mended.
        (tmp_path / "openapi.yaml").write_text(DEFINITION)
        assert eventually(lambda: client.get("/extra").status_code == 403)
        (tmp_path / "app.py").write_text("def handler(event, context)\n")
        assert eventually(lambda: client.get("/hello").status_code == 502)
        assert client.get("/hello").json() == {"message": "Internal server error"}
        (tmp_path / "app.py").write_text(handler_source("v3"))
        assert eventually(lambda: client.get("/hello").text == "v3")
