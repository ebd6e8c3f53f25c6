"""A SAM template's stage settings over real sockets: throttles, the cache, compression and API keys."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cli_runner import portway_json
from tests.conftest import GatewayFactory

SETTINGS = Path(__file__).parent / "sam" / "settings" / "template.yaml"


def test_globals_api_settings_reach_the_implicit_rest_api(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    state = f"sqlite:{tmp_path / 'state.db'}"
    plan = portway_json(state, "usage-plans", "create", "--name", "sam", "--stage", "Settings API:Prod")
    key = portway_json(state, "keys", "create", "--name", "k", "--plan", plan["id"])
    gw = gateway_factory(SETTINGS, stage=None, keys_state=state)
    assert gw.base == f"{gw.url}/Prod"
    with httpx.Client(base_url=gw.base) as client:
        limited = [client.get("/limited").status_code for _ in range(3)]  # burst !Ref Burst = 2
        others = [client.get("/clock").status_code for _ in range(5)]  # the stage-wide 1000/1000
        first, cached = client.get("/clock").json(), client.get("/clock").json()
        fresh = [client.get("/big").json()["ns"] for _ in range(2)]  # caching is /clock's alone
        big = client.get("/big", headers={"accept-encoding": "gzip"})
        without_key = client.get("/keyed")
        with_key = client.get("/keyed", headers={"x-api-key": key["value"]})
        open_route = client.get("/clock")  # no key required
    assert limited == [200, 200, 429]
    assert others == [200] * 5
    assert cached == first, "the second answer came from the cache"
    assert fresh[0] != fresh[1]
    assert big.headers["content-encoding"] == "gzip"  # MinimumCompressionSize: 100
    assert len(big.json()["items"]) == 10
    assert without_key.status_code == 403
    assert without_key.json() == {"message": "Forbidden"}
    assert with_key.status_code == 200
    assert open_route.status_code == 200


def test_http_api_route_settings_throttle_their_route(
    tmp_path: Path, gateway_factory: GatewayFactory
) -> None:
    (tmp_path / "app.py").write_text("def handler(event, context):\n    return 'ok'\n")
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.12}}\n"
        "Resources:\n"
        "  Api:\n    Type: AWS::Serverless::HttpApi\n"
        "    Properties:\n"
        "      DefaultRouteSettings: {ThrottlingRateLimit: 1000, ThrottlingBurstLimit: 1000}\n"
        "      RouteSettings: {'GET /slow': {ThrottlingRateLimit: 0.001, ThrottlingBurstLimit: 5}}\n"
        "  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n"
        "      Handler: app.handler\n"
        "      Events:\n"
        "        Slow:\n          Type: HttpApi\n"
        "          Properties:\n"
        "            ApiId: !Ref Api\n            Path: /slow\n            Method: GET\n"
        "            RouteSettings: {ThrottlingBurstLimit: 2}  # over the API's 5, keeping its rate\n"
        "        Fast:\n          Type: HttpApi\n"
        "          Properties: {ApiId: !Ref Api, Path: /fast, Method: GET}\n"
    )
    gw = gateway_factory(template, stage=None)
    with httpx.Client(base_url=gw.base) as client:
        slow = [client.get("/slow").status_code for _ in range(3)]
        fast = [client.get("/fast").status_code for _ in range(5)]
    assert slow == [200, 200, 429]
    assert fast == [200] * 5
