"""An aws-lambda-powertools APIGatewayHttpResolver app (HTTP API, payload 2.0), behind Portway."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, Any]:
    event = app.current_event
    return {
        "order_id": order_id,
        "path_parameters": event.path_parameters,
        "tag": event.get_query_string_value("tag"),
        "query": event.query_string_parameters,
        "cookies": event.cookies,
        "route_key": event.route_key,
    }


@app.post("/orders")
def create_order() -> dict[str, Any]:
    return {"created": app.current_event.json_body}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.resolve(event, context)
    return result
