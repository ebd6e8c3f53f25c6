"""Payload compression: the Accept-Encoding negotiation as a table, the stage on real request contexts, and
the whole path over sockets (client → gateway → HTTP upstream and back), decoded by httpx."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import brotli
import httpx
import orjson
import pytest
import zstandard

from portway.config.model import ApiDefinition
from portway.gateway import Gateway, Route
from portway.integrations.events import ApiInfo
from portway.integrations.http_proxy import HttpProxyIntegration, UpstreamPools
from portway.pipeline.context import MAX_BODY_BYTES, RequestContext
from portway.pipeline.responses import HTTP_RESPONSES
from portway.routing import Router
from portway.stages.compress import (
    AVAILABLE_CODINGS,
    DECODABLE_CODINGS,
    MAX_MINIMUM_COMPRESSION_SIZE,
    CompressionStage,
    negotiate,
)
from portway.types import Headers, Message, Receive, Response, Scope, Send
from tests.conftest import run_asgi
from tests.e2e.upstream import upstream_app

ALL = frozenset({"zstd", "br", "gzip", "deflate"})
AWS = frozenset({"gzip", "deflate"})
JSON = (b"content-type", b"application/json")
BODY = orjson.dumps(
    [{"id": i, "name": f"product {i}", "price": i * 1.25, "tags": ["a", "b"]} for i in range(40)]
)


def test_every_coding_is_available_here() -> None:
    # brotli and zstandard are test dependencies: every branch below runs.
    assert AVAILABLE_CODINGS == ALL
    assert ALL | {"x-gzip"} == DECODABLE_CODINGS


def test_without_the_optional_libraries() -> None:
    # brotli and zstandard are optional: blocked from importing, gzip and deflate still work.
    script = """
import gzip, sys
sys.modules["brotli"] = None
sys.modules["zstandard"] = None
from portway.stages.compress import AVAILABLE_CODINGS, DECODABLE_CODINGS, CompressionStage, negotiate
assert AVAILABLE_CODINGS == {"gzip", "deflate"}, AVAILABLE_CODINGS
assert DECODABLE_CODINGS == {"gzip", "x-gzip", "deflate"}, DECODABLE_CODINGS
assert negotiate("br, zstd, gzip;q=0.5", AVAILABLE_CODINGS) == "gzip"
try:
    CompressionStage(0, codings=["br"])
except ValueError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "compression codings br are not available (available: gzip, deflate)\n"


# --- negotiation -----------------------------------------------------------------------------------------

NEGOTIATION = [
    # (Accept-Encoding, codings on offer, expected)
    ("", ALL, None),
    ("gzip", ALL, "gzip"),
    ("GZIP", ALL, "gzip"),
    ("x-gzip", ALL, "gzip"),
    (" gzip , deflate ", ALL, "gzip"),
    ("deflate", ALL, "deflate"),
    ("deflate, gzip", ALL, "gzip"),  # a tie: the server's order, not the client's
    ("gzip, deflate, br", ALL, "br"),
    ("gzip, deflate, br, zstd", ALL, "zstd"),
    ("zstd;q=0.5, br;q=0.5, gzip;q=0.5", ALL, "zstd"),
    ("br;q=0.9, gzip", ALL, "gzip"),
    ("gzip; q=0.8 , br ; q=0.9", ALL, "br"),
    ("gzip;Q=0.5, deflate;q=0.4", ALL, "gzip"),
    ("gzip;q=0.001", ALL, "gzip"),
    ("gzip;q=0", ALL, None),
    ("gzip;q=0.000, deflate", ALL, "deflate"),
    ("gzip, gzip;q=0", ALL, "gzip"),  # the first mention counts
    ("gzip;q=0, gzip", ALL, None),
    ("identity", ALL, None),
    ("identity;q=0", ALL, None),  # nothing named that we can send: identity it is, refused or not
    ("gzip;q=0.5, identity", ALL, None),  # identity preferred
    ("gzip, identity", ALL, "gzip"),  # a tie goes to compression
    ("gzip;q=0.5, identity;q=0.5", ALL, "gzip"),
    ("*", ALL, "zstd"),
    ("*;q=0", ALL, None),
    ("*, gzip;q=0.5", ALL, "zstd"),
    ("*;q=0.1, gzip;q=0", AWS, "deflate"),
    ("*;q=0.5, deflate;q=0.6", AWS, "deflate"),
    ("*;q=0.5, gzip;q=0.4", AWS, "deflate"),
    ("compress", ALL, None),
    ("compress, gzip", ALL, "gzip"),
    ("br", AWS, None),
    (
        "br, gzip;q=0.8",
        AWS,
        "gzip",
    ),  # AWS would compress nothing here (its best-ranked coding is not its own)
    ("gzip;level=9", ALL, "gzip"),  # parameters other than q are ignored
    # Malformed elements are ignored, never fatal:
    ("gzip;q=abc, deflate", ALL, "deflate"),
    ("gzip;q=2, deflate", ALL, "deflate"),
    ("gzip;q=-1", ALL, None),
    ("gzip;q=nan", ALL, None),
    ("gzip;q=", ALL, None),
    (",,;;, gzip", ALL, "gzip"),
    (";q=1", ALL, None),
    ("\x00\xff", ALL, None),
    ("gzip", frozenset(), None),
    ("*", frozenset(), None),
]


@pytest.mark.parametrize(("accept", "available", "expected"), NEGOTIATION)
def test_negotiate(accept: str, available: frozenset[str], expected: str | None) -> None:
    assert negotiate(accept, available) == expected


@pytest.mark.parametrize(
    ("accept", "expected"),
    [("*", None), ("*;q=1, gzip;q=0.5", "gzip"), ("*, gzip;q=0", None), ("deflate, *", "deflate")],
)
def test_negotiate_without_wildcard_compresses_only_for_named_codings(
    accept: str, expected: str | None
) -> None:
    assert negotiate(accept, ALL, wildcard=False) == expected


# --- helpers: a real RequestContext from an ASGI scope -----------------------------------------------------


def context(
    headers: Headers, body: bytes = b"", *, method: str = "POST", chunks: int = 1
) -> tuple[RequestContext, Scope]:
    size = max(1, -(-len(body) // chunks))
    parts = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope: Scope = {
        "type": "http",
        "method": method,
        "path": "/dev/items",
        "raw_path": b"/dev/items",
        "query_string": b"",
        "headers": headers,
    }
    return RequestContext(scope, receive, "/items", "dev", "/items", {}, {}), scope


def json_response(body: bytes = BODY, *extra: tuple[bytes, bytes], status: int = 200) -> Response:
    return Response(status, [JSON, *extra], body)


async def respond(
    stage: CompressionStage, response: Response, accept: bytes | None = b"gzip", *, method: str = "GET"
) -> Response:
    headers = [(b"host", b"api.example.com")]
    if accept is not None:
        headers.append((b"accept-encoding", accept))
    ctx, _ = context(headers, method=method)
    return await stage.on_response(ctx, response)


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


DECODE = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
    "zstd": unzstd,
}


# --- responses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", sorted(ALL))
async def test_each_coding_round_trips_with_exact_headers(coding: str) -> None:
    stage = CompressionStage(0)
    response = json_response(BODY, (b"Content-Length", b"%d" % len(BODY)), (b"x-custom", b"1"))
    out = await respond(stage, response, coding.encode())
    assert out.status == 200
    assert out.headers == [
        JSON,
        (b"x-custom", b"1"),
        (b"content-encoding", coding.encode()),
        (b"vary", b"Accept-Encoding"),
    ]
    assert DECODE[coding](out.body) == BODY
    assert len(out.body) < len(BODY)


@pytest.mark.parametrize(
    ("size", "compressed"),
    [(999, False), (1000, True), (1001, True)],  # AWS: compressed when the payload is >= the minimum
)
async def test_threshold_is_inclusive(size: int, compressed: bool) -> None:
    stage = CompressionStage(1000)
    body = b"x" * size
    response = json_response(body)
    out = await respond(stage, response)
    if compressed:
        assert gzip.decompress(out.body) == body
        assert (b"content-encoding", b"gzip") in out.headers
    else:
        assert out is response
        assert out.headers == [JSON]


async def test_minimum_zero_compresses_one_byte_but_never_an_empty_body() -> None:
    stage = CompressionStage(0)
    assert gzip.decompress((await respond(stage, json_response(b"1"))).body) == b"1"
    empty = json_response(b"")
    assert await respond(stage, empty) is empty


@pytest.mark.parametrize(
    "accept",
    [None, b"", b"identity", b"*", b"gzip;q=0", b"compress", b"gzip;q=0.5, identity"],
)
async def test_nothing_acceptable_leaves_the_response_alone(accept: bytes | None) -> None:
    response = json_response()
    assert await respond(CompressionStage(0), response, accept) is response
    assert response.headers == [JSON]


@pytest.mark.parametrize(
    "header",
    [
        (b"Content-Encoding", b"gzip"),  # compressed already: AWS passes it on as it is
        (b"content-encoding", b"identity"),
        (b"Content-Range", b"bytes 0-99/1000"),
        (b"Cache-Control", b"public, No-Transform"),
    ],
)
async def test_responses_that_must_not_be_transformed(header: tuple[bytes, bytes]) -> None:
    response = json_response(BODY, header)
    assert await respond(CompressionStage(0), response) is response
    assert response.headers == [JSON, header]


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses(status: int) -> None:
    response = json_response(BODY, status=status)
    assert await respond(CompressionStage(0), response) is response


async def test_head_is_not_compressed() -> None:
    response = json_response()
    assert await respond(CompressionStage(0), response, method="HEAD") is response


async def test_off_compresses_nothing() -> None:
    response = json_response()
    assert await respond(CompressionStage(None), response) is response


async def test_vary_and_etag() -> None:
    stage = CompressionStage(0)
    out = await respond(stage, json_response(BODY, (b"ETag", b'"abc"'), (b"Vary", b"Origin")))
    assert out.headers == [
        JSON,
        (b"ETag", b'W/"abc"'),
        (b"Vary", b"Origin"),
        (b"content-encoding", b"gzip"),
        (b"vary", b"Accept-Encoding"),
    ]
    out = await respond(
        stage, json_response(BODY, (b"etag", b'W/"x"'), (b"vary", b"origin, accept-encoding"))
    )
    assert out.headers == [
        JSON,
        (b"etag", b'W/"x"'),
        (b"vary", b"origin, accept-encoding"),
        (b"content-encoding", b"gzip"),
    ]
    out = await respond(stage, json_response(BODY, (b"vary", b"*")))
    assert out.headers == [JSON, (b"vary", b"*"), (b"content-encoding", b"gzip")]


async def test_aws_codings_only() -> None:
    stage = CompressionStage(0, codings=("gzip", "deflate"))
    response = json_response()
    assert await respond(stage, response, b"br, zstd") is response
    assert (await respond(stage, json_response(), b"br, zstd, deflate")).headers[-2] == (
        b"content-encoding",
        b"deflate",
    )


async def test_accept_encoding_over_several_lines() -> None:
    ctx, _ = context([(b"accept-encoding", b"identity;q=0.5"), (b"accept-encoding", b"deflate")])
    out = await CompressionStage(0).on_response(ctx, json_response())
    assert zlib.decompress(out.body) == BODY


async def test_big_bodies_are_compressed_off_the_event_loop() -> None:
    body = os.urandom(600_000).hex().encode()  # 1.2 MB: over the in-loop limit
    out = await respond(CompressionStage(0), json_response(body), b"zstd")
    assert unzstd(out.body) == body


async def test_choices_are_cached_per_accept_value() -> None:
    stage = CompressionStage(0)
    for _ in range(3):
        await respond(stage, json_response(), b"gzip, br")
    assert stage._choices == {b"gzip, br": stage._choices[b"gzip, br"]}
    assert stage._choices[b"gzip, br"] is not None
    assert stage._choices[b"gzip, br"].name == "br"


def test_configuration_is_checked() -> None:
    CompressionStage(MAX_MINIMUM_COMPRESSION_SIZE)
    with pytest.raises(ValueError, match="outside"):
        CompressionStage(MAX_MINIMUM_COMPRESSION_SIZE + 1)
    with pytest.raises(ValueError, match="outside"):
        CompressionStage(-1)
    with pytest.raises(ValueError, match="lzma are not available"):
        CompressionStage(0, codings=("gzip", "lzma"))


# --- streamed responses ------------------------------------------------------------------------------------


class Source:
    """An upstream body as the HTTP proxy relays it; remembers whether it was closed."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            for chunk in self.chunks:
                await asyncio.sleep(0)
                yield chunk
        finally:
            self.closed = True


async def collect(stream: AsyncIterator[bytes] | None) -> list[bytes]:
    assert stream is not None
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("coding", sorted(ALL))
async def test_streams_round_trip(coding: str) -> None:
    chunks = [b'{"event": %d, "data": "%s"}\n' % (i, b"x" * 100) for i in range(20)]
    source = Source(chunks)
    response = Response(200, [(b"Content-Type", b"text/event-stream")], stream=source.stream())
    out = await respond(CompressionStage(1000), response, coding.encode())
    assert out.headers == [
        (b"Content-Type", b"text/event-stream"),
        (b"content-encoding", coding.encode()),
        (b"vary", b"Accept-Encoding"),
    ]
    parts = await collect(out.stream)
    assert DECODE[coding](b"".join(parts)) == b"".join(chunks)
    assert source.closed


async def test_every_stream_chunk_is_flushed_through() -> None:
    # A slow stream (server-sent events) must not wait for the compressor to fill a block.
    source = Source([b"data: one\n\n", b"data: two\n\n"])
    out = await respond(CompressionStage(0), Response(200, [], stream=source.stream()))
    assert out.stream is not None
    decoder = zlib.decompressobj(31)
    assert decoder.decompress(await anext(out.stream)) == b"data: one\n\n"
    assert decoder.decompress(await anext(out.stream)) == b"data: two\n\n"
    assert decoder.decompress(await anext(out.stream)) == b""
    assert decoder.eof
    await out.stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("length", "compressed"), [(b"999", False), (b"1000", True), (None, True)])
async def test_stream_threshold_goes_by_the_upstream_length(length: bytes | None, compressed: bool) -> None:
    body = b"y" * (int(length) if length else 10)
    headers: Headers = [(b"Content-Type", b"text/plain")]
    if length is not None:
        headers.append((b"Content-Length", length))
    response = Response(200, headers, stream=Source([body]).stream())
    out = await respond(CompressionStage(1000), response)
    if compressed:
        assert out.headers == [
            (b"Content-Type", b"text/plain"),
            (b"content-encoding", b"gzip"),
            (b"vary", b"Accept-Encoding"),
        ]
        assert gzip.decompress(b"".join(await collect(out.stream))) == body
    else:
        assert out is response
        assert b"".join(await collect(out.stream)) == body


async def test_empty_stream_with_zero_length_is_left_alone() -> None:
    response = Response(200, [(b"content-length", b"0")], stream=Source([]).stream())
    assert await respond(CompressionStage(0), response) is response
    await collect(response.stream)


async def test_closing_the_compressed_stream_closes_the_upstream() -> None:
    source = Source([b"a" * 100] * 10)
    out = await respond(CompressionStage(0), Response(200, [], stream=source.stream()))
    assert out.stream is not None
    await anext(out.stream)
    assert not source.closed
    await out.stream.aclose()  # type: ignore[attr-defined]
    assert source.closed


# --- requests ----------------------------------------------------------------------------------------------

PAYLOAD = orjson.dumps({"type": "dog", "price": 249.99, "notes": "good boy " * 50})


def encode(coding: str, data: bytes) -> bytes:
    if coding in ("gzip", "x-gzip"):
        return gzip.compress(data)
    if coding == "deflate":
        return zlib.compress(data)
    if coding == "br":
        return bytes(brotli.compress(data))
    assert coding == "zstd"
    return zstandard.ZstdCompressor().compress(data)


def request_headers(encoding: bytes, body: bytes) -> Headers:
    return [
        (b"host", b"api.example.com"),
        (b"content-type", b"application/json"),
        (b"content-encoding", encoding),
        (b"content-length", b"%d" % len(body)),
        (b"accept", b"*/*"),
    ]


async def decode(
    encoding: bytes, body: bytes, *, table: bool = False
) -> tuple[Response | None, RequestContext]:
    headers = request_headers(encoding, body)
    ctx, scope = context(headers, body, chunks=3)
    stage = CompressionStage(None, HTTP_RESPONSES) if table else CompressionStage(0)
    answer = await stage.on_request(ctx)
    assert scope["headers"] == request_headers(encoding, body)  # the client's headers stay as they came
    return answer, ctx


@pytest.mark.parametrize("coding", sorted(DECODABLE_CODINGS))
async def test_request_bodies_are_decoded(coding: str) -> None:
    answer, ctx = await decode(coding.encode(), encode(coding, PAYLOAD))
    assert answer is None
    assert await ctx.body() == PAYLOAD
    assert ctx.buffered_body == PAYLOAD
    assert ctx.headers == [
        (b"host", b"api.example.com"),
        (b"content-type", b"application/json"),
        (b"accept", b"*/*"),
        (b"content-length", b"%d" % len(PAYLOAD)),
    ]


async def test_raw_deflate_is_read_too() -> None:
    compressor = zlib.compressobj(wbits=-15)
    answer, ctx = await decode(b"Deflate", compressor.compress(PAYLOAD) + compressor.flush())
    assert answer is None
    assert await ctx.body() == PAYLOAD


async def test_several_codings_come_off_in_reverse_order() -> None:
    body = gzip.compress(zlib.compress(PAYLOAD))
    answer, ctx = await decode(b"deflate, identity, GZIP", body)
    assert answer is None
    assert await ctx.body() == PAYLOAD


async def test_concatenated_gzip_members() -> None:
    answer, ctx = await decode(b"gzip", gzip.compress(b"abc") + gzip.compress(b"def"))
    assert answer is None
    assert await ctx.body() == b"abcdef"


async def test_big_request_bodies_are_decoded_off_the_event_loop() -> None:
    payload = os.urandom(1_200_000)  # incompressible: the gzip body is over the in-loop limit too
    answer, ctx = await decode(b"gzip", gzip.compress(payload, 1))
    assert answer is None
    assert await ctx.body() == payload


async def test_no_content_encoding_reads_nothing() -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    ctx, _ = context(headers, b"{}")
    assert await CompressionStage(0).on_request(ctx) is None
    assert ctx.headers is headers
    assert ctx.buffered_body is None  # the body is still unread: a streaming integration streams it


@pytest.mark.parametrize("encoding", [b"identity", b"", b" , "])
async def test_identity_is_passed_on(encoding: bytes) -> None:
    answer, ctx = await decode(encoding, PAYLOAD)
    assert answer is None
    assert ctx.headers == request_headers(encoding, PAYLOAD)
    assert await ctx.body() == PAYLOAD


async def test_an_empty_body_is_passed_on() -> None:
    answer, ctx = await decode(b"gzip", b"")
    assert answer is None
    assert ctx.headers == request_headers(b"gzip", b"")


UNSUPPORTED = Response(
    415,
    [JSON, (b"x-amzn-errortype", b"UnsupportedMediaTypeException")],
    b'{"message":"Unsupported Media Type"}',
)
TOO_LARGE = Response(
    413,
    [JSON, (b"x-amzn-errortype", b"RequestTooLongException")],
    b'{"message":"Request Too Long"}',
)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (b"compress", PAYLOAD),  # a coding API Gateway does not know
        (b"gzip, lzma", PAYLOAD),
        (b"gzip", PAYLOAD),  # not compressed with the coding named: AWS says 415 here too
        (b"gzip", gzip.compress(PAYLOAD)[:-10]),  # truncated
        (b"gzip", gzip.compress(PAYLOAD) + b"trailing"),
        (b"gzip", gzip.compress(PAYLOAD)[:-8] + b"\0\0\0\0\0\0\0\0"),  # bad checksum
        (b"deflate", zlib.compress(PAYLOAD) + b"x"),
        (b"deflate", b"\x78\x9c"),
        (b"br", b"not brotli at all"),
        (b"br", brotli.compress(PAYLOAD)[:-3]),
        (b"zstd", PAYLOAD),
        (b"zstd", zstandard.ZstdCompressor().compress(PAYLOAD)[:-4]),
        (b"zstd", zstandard.ZstdCompressor().compress(PAYLOAD) + b"xx"),
    ],
)
async def test_undecodable_bodies_are_415(encoding: bytes, body: bytes) -> None:
    answer, ctx = await decode(encoding, body)
    assert answer == UNSUPPORTED
    assert ctx.headers == request_headers(encoding, body)


async def test_http_apis_answer_with_their_own_table() -> None:
    answer, _ = await decode(b"compress", PAYLOAD, table=True)
    assert answer == Response(415, [JSON], b'{"message":"Unsupported Media Type"}')


def bomb(coding: str, size: int) -> bytes:
    zeros = b"\0" * size
    if coding == "zstd-unsized":
        return zstandard.ZstdCompressor(write_content_size=False).compress(zeros)
    return encode(coding, zeros)


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "zstd-unsized"])
async def test_decoded_bodies_are_held_to_the_payload_limit(coding: str) -> None:
    encoding = coding.split("-")[0].encode()
    body = bomb(coding, MAX_BODY_BYTES + 1)
    assert len(body) < 20_000  # a "zip bomb": tiny on the wire
    answer, ctx = await decode(encoding, body)
    assert answer == TOO_LARGE
    assert ctx.headers == request_headers(encoding, body)
    answer, ctx = await decode(encoding, bomb(coding, MAX_BODY_BYTES))
    assert answer is None
    assert len(await ctx.body()) == MAX_BODY_BYTES


async def test_a_huge_bomb_is_stopped_early() -> None:
    # 256 MB of zeros in ~250 KB of gzip: refused at the limit, never inflated whole.
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    body = b"".join(compressor.compress(block) for _ in range(256)) + compressor.flush()
    answer, _ = await decode(b"gzip", body)
    assert answer == TOO_LARGE


# --- over sockets: client → gateway (stage + HTTP proxy) → upstream ----------------------------------------


class Fixed:
    """A Mock-like integration: the same JSON answer every time."""

    needs_body = False

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, ctx: RequestContext) -> Response:
        return Response(200, [JSON], self.body)

    def describe(self) -> str:
        return "fixed"


def gateway(routes: list[tuple[str, str, Route]]) -> Gateway:
    api = ApiDefinition(kind="REST", title="compression", source=Path("inline.yaml"), operations=())
    return Gateway(
        api=api, api_info=ApiInfo("abc123"), stage="dev", stage_variables={}, router=Router(routes)
    )


@pytest.fixture
def served() -> Iterator[str]:
    upstream = run_asgi(upstream_app)
    pools = UpstreamPools()
    stage = CompressionStage(100)
    proxy = HttpProxyIntegration(
        uri=f"{upstream.url}/echo",
        method=None,
        timeout_s=5,
        pools=pools,
        path_parameters={},
        headers={},
        query={},
    )
    stream_proxy = HttpProxyIntegration(
        uri=f"{upstream.url}/stream",
        method=None,
        timeout_s=5,
        pools=pools,
        path_parameters={},
        headers={},
        query={},
    )
    gw = gateway(
        [
            ("POST", "/echo", Route("POST", "/echo", proxy, (stage,))),
            ("GET", "/stream", Route("GET", "/stream", stream_proxy, (stage,))),
            ("GET", "/fixed", Route("GET", "/fixed", Fixed(BODY), (stage,))),
            ("GET", "/small", Route("GET", "/small", Fixed(b'{"ok":true}'), (stage,))),
        ]
    )
    loops: list[asyncio.AbstractEventLoop] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not loops:
            loops.append(asyncio.get_running_loop())
        await gw.handle(scope, receive, send)

    server = run_asgi(app)
    try:
        yield f"{server.url}/dev"
    finally:
        if loops:
            asyncio.run_coroutine_threadsafe(pools.close(), loops[0]).result(timeout=10)
        server.stop()
        upstream.stop()


@pytest.mark.parametrize("coding", sorted(ALL))
def test_over_sockets_buffered(served: str, coding: str) -> None:
    with (
        httpx.Client() as client,
        client.stream("GET", f"{served}/fixed", headers={"Accept-Encoding": coding}) as r,
    ):
        raw = b"".join(r.iter_raw())
        assert r.status_code == 200
        assert r.headers["content-encoding"] == coding
        assert r.headers["vary"] == "Accept-Encoding"
        assert int(r.headers["content-length"]) == len(raw)  # the gateway's own, for the compressed bytes
        assert r.headers.get_list("content-length") == [str(len(raw))]
    assert DECODE[coding](raw) == BODY
    small = httpx.get(f"{served}/small", headers={"Accept-Encoding": coding})
    assert "content-encoding" not in small.headers
    assert small.content == b'{"ok":true}'


def test_over_sockets_request_decoded_and_proxied_response_compressed(served: str) -> None:
    body = orjson.dumps({"message": "hello " * 200})
    r = httpx.post(
        f"{served}/echo",
        content=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "Accept-Encoding": "br"},
    )
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "br"  # httpx decoded it for us below
    echoed = r.json()
    assert echoed["body"] == body.decode()
    seen = {name: value for name, value in echoed["headers"]}
    assert seen["content-length"] == str(len(body))
    assert "content-encoding" not in seen


def test_over_sockets_stream(served: str) -> None:
    r = httpx.get(f"{served}/stream", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-encoding"] == "gzip"
    assert "content-length" not in r.headers
    assert r.text == "chunk0;chunk1;chunk2;chunk3;chunk4;"


def test_over_sockets_corrupt_body(served: str) -> None:
    r = httpx.post(f"{served}/echo", content=b"plain", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 415
    assert r.json() == {"message": "Unsupported Media Type"}
    assert r.headers["x-amzn-errortype"] == "UnsupportedMediaTypeException"
