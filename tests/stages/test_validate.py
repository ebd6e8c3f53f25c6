"""Request validators: definitions parsed by the real loader, stages built by ``build_stage``, requests as
ASGI scopes. Expected answers are AWS's (sources: the docstring of ``portway.stages.validate``)."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from portway.config.model import ApiDefinition, StageSettings
from portway.config.openapi import parse_openapi
from portway.integrations.events import ApiInfo
from portway.lambdas.runtime import LambdaRuntime
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES, ResponseTable
from portway.stages.validate import (
    BodyModel,
    SchemaCompiler,
    ValidateStage,
    build_stage,
    missing_parameters_message,
)
from portway.state.memory import MemoryStore
from portway.types import Response

MOCK = {"type": "mock", "requestTemplates": {"application/json": '{"statusCode": 200}'}}
VALIDATORS = {
    "all": {"validateRequestBody": True, "validateRequestParameters": True},
    "body-only": {"validateRequestBody": True, "validateRequestParameters": False},
    "params-only": {"validateRequestBody": False, "validateRequestParameters": True},
}
INVALID_BODY = b'{"message":"Invalid request body"}'

# --- helpers ------------------------------------------------------------------------------------------------


def openapi(
    paths: Mapping[str, Any],
    *,
    schemas: Mapping[str, Any] | None = None,
    default_validator: str | None = "all",
    version: str = "3.0.1",
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "openapi": version,
        "info": {"title": "validation", "version": "1"},
        "x-amazon-apigateway-request-validators": VALIDATORS,
        "paths": paths,
    }
    if default_validator is not None:
        document["x-amazon-apigateway-request-validator"] = default_validator
    if schemas is not None:
        document["components"] = {"schemas": schemas}
    return document


def post(schema: Any = None, *, parameters: Sequence[Any] = (), **extra: Any) -> dict[str, Any]:
    """A POST operation with a mock integration, a JSON body schema and parameters."""
    operation: dict[str, Any] = {"x-amazon-apigateway-integration": MOCK, **extra}
    if schema is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": schema}}}
    if parameters:
        operation["parameters"] = list(parameters)
    return {"post": operation}


class Built:
    """The API, its stages by route, and the problems ``build_stage`` reported."""

    def __init__(self, document: Mapping[str, Any], table: ResponseTable = REST_RESPONSES) -> None:
        self.api: ApiDefinition = parse_openapi(document, Path("api.json"))
        self.problems: list[tuple[str, str]] = []
        build = StageBuild(
            api=self.api,
            api_info=ApiInfo("a1b2c3"),
            stage="dev",
            stage_variables={},
            settings=StageSettings(),
            table=table,
            runtime=LambdaRuntime({}),
            store=MemoryStore(),
            clock=time.time,
            problem=lambda where, message: self.problems.append((where, message)),
            settings_problem=lambda where, message: self.problems.append((where, message)),
            function=lambda *_: None,
        )
        self.stages = {(op.method, op.resource): build_stage(op, build) for op in self.api.operations}

    def stage(self, resource: str, method: str = "POST") -> ValidateStage:
        stage = self.stages[(method, resource)]
        assert isinstance(stage, ValidateStage)
        return stage


def context(
    *,
    method: str = "POST",
    resource: str = "/items",
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    body: bytes = b"",
    path_parameters: Mapping[str, str] | None = None,
) -> RequestContext:
    chunks = [body]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": chunks.pop() if chunks else b"", "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": f"/dev{resource}",
        "headers": list(headers),
        "query_string": query,
    }
    return RequestContext(scope, receive, resource, "dev", resource, dict(path_parameters or {}), {})


def json_post(body: Any, content_type: bytes = b"application/json", **kwargs: Any) -> RequestContext:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return context(headers=[(b"content-type", content_type)], body=raw, **kwargs)


async def answer(stage: ValidateStage, ctx: RequestContext) -> Response | None:
    return await stage.on_request(ctx)


def model(schema: Any, document: Mapping[str, Any] | None = None) -> BodyModel:
    problems: list[tuple[str, str]] = []
    validate = SchemaCompiler(document or {}, lambda w, m: problems.append((w, m))).compile(schema, "$.s")
    assert validate is not None, problems
    return BodyModel("application/json", validate)


# --- the schema matrix --------------------------------------------------------------------------------------

PRODUCT_DOCUMENT = {
    "components": {
        "schemas": {
            "Product": {
                "type": "object",
                "required": ["name", "price"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 5},
                    "price": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 100},
                    "qty": {"type": "integer", "minimum": 1, "multipleOf": 2},
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                    "color": {"enum": ["red", "blue"]},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "minItems": 1,
                        "maxItems": 2,
                        "uniqueItems": True,
                    },
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "email": {"type": "string", "format": "email"},
                    "when": {"type": "string", "format": "date-time"},
                    "note": {"type": "string", "nullable": True},
                    "code": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]},
                    "alias": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    "plain": {"not": {"type": "integer"}},
                    "meta": {"type": "object", "minProperties": 1, "maxProperties": 1},
                },
            },
            "Owner": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": {"type": "string"}, "boss": {"$ref": "#/components/schemas/Owner"}},
            },
        }
    }
}
GOOD = {"name": "Lamp", "price": 9.5}


def missing_id() -> str:
    return '[object has missing required properties (["id"])]'


MATRIX: list[tuple[str, dict[str, Any], str | None]] = [
    ("valid minimal", {}, None),
    (
        "valid everything",
        {
            "qty": 4,
            "sku": "ABC-12",
            "color": "red",
            "tags": ["a", "b"],
            "owner": {"id": "u1", "boss": {"id": "u2"}},
            "email": "a@example.com",
            "when": "2024-05-01T10:00:00Z",
            "note": None,
            "code": 3,
            "alias": None,
            "plain": "x",
            "meta": {"k": 1},
        },
        None,
    ),
    (
        "type",
        {"name": 5},
        '[instance type (integer) does not match any allowed primitive type (allowed: ["string"])]',
    ),
    ("type of null without nullable", {"sku": None}, "[instance type (null) does not match any allowed "),
    ("required", {"name": None, "price": None}, None),  # replaced below: both absent
    (
        "enum",
        {"color": "pink"},
        '[instance value ("pink") not found in enum (possible values: ["red","blue"])]',
    ),
    ("pattern", {"sku": "abc"}, '[ECMA 262 regex "^[A-Z]{3}-[0-9]{2}$" does not match input string "abc"]'),
    ("minLength", {"name": ""}, '[string "" is too short (length: 0, required minimum: 1)]'),
    ("maxLength", {"name": "Lampshade"}, '[string "Lampshade" is too long (length: 9, maximum allowed: 5)]'),
    (
        "exclusive minimum",
        {"price": 0},
        "[numeric instance is not strictly greater than the required minimum 0]",
    ),
    (
        "maximum",
        {"price": 101},
        "[numeric instance is greater than the required maximum (maximum: 100, found: 101)]",
    ),
    (
        "minimum",
        {"qty": 0},
        "[numeric instance is lower than the required minimum (minimum: 1, found: 0)]",
    ),
    ("multipleOf", {"qty": 3}, "[remainder of division is not zero (3 / 2)]"),
    (
        "integer is not a float",
        {"qty": 2.0},
        "[instance type (number) does not match any allowed primitive type",
    ),
    ("nested via $ref", {"owner": {}}, missing_id()),
    ("recursive $ref", {"owner": {"id": "u1", "boss": {"boss": {"id": "x"}}}}, missing_id()),
    (
        "minItems",
        {"tags": []},
        "[array is too short: must have at least 1 elements but instance has 0 elements]",
    ),
    (
        "maxItems",
        {"tags": ["a", "b", "c"]},
        "[array is too long: must have at most 2 elements but instance has 3 elements]",
    ),
    ("uniqueItems", {"tags": ["a", "a"]}, "[array must not contain duplicate elements]"),
    (
        "items",
        {"tags": [1]},
        '[instance type (integer) does not match any allowed primitive type (allowed: ["string"])]',
    ),
    (
        "additionalProperties false",
        {"extra": 1, "more": 2},
        '[object instance has properties which are not allowed by the schema: ["extra","more"]]',
    ),
    ("format email", {"email": "nobody"}, '[string "nobody" is not a valid email address]'),
    (
        "format date-time",
        {"when": "yesterday"},
        '[string "yesterday" is invalid against requested date format',
    ),
    ("oneOf", {"code": 12}, "[instance failed to match exactly one schema (matched 2 out of 2)]"),
    ("anyOf", {"alias": 1}, "[instance failed to match at least one required schema among 2]"),
    ("not", {"plain": 1}, "[instance matched a schema which it should not have]"),
    (
        "minProperties",
        {"meta": {}},
        "[object has too few properties (found 0 but schema requires at least 1)]",
    ),
    (
        "maxProperties",
        {"meta": {"a": 1, "b": 2}},
        "[object has too many properties (found 2 but schema requires at most 1)]",
    ),
]


@pytest.mark.parametrize(("case", "extra", "expected"), MATRIX, ids=[case for case, _, _ in MATRIX])
def test_schema_matrix(case: str, extra: dict[str, Any], expected: str | None) -> None:
    product = model({"$ref": "#/components/schemas/Product"}, PRODUCT_DOCUMENT)
    if case == "required":
        refusal = product.check(b"{}")
        assert refusal is not None
        assert refusal.error == '[object has missing required properties (["name","price"])]'
        return
    refusal = product.check(orjson.dumps({**GOOD, **extra}))
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert refusal.error.startswith(expected), refusal.error


def test_every_error_is_listed_with_its_place_in_the_log_detail() -> None:
    product = model({"$ref": "#/components/schemas/Product"}, PRODUCT_DOCUMENT)
    refusal = product.check(orjson.dumps({"name": 5, "color": "pink", "owner": {}}))
    assert refusal is not None
    assert refusal.error == (
        '[object has missing required properties (["price"]), '
        'instance type (integer) does not match any allowed primitive type (allowed: ["string"]), '
        'instance value ("pink") not found in enum (possible values: ["red","blue"]), '
        'object has missing required properties (["id"])]'
    )
    assert "/owner: object has missing required properties" in refusal.detail
    assert refusal.detail.startswith('/: object has missing required properties (["price"])')


def test_bodies_that_are_not_json_objects() -> None:
    product = model({"$ref": "#/components/schemas/Product"}, PRODUCT_DOCUMENT)
    not_json = product.check(b"name=Lamp&price=3")
    assert not_json is not None
    assert not_json.error.startswith("[request body is not valid JSON: ")
    assert product.check(b"NaN") is not None
    assert product.check(b'"Lamp"') == (
        '[instance type (string) does not match any allowed primitive type (allowed: ["object"])]',
        '/: instance type (string) does not match any allowed primitive type (allowed: ["object"])',
    )
    # Valid JSON that orjson cannot hold (an integer beyond 64 bits) is still JSON.
    assert product.check(b'{"name": "Lamp", "price": 99999999999999999999999}') is not None
    assert product.check(b'{"name": "Lamp", "price": 1, "qty": 100000000000000000000000}') is None


def test_empty_body_is_checked_as_an_empty_object() -> None:
    assert model({"$ref": "#/components/schemas/Product"}, PRODUCT_DOCUMENT).check(b"") == (
        '[object has missing required properties (["name","price"])]',
        '/: object has missing required properties (["name","price"])',
    )
    assert model({"type": "object"}).check(b"") is None
    assert model({"type": "object"}).check(b"  \n") is None


def test_deeply_nested_bodies_are_refused_not_crashed() -> None:
    tree = model(
        {"$ref": "#/definitions/Node"},
        {"definitions": {"Node": {"type": "array", "items": {"$ref": "#/definitions/Node"}}}},
    )
    deep = b"[" * 1000 + b"]" * 1000
    refusal = tree.check(deep)
    assert refusal is not None  # orjson refuses more than 1024 levels; deeper recursion is refused as well
    assert tree.check(b"[[[]]]") is None


def test_nullable_const_and_newer_draft_bounds() -> None:
    assert model({"type": "string", "nullable": True}).check(b"null") is None
    assert model({"type": "string", "x-nullable": True}).check(b"null") is None
    assert model({"type": "string"}).check(b"null") is not None
    assert model({"enum": ["a"], "type": "string", "nullable": True}).check(b"null") is None
    assert model({"allOf": [{"type": "string"}], "nullable": True}).check(b"null") is None
    assert model({"const": "on"}).check(b'"off"') is not None
    assert model({"const": "on"}).check(b'"on"') is None
    # OpenAPI 3.1: the exclusive bound is a number.
    above_two = model({"type": "number", "exclusiveMinimum": 2})
    assert above_two.check(b"2") is not None
    assert above_two.check(b"2.5") is None
    assert model({"type": "number", "minimum": 5, "exclusiveMinimum": 2}).check(b"4") is not None
    # true/false schemas, and keywords draft 4 does not have (ignored, as AWS's draft 4 validator does).
    assert model({"properties": {"a": False}}).check(b'{"a": 1}') is not None
    assert model({"properties": {"a": True}}).check(b'{"a": 1}') is None
    assert model({"type": "array", "contains": {"type": "string"}}).check(b"[1]") is None
    assert model({"dependentRequired": {"a": ["b"]}}).check(b'{"a": 1}') == (
        '[property "a" of object has missing property dependencies (schema requires ["b"]; missing: ["b"])]',
        '/: property "a" of object has missing property dependencies (schema requires ["b"]; missing: ["b"])',
    )


def test_draft_4_whatever_the_schema_says() -> None:
    # Under draft 7, exclusiveMinimum: true would be invalid; the model is read as draft 4 all the same.
    positive = model(
        {"$schema": "http://json-schema.org/draft-07/schema#", "minimum": 0, "exclusiveMinimum": True}
    )
    assert positive.check(b"0") is not None
    assert positive.check(b"1") is None
    # An "id" keyword never moves $ref resolution elsewhere (nothing is fetched).
    assert (
        model({"id": "http://example.com/x", "properties": {"a": {"id": "y", "type": "string"}}}).check(
            b'{"a": "z"}'
        )
        is None
    )


# --- compiling: problems ------------------------------------------------------------------------------------


def test_unresolvable_and_remote_references_are_problems_with_their_paths() -> None:
    built = Built(
        openapi(
            {
                "/items": post(
                    {
                        "type": "object",
                        "properties": {
                            "owner": {"$ref": "#/components/schemas/Nobody"},
                            "remote": {"$ref": "https://example.com/schemas/x.json"},
                        },
                    }
                )
            },
            schemas={},
        )
    )
    where = "$.paths['/items'].post.requestBody.content['application/json'].schema.properties"
    assert built.problems == [
        (f"{where}.owner['$ref']", "'#/components/schemas/Nobody': nothing at that place in the definition"),
        (
            f"{where}.remote['$ref']",
            "'https://example.com/schemas/x.json': "
            "only references within the definition ('#/...') are supported",
        ),
    ]
    assert built.stages[("POST", "/items")] is None


def test_invalid_keyword_values_are_problems() -> None:
    built = Built(
        openapi(
            {"/items": post({"$ref": "#/components/schemas/Bad"})},
            schemas={
                "Bad": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "strng"},
                        "b": {"type": "string", "minLength": -1},
                        "c": {"type": "string", "pattern": "(unclosed"},
                        "d": {"enum": []},
                        "e": "string",
                    },
                    "required": "a",
                }
            },
        )
    )
    where = "$.components.schemas.Bad"
    problems = dict(built.problems)
    assert set(problems) == {
        f"{where}.properties.a.type",
        f"{where}.properties.b.minLength",
        f"{where}.properties.c.pattern",
        f"{where}.properties.d.enum",
        f"{where}.properties.e",
        f"{where}.required",
    }
    assert problems[f"{where}.properties.e"] == "a schema must be a mapping"
    assert problems[f"{where}.properties.b.minLength"] == "must be a whole number, 0 or more"


def test_a_reference_cycle_that_never_descends_is_a_problem_once() -> None:
    schemas = {
        "A": {"$ref": "#/components/schemas/B"},
        "B": {"allOf": [{"$ref": "#/components/schemas/A"}, {"type": "object"}]},
    }
    built = Built(
        openapi(
            {
                "/one": post({"$ref": "#/components/schemas/A"}),
                "/two": post({"type": "object", "properties": {"a": {"$ref": "#/components/schemas/B"}}}),
            },
            schemas=schemas,
        )
    )
    assert len(built.problems) == 1
    where, message = built.problems[0]
    assert where in ("$.components.schemas.A", "$.components.schemas.B")
    assert message.startswith("a $ref cycle that never descends into the body")
    assert "#/components/schemas/A -> #/components/schemas/B" in message or (
        "#/components/schemas/B -> #/components/schemas/A" in message
    )
    assert built.stages == {("POST", "/one"): None, ("POST", "/two"): None}


def test_a_self_reference_is_a_cycle_too() -> None:
    built = Built(
        openapi(
            {"/one": post({"$ref": "#/components/schemas/A"})},
            schemas={"A": {"$ref": "#/components/schemas/A"}},
        )
    )
    assert built.problems == [
        (
            "$.components.schemas.A",
            "a $ref cycle that never descends into the body, so validation would loop forever: "
            "#/components/schemas/A -> #/components/schemas/A",
        )
    ]


def test_a_schema_fastjsonschema_refuses_is_a_problem_at_the_body_schema() -> None:
    unsatisfiable = {"type": "object", "required": ["a"], "additionalProperties": False}
    built = Built(openapi({"/items": post(unsatisfiable)}))
    assert len(built.problems) == 1
    where, message = built.problems[0]
    assert where == "$.paths['/items'].post.requestBody.content['application/json'].schema"
    assert message.startswith("the schema cannot be compiled: ")
    assert "required but not allowed" in message


def test_yaml_dates_in_enums_match_the_strings_a_request_sends() -> None:
    day = model({"enum": [datetime.date(2024, 1, 31)]})
    assert day.check(b'"2024-01-31"') is None
    assert day.check(b'"2024-02-01"') == (
        '[instance value ("2024-02-01") not found in enum (possible values: ["2024-01-31"])]',
        '/: instance value ("2024-02-01") not found in enum (possible values: ["2024-01-31"])',
    )


def test_a_broken_model_used_by_many_methods_is_reported_once() -> None:
    schemas = {"Bad": {"type": "object", "properties": {"a": {"type": "strng"}}}}
    built = Built(
        openapi(
            {
                "/one": post({"$ref": "#/components/schemas/Bad"}),
                "/two": post({"$ref": "#/components/schemas/Bad"}),
            },
            schemas=schemas,
        )
    )
    assert [where for where, _ in built.problems] == ["$.components.schemas.Bad.properties.a.type"]


def test_one_model_is_compiled_once_for_every_method_using_it() -> None:
    schemas = {"Item": {"type": "object", "required": ["a"]}}
    built = Built(
        openapi(
            {
                "/one": post({"$ref": "#/components/schemas/Item"}),
                "/two": post({"$ref": "#/components/schemas/Item"}),
            },
            schemas=schemas,
        )
    )
    one = built.stage("/one").models["application/json"]
    two = built.stage("/two").models["application/json"]
    assert one.validate is two.validate


# --- the stage: bodies --------------------------------------------------------------------------------------


@pytest.fixture
def items() -> Built:
    return Built(
        openapi(
            {"/items": post({"$ref": "#/components/schemas/Item"})},
            schemas={
                "Item": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            },
        )
    )


async def test_a_valid_body_goes_on(items: Built) -> None:
    ctx = json_post({"name": "Lamp"})
    assert await answer(items.stage("/items"), ctx) is None
    assert ctx.validation_error is None


async def test_an_invalid_body_is_answered_400_invalid_request_body(
    items: Built, caplog: pytest.LogCaptureFixture
) -> None:
    stage = items.stage("/items")
    assert stage.needs_body
    ctx = json_post({"name": 1})
    with caplog.at_level(logging.INFO, logger="portway.validate"):
        response = await answer(stage, ctx)
    assert response is not None
    assert response.status == 400
    assert response.body == INVALID_BODY
    assert (b"x-amzn-errortype", b"BadRequestException") in response.headers
    assert ctx.validation_error == (
        '[instance type (integer) does not match any allowed primitive type (allowed: ["string"])]'
    )
    assert ctx.request_id in caplog.text
    assert "/name: instance type (integer)" in caplog.text


async def test_a_body_that_is_not_json(items: Built) -> None:
    ctx = json_post(b"<item/>")
    response = await answer(items.stage("/items"), ctx)
    assert response is not None
    assert response.body == INVALID_BODY
    assert ctx.validation_error is not None
    assert ctx.validation_error.startswith("[request body is not valid JSON")


async def test_an_empty_body_with_a_model_is_checked(items: Built) -> None:
    # AWS answers 400 to a GET with no body when the model requires properties (with or without Content-Type).
    for ctx in (context(), context(headers=[(b"content-type", b"application/json")])):
        response = await answer(items.stage("/items"), ctx)
        assert response is not None
        assert response.body == INVALID_BODY
        assert ctx.validation_error == '[object has missing required properties (["name"])]'


async def test_a_request_without_content_type_is_taken_as_json(items: Built) -> None:
    assert await answer(items.stage("/items"), context(body=b'{"name": 1}')) is not None
    assert await answer(items.stage("/items"), context(body=b'{"name": "x"}')) is None


async def test_the_content_type_is_matched_without_parameters_or_case(items: Built) -> None:
    ctx = json_post({"name": 1}, content_type=b"Application/JSON; charset=utf-8")
    assert await answer(items.stage("/items"), ctx) is not None


async def test_a_content_type_without_a_model_is_not_checked(items: Built) -> None:
    ctx = json_post(b"name=1", content_type=b"application/x-www-form-urlencoded")
    assert await answer(items.stage("/items"), ctx) is None
    assert ctx.validation_error is None


async def test_the_default_model_serves_other_content_types() -> None:
    operation = {
        "post": {
            "x-amazon-apigateway-integration": MOCK,
            "requestBody": {
                "content": {
                    "application/json": {"schema": {"type": "object", "required": ["json"]}},
                    "$default": {"schema": {"type": "object", "required": ["other"]}},
                }
            },
        }
    }
    stage = Built(openapi({"/items": operation})).stage("/items")
    assert await answer(stage, json_post({"json": 1})) is None
    assert await answer(stage, json_post({"json": 1}, content_type=b"text/plain")) is not None
    assert await answer(stage, json_post({"other": 1}, content_type=b"text/plain")) is None
    assert await answer(stage, json_post(b"plain words", content_type=b"text/plain")) is not None


async def test_http_apis_answer_with_their_own_table() -> None:
    document = openapi({"/items": post({"type": "object", "required": ["a"]})})
    stage = Built(document, table=HTTP_RESPONSES).stage("/items")
    response = await answer(stage, json_post({}))
    assert response is not None
    assert response.status == 400
    assert response.body == INVALID_BODY
    assert response.headers == [(b"content-type", b"application/json")]


async def test_swagger_2_body_parameters_and_definitions() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "petstore", "version": "1"},
        "x-amazon-apigateway-request-validators": VALIDATORS,
        "x-amazon-apigateway-request-validator": "body-only",
        "definitions": {
            "Pet": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "owner": {"$ref": "#/definitions/Person"}},
            },
            "Person": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
        },
        "paths": {
            "/pets": {
                "post": {
                    "parameters": [{"name": "pet", "in": "body", "schema": {"$ref": "#/definitions/Pet"}}],
                    "x-amazon-apigateway-integration": MOCK,
                }
            }
        },
    }
    built = Built(document)
    assert built.problems == []
    stage = built.stage("/pets")
    assert await answer(stage, json_post({"name": "Rex", "owner": {"id": 1}})) is None
    ctx = json_post({"name": "Rex", "owner": {"id": "one"}})
    assert await answer(stage, ctx) is not None
    assert ctx.validation_error == (
        '[instance type (string) does not match any allowed primitive type (allowed: ["integer"])]'
    )


def test_swagger_2_problems_name_the_body_parameter() -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "petstore", "version": "1"},
        "x-amazon-apigateway-request-validators": VALIDATORS,
        "x-amazon-apigateway-request-validator": "all",
        "paths": {
            "/pets": {
                "post": {
                    "parameters": [
                        {"name": "q", "in": "query"},
                        {"name": "pet", "in": "body", "schema": {"type": "objekt"}},
                    ],
                    "x-amazon-apigateway-integration": MOCK,
                }
            }
        },
    }
    built = Built(document)
    assert built.problems == [
        ("$.paths['/pets'].post.parameters[1].schema.type", built.problems[0][1]),
    ]


# --- the stage: parameters ----------------------------------------------------------------------------------

PARAMETERS = [
    {"name": "q2", "in": "query", "required": True},
    {"name": "q1", "in": "query", "required": True},
    {"name": "optional", "in": "query"},
    {"name": "X-Trace", "in": "header", "required": True},
    {"name": "Accept-Language", "in": "header", "required": True},
    {"name": "id", "in": "path", "required": True},
]


@pytest.fixture
def params() -> ValidateStage:
    return Built(openapi({"/items/{id}": post(parameters=PARAMETERS)})).stage("/items/{id}")


def full(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "resource": "/items/{id}",
        "headers": [(b"x-trace", b"t-1"), (b"accept-language", b"en")],
        "query": b"q1=a&q2=b",
        "path_parameters": {"id": "42"},
    }
    request.update(overrides)
    return request


async def test_all_required_parameters_present(params: ValidateStage) -> None:
    assert not params.needs_body
    assert await answer(params, context(**full())) is None


async def test_every_missing_parameter_is_named_headers_then_path_then_query(params: ValidateStage) -> None:
    ctx = context(**full(headers=[], query=b"", path_parameters={"id": " "}))
    response = await answer(params, ctx)
    assert response is not None
    assert response.status == 400
    message = "Missing required request parameters: [Accept-Language, X-Trace, id, q1, q2]"
    assert response.body == orjson.dumps({"message": message})
    assert (b"x-amzn-errortype", b"BadRequestException") in response.headers
    assert ctx.validation_error == message


@pytest.mark.parametrize(
    "query",
    [b"q2=b", b"q1=&q2=b", b"q1&q2=b", b"q1=%20&q2=b", b"q1=+&q2=b", b"q1=a&q2=b&q1=", b"Q1=a&q2=b"],
    ids=["absent", "empty", "no-equals", "encoded-space", "plus-space", "last-is-blank", "case-differs"],
)
async def test_a_blank_or_absent_query_parameter_is_missing(params: ValidateStage, query: bytes) -> None:
    response = await answer(params, context(**full(query=query)))
    assert response is not None
    assert response.body == b'{"message":"Missing required request parameters: [q1]"}'


async def test_query_names_are_percent_decoded(params: ValidateStage) -> None:
    assert await answer(params, context(**full(query=b"%71%31=a&q2=b"))) is None


async def test_headers_match_in_any_case_and_must_not_be_blank(params: ValidateStage) -> None:
    mixed = [(b"X-TRACE", b"t"), (b"Accept-Language", b"de")]  # a server that does not lower-case names
    assert await answer(params, context(**full(headers=mixed))) is None
    assert (
        await answer(params, context(**full(headers=[(b"x-trace", b"+"), (b"accept-language", b"%20")])))
        is None
    )
    blank = [(b"x-trace", b"   "), (b"accept-language", b"en")]
    response = await answer(params, context(**full(headers=blank)))
    assert response is not None
    assert response.body == b'{"message":"Missing required request parameters: [X-Trace]"}'


async def test_a_path_parameter_absent_from_the_route_is_always_missing() -> None:
    # As AWS: a required path parameter the resource does not have fails every request.
    stage = Built(
        openapi({"/items/{id}": post(parameters=[{"name": "issuer", "in": "path", "required": True}])})
    ).stage("/items/{id}")
    response = await answer(stage, context(resource="/items/{id}", path_parameters={"id": "1"}))
    assert response is not None
    assert response.body == b'{"message":"Missing required request parameters: [issuer]"}'


async def test_parameters_are_checked_before_the_body() -> None:
    stage = Built(
        openapi(
            {
                "/items": post(
                    {"type": "object", "required": ["a"]},
                    parameters=[{"name": "q", "in": "query", "required": True}],
                )
            }
        )
    ).stage("/items")
    response = await answer(stage, json_post({}))
    assert response is not None
    assert response.body == b'{"message":"Missing required request parameters: [q]"}'
    response = await answer(stage, json_post({}, query=b"q=1"))
    assert response is not None
    assert response.body == INVALID_BODY


async def test_body_only_and_parameters_only_validators() -> None:
    parameters = [{"name": "q", "in": "query", "required": True}]
    schema = {"type": "object", "required": ["a"]}
    built = Built(
        openapi(
            {
                "/body": post(
                    schema, parameters=parameters, **{"x-amazon-apigateway-request-validator": "body-only"}
                ),
                "/params": post(
                    schema, parameters=parameters, **{"x-amazon-apigateway-request-validator": "params-only"}
                ),
            }
        )
    )
    body_only, params_only = built.stage("/body"), built.stage("/params")
    assert body_only.needs_body
    assert not params_only.needs_body
    assert await answer(body_only, json_post({"a": 1})) is None  # q is not checked
    assert await answer(body_only, json_post({})) is not None
    assert await answer(params_only, json_post({}, query=b"q=1")) is None  # the body is not checked
    assert await answer(params_only, json_post({"a": 1})) is not None


def test_no_stage_when_the_validator_has_nothing_to_check() -> None:
    parameters = [{"name": "q", "in": "query", "required": False}]
    built = Built(
        openapi(
            {
                "/none": post({"type": "object"}, **{"x-amazon-apigateway-request-validator": "params-only"}),
                "/optional": post(parameters=parameters),
                "/no-model": post(**{"x-amazon-apigateway-request-validator": "body-only"}),
                "/checked": post({"type": "object"}),
            },
            default_validator="all",
        )
    )
    assert built.stages[("POST", "/none")] is None  # parameters only, and none is required
    assert built.stages[("POST", "/optional")] is None
    assert built.stages[("POST", "/no-model")] is None  # a body validator with no model: no error, no check
    assert isinstance(built.stages[("POST", "/checked")], ValidateStage)
    without = Built(openapi({"/items": post({"type": "object"})}, default_validator=None))
    assert without.stages[("POST", "/items")] is None
    assert built.problems == []


def test_the_message_format() -> None:
    assert missing_parameters_message(["x-header-param", "issuer", "qs1"]) == (
        "Missing required request parameters: [x-header-param, issuer, qs1]"
    )


async def test_a_stage_built_by_hand() -> None:
    stage = ValidateStage(models={"$default": model({"type": "array"})})
    assert stage.name == "validate"
    assert not stage.responds
    assert await answer(stage, json_post([1], content_type=b"application/vnd.api+json")) is None
    assert await answer(stage, json_post({})) is not None
    ok = Response(200, [], b"")
    assert await stage.on_response(context(), ok) is ok
