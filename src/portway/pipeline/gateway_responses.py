"""Customised gateway responses: ``x-amazon-apigateway-gateway-responses`` made into an API's response table.

What AWS documents (API Gateway developer guide: "Gateway responses for REST APIs", "Gateway response types",
"x-amazon-apigateway-gateway-responses.gatewayResponse / .responseParameters / .responseTemplates", and the
``$context`` variable reference):

- An entry per response type sets ``statusCode``, ``responseParameters`` (``gatewayresponse.header.NAME`` from
  a ``'static'`` value or a method request parameter) and ``responseTemplates`` (content type → body).
- ``DEFAULT_4XX`` / ``DEFAULT_5XX`` apply to every 4xx / 5xx type that has no entry of its own; their
  ``statusCode`` replaces those types' status codes. A type with its own entry takes nothing from them.
- Body templates are *not* VTL: "simple variable substitution" of ``$context`` variables (``error.message``,
  ``error.messageString`` — the message quoted —, ``error.responseType``, ``requestId`` …) and
  ``$stageVariables``. Portway refuses, at load time, every other reference and every VTL directive.

Templates are split once at load time into text and value getters, so rendering is one join.

>>> table, problems = parse_gateway_responses(
...     {"MISSING_AUTHENTICATION_TOKEN": {"statusCode": 404, "responseTemplates": {
...         "application/json": '{"error": $context.error.messageString}'}}},
...     REST_RESPONSES, http_api=False)
>>> answer = gateway_response(ResponseType.MISSING_AUTHENTICATION_TOKEN, table)
>>> answer.status, answer.body, problems
(404, b'{"error": "Missing Authentication Token"}', [])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import orjson

from portway.config.errors import json_path
from portway.integrations.events import parse_query, request_time
from portway.integrations.media import media_type
from portway.pipeline.responses import REST_RESPONSES, GatewayResponse, ResponseTable, ResponseType
from portway.routing import BadPath
from portway.types import Headers, Response

__all__ = [
    "CURRENT_REQUEST",
    "EXTENSION",
    "CustomResponse",
    "RequestView",
    "parse_gateway_responses",
    "table_reads_request",
    "value_text",
]

EXTENSION = "x-amazon-apigateway-gateway-responses"

# The response types a definition may name: AWS's list. Portway's own BAD_REQUEST and LAMBDA_ERROR are not
# among them; they follow DEFAULT_4XX / DEFAULT_5XX.
CUSTOMISABLE = frozenset(kind.value for kind in ResponseType) - {"BAD_REQUEST", "LAMBDA_ERROR"}
_FIELDS = frozenset({"statusCode", "responseParameters", "responseTemplates"})
_HEADER_TARGET = "gatewayresponse.header."
_STATUS = re.compile(r"^[1-5]\d\d$")  # the GatewayResponse statusCode pattern
_JSON = "application/json"


class RequestView(Protocol):
    """What rendering reads from the request being answered (a :class:`RequestContext` is one)."""

    @property
    def request_id(self) -> str: ...
    @property
    def extended_request_id(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def stage(self) -> str: ...
    @property
    def resource(self) -> str: ...
    @property
    def path_parameters(self) -> Mapping[str, str]: ...
    @property
    def stage_variables(self) -> Mapping[str, str]: ...
    @property
    def authorizer(self) -> Mapping[str, Any] | None: ...
    @property
    def validation_error(self) -> str | None: ...
    @property
    def api_key(self) -> str | None: ...
    @property
    def api_key_id(self) -> str | None: ...
    @property
    def request_time_ns(self) -> int: ...
    @property
    def query_string(self) -> bytes: ...
    @property
    def client_ip(self) -> str: ...
    @property
    def http_version(self) -> str: ...

    def header(self, lower_name: bytes) -> bytes | None: ...

    def scope_path(self) -> str: ...


# The request the gateway is answering, set by Gateway.handle when the API's table renders from the request
# (table_reads_request): stages and integrations call gateway_response(kind, table) without handing it over.
CURRENT_REQUEST: ContextVar[RequestView | None] = ContextVar("portway_current_request", default=None)


class _Error(NamedTuple):
    message: str
    response_type: str


# A value of the answer: (request or None when answered outside a request, the error) -> text.
Getter = Callable[["RequestView | None", _Error], str]


def value_text(value: Any) -> str:
    """A value as a template (or an access log) prints it: strings as they are, booleans lower-case, numbers
    as written, maps and lists as JSON; None as ""."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _from_request(read: Callable[[RequestView], str | None]) -> Getter:
    def get(view: RequestView | None, error: _Error) -> str:
        return (read(view) or "") if view is not None else ""

    return get


def _header(name: str) -> Getter:
    lower = name.lower().encode("latin-1")

    def read(view: RequestView) -> str | None:
        value = view.header(lower)
        return value.decode("latin-1") if value is not None else None

    return _from_request(read)


def _query(name: str) -> Getter:
    def read(view: RequestView) -> str | None:
        try:
            pairs = parse_query(view.query_string)
        except BadPath:
            return None
        found = None
        for key, value in pairs:  # the last value, as single-value parameters keep it
            if key == name:
                found = value
        return found

    return _from_request(read)


def _authorizer(path: str) -> Getter:
    keys = path.split(".")

    def read(view: RequestView) -> str | None:
        value: Any = view.authorizer
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value_text(value)

    return _from_request(read)


def _context_getters(http_api: bool) -> dict[str, Getter]:
    """``$context`` variables a gateway response can print, by name (without ``context.``)."""

    def request_id(view: RequestView) -> str:
        # An HTTP API's request id is its short one (the apigw-requestid header).
        return view.extended_request_id if http_api else view.request_id

    return {
        "error.message": lambda view, error: error.message,
        "error.messageString": lambda view, error: orjson.dumps(error.message).decode(),
        "error.responseType": lambda view, error: error.response_type,
        "error.validationErrorString": _from_request(lambda view: view.validation_error),
        "requestId": _from_request(request_id),
        "extendedRequestId": _from_request(lambda view: view.extended_request_id),
        "stage": _from_request(lambda view: view.stage),
        "resourcePath": _from_request(lambda view: view.resource),
        "httpMethod": _from_request(lambda view: view.method),
        "path": _from_request(lambda view: view.scope_path()),
        "protocol": _from_request(lambda view: f"HTTP/{view.http_version}"),
        "domainName": _header("host"),
        "requestTime": _from_request(lambda view: request_time(view.request_time_ns)),
        "requestTimeEpoch": _from_request(lambda view: str(view.request_time_ns // 1_000_000)),
        "identity.sourceIp": _from_request(lambda view: view.client_ip),
        "identity.userAgent": _header("user-agent"),
        "identity.apiKey": _from_request(lambda view: view.api_key),
        "identity.apiKeyId": _from_request(lambda view: view.api_key_id),
    }


_NEEDS_NO_REQUEST = frozenset({"error.message", "error.messageString", "error.responseType"})


class _Unsupported(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class _Resolver:
    """Names → getters for one API (HTTP APIs print their short request id as ``$context.requestId``)."""

    context: Mapping[str, Getter]

    def context_variable(self, name: str) -> tuple[Getter, bool]:
        """(getter, reads the request) for ``context.NAME``."""
        if name.startswith("authorizer.") and len(name) > len("authorizer."):
            return _authorizer(name.removeprefix("authorizer.")), True
        getter = self.context.get(name)
        if getter is None:
            known = ", ".join(f"$context.{n}" for n in sorted(self.context))
            raise _Unsupported(
                f"$context.{name} is not available in gateway responses "
                f"(Portway prints {known}, $context.authorizer.NAME and $stageVariables.NAME)"
            )
        return getter, name not in _NEEDS_NO_REQUEST

    def reference(self, name: str) -> tuple[Getter, bool]:
        """A template's ``$NAME``: a context variable or a stage variable."""
        root, _, rest = name.partition(".")
        if root == "context" and rest:
            return self.context_variable(rest)
        if root == "stageVariables" and rest and "." not in rest:
            return _stage_variable(rest), True
        if root in ("input", "util", "method", "integration"):
            raise _Unsupported(
                f"${root} is VTL, and gateway response templates are not VTL: AWS substitutes only "
                "$context and $stageVariables variables in them"
            )
        raise _Unsupported(f"${name}: only $context.NAME and $stageVariables.NAME can be printed here")

    def source(self, value: str) -> tuple[bytes | Getter, bool]:
        """A responseParameters value: a static ``'text'``, a method request parameter, a stage or context
        variable."""
        if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
            return value[1:-1].encode("latin-1"), False
        for prefix, make in (
            ("method.request.header.", _header),
            ("method.request.querystring.", _query),
            ("method.request.path.", _path_parameter),
            ("stageVariables.", _stage_variable),
        ):
            if value.startswith(prefix) and len(value) > len(prefix):
                return make(value.removeprefix(prefix)), True
        if value.startswith("context.") and len(value) > len("context."):
            return self.context_variable(value.removeprefix("context."))
        raise _Unsupported(
            f"{value!r}: use a 'static value' in single quotes, "
            "method.request.(header|querystring|path).NAME, stageVariables.NAME or context.NAME"
        )


def _stage_variable(name: str) -> Getter:
    return _from_request(lambda view: view.stage_variables.get(name))


def _path_parameter(name: str) -> Getter:
    return _from_request(lambda view: view.path_parameters.get(name))


# ``$name.path`` or ``${name.path}`` (``$!`` quiet forms too), VTL's reference syntax.
_IDENTIFIER = r"[A-Za-z][A-Za-z0-9_-]*(?:\.[A-Za-z][A-Za-z0-9_-]*)*"
_REFERENCE = re.compile(rf"\$!?(?:\{{({_IDENTIFIER})\}}|({_IDENTIFIER}))")
_DIRECTIVE = re.compile(
    r"#(?:\{?(?:set|if|elseif|else|end|foreach|macro|include|parse|stop|break|define|evaluate)\b|#|\*)"
)


@dataclass(frozen=True, slots=True)
class Template:
    """A body template split at load time: ``literals[0] getters[0]() literals[1] … literals[-1]``."""

    literals: tuple[str, ...]  # one more than getters
    getters: tuple[Getter, ...]
    static: bytes | None  # the whole body, when the template prints no variable

    def render(self, view: RequestView | None, error: _Error) -> bytes:
        if self.static is not None:
            return self.static
        literals = self.literals
        out = [literals[0]]
        for i, getter in enumerate(self.getters, 1):
            out.append(getter(view, error))
            out.append(literals[i])
        return "".join(out).encode()


def split_template(text: str, resolver: _Resolver) -> tuple[Template, bool]:
    """(the template, whether it reads the request); raises _Unsupported naming what it cannot print."""
    directive = _DIRECTIVE.search(text)
    if directive is not None:
        raise _Unsupported(
            f"{directive.group(0)!r}: VTL directives are not evaluated in gateway response templates "
            "(AWS substitutes variables only)"
        )
    literals: list[str] = []
    getters: list[Getter] = []
    reads = False
    position = 0
    for found in _REFERENCE.finditer(text):
        getter, needs = resolver.reference(found.group(1) or found.group(2))
        reads = reads or needs
        literals.append(text[position : found.start()])
        getters.append(getter)
        position = found.end()
    literals.append(text[position:])
    static = text.encode() if not getters else None
    return Template(tuple(literals), tuple(getters), static), reads


@dataclass(frozen=True, slots=True)
class CustomResponse:
    """One response type as the definition customised it (directly or through DEFAULT_4XX / DEFAULT_5XX)."""

    response_type: str  # what $context.error.responseType prints
    headers: tuple[tuple[bytes, bytes | Getter], ...]  # responseParameters, in the definition's order
    templates: Mapping[str, Template]  # content type (lower-case) → body template; empty: the default body
    reads_request: bool  # some value comes from the request (a ContextVar read, so only when needed)

    def render(self, spec: GatewayResponse, message: str) -> Response:
        view = CURRENT_REQUEST.get() if self.reads_request else None
        error = _Error(message, self.response_type)
        if self.templates:
            content_type, template = self._template(view)
            body = template.render(view, error)
        else:
            content_type = _JSON
            body = spec.encoded if message == spec.message else orjson.dumps({spec.message_key: message})
        headers: Headers = [(b"content-type", content_type.encode("latin-1"))]
        if spec.error_type is not None:
            headers.append((b"x-amzn-errortype", spec.error_type.encode()))
        for name, value in self.headers:
            if isinstance(value, bytes):
                headers.append((name, value))
            else:
                text = value(view, error)
                if text:  # a parameter the request lacks sets no header
                    headers.append((name, text.encode("latin-1", "replace")))
        return Response(spec.status, headers, body)

    def _template(self, view: RequestView | None) -> tuple[str, Template]:
        """The template for the request's Accept header (its first match), else application/json's, else
        the first one."""
        templates = self.templates
        accept = view.header(b"accept") if view is not None and len(templates) > 1 else None
        if accept:
            for part in accept.split(b","):
                wanted = media_type(part)
                if wanted in templates:
                    return wanted, templates[wanted]
        if _JSON in templates:
            return _JSON, templates[_JSON]
        first = next(iter(templates))
        return first, templates[first]


@dataclass(frozen=True, slots=True)
class _Entry:
    """One parsed entry of the extension."""

    status: int | None
    headers: tuple[tuple[bytes, bytes | Getter], ...]
    templates: Mapping[str, Template]
    reads_request: bool


def _parse_entry(
    value: Any, where: str, resolver: _Resolver, problems: list[tuple[str, str]]
) -> _Entry | None:
    if not isinstance(value, Mapping):
        problems.append((where, "must be a mapping (statusCode, responseParameters, responseTemplates)"))
        return None
    ok = True
    for key in value:
        if key not in _FIELDS:
            problems.append(
                (f"{where}.{key}", "unknown field: use statusCode, responseParameters, responseTemplates")
            )
            ok = False
    status: int | None = None
    raw_status = value.get("statusCode")
    if raw_status is not None:
        text = str(raw_status) if not isinstance(raw_status, bool) else ""
        if not _STATUS.match(text):
            problems.append((f"{where}.statusCode", f"{raw_status!r} is not an HTTP status code (100-599)"))
            ok = False
        else:
            status = int(text)
    reads = False
    headers: list[tuple[bytes, bytes | Getter]] = []
    parameters = value.get("responseParameters") or {}
    if not isinstance(parameters, Mapping):
        problems.append((f"{where}.responseParameters", "must be a mapping of gatewayresponse.header.NAME"))
        parameters, ok = {}, False
    for target, source in parameters.items():
        at = f"{where}.responseParameters['{target}']"
        name = str(target).removeprefix(_HEADER_TARGET) if str(target).startswith(_HEADER_TARGET) else ""
        if not name:
            problems.append((at, "only gatewayresponse.header.NAME can be set"))
            ok = False
            continue
        if not isinstance(source, str):
            problems.append((at, "must be a string"))
            ok = False
            continue
        try:
            header_value, needs = resolver.source(source)
            name_bytes = name.encode("latin-1")
        except (_Unsupported, UnicodeEncodeError) as exc:
            problems.append((at, str(exc)))
            ok = False
            continue
        reads = reads or needs
        headers.append((name_bytes, header_value))
    templates: dict[str, Template] = {}
    raw_templates = value.get("responseTemplates") or {}
    if not isinstance(raw_templates, Mapping):
        problems.append((f"{where}.responseTemplates", "must be a mapping of content type to template"))
        raw_templates, ok = {}, False
    for content_type, text in raw_templates.items():
        at = f"{where}.responseTemplates['{content_type}']"
        if not isinstance(text, str):
            problems.append((at, "must be a string"))
            ok = False
            continue
        try:
            template, needs = split_template(text, resolver)
        except _Unsupported as exc:
            problems.append((at, str(exc)))
            ok = False
            continue
        reads = reads or needs
        templates[str(content_type).lower()] = template
    if len(templates) > 1:
        reads = True  # the request's Accept header chooses
    if not ok:
        return None
    return _Entry(status, tuple(headers), templates, reads)


def parse_gateway_responses(
    raw: Mapping[str, Any], base_table: ResponseTable = REST_RESPONSES, http_api: bool = False
) -> tuple[ResponseTable, list[tuple[str, str]]]:
    """The API's response table (``base_table`` with the definition's customisations), and the problems as
    (JSON path, message) pairs. An API without the extension gets ``base_table`` itself back.

    ``http_api``: AWS HTTP APIs have no gateway responses; Portway accepts them there too, over the HTTP
    table, printing the short HTTP API request id as ``$context.requestId``.
    """
    problems: list[tuple[str, str]] = []
    if not raw:
        return base_table, problems
    resolver = _Resolver(_context_getters(http_api))
    entries: dict[str, _Entry] = {}
    for name, value in raw.items():
        where = json_path(EXTENSION, str(name))
        if name not in CUSTOMISABLE:
            problems.append(
                (where, f"unknown gateway response type {name!r} (one of {', '.join(sorted(CUSTOMISABLE))})")
            )
            continue
        entry = _parse_entry(value, where, resolver, problems)
        if entry is not None:
            entries[name] = entry
    table = dict(base_table)
    for kind, base in base_table.items():
        fallback_name = (
            "DEFAULT_4XX" if 400 <= base.status < 500 else "DEFAULT_5XX" if base.status >= 500 else ""
        )
        own = entries.get(kind.value) if kind.value in CUSTOMISABLE else None
        entry = own or entries.get(fallback_name)
        if entry is None:
            continue
        response_type = kind.value if kind.value in CUSTOMISABLE else fallback_name
        custom = CustomResponse(response_type, entry.headers, entry.templates, entry.reads_request)
        table[kind] = replace(base, status=entry.status or base.status, custom=custom)
    return table, problems


def table_reads_request(table: ResponseTable) -> bool:
    """Does some answer of ``table`` print something of the request (so the gateway must make it known)?"""
    return any(
        isinstance(spec.custom, CustomResponse) and spec.custom.reads_request for spec in table.values()
    )
