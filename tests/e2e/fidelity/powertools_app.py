"""An aws-lambda-powertools REST resolver app: its routes read path parameters and query strings."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.typing import LambdaContext

app = APIGatewayRestResolver()


def _query() -> dict[str, Any]:
    event = app.current_event
    return {
        "expand": event.get_query_string_value("expand"),
        "fields": event.get_multi_value_query_string_values("field"),
        "queryStringParameters": event.query_string_parameters,
        "multiValueQueryStringParameters": event.multi_value_query_string_parameters,
    }


@app.get("/orders")
def list_orders() -> dict[str, Any]:
    return {"status": app.current_event.get_multi_value_query_string_values("status"), **_query()}


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> dict[str, Any]:
    event = app.current_event
    return {
        "order_id": order_id,
        "resource": event.resource,
        "pathParameters": event.path_parameters,
        **_query(),
    }


@app.get("/orders/<order_id>/lines/<line_id>")
def get_line(order_id: str, line_id: str) -> dict[str, Any]:
    event = app.current_event
    return {
        "order_id": order_id,
        "line_id": line_id,
        "resource": event.resource,
        "pathParameters": event.path_parameters,
        **_query(),
    }


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
