"""Which route a WebSocket message goes to: the API's ``routeSelectionExpression`` evaluated against it.

As the developer guide (*Working with routes for WebSocket APIs*, *WebSocket selection expressions*) says:

- the expression is text with variables: ``$request.body.action`` (unwrapped) or ``${request.body.action}``
  (wrapped, which may sit inside other text: ``${request.body.service}/${request.body.action}``); ``\\$`` is a
  literal dollar sign (``\\$default``); text without variables is a static key;
- after ``request.body`` comes a JSONPath into the message: ``.a.b``, ``['a-b']``, ``[0]``; a path that finds
  nothing gives ``""``, and a value that is not a string is stringified (an array as ``[item1, item2]``);
- the route whose key equals the result exactly (case-sensitive) is chosen; a message that is not JSON, or
  whose key names no route, goes to ``$default``; without ``$default`` the client is answered
  ``{"message": "Forbidden", "connectionId":"…", "requestId":"…"}`` (:func:`error_answer`) and the
  connection stays open.

>>> select_route("$request.body.action", {"$default", "join"}, '{"action": "join"}').route_key
'join'
>>> select_route("$request.body.action", {"join"}, "hello").reason
<Reason.NOT_JSON: 'not-json'>
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from portway.websocket.model import CONNECT, DEFAULT, DISCONNECT

__all__ = [
    "API_KEY_SELECTIONS",
    "FORBIDDEN",
    "INTERNAL_SERVER_ERROR",
    "ROUTE_RESPONSE_KEY",
    "BodyPath",
    "ExpressionError",
    "Reason",
    "RouteSelection",
    "SelectionExpression",
    "error_answer",
    "parse_expression",
    "select_route",
    "select_route_response",
    "stringify",
]

FORBIDDEN = "Forbidden"  # no route for the message, and no $default
INTERNAL_SERVER_ERROR = "Internal server error"  # the integration failed
ROUTE_RESPONSE_KEY = "$default"  # the only route response key (and selection expression) AWS supports
# What an API key selection expression may be (WebSocket selection expressions, "API key selection"):
API_KEY_SELECTIONS = ("$request.header.x-api-key", "$context.authorizer.usageIdentifierKey")

_BODY = "request.body"
_UNWRAPPED_STEP = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_WRAPPED_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


class ExpressionError(ValueError):
    """A selection expression API Gateway would not accept (or Portway cannot evaluate), and why."""


@dataclass(frozen=True, slots=True)
class BodyPath:
    """A ``request.body`` variable: the JSONPath steps into the message (names and list indexes)."""

    steps: tuple[str | int, ...]
    text: str  # as written, e.g. "$request.body.a.b"

    def find(self, document: Any) -> Any:
        """The value at the path, or None when the path finds nothing."""
        value = document
        for step in self.steps:
            if isinstance(step, int):
                if not (isinstance(value, list) and step < len(value)):
                    return None
                value = value[step]
            elif isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return None
        return value


@dataclass(frozen=True, slots=True)
class SelectionExpression:
    """A parsed selection expression: literal text and ``request.body`` variables, in order."""

    text: str
    parts: tuple[str | BodyPath, ...]

    @property
    def needs_body(self) -> bool:
        """Whether it reads the message (so a message that is not JSON cannot be evaluated)."""
        return any(isinstance(part, BodyPath) for part in self.parts)

    @property
    def static(self) -> str | None:
        """The key every message evaluates to, when there are no variables."""
        return None if self.needs_body else "".join(part for part in self.parts if isinstance(part, str))

    def evaluate(self, document: Any) -> str:
        """The key for a message already parsed from JSON."""
        return "".join(
            part if isinstance(part, str) else stringify(part.find(document)) for part in self.parts
        )


def stringify(value: Any) -> str:
    """A JSON value as the route key API Gateway makes of it: strings as they are, an array as
    ``[item1, item2]``; a path that found nothing (or ``null``) is ``""``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return orjson.dumps(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(stringify(item) for item in value) + "]"
    if isinstance(value, dict):  # as a Java map prints itself (not documented)
        return "{" + ", ".join(f"{key}={stringify(item)}" for key, item in value.items()) + "}"
    return str(value)


def _steps(text: str, pattern: re.Pattern[str], whole: bool) -> tuple[tuple[str | int, ...], int]:
    """The JSONPath steps at the start of ``text`` and how many characters they took; with ``whole`` they
    must take all of it."""
    steps: list[str | int] = []
    at = 0
    while at < len(text):
        match = pattern.match(text, at)
        if match is None:
            if whole:
                raise ExpressionError(
                    f"{text!r} is not a JSONPath Portway can follow: use .name, ['name'] or [index] steps"
                )
            break
        name, index, quoted, double_quoted = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else quoted if quoted is not None else double_quoted)
        at = match.end()
    return tuple(steps), at


def parse_expression(text: str) -> SelectionExpression:
    """Parse a route (or template) selection expression; :class:`ExpressionError` says what is wrong.

    >>> parse_expression("${request.body.service}/${request.body.action}").parts[1]
    '/'
    """
    if not text:
        raise ExpressionError("must not be empty")
    parts: list[str | BodyPath] = []
    literal: list[str] = []
    at = 0

    def flush() -> None:
        if literal:
            parts.append("".join(literal))
            literal.clear()

    while at < len(text):
        char = text[at]
        if char == "\\" and text.startswith("$", at + 1):
            literal.append("$")
            at += 2
            continue
        if char != "$":
            literal.append(char)
            at += 1
            continue
        if text.startswith("{", at + 1):
            end = text.find("}", at + 2)
            if end < 0:
                raise ExpressionError(f"'${{' at character {at + 1} is never closed with '}}'")
            inner = text[at + 2 : end]
            if not (inner == _BODY or inner.startswith((_BODY + ".", _BODY + "["))):
                raise ExpressionError(_unsupported(inner))
            steps, _ = _steps(inner[len(_BODY) :], _WRAPPED_STEP, whole=True)
            flush()
            parts.append(BodyPath(steps, text[at : end + 1]))
            at = end + 1
            continue
        rest = text[at + 1 :]
        if not rest.startswith(_BODY) or rest[len(_BODY) : len(_BODY) + 1] not in ("", ".", "["):
            name = re.match(r"[A-Za-z0-9_.]*", rest)
            raise ExpressionError(_unsupported(name.group(0) if name else rest))
        steps, used = _steps(rest[len(_BODY) :], _UNWRAPPED_STEP, whole=False)
        flush()
        end = at + 1 + len(_BODY) + used
        parts.append(BodyPath(steps, text[at:end]))
        at = end
    flush()
    return SelectionExpression(text, tuple(parts))


def _unsupported(name: str) -> str:
    if name in ("default", "connect", "disconnect"):
        return f"'${name}' is a variable here: write '\\${name}' for the literal route key"
    return f"'${name}': a WebSocket route selection expression reads $request.body.PATH only"


class Reason(StrEnum):
    """Why a message went where it went."""

    MATCHED = "matched"  # the expression's value is a route key
    NOT_JSON = "not-json"  # the message is not JSON (or is binary): it cannot be evaluated
    NO_MATCH = "no-match"  # the value names no route


@dataclass(frozen=True, slots=True)
class RouteSelection:
    """The route a message goes to (None: none, the client gets :func:`error_answer` ``Forbidden``),
    why, and the key the expression gave (None when it could not be evaluated)."""

    route_key: str | None
    reason: Reason
    key: str | None = None

    @property
    def refused(self) -> bool:
        return self.route_key is None


_NOT_JSON = object()


def _parse(message: str | bytes) -> Any:
    if isinstance(message, bytes):
        return _NOT_JSON  # a binary frame is not a JSON message
    try:
        return orjson.loads(message)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def select_route(
    expression: SelectionExpression | str, routes: Collection[str], message: str | bytes
) -> RouteSelection:
    """The route for one message (text, or the bytes of a binary frame) among the API's route keys.

    ``$connect`` and ``$disconnect`` are never chosen for a message, whatever it says.
    """
    parsed = parse_expression(expression) if isinstance(expression, str) else expression
    fallback = DEFAULT if DEFAULT in routes else None
    if parsed.needs_body:
        document = _parse(message)
        if document is _NOT_JSON:
            return RouteSelection(fallback, Reason.NOT_JSON)
        key = parsed.evaluate(document)
    else:
        key = parsed.evaluate(None)
    if key in routes and key not in (CONNECT, DISCONNECT):
        return RouteSelection(key, Reason.MATCHED, key)
    return RouteSelection(fallback, Reason.NO_MATCH, key)


def select_route_response(expression: str | None) -> str | None:
    """The route response key a two-way route's answer goes by: ``$default`` (the only one AWS supports),
    or None when the route has no route response selection expression."""
    return ROUTE_RESPONSE_KEY if expression == ROUTE_RESPONSE_KEY else None


def error_answer(message: str, connection_id: str, request_id: str) -> str:
    """The frame API Gateway sends a client when it cannot route (``Forbidden``) or the integration failed
    (``Internal server error``), spaced exactly as AWS spaces it."""
    return f'{{"message": "{message}", "connectionId":"{connection_id}", "requestId":"{request_id}"}}'
