"""The response cache stage, driven through a real Route with a real RequestContext and real stores."""

from __future__ import annotations

import importlib.util
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest

from portway.gateway import Route
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import HTTP_RESPONSES, REST_RESPONSES, ResponseTable
from portway.stages.cache import (
    FAIL_WITH_403,
    MAX_ENTRY_BYTES,
    SUCCEED_WITH_RESPONSE_HEADER,
    SUCCEED_WITHOUT_RESPONSE_HEADER,
    UNAUTHORIZED_WARNING,
    CacheSettings,
    CacheStage,
    cache_key,
    decode_entry,
    encode_entry,
    key_parameter,
    parse_cache_key_parameters,
    settings_problems,
    unkeyed_path_parameters,
    wants_refresh,
)
from portway.state.memory import MemoryStore
from portway.state.store import Store
from portway.types import Headers, Message, Response
from tests.clock import ManualClock as Clock
from tests.flaky_store import FlakyStore

HAS_REDIS_STORE = importlib.util.find_spec("portway.state.redis") is not None
REDIS_URL = "redis://127.0.0.1:6379/0"

JSON = (b"content-type", b"application/json")
WARNING = (b"warning", b"199 Cache-control headers were ignored because the caller was unauthorized.")
REFRESH = (b"cache-control", b"max-age=0")


class CountingIntegration:
    """An integration that counts its calls and numbers its answers, so a cached answer is recognisable."""

    needs_body = False

    def __init__(
        self,
        status: int = 200,
        body: bytes | None = None,
        headers: Headers | None = None,
        stream: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else [JSON, (b"x-custom", b"abc")]
        self.stream = stream
        self.calls = 0

    async def __call__(self, ctx: RequestContext) -> Response:
        self.calls += 1
        body = self.body if self.body is not None else b'{"call": %d}' % self.calls
        if self.stream:
            return Response(self.status, list(self.headers), stream=_chunks(body))
        return Response(self.status, list(self.headers), body)

    def describe(self) -> str:
        return "counting integration"


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def make_ctx(
    method: str = "GET",
    path: str = "/items/1",
    *,
    resource: str = "/items/{id}",
    path_parameters: Mapping[str, str] | None = None,
    query: bytes = b"",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> RequestContext:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": f"/dev{path}",
        "raw_path": f"/dev{path}".encode(),
        "query_string": query,
        "headers": [(b"host", b"example.com"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    params = dict(path_parameters) if path_parameters is not None else {"id": path.rsplit("/", 1)[-1]}
    return RequestContext(scope, _receive, path, "dev", resource, params, {})


class Harness:
    """One cached route: its stage, its integration and the clock, and a way to send it requests."""

    def __init__(
        self,
        store: Store,
        settings: CacheSettings | None = None,
        integration: CountingIntegration | None = None,
        *,
        clock: Clock | None = None,
        table: ResponseTable = REST_RESPONSES,
        prefix: str = "cache:api:dev:",
    ) -> None:
        self.clock = clock or Clock()
        self.integration = integration or CountingIntegration()
        self.stage = CacheStage(settings or CacheSettings(), store, self.clock, prefix, table)
        self.route = Route("GET", "/items/{id}", self.integration, stages=(self.stage,))

    async def send(
        self, ctx: RequestContext | None = None, **request: Any
    ) -> tuple[Response, RequestContext]:
        ctx = ctx if ctx is not None else make_ctx(**request)
        response = await self.route.run(ctx)
        return response, ctx


@pytest.fixture(
    params=[
        "memory",
        pytest.param(
            "redis", marks=pytest.mark.skipif(not HAS_REDIS_STORE, reason="portway.state.redis not there yet")
        ),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from portway.state.factory import open_store

    redis_store = open_store(REDIS_URL, namespace=f"portway-test-cache-{uuid.uuid4().hex}")
    try:
        yield redis_store
    finally:
        await redis_store.cache_drop("")
        await redis_store.close()


# --- hits, misses, time to live (every store) ---------------------------------------------------------------


async def test_a_miss_calls_the_integration_and_the_next_request_is_a_hit(store: Store) -> None:
    harness = Harness(store)
    first, ctx = await harness.send()
    assert (first.status, first.body, ctx.cache_status) == (200, b'{"call": 1}', "miss")
    second, ctx = await harness.send()
    assert harness.integration.calls == 1
    assert ctx.cache_status == "hit"
    assert (second.status, second.headers, second.body) == (
        200,
        [JSON, (b"x-custom", b"abc")],
        b'{"call": 1}',
    )


async def test_a_hit_hands_out_headers_of_its_own(store: Store) -> None:
    harness = Harness(store)
    await harness.send()
    hit, _ = await harness.send()
    hit.headers.append((b"x-amzn-RequestId", b"added by the gateway"))  # what the gateway does after
    again, _ = await harness.send()
    assert again.headers == [JSON, (b"x-custom", b"abc")]


async def test_the_status_headers_and_body_come_back_as_stored(store: Store) -> None:
    headers: Headers = [(b"content-type", b"image/png"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    body = bytes(range(256)) * 4
    harness = Harness(store, integration=CountingIntegration(404, body, headers))
    await harness.send()
    hit, ctx = await harness.send()
    assert (ctx.cache_status, hit.status, hit.headers, hit.body) == ("hit", 404, headers, body)


async def test_an_entry_lives_for_its_ttl(store: Store) -> None:
    harness = Harness(store, CacheSettings(ttl_s=60))
    await harness.send()
    harness.clock.advance(59.5)
    _, ctx = await harness.send()
    assert ctx.cache_status == "hit"
    harness.clock.advance(1)
    expired, ctx = await harness.send()
    assert (ctx.cache_status, expired.body, harness.integration.calls) == ("miss", b'{"call": 2}', 2)
    harness.clock.advance(30)
    refetched, ctx = await harness.send()
    assert (ctx.cache_status, refetched.body) == ("hit", b'{"call": 2}')


async def test_the_default_ttl_is_300_seconds(store: Store) -> None:
    harness = Harness(store)
    await harness.send()
    harness.clock.advance(299)
    assert (await harness.send())[1].cache_status == "hit"
    harness.clock.advance(2)
    assert (await harness.send())[1].cache_status == "miss"


async def test_a_ttl_of_zero_caches_nothing(store: Store) -> None:
    harness = Harness(store, CacheSettings(ttl_s=0))
    await harness.send()
    _, ctx = await harness.send()
    assert (harness.integration.calls, ctx.cache_status) == (2, None)


# --- keys ---------------------------------------------------------------------------------------------------


async def test_query_key_parameters_pick_the_entry(store: Store) -> None:
    harness = Harness(store, CacheSettings(key_parameters=("method.request.querystring.type",)))
    admin, _ = await harness.send(query=b"type=admin&department=A")
    _, ctx = await harness.send(query=b"type=admin&department=B")  # an unlisted parameter: the same entry
    assert ctx.cache_status == "hit"
    _, ctx = await harness.send(query=b"department=C&type=admin")  # order in the query does not matter
    assert ctx.cache_status == "hit"
    regular, ctx = await harness.send(query=b"type=regular")
    assert (ctx.cache_status, regular.body) == ("miss", b'{"call": 2}')
    again, ctx = await harness.send(query=b"type=admin")
    assert (ctx.cache_status, again.body) == ("hit", admin.body)


async def test_an_absent_parameter_is_its_own_value(store: Store) -> None:
    harness = Harness(store, CacheSettings(key_parameters=("method.request.querystring.type",)))
    await harness.send(query=b"type=")
    _, ctx = await harness.send(query=b"")
    assert ctx.cache_status == "miss"
    _, ctx = await harness.send(query=b"other=1")
    assert ctx.cache_status == "hit"


async def test_header_key_parameters_pick_the_entry(store: Store) -> None:
    harness = Harness(store, CacheSettings(key_parameters=("method.request.header.Accept-Language",)))
    english, _ = await harness.send(headers=[(b"accept-language", b"en")])
    _, ctx = await harness.send(headers=[(b"accept-language", b"en"), (b"user-agent", b"other")])
    assert ctx.cache_status == "hit"
    french, ctx = await harness.send(headers=[(b"accept-language", b"fr")])
    assert (ctx.cache_status, french.body) == ("miss", b'{"call": 2}')
    _, ctx = await harness.send()
    assert ctx.cache_status == "miss"
    assert english.body == b'{"call": 1}'


async def test_the_order_of_key_parameters_in_a_definition_does_not_matter(store: Store) -> None:
    listed = ("method.request.querystring.type", "method.request.header.Accept")
    one = Harness(store, CacheSettings(key_parameters=listed))
    other = Harness(store, CacheSettings(key_parameters=listed[::-1]), clock=one.clock)
    request: dict[str, Any] = {"query": b"type=admin", "headers": [(b"accept", b"text/csv")]}
    await one.send(**request)
    hit, ctx = await other.send(**request)
    assert (ctx.cache_status, other.integration.calls, hit.body) == ("hit", 0, b'{"call": 1}')


async def test_path_parameters_count_only_when_listed(store: Store) -> None:
    unlisted = Harness(store, prefix="cache:unlisted:")
    await unlisted.send(path="/items/1")
    shared, ctx = await unlisted.send(path="/items/2")
    assert (ctx.cache_status, shared.body) == ("hit", b'{"call": 1}'), "API Gateway shares the entry too"
    listed = Harness(store, CacheSettings(key_parameters=("method.request.path.id",)), prefix="cache:listed:")
    await listed.send(path="/items/1")
    _, ctx = await listed.send(path="/items/2")
    assert ctx.cache_status == "miss"
    _, ctx = await listed.send(path="/items/1")
    assert ctx.cache_status == "hit"


async def test_routes_sharing_a_namespace_share_entries(store: Store) -> None:
    settings = CacheSettings(namespace="catalogue")
    one = Harness(store, settings)
    other = Harness(store, settings, clock=one.clock)
    await one.send(path="/items/1", resource="/items/{id}")
    _, ctx = await other.send(path="/products/1", resource="/products/{id}")
    assert (ctx.cache_status, other.integration.calls) == ("hit", 0)


async def test_routes_have_entries_of_their_own() -> None:
    store = MemoryStore()
    one, other = Harness(store), Harness(store)
    await one.send(path="/items/1", resource="/items/{id}")
    _, ctx = await other.send(path="/products/1", resource="/products/{id}")
    assert ctx.cache_status == "miss"


def test_cache_key_is_a_pure_function_of_the_listed_values() -> None:
    type_ = key_parameter("method.request.querystring.type")
    accept = key_parameter("method.request.header.accept")

    def key(query: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = (), *params: Any) -> str:
        chosen = params or (type_, accept)
        return cache_key(
            "p:", "/items", "GET", chosen, path_parameters={}, query_string=query, headers=headers
        )

    base = key(b"type=a&x=1", [(b"accept", b"json")])
    assert base.startswith("p:")
    assert len(base) == 2 + 32
    assert base == key(b"x=2&type=a", [(b"accept", b"json"), (b"user-agent", b"u")])
    assert base == key(b"type=a", [(b"accept", b"json")], accept, type_)
    assert base == key(b"ty%70e=a", [(b"accept", b"json")]), "names are percent-decoded"
    assert base != key(b"type=b", [(b"accept", b"json")])
    assert base != key(b"type=a", [(b"accept", b"xml")])
    head = cache_key(
        "p:",
        "/items",
        "HEAD",
        (type_, accept),
        path_parameters={},
        query_string=b"type=a",
        headers=[(b"accept", b"json")],
    )
    assert base != head


def test_cache_key_values_cannot_run_into_each_other() -> None:
    a, b = key_parameter("method.request.querystring.a"), key_parameter("method.request.querystring.b")

    def key(query: bytes) -> str:
        return cache_key("", "/", "GET", (a, b), path_parameters={}, query_string=query, headers=())

    assert key(b"a=x&b=") != key(b"a=&b=x")
    assert key(b"a=1:x&b=") != key(b"a=1&b=x")
    assert key(b"a=-") != key(b"")


def test_repeated_values_count_last_unless_multivalue() -> None:
    single = (key_parameter("method.request.querystring.t"),)
    multi = (key_parameter("method.request.multivaluequerystring.t"),)

    def key(params: Any, query: bytes) -> str:
        return cache_key("", "/", "GET", params, path_parameters={}, query_string=query, headers=())

    assert key(single, b"t=a&t=b") == key(single, b"t=b")
    assert key(multi, b"t=a&t=b") != key(multi, b"t=b")
    assert key(multi, b"t=a&t=b") != key(multi, b"t=b&t=a")


def test_unkeyed_path_parameters_names_what_a_definition_forgot() -> None:
    assert unkeyed_path_parameters("/items/{id}", []) == ("id",)
    assert unkeyed_path_parameters("/items/{id}", ["method.request.path.id"]) == ()
    assert unkeyed_path_parameters("/{proxy+}", ["method.request.querystring.q"]) == ("proxy",)
    assert unkeyed_path_parameters("/items", []) == ()


# --- what is cached -----------------------------------------------------------------------------------------


async def test_only_get_is_cached_by_default(store: Store) -> None:
    harness = Harness(store)
    await harness.send(method="POST")
    _, ctx = await harness.send(method="POST")
    assert (harness.integration.calls, ctx.cache_status) == (2, None)


async def test_other_methods_are_cached_when_the_stage_is_built_for_them(store: Store) -> None:
    harness = Harness(store, CacheSettings(methods=frozenset({"GET", "POST"})))
    await harness.send(method="POST")
    _, ctx = await harness.send(method="POST")
    assert (harness.integration.calls, ctx.cache_status) == (1, "hit")
    _, ctx = await harness.send(method="GET")
    assert ctx.cache_status == "miss", "each method has entries of its own"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_not_cached(store: Store, status: int) -> None:
    harness = Harness(store, integration=CountingIntegration(status))
    await harness.send()
    again, ctx = await harness.send()
    assert (harness.integration.calls, again.status, ctx.cache_status) == (2, status, "miss")


@pytest.mark.parametrize("status", [201, 204, 301, 400, 404, 429])
async def test_other_statuses_are_cached_as_api_gateway_caches_them(store: Store, status: int) -> None:
    harness = Harness(store, integration=CountingIntegration(status))
    await harness.send()
    again, ctx = await harness.send()
    assert (harness.integration.calls, again.status, ctx.cache_status) == (1, status, "hit")


async def test_server_errors_are_cached_when_asked() -> None:
    harness = Harness(MemoryStore(), CacheSettings(cache_server_errors=True), CountingIntegration(500))
    await harness.send()
    _, ctx = await harness.send()
    assert (harness.integration.calls, ctx.cache_status) == (1, "hit")


async def test_a_body_over_the_limit_is_not_cached() -> None:
    harness = Harness(MemoryStore(), integration=CountingIntegration(body=b"x" * (MAX_ENTRY_BYTES + 1)))
    await harness.send()
    _, ctx = await harness.send()
    assert (harness.integration.calls, ctx.cache_status) == (2, "miss")


async def test_a_body_at_the_limit_is_cached(store: Store) -> None:
    harness = Harness(store, integration=CountingIntegration(body=b"x" * MAX_ENTRY_BYTES))
    await harness.send()
    hit, ctx = await harness.send()
    assert (harness.integration.calls, ctx.cache_status, len(hit.body)) == (1, "hit", MAX_ENTRY_BYTES)


async def test_a_streamed_response_is_passed_through_and_not_cached() -> None:
    harness = Harness(MemoryStore(), integration=CountingIntegration(stream=True))
    first, _ = await harness.send()
    assert first.stream is not None
    assert [chunk async for chunk in first.stream] == [b'{"call": 1}']
    second, ctx = await harness.send()
    assert (harness.integration.calls, ctx.cache_status, second.stream is not None) == (2, "miss", True)


async def test_an_unreadable_entry_is_a_miss_and_is_replaced() -> None:
    store = MemoryStore()
    harness = Harness(store)
    ctx = make_ctx()
    await store.cache_put(harness.stage.key(ctx), b"\x09not an entry", 300, harness.clock())
    response, ctx = await harness.send(ctx)
    assert (ctx.cache_status, response.body, harness.integration.calls) == ("miss", b'{"call": 1}', 1)
    _, ctx = await harness.send()
    assert ctx.cache_status == "hit"


# --- Cache-Control: max-age=0 -------------------------------------------------------------------------------


async def test_an_authorized_refresh_refetches_and_replaces_the_entry(store: Store) -> None:
    harness = Harness(store)
    await harness.send()
    ctx = make_ctx(headers=[REFRESH])
    ctx.can_invalidate_cache = True
    fresh, ctx = await harness.send(ctx)
    assert (fresh.body, ctx.cache_status, harness.integration.calls) == (b'{"call": 2}', "miss", 2)
    assert WARNING not in fresh.headers
    hit, ctx = await harness.send()
    assert (hit.body, ctx.cache_status) == (b'{"call": 2}', "hit")


async def test_anyone_may_refresh_when_no_authorization_is_required(store: Store) -> None:
    harness = Harness(store, CacheSettings(require_authorization=False, unauthorized_strategy=FAIL_WITH_403))
    await harness.send()
    fresh, _ = await harness.send(headers=[(b"cache-control", b"no-cache, Max-Age=0")])
    assert (fresh.status, fresh.body) == (200, b'{"call": 2}')
    assert (await harness.send())[0].body == b'{"call": 2}'


async def test_an_unauthorized_refresh_fails_with_403_when_so_configured(store: Store) -> None:
    harness = Harness(store, CacheSettings(unauthorized_strategy=FAIL_WITH_403))
    await harness.send()
    refused, ctx = await harness.send(headers=[REFRESH])
    assert refused.status == 403
    assert refused.headers == [JSON, (b"x-amzn-errortype", b"ForbiddenException")]
    assert refused.body == b'{"message":"Forbidden"}'
    assert (harness.integration.calls, ctx.cache_status) == (1, None)
    hit, ctx = await harness.send()
    assert (hit.body, ctx.cache_status) == (b'{"call": 1}', "hit"), "the entry is untouched"


async def test_an_http_api_refuses_without_an_error_type_header() -> None:
    harness = Harness(MemoryStore(), CacheSettings(unauthorized_strategy=FAIL_WITH_403), table=HTTP_RESPONSES)
    refused, _ = await harness.send(headers=[REFRESH])
    assert (refused.status, refused.headers, refused.body) == (403, [JSON], b'{"message":"Forbidden"}')


async def test_an_unauthorized_refresh_is_served_from_the_cache_with_a_warning(store: Store) -> None:
    harness = Harness(store, CacheSettings(unauthorized_strategy=SUCCEED_WITH_RESPONSE_HEADER))
    await harness.send()
    cached, ctx = await harness.send(headers=[REFRESH])
    assert (cached.status, cached.body, ctx.cache_status) == (200, b'{"call": 1}', "hit")
    assert cached.headers == [JSON, (b"x-custom", b"abc"), WARNING]
    assert harness.integration.calls == 1


async def test_the_warning_is_the_default_and_also_on_a_miss_but_never_stored(store: Store) -> None:
    harness = Harness(store)
    fetched, ctx = await harness.send(headers=[REFRESH])
    assert (fetched.body, ctx.cache_status) == (b'{"call": 1}', "miss")
    assert fetched.headers == [JSON, (b"x-custom", b"abc"), WARNING]
    hit, ctx = await harness.send()
    assert (hit.headers, ctx.cache_status) == ([JSON, (b"x-custom", b"abc")], "hit")


async def test_an_unauthorized_refresh_is_served_from_the_cache_silently(store: Store) -> None:
    harness = Harness(store, CacheSettings(unauthorized_strategy=SUCCEED_WITHOUT_RESPONSE_HEADER))
    await harness.send()
    cached, ctx = await harness.send(headers=[REFRESH])
    assert (cached.headers, cached.body, ctx.cache_status) == (
        [JSON, (b"x-custom", b"abc")],
        b'{"call": 1}',
        "hit",
    )
    assert harness.integration.calls == 1


def test_which_cache_control_values_ask_for_a_refresh() -> None:
    def asks(*values: bytes) -> bool:
        return wants_refresh([(b"cache-control", value) for value in values])

    assert asks(b"max-age=0")
    assert asks(b"no-store, Max-Age=0")
    assert asks(b'max-age="0"')
    assert asks(b"max-age=00")
    assert asks(b"public", b"max-age=0")
    assert not asks(b"max-age=60")
    assert not asks(b"no-cache")
    assert not asks(b"max-age=")
    assert not wants_refresh([(b"x-cache-control", b"max-age=0")])


# --- store failures -----------------------------------------------------------------------------------------


async def test_requests_are_served_while_the_store_is_down(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(down=True)
    harness = Harness(store)
    with caplog.at_level(logging.WARNING, logger="portway.cache"):
        for call in range(1, 6):
            response, ctx = await harness.send()
            assert (response.status, response.body, ctx.cache_status) == (200, b'{"call": %d}' % call, "miss")
    assert [record.levelname for record in caplog.records] == ["ERROR"], "once per outage, not per request"
    assert "unavailable" in caplog.records[0].getMessage()


async def test_the_cache_works_again_once_the_store_is_back(caplog: pytest.LogCaptureFixture) -> None:
    store = FlakyStore(down=True)
    harness = Harness(store)
    with caplog.at_level(logging.WARNING, logger="portway.cache"):
        await harness.send()
        store.down = False
        await harness.send()
        hit, ctx = await harness.send()
    assert (ctx.cache_status, hit.body, harness.integration.calls) == ("hit", b'{"call": 2}', 2)
    assert [record.levelname for record in caplog.records] == ["ERROR", "WARNING"]
    assert "back" in caplog.records[1].getMessage()


async def test_a_failed_write_is_skipped() -> None:
    store = FlakyStore()
    harness = Harness(store)
    await harness.send()
    store.down = True
    fresh_ctx = make_ctx(headers=[REFRESH])
    fresh_ctx.can_invalidate_cache = True
    response, _ = await harness.send(fresh_ctx)  # the lookup is skipped, the write fails
    assert (response.status, response.body) == (200, b'{"call": 2}')
    store.down = False
    hit, _ = await harness.send()
    assert hit.body == b'{"call": 1}', "the old entry stayed"


# --- settings and entries -----------------------------------------------------------------------------------


def test_cache_key_parameters_are_checked_with_their_json_paths() -> None:
    where = "$.paths['/items'].get.x-amazon-apigateway-integration.cacheKeyParameters"
    found, problems = parse_cache_key_parameters(
        [
            "method.request.querystring.type",
            "method.request.header.Accept",
            "method.request.header.accept",
            "method.request.body.name",
            "querystring.type",
            7,
            "method.request.path.",
        ],
        where,
    )
    assert found == ("method.request.querystring.type", "method.request.header.accept")
    assert [path for path, _ in problems] == [f"{where}[{i}]" for i in (2, 3, 4, 5, 6)]
    assert problems[0][1] == "'method.request.header.accept' is listed twice"
    assert problems[1][1].startswith("'method.request.body.name': expected method.request.querystring.NAME")
    assert problems[3][1] == "must be a string, not int"
    assert parse_cache_key_parameters("method.request.querystring.type", "$.k")[1][0][0] == "$.k"
    assert parse_cache_key_parameters(None, "$.k") == ((), [])


def test_integration_parameters_resolve_through_the_mapping() -> None:
    mapping = {
        "integration.request.querystring.page": "method.request.querystring.p",
        "integration.request.header.X-Fixed": "'constant'",
        "integration.request.header.X-Id": "context.requestId",
    }
    found, problems = parse_cache_key_parameters(
        [
            "integration.request.querystring.page",
            "integration.request.header.X-Fixed",
            "integration.request.header.X-Id",
            "integration.request.header.X-Unmapped",
        ],
        "$.k",
        mapping,
    )
    assert found == ("method.request.querystring.p",)
    assert [path for path, _ in problems] == ["$.k[2]", "$.k[3]"]


def test_settings_are_checked_before_a_stage_is_built() -> None:
    assert settings_problems(CacheSettings(), "$.s") == []
    problems = settings_problems(
        CacheSettings(ttl_s=3601, unauthorized_strategy="IGNORE", key_parameters=("nope",)), "$.s"
    )
    assert [path for path, _ in problems] == [
        "$.s.cacheTtlInSeconds",
        "$.s.unauthorizedCacheControlHeaderStrategy",
        "$.s.cacheKeyParameters[0]",
    ]
    with pytest.raises(ValueError, match="cacheTtlInSeconds"):
        CacheStage(CacheSettings(ttl_s=-1), MemoryStore())


def test_entries_round_trip_and_garbage_is_refused() -> None:
    headers: Headers = [(b"content-type", b"text/plain"), (b"x-empty", b"")]
    entry = encode_entry(418, headers, b"teapot")
    decoded = decode_entry(entry)
    assert decoded is not None
    assert (decoded.status, decoded.headers, decoded.body, decoded.stream) == (418, headers, b"teapot", None)
    empty = decode_entry(encode_entry(204, [], b""))
    assert empty is not None
    assert (empty.status, empty.headers, empty.body) == (204, [], b"")
    assert decode_entry(b"") is None
    assert decode_entry(b"\x02" + entry[1:]) is None, "another format version"
    assert decode_entry(entry[:12]) is None, "truncated inside a header"


def test_the_warning_header_is_the_reported_one() -> None:
    assert UNAUTHORIZED_WARNING == WARNING
