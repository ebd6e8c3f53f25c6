from typing import Any


def greet(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "hello": event["pathParameters"]["name"],
        "stage": event["requestContext"]["stage"],
        "color": event["stageVariables"]["color"],
        "function": context.function_name,
    }


def health(event: dict[str, Any], context: Any) -> str:
    return "ok"
