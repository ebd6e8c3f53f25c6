"""The Mock integration: API Gateway answers by itself from static templates.

The request template (chosen by the request's Content-Type) yields ``{"statusCode": N}``; N selects the
integration response whose selection pattern matches it (else the ``default`` one), whose static
response template and ``'quoted'`` header values make the answer. Templates are read as static text:
VTL evaluation is later work, and the compiler refuses request templates it cannot read statically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from portway.integrations.media import media_type
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.types import Response

__all__ = ["MockIntegration", "MockResponse", "static_header_value", "static_status"]

_DEFAULT_CONTENT_TYPE = "application/json"
_ANSWER_CACHE_SIZE = 256
_Answer = tuple[int, tuple[tuple[bytes, bytes], ...], bytes]


class TemplateError(ValueError):
    pass


def static_status(template: str) -> int | None:
    """The ``statusCode`` a static mock request template yields; None when it names none.

    Raises :class:`TemplateError` when the template is not static JSON (VTL comes later).
    """
    if not template.strip():
        return None
    try:
        value = orjson.loads(template)
    except orjson.JSONDecodeError:
        raise TemplateError("not static JSON (VTL templates are not evaluated yet)") from None
    if not isinstance(value, dict) or "statusCode" not in value:
        return None
    status = value["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise TemplateError(f"statusCode {status!r} is not an HTTP status code")
    return status


def static_header_value(source: str) -> str:
    """``"'value'"`` → ``value``; anything else is a mapping expression we do not evaluate yet."""
    if len(source) >= 2 and source[0] == "'" and source[-1] == "'":
        return source[1:-1]
    raise TemplateError(f"{source!r} is not a static value in single quotes")


@dataclass(frozen=True, slots=True)
class MockResponse:
    pattern: re.Pattern[str] | None  # None: the default response
    status: int
    templates: Mapping[str, bytes]
    headers: tuple[tuple[bytes, bytes], ...]


class MockIntegration:
    needs_body = False

    def __init__(
        self,
        *,
        statuses: Mapping[str, int | None],
        passthrough_behavior: str,
        responses: tuple[MockResponse, ...],
        table: ResponseTable = REST_RESPONSES,
    ) -> None:
        self.table = table
        self.statuses = dict(statuses)  # request template content type → statusCode it yields
        self.passthrough_behavior = passthrough_behavior
        self.responses = responses
        self._answers: dict[tuple[bytes | None, bytes | None], _Answer | ResponseType] = {}

    def describe(self) -> str:
        codes = ",".join(str(r.status) for r in self.responses) or "no responses"
        return f"mock ({codes})"

    def _select_status(self, content_type_header: bytes | None) -> int | ResponseType | None:
        if not self.statuses:
            return None
        content_type = media_type(content_type_header) or _DEFAULT_CONTENT_TYPE
        if content_type in self.statuses:
            return self.statuses[content_type]
        if self.passthrough_behavior == "WHEN_NO_MATCH":
            return None
        return ResponseType.UNSUPPORTED_MEDIA_TYPE

    def _answer(self, content_type: bytes | None, accept: bytes | None) -> _Answer | ResponseType:
        status = self._select_status(content_type)
        if isinstance(status, ResponseType):
            return status
        chosen = None
        text = str(status) if status is not None else ""
        for response in self.responses:
            if response.pattern is None:
                chosen = chosen or response
                continue
            if status is not None and response.pattern.fullmatch(text):
                chosen = response
                break
        if chosen is None:
            # API Gateway: "No match for output mapping and no default output mapping specified".
            return ResponseType.API_CONFIGURATION_ERROR
        response_type, body = self._template(chosen, accept)
        return chosen.status, ((b"content-type", response_type.encode()), *chosen.headers), body

    async def __call__(self, ctx: RequestContext) -> Response:
        # The answer depends on two headers only: remember it per pair of values (static templates).
        key = ctx.media_headers()
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answer(*key)
            if len(self._answers) < _ANSWER_CACHE_SIZE:
                self._answers[key] = answer
        if isinstance(answer, ResponseType):
            return gateway_response(answer, self.table)
        status, headers, body = answer
        return Response(status, list(headers), body)

    @staticmethod
    def _template(response: MockResponse, accept: bytes | None) -> tuple[str, bytes]:
        if not response.templates:
            return _DEFAULT_CONTENT_TYPE, b""
        if accept:
            for part in accept.split(b","):
                wanted = media_type(part)
                if wanted in response.templates:
                    return wanted, response.templates[wanted]
        if _DEFAULT_CONTENT_TYPE in response.templates:
            return _DEFAULT_CONTENT_TYPE, response.templates[_DEFAULT_CONTENT_TYPE]
        first = next(iter(response.templates))
        return first, response.templates[first]
