"""Request validators: required parameters and body models checked before the integration, as AWS does.

What API Gateway does (REST APIs), from "Request validation for REST APIs in API Gateway", "Set up basic
request validation in API Gateway", "Method request behavior for payloads without mapping templates" and
"Gateway response types for API Gateway", and from request/response pairs recorded against AWS (LocalStack's
``test_api_gateway_request_validator`` snapshot):

- A method names one validator (``x-amazon-apigateway-request-validator``, or the API's default), which says
  whether to check parameters (``validateRequestParameters``), the body (``validateRequestBody``) or both.
- Parameters: every *required* query string, header and path parameter must be present and not blank; their
  type or format is not checked. A failure answers 400 BAD_REQUEST_PARAMETERS
  ``{"message": "Missing required request parameters: [x-header-param, issuer, qs1]"}``: every missing name,
  headers first, then path, then query string parameters (the order of their ``method.request.header.*``,
  ``…path.*``, ``…querystring.*`` keys), each group by name, joined with ", ".
- Body: the payload must match the JSON Schema draft 4 model of the request's content type; with no model for
  that content type, the ``$default`` model; with neither, the body is not checked. A request without
  Content-Type is taken as ``application/json``. A failure (a body that is not JSON included) answers 400
  BAD_REQUEST_BODY ``{"message": "Invalid request body"}``. An empty body with a model is checked (AWS
  refuses an empty GET when the model requires properties); Portway checks it as ``{}``, so a model that
  requires nothing lets it through.
- Parameters are checked before the body: a request failing both gets the parameters answer.
- A validator that checks the body of a method with no model is no error: nothing is checked (an API-wide
  default validator is usual).
- ``$context.error.validationErrorString`` (here ``ctx.validation_error``) carries AWS's Java validator's
  messages in a list: ``[object has missing required properties (["name"])]``. Portway produces the same
  wording for every draft 4 keyword (``instance type (string) does not match any allowed primitive type
  (allowed: ["integer"])``, ``instance value ("pink") not found in enum (possible values: ["red","blue"])``,
  ``ECMA 262 regex "^a" does not match input string "b"``, ``string "" is too short (length: 0, required
  minimum: 1)`` …), in the order it finds them; a body that is not JSON gives ``[request body is not valid
  JSON: …]``, the parameters failure its message.

Models are converted to self-contained draft 4 schemas and compiled (fastjsonschema) once, when the gateway is
built; identical models share one validator. How what users write is read:

- ``$ref`` may point anywhere in the document (``#/components/schemas/X``, ``#/definitions/X``, into another
  schema); references to other files or URLs are problems. Recursive models (a tree whose children are trees)
  work; a cycle that never descends into the body (``A: {$ref: B}``, ``B: {allOf: [{$ref: A}]}``) would check
  the same value forever, and is a problem.
- As in draft 4, keywords beside ``$ref`` are ignored; ``id``, ``$schema`` and annotations are dropped, and
  the body is always checked under draft 4, whatever ``$schema`` says.
- OpenAPI's ``nullable: true`` (and Swagger's ``x-nullable``) also admit ``null``; AWS's handling of it is not
  documented. OpenAPI 3.1 / newer-draft spellings with a draft 4 equivalent are translated: ``const``, numeric
  ``exclusiveMinimum``/``exclusiveMaximum``, ``true``/``false`` schemas, ``dependentRequired``,
  ``dependentSchemas``. Keywords draft 4 does not have (``discriminator``, ``contains``, ``if``,
  ``propertyNames`` …) are not checked, as AWS's draft 4 validator ignores them.
- Values draft 4 forbids (a ``type`` that is no type, a negative ``minLength``, a ``pattern`` Python's ``re``
  cannot compile, a schema that is not a mapping …) are problems, each with its JSON path. An empty
  ``required`` list is ignored.
- ``format``: ``date-time``, ``email``, ``hostname``, ``ipv4``, ``ipv6``, ``uri`` and ``regex`` are checked;
  other formats (``int32``, ``uuid``, ``date`` …) are not.

Chosen where AWS's behaviour is not documented: a whitespace-only value is blank; of a repeated query
parameter or header, the last value counts; a model declared for a non-JSON content type (a form, XML) still
wants a JSON body. AWS's notes on OpenAPI import once said ``minItems``/``maxItems`` were not imported into
models; Portway checks every draft 4 keyword it is given. The validator also runs on HTTP APIs whose
definition names one (AWS has none there).
"""

from __future__ import annotations

import datetime
import json
import logging
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import unquote, unquote_to_bytes

import fastjsonschema
import orjson

from portway.config.errors import json_path
from portway.config.model import ANY_METHOD, DEFAULT_ROUTE, Operation, Parameter
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.pipeline.stage import Stage
from portway.types import Response

__all__ = [
    "DEFAULT_MODEL",
    "DRAFT4",
    "BodyModel",
    "Refusal",
    "SchemaCompiler",
    "ValidateStage",
    "build_stage",
    "missing_parameters_message",
]

log = logging.getLogger("portway.validate")

DRAFT4: Final = "http://json-schema.org/draft-04/schema#"
DEFAULT_MODEL: Final = "$default"  # the model used when none is declared for the request's content type
NO_CONTENT_TYPE: Final = "application/json"  # what API Gateway takes a request without Content-Type for
MISSING_PARAMETERS: Final = "Missing required request parameters: [{}]"
_ANY_METHOD_KEY = "x-amazon-apigateway-any-method"
_SHARED_KEY = "portway.stages.validate"
_CONTENT_TYPE = b"content-type"
_LOCATION_KEYS = {"header": "header", "path": "path", "query": "querystring"}
_MEDIA_CACHE_SIZE = 64  # distinct Content-Type values remembered per stage


# --- parameters ---------------------------------------------------------------------------------------------


def missing_parameters_message(names: Iterable[str]) -> str:
    """The BAD_REQUEST_PARAMETERS message AWS gives.

    >>> missing_parameters_message(["x-header-param", "issuer", "qs1"])
    'Missing required request parameters: [x-header-param, issuer, qs1]'
    """
    return MISSING_PARAMETERS.format(", ".join(names))


_PERCENT, _PLUS = b"%+"  # byte values: ``int in bytes`` is faster than ``bytes in bytes``


def _decode(raw: bytes) -> bytes:
    """A query string name or value, percent-decoded, ``+`` a space."""
    return unquote_to_bytes(raw.replace(b"+", b" "))


def _blank(value: bytes | str) -> bool:
    """Empty or only whitespace, like Java's ``StringUtils.isBlank``."""
    stripped = value.strip()
    if not stripped:
        return True
    if stripped.isascii():
        return False
    return (stripped.decode("utf-8", "replace") if isinstance(stripped, bytes) else stripped).isspace()


class _Required:
    """The required parameters of one method, in AWS's message order, and where each is looked for."""

    __slots__ = ("headers", "names", "paths", "queries")

    def __init__(self, parameters: Iterable[Parameter]) -> None:
        chosen = {(p.location, p.name) for p in parameters if p.required and p.location in _LOCATION_KEYS}
        order = sorted(chosen, key=lambda p: f"method.request.{_LOCATION_KEYS[p[0]]}.{p[1]}")
        self.names = tuple(name for _, name in order)
        # name as found in the request -> its index in ``names``
        self.headers = {
            n.lower().encode("latin-1", "replace"): i for i, (loc, n) in enumerate(order) if loc == "header"
        }
        self.queries = {n.encode(): i for i, (loc, n) in enumerate(order) if loc == "query"}
        self.paths = tuple((n, i) for i, (loc, n) in enumerate(order) if loc == "path")

    def missing(self, ctx: RequestContext) -> list[str]:
        """The declared names of the required parameters the request lacks or sends blank, in order."""
        values: list[bytes | str | None] = [None] * len(self.names)  # the last value of each, as sent
        headers = self.headers
        if headers:
            for name, value in ctx.headers:  # ASGI lower-cases names; do not rely on it
                index = headers.get(name)
                if index is None and not name.islower():
                    index = headers.get(name.lower())
                if index is not None:
                    values[index] = value
        queries = self.queries
        if queries:
            query = ctx.query_string
            if query:
                for piece in query.split(b"&"):
                    name, _, value = piece.partition(b"=")
                    index = queries.get(_decode(name) if _PERCENT in name or _PLUS in name else name)
                    if index is not None:  # the last value wins, as in queryStringParameters
                        values[index] = _decode(value) if _PERCENT in value or _PLUS in value else value
        if self.paths:
            path_parameters = ctx.path_parameters
            for name_, index in self.paths:
                values[index] = path_parameters.get(name_)
        for found in values:
            if found is None or _blank(found):
                break
        else:
            return []
        return [self.names[i] for i, found in enumerate(values) if found is None or _blank(found)]


# --- bodies -------------------------------------------------------------------------------------------------


class Refusal(NamedTuple):
    """Why a body failed its model: ``error`` as ``$context.error.validationErrorString`` has it, ``detail``
    (each message with the place in the body it is about) for the log."""

    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class BodyModel:
    """One compiled model: :meth:`check` a request body against it."""

    content_type: str
    validate: Callable[[Any], Any]

    def check(self, body: bytes) -> Refusal | None:
        """None when ``body`` is JSON that matches the model (an empty body is checked as ``{}``)."""
        if not body or body.isspace():
            return self._check({})
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            data, reason = _loads_exotic(body), f"request body is not valid JSON: {exc}"
            if data is _NOT_JSON:
                return Refusal(f"[{reason}]", reason)
        refusal = self._check(data)
        if refusal is not None and _LONG_INTEGER.search(body):
            # orjson reads integers beyond 64 bits as floats; JSON (and AWS's Java parser) keeps them exact.
            exact = _loads_exotic(body)
            if exact is not _NOT_JSON:
                refusal = self._check(exact)
        return refusal

    def _check(self, data: Any) -> Refusal | None:
        try:
            self.validate(data)
        except fastjsonschema.JsonSchemaValuesException as exc:
            return _refusal(exc.errors)
        except fastjsonschema.JsonSchemaValueException as exc:
            return _refusal([exc])
        except RecursionError:
            reason = "request body nests too deeply to be validated"
            return Refusal(f"[{reason}]", reason)
        return None


_NOT_JSON: Final = object()
_LONG_INTEGER = re.compile(rb"\d{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _loads_exotic(body: bytes) -> Any:
    """The body read by Python's own parser (exact big integers), or ``_NOT_JSON``."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _refusal(errors: Sequence[fastjsonschema.JsonSchemaValueException]) -> Refusal:
    messages: list[str] = []
    details: list[str] = []
    for error in errors:
        message = _message(error)
        if message in messages:
            continue
        messages.append(message)
        path = error.path[1:]  # without the leading "data"
        details.append(f"/{'/'.join(path)}: {message}")
    return Refusal(f"[{', '.join(messages)}]", "; ".join(details))


# AWS validates with a Java JSON Schema library; ``$context.error.validationErrorString`` holds its messages.
# These are its words, keyword by keyword.


def _compact(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_FORMAT_MESSAGES = {
    "date-time": 'string "{}" is invalid against requested date format(s) '
    "[yyyy-MM-dd'T'HH:mm:ssZ, yyyy-MM-dd'T'HH:mm:ss.[0-9]{{1,12}}Z]",
    "email": 'string "{}" is not a valid email address',
    "hostname": 'string "{}" is not a valid hostname',
    "ipv4": 'string "{}" is not a valid IPv4 address',
    "ipv6": 'string "{}" is not a valid IPv6 address',
    "uri": 'string "{}" is not a valid URI',
    "regex": 'string "{}" is not a valid ECMA 262 regular expression',
}
_MATCHES = re.compile(r"\((\d+) matches found\)")


def _message(error: fastjsonschema.JsonSchemaValueException) -> str:
    rule = error.rule
    value = error.value
    schema: Mapping[str, Any] = error.definition if isinstance(error.definition, Mapping) else {}
    limit = schema.get(rule) if rule else None
    if rule == "type":
        allowed = sorted({limit} if isinstance(limit, str) else set(limit or ()))
        return (
            f"instance type ({_json_type(value)}) does not match any allowed primitive type "
            f"(allowed: {_compact(allowed)})"
        )
    if rule == "required" and isinstance(value, dict):
        missing = sorted(str(name) for name in limit or () if name not in value)
        return f"object has missing required properties ({_compact(missing)})"
    if rule == "enum":
        return f"instance value ({_compact(value)}) not found in enum (possible values: {_compact(limit)})"
    if rule == "minLength" and isinstance(value, str):
        return f'string "{value}" is too short (length: {len(value)}, required minimum: {limit})'
    if rule == "maxLength" and isinstance(value, str):
        return f'string "{value}" is too long (length: {len(value)}, maximum allowed: {limit})'
    if rule == "pattern":
        return f'ECMA 262 regex "{limit}" does not match input string "{value}"'
    if rule == "format" and limit in _FORMAT_MESSAGES:
        return _FORMAT_MESSAGES[str(limit)].format(value)
    if rule == "minimum":
        if schema.get("exclusiveMinimum") is True:
            return f"numeric instance is not strictly greater than the required minimum {_compact(limit)}"
        return (
            "numeric instance is lower than the required minimum "
            f"(minimum: {_compact(limit)}, found: {_compact(value)})"
        )
    if rule == "maximum":
        if schema.get("exclusiveMaximum") is True:
            return f"numeric instance is not strictly lower than the required maximum {_compact(limit)}"
        return (
            "numeric instance is greater than the required maximum "
            f"(maximum: {_compact(limit)}, found: {_compact(value)})"
        )
    if rule == "multipleOf":
        return f"remainder of division is not zero ({_compact(value)} / {_compact(limit)})"
    if rule == "minItems" and isinstance(value, list):
        return (
            f"array is too short: must have at least {limit} elements but instance has {len(value)} elements"
        )
    if rule == "maxItems" and isinstance(value, list):
        return f"array is too long: must have at most {limit} elements but instance has {len(value)} elements"
    if rule == "uniqueItems":
        return "array must not contain duplicate elements"
    if rule == "items" and isinstance(value, list) and isinstance(schema.get("items"), list):
        return (
            f"schema only allows {len(schema['items'])} elements in array "
            f"but instance has {len(value)} elements"
        )
    if rule == "minProperties" and isinstance(value, dict):
        return f"object has too few properties (found {len(value)} but schema requires at least {limit})"
    if rule == "maxProperties" and isinstance(value, dict):
        return f"object has too many properties (found {len(value)} but schema requires at most {limit})"
    if rule == "additionalProperties" and isinstance(value, dict):
        known = schema.get("properties") or {}
        patterns = [re.compile(p) for p in schema.get("patternProperties") or {}]
        extra = sorted(
            str(name) for name in value if name not in known and not any(p.search(name) for p in patterns)
        )
        return f"object instance has properties which are not allowed by the schema: {_compact(extra)}"
    if rule == "dependencies" and isinstance(value, dict) and isinstance(limit, Mapping):
        for name, needed in limit.items():
            if name in value and isinstance(needed, list):
                absent = [n for n in needed if n not in value]
                if absent:
                    return (
                        f'property "{name}" of object has missing property dependencies '
                        f"(schema requires {_compact(needed)}; missing: {_compact(absent)})"
                    )
    if rule == "anyOf" and isinstance(limit, list):
        return f"instance failed to match at least one required schema among {len(limit)}"
    if rule == "oneOf" and isinstance(limit, list):
        found = _MATCHES.search(error.message)
        matched = found.group(1) if found else "?"
        return f"instance failed to match exactly one schema (matched {matched} out of {len(limit)})"
    if rule == "not":
        return "instance matched a schema which it should not have"
    return error.message


# --- models: from what the user wrote to compiled draft 4 ---------------------------------------------------

_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_DESCENDING = ("properties", "patternProperties", "additionalProperties", "items", "additionalItems")
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def _at(where: str, *parts: str | int) -> str:
    return where + json_path(*parts)[1:]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class _Converted:
    """One schema converted to draft 4, with the document places it references."""

    schema: dict[str, Any]
    refs: frozenset[str]  # canonical pointers ("#/components/schemas/X") of every $ref in it
    shallow: frozenset[str]  # those reached without descending into the instance (a loop if they cycle)
    ok: bool


class _Walk:
    """Collects, while one schema tree is converted, what it references and whether it is usable."""

    def __init__(self, compiler: SchemaCompiler) -> None:
        self.compiler = compiler
        self.refs: set[str] = set()
        self.shallow: set[str] = set()
        self.ok = True

    def problem(self, where: str, message: str) -> None:
        self.ok = False
        self.compiler.report(where, message)

    def done(self, schema: dict[str, Any]) -> _Converted:
        return _Converted(schema, frozenset(self.refs), frozenset(self.shallow), self.ok)

    # One schema: ``shallow`` is True while the instance this schema checks is the one its definition
    # checks (under allOf / anyOf / oneOf / not / dependencies), False once inside a property or an item.

    def schema(self, node: Any, where: str, shallow: bool) -> dict[str, Any]:
        if node is True:
            return {}
        if node is False:
            return {"not": {}}
        if not isinstance(node, Mapping):
            self.problem(where, "a schema must be a mapping")
            return {}
        if "$ref" in node:
            return self.ref(node["$ref"], _at(where, "$ref"), shallow)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if isinstance(key, str):
                self.keyword(out, key, value, node, where, shallow)
        self.bounds(out, node, where)
        if node.get("nullable") is True or node.get("x-nullable") is True:
            out = _admit_null(out)
        return out

    def ref(self, ref: Any, where: str, shallow: bool) -> dict[str, Any]:
        if not isinstance(ref, str):
            self.problem(where, "must be a string: a reference like '#/components/schemas/Name'")
            return {}
        pointer = self.compiler.pointer(ref, where)
        if pointer is None:
            self.ok = False
            return {}
        self.refs.add(pointer)
        if shallow:
            self.shallow.add(pointer)
        return {"$ref": f"#/definitions/{self.compiler.key(pointer)}"}

    def schemas(self, value: Any, where: str, shallow: bool, name: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not value:
            self.problem(where, f"{name} must be a non-empty list of schemas")
            return []
        return [self.schema(item, _at(where, i), shallow) for i, item in enumerate(value)]

    def schema_map(self, value: Any, where: str, patterns: bool = False) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.problem(where, "must be a mapping of names to schemas")
            return {}
        out: dict[str, Any] = {}
        for name, item in value.items():
            here = _at(where, str(name))
            if patterns and not self.regex(str(name), here):
                continue
            out[str(name)] = self.schema(item, here, False)
        return out

    def regex(self, pattern: Any, where: str) -> bool:
        if not isinstance(pattern, str):
            self.problem(where, "a pattern must be a string")
            return False
        try:
            re.compile(pattern)
        except re.error as exc:
            self.problem(where, f"not a regular expression Portway can run: {exc}")
            return False
        return True

    def keyword(
        self, out: dict[str, Any], key: str, value: Any, node: Mapping[str, Any], where: str, shallow: bool
    ) -> None:
        here = _at(where, key)
        if key == "type":
            names = [value] if isinstance(value, str) else value
            if (
                not isinstance(names, list)
                or not names
                or any(not isinstance(n, str) or n not in _TYPES for n in names)
                or len(set(names)) != len(names)
            ):
                self.problem(here, f"must be one of {', '.join(sorted(_TYPES))}, or a list of them")
                return
            out["type"] = value
        elif key == "enum":
            if not isinstance(value, list) or not value:
                self.problem(here, "must be a non-empty list of values")
                return
            out["enum"] = [_jsonable(v) for v in value]
        elif key == "const":
            if "enum" in node:
                out.setdefault("allOf", []).append({"enum": [_jsonable(value)]})
            else:
                out["enum"] = [_jsonable(value)]
        elif key == "required":
            if not isinstance(value, list) or any(not isinstance(n, str) for n in value):
                self.problem(here, "must be a list of property names")
                return
            if value:
                out["required"] = list(dict.fromkeys(value))
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            pass  # together, once every keyword is read: see bounds()
        elif key == "multipleOf":
            if not _is_number(value) or value <= 0:
                self.problem(here, "must be a number greater than 0")
                return
            out[key] = value
        elif key in _COUNTS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value % 1:
                self.problem(here, "must be a whole number, 0 or more")
                return
            out[key] = int(value)
        elif key == "pattern":
            if self.regex(value, here):
                out[key] = value
        elif key == "uniqueItems":
            if not isinstance(value, bool):
                self.problem(here, "must be true or false")
                return
            if value:
                out[key] = True
        elif key == "format":
            if isinstance(value, str):
                out[key] = value
        elif key == "properties":
            out[key] = self.schema_map(value, here)
        elif key == "patternProperties":
            out[key] = self.schema_map(value, here, patterns=True)
        elif key in ("additionalProperties", "additionalItems"):
            out[key] = value if isinstance(value, bool) else self.schema(value, here, False)
        elif key == "items":
            if isinstance(value, list):
                out[key] = [self.schema(item, _at(here, i), False) for i, item in enumerate(value)]
            else:
                out[key] = self.schema(value, here, False)
        elif key in ("allOf", "anyOf", "oneOf"):
            found = self.schemas(value, here, shallow, key)
            if found:
                out.setdefault(key, []).extend(found)
        elif key == "not":
            out[key] = self.schema(value, here, shallow)
        elif key in ("dependencies", "dependentRequired", "dependentSchemas"):
            self.dependencies(out, value, here, shallow)
        # Anything else is an annotation (title, description, example, readOnly, discriminator, x-…), a
        # keyword of a later draft that AWS's draft 4 validator ignores, or handled elsewhere (nullable,
        # $ref, definitions): not checked.

    def bounds(self, out: dict[str, Any], node: Mapping[str, Any], where: str) -> None:
        """``minimum``/``maximum`` with their ``exclusive…`` flags (draft 4: true or false; OpenAPI 3.1 and
        newer drafts: the exclusive bound itself, the stricter of the two kept)."""
        bounds: tuple[tuple[str, str, Callable[[Any, Any], bool]], ...] = (
            ("minimum", "exclusiveMinimum", operator.gt),
            ("maximum", "exclusiveMaximum", operator.lt),
        )
        for key, exclusive, stricter in bounds:
            limit, flag = node.get(key), node.get(exclusive)
            if limit is not None and not _is_number(limit):
                self.problem(_at(where, key), "must be a number")
                limit = None
            if flag is not None and not isinstance(flag, bool) and not _is_number(flag):
                self.problem(_at(where, exclusive), "must be true or false (or, in OpenAPI 3.1, a number)")
                flag = None
            if _is_number(flag):
                if limit is None or not stricter(limit, flag):
                    out[key], out[exclusive] = flag, True
                else:
                    out[key] = limit
            elif limit is not None:
                out[key] = limit
                if flag is True:
                    out[exclusive] = True
            # an exclusive flag without its bound means nothing (draft 4 forbids it; AWS ignores it)

    def dependencies(self, out: dict[str, Any], value: Any, where: str, shallow: bool) -> None:
        if not isinstance(value, Mapping):
            self.problem(where, "must be a mapping of property names to schemas or name lists")
            return
        found = out.setdefault("dependencies", {})
        for name, dependency in value.items():
            here = _at(where, str(name))
            if isinstance(dependency, list):
                if any(not isinstance(n, str) for n in dependency):
                    self.problem(here, "must be a list of property names")
                    continue
                if dependency:
                    found[str(name)] = list(dict.fromkeys(dependency))
            else:
                found[str(name)] = self.schema(dependency, here, shallow)
        if not found:
            del out["dependencies"]


def _jsonable(value: Any) -> Any:
    """A value as a JSON body carries it: YAML reads ``2024-01-01`` as a date, a request sends a string."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _admit_null(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema, also admitting ``null`` (OpenAPI's ``nullable: true``)."""
    if not any(k in schema for k in ("type", "enum", "allOf", "anyOf", "oneOf", "not", "$ref")):
        return schema  # nothing in it refuses null already
    if "type" in schema and not any(k in schema for k in ("allOf", "anyOf", "oneOf", "not")):
        types = [schema["type"]] if isinstance(schema["type"], str) else list(schema["type"])
        if "null" not in types:
            types.append("null")
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        return {**schema, "type": types}
    return {"anyOf": [{"type": "null"}, schema]}


class SchemaCompiler:
    """Converts and compiles the models of one API definition; shared by its routes (``build.shared``) so a
    model referenced by many methods is converted, checked and reported once, and compiled once.

    ``report(where, message)`` receives every problem, each once.
    """

    def __init__(self, document: Mapping[str, Any], report: Callable[[str, str], None]) -> None:
        self.document = document
        self._report = report
        self._reported: set[tuple[str, str]] = set()
        self._places: dict[str, tuple[Any, str] | None] = {}  # canonical pointer -> (node, JSON path)
        self._keys: dict[str, str] = {}  # canonical pointer -> its name under the compiled "definitions"
        self._converted: dict[str, _Converted] = {}
        self._compiled: dict[bytes, Callable[[Any], Any] | None] = {}
        self._cycles: set[frozenset[str]] = set()

    def report(self, where: str, message: str) -> None:
        if (where, message) not in self._reported:
            self._reported.add((where, message))
            self._report(where, message)

    def pointer(self, ref: str, where: str) -> str | None:
        """The canonical pointer of a local ``$ref``, once it is known to name something; else reports it."""
        if not ref.startswith("#"):
            self.report(where, f"{ref!r}: only references within the definition ('#/...') are supported")
            return None
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            self.report(where, f"{ref!r}: not a JSON pointer (it should start with '#/')")
            return None
        node: Any = self.document
        tokens: list[str | int] = []
        for raw in fragment.split("/")[1:] if fragment else []:
            token = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
                tokens.append(token)
            elif isinstance(node, Mapping) and token.isdigit() and int(token) in node:
                node = node[int(token)]  # a YAML key read as a number
                tokens.append(token)
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
                tokens.append(int(token))
            else:
                self.report(where, f"{ref!r}: nothing at that place in the definition")
                return None
        canonical = "#" + "".join(f"/{str(t).replace('~', '~0').replace('/', '~1')}" for t in tokens)
        if canonical not in self._places:
            self._places[canonical] = (node, json_path(*tokens))
        return canonical

    def key(self, pointer: str) -> str:
        """A name for the pointer's schema under ``definitions``: readable, unique, safe in a ``$ref``."""
        found = self._keys.get(pointer)
        if found is None:
            tail = pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
            base = _KEY_CHARS.sub("_", tail) or "schema"
            found, n = base, 1
            taken = set(self._keys.values())
            while found in taken:
                n += 1
                found = f"{base}_{n}"
            self._keys[pointer] = found
        return found

    def _definition(self, pointer: str) -> _Converted:
        found = self._converted.get(pointer)
        if found is None:
            place = self._places[pointer]
            assert place is not None
            node, where = place
            walk = _Walk(self)
            found = walk.done(walk.schema(node, where, True))
            self._converted[pointer] = found
        return found

    def convert(self, schema: Any, where: str) -> dict[str, Any] | None:
        """The self-contained draft 4 schema for ``schema`` (its references gathered under ``definitions``),
        or None when it has problems (reported)."""
        walk = _Walk(self)
        root = walk.done(walk.schema(schema, where, True))
        ok = root.ok
        reached: dict[str, _Converted] = {}
        pending = list(root.refs)
        while pending:
            pointer = pending.pop()
            if pointer in reached:
                continue
            converted = self._definition(pointer)
            reached[pointer] = converted
            ok = ok and converted.ok
            pending.extend(converted.refs)
        if not ok or not self._acyclic(reached):
            return None
        out = dict(root.schema)
        if reached:
            out["definitions"] = {self.key(p): reached[p].schema for p in sorted(reached)}
        out["$schema"] = DRAFT4
        return out

    def _acyclic(self, reached: Mapping[str, _Converted]) -> bool:
        """Whether following references that do not descend into the body can come back to where it
        started (``A: {$ref: B}``, ``B: {allOf: [{$ref: A}]}``): such a model checks one value forever."""
        ok = True
        state: dict[str, bool] = {}  # pointer -> True while on the current trail, False once finished
        trail: list[str] = []

        def visit(pointer: str) -> None:
            nonlocal ok
            state[pointer] = True
            trail.append(pointer)
            for target in sorted(reached[pointer].shallow):
                if state.get(target) is True:
                    ok = False
                    cycle = [*trail[trail.index(target) :], target]
                    if frozenset(cycle) not in self._cycles:
                        self._cycles.add(frozenset(cycle))
                        place = self._places.get(target)
                        self.report(
                            place[1] if place else "$",
                            "a $ref cycle that never descends into the body, so validation would loop "
                            f"forever: {' -> '.join(cycle)}",
                        )
                elif target not in state:
                    visit(target)
            trail.pop()
            state[pointer] = False

        for pointer in sorted(reached):
            if pointer not in state:
                visit(pointer)
        return ok

    def compile(self, schema: Any, where: str) -> Callable[[Any], Any] | None:
        """A validator for ``schema`` (raising fastjsonschema's errors), or None when it has problems."""
        draft4 = self.convert(schema, where)
        if draft4 is None:
            return None
        try:
            key = orjson.dumps(draft4, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        except TypeError:
            key = repr(draft4).encode()
        if key in self._compiled:
            return self._compiled[key]
        try:
            validator: Callable[[Any], Any] | None = fastjsonschema.compile(
                draft4, handlers={}, use_default=False, fast_fail=False
            )
        except Exception as exc:  # fastjsonschema's own checks, or a value its generated code cannot hold
            self.report(where, f"the schema cannot be compiled: {exc}")
            validator = None
        self._compiled[key] = validator
        return validator


def _body_schema_places(document: Mapping[str, Any], op: Operation) -> dict[str, str]:
    """Where each of the operation's body schemas is written (content type -> JSON path), for problems."""
    paths = document.get("paths")
    resource = f"/{DEFAULT_ROUTE}" if op.resource == DEFAULT_ROUTE else op.resource
    item = paths.get(resource) if isinstance(paths, Mapping) else None
    method = _ANY_METHOD_KEY if op.method == ANY_METHOD else op.method.lower()
    raw = item.get(method) if isinstance(item, Mapping) else None
    places: dict[str, str] = {}
    if not isinstance(item, Mapping) or not isinstance(raw, Mapping):
        return places
    where = json_path("paths", resource, method)
    body, body_where = raw.get("requestBody"), _at(where, "requestBody")
    if isinstance(body, Mapping) and isinstance(body.get("$ref"), str):
        body, body_where = _follow(document, body["$ref"])
    content = body.get("content") if isinstance(body, Mapping) else None
    if isinstance(content, Mapping):
        for media in content:
            places.setdefault(_media(str(media)), _at(body_where, "content", str(media), "schema"))
        return places
    for parameters, list_where in ((item.get("parameters"), json_path("paths", resource, "parameters")),
                                   (raw.get("parameters"), _at(where, "parameters"))):  # fmt: skip
        for index, parameter in enumerate(parameters if isinstance(parameters, list) else ()):
            here = _at(list_where, index)
            if isinstance(parameter, Mapping) and isinstance(parameter.get("$ref"), str):
                parameter, here = _follow(document, parameter["$ref"])
            if isinstance(parameter, Mapping) and parameter.get("in") == "body":
                places["application/json"] = _at(here, "schema")  # Swagger 2: the last one wins
    return places


def _follow(document: Mapping[str, Any], ref: str) -> tuple[Any, str]:
    node: Any = document
    tokens: list[str | int] = []
    for raw in unquote(ref[1:]).split("/")[1:] if ref.startswith("#/") else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
            tokens.append(token)
        else:
            return None, "$"
    return node, json_path(*tokens)


def _media(content_type: str) -> str:
    """``Application/JSON; charset=utf-8`` -> ``application/json``."""
    return content_type.partition(";")[0].strip().lower()


# --- the stage ----------------------------------------------------------------------------------------------


class ValidateStage:
    """Refuses requests that lack a required parameter (400 BAD_REQUEST_PARAMETERS) or whose body does not
    match the model of its content type (400 BAD_REQUEST_BODY), in that order.

    ``parameters`` are the method's declared parameters (only the required ones count); ``models`` maps
    content types (lower-case, ``$default`` for any other) to compiled models. ``needs_body`` is True only
    when there is a model.
    """

    name = "validate"
    responds = False

    def __init__(
        self,
        parameters: Iterable[Parameter] = (),
        models: Mapping[str, BodyModel] | None = None,
        table: ResponseTable = REST_RESPONSES,
    ) -> None:
        self.required = _Required(parameters)
        self.models = {_media(k) if k != DEFAULT_MODEL else k: v for k, v in (models or {}).items()}
        self.default_model = self.models.get(DEFAULT_MODEL)
        self.needs_body = bool(self.models)
        self.table = table
        self._checks_parameters = bool(self.required.names)
        self._by_content_type: dict[bytes | None, BodyModel | None] = {}

    async def on_request(self, ctx: RequestContext) -> Response | None:
        if self._checks_parameters:
            missing = self.required.missing(ctx)
            if missing:
                message = missing_parameters_message(missing)
                ctx.validation_error = message
                log.info("[%s] request refused: %s", ctx.request_id, message)
                return gateway_response(ResponseType.BAD_REQUEST_PARAMETERS, self.table, message)
        if self.needs_body:
            model = self.model_for(ctx.header(_CONTENT_TYPE))
            if model is not None:
                refusal = model.check(await ctx.body())
                if refusal is not None:
                    ctx.validation_error = refusal.error
                    log.info(
                        "[%s] request refused: the body does not match the %s model: %s",
                        ctx.request_id,
                        model.content_type,
                        refusal.detail,
                    )
                    return gateway_response(ResponseType.BAD_REQUEST_BODY, self.table)
        return None

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response

    def model_for(self, content_type: bytes | None) -> BodyModel | None:
        """The model for a request with this Content-Type header value (None: absent)."""
        try:
            return self._by_content_type[content_type]
        except KeyError:
            pass
        media = _media(content_type.decode("latin-1")) if content_type else ""
        model = self.models.get(media or NO_CONTENT_TYPE, self.default_model)
        if len(self._by_content_type) >= _MEDIA_CACHE_SIZE:
            self._by_content_type.clear()
        self._by_content_type[content_type] = model
        return model


def build_stage(op: Operation, build: StageBuild) -> Stage | None:
    """The method's validate stage, or None when its validator has nothing of it to check.

    The validator is the one the operation names (``x-amazon-apigateway-request-validator``, else the API's
    default). With ``validateRequestParameters``, the operation's required parameters are checked; with
    ``validateRequestBody``, its body schemas (compiled here; problems go to ``build.problem``).
    """
    if op.request_validator is None:
        return None
    validator = build.api.request_validators.get(op.request_validator)
    if validator is None:
        return None  # the loader reported the unknown name
    parameters = [p for p in op.parameters if p.required] if validator.parameters else []
    models: dict[str, BodyModel] = {}
    if validator.body and op.body_schemas:
        compiler = build.shared.get(_SHARED_KEY)
        if not isinstance(compiler, SchemaCompiler):
            compiler = SchemaCompiler(build.api.document, build.problem)
            build.shared[_SHARED_KEY] = compiler
        places = _body_schema_places(build.api.document, op)
        for content_type, schema in op.body_schemas.items():
            media = content_type if content_type == DEFAULT_MODEL else _media(content_type)
            if media in models:
                continue
            where = places.get(media) or _at(op.where, "requestBody")
            validate = compiler.compile(schema, where)
            if validate is not None:
                models[media] = BodyModel(media, validate)
    if not parameters and not models:
        return None
    return ValidateStage(parameters, models, build.table)
