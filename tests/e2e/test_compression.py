"""Payload compression over real sockets: responses encoded per Accept-Encoding (read as raw bytes, decoded
here), compressed request bodies decoded before the Lambda handler, corrupt ones refused, and compression
composed with the response cache.

The traffic API sets `x-amazon-apigateway-minimum-compression-size: 100`: `/big` answers more, `/open` less.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest
import zstandard

from portway.config.compile import cache_prefix
from portway.stages.cache import cache_key, decode_entry
from tests.conftest import GatewayFactory, RunningGateway, start_gateway

TRAFFIC = Path(__file__).parent / "traffic"
API = TRAFFIC / "api.yaml"
FUNCTIONS = TRAFFIC / "functions.yaml"

BIG = (
    b'{"items": ["aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc", "dddddddddd", "eeeeeeeeee", "ffffffffff", '
    b'"gggggggggg", "hhhhhhhhhh", "iiiiiiiiii", "jjjjjjjjjj"]}'
)
SMALL = b'{"ok": true}'
UNSUPPORTED = b'{"message":"Unsupported Media Type"}'
PAYLOAD = json.dumps({"order": 42, "lines": [{"sku": f"sku-{i}", "quantity": i} for i in range(30)]})

DECODE: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,  # RFC 9110's deflate: a zlib stream (with its header), not raw deflate
    "br": brotli.decompress,
    "zstd": zstandard.ZstdDecompressor().decompress,
}
ENCODE: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstandard.ZstdCompressor().compress,
}


@pytest.fixture(scope="module")
def dev() -> Iterator[RunningGateway]:
    """One gateway for the stateless checks below (stage dev: no cache)."""
    gw = start_gateway(API, FUNCTIONS, stage="dev")
    yield gw
    gw.stop()


def fetch(base: str, path: str, accept_encoding: str | None) -> tuple[httpx.Response, bytes]:
    """GET ``path`` sending exactly this Accept-Encoding (none when None); the body as it came on the wire."""
    with httpx.Client(base_url=base) as client:
        del client.headers["accept-encoding"]  # httpx sends its own by default
        headers = {} if accept_encoding is None else {"accept-encoding": accept_encoding}
        with client.stream("GET", path, headers=headers) as response:
            raw = b"".join(response.iter_raw())
    assert response.request.headers.get("accept-encoding") == accept_encoding
    return response, raw


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_big_answer_is_compressed_with_the_coding_asked_for(dev: RunningGateway, coding: str) -> None:
    response, raw = fetch(dev.base, "/big", coding)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == coding
    assert response.headers.get_list("vary") == ["Accept-Encoding"]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(raw))
    assert len(raw) < len(BIG)
    assert DECODE[coding](raw) == BIG


@pytest.mark.parametrize(
    ("accept_encoding", "chosen"),
    [
        ("gzip, deflate, br, zstd", "zstd"),  # a tie: the server's preference
        ("gzip;q=0.5, deflate;q=0.9", "deflate"),  # the client's q-values first
        ("gzip;q=0, deflate", "deflate"),  # q=0 refuses a coding
        ("zstd;q=0, br;q=0, gzip, deflate", "gzip"),
        ("x-gzip", "gzip"),  # RFC 9110: x-gzip is gzip
        ("GZip", "gzip"),  # names are case-insensitive
        ("*, deflate;q=0.1", "deflate"),  # "*" compresses nothing by itself (API Gateway: explicit only)
    ],
)
def test_negotiation(dev: RunningGateway, accept_encoding: str, chosen: str) -> None:
    response, raw = fetch(dev.base, "/big", accept_encoding)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == chosen
    assert response.headers["content-length"] == str(len(raw))
    assert DECODE[chosen](raw) == BIG


@pytest.mark.parametrize(
    ("path", "accept_encoding"),
    [
        ("/big", None),  # no Accept-Encoding: nothing is compressed
        ("/big", "identity"),
        ("/big", "*"),  # not an explicit coding
        ("/big", "gzip;q=0"),
        ("/big", "gzip;q=0, deflate;q=0, br;q=0, zstd;q=0, identity"),
        ("/big", "identity;q=1, gzip;q=0.5"),  # identity named with a higher q wins
        ("/big", "compress, exi"),  # codings the gateway does not have
        ("/open", "gzip"),  # 12 bytes: under the minimum compression size
        ("/open", "gzip, deflate, br, zstd"),
    ],
)
def test_answers_left_uncompressed(dev: RunningGateway, path: str, accept_encoding: str | None) -> None:
    response, raw = fetch(dev.base, path, accept_encoding)
    assert response.status_code == 200
    assert raw == (BIG if path == "/big" else SMALL)
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers
    assert response.headers["content-length"] == str(len(raw))
    assert response.headers["content-type"] == "application/json"


def upload(base: str, body: bytes, content_encoding: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if content_encoding is not None:
        headers["content-encoding"] = content_encoding
    with httpx.Client(base_url=base) as client:
        return client.post("/upload", content=body, headers=headers)


def seen(response: httpx.Response) -> dict[str, Any]:
    """What the `echo` handler received (httpx decodes the answer, which may be compressed: it is big)."""
    assert response.status_code == 200, response.content
    received: dict[str, Any] = response.json()
    return received


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "br", "zstd", "GZIP", "identity"])
def test_a_compressed_request_body_reaches_the_handler_decoded(dev: RunningGateway, coding: str) -> None:
    data = PAYLOAD.encode()
    encoded = data if coding == "identity" else ENCODE[coding.lower()](data)
    received = seen(upload(dev.base, encoded, coding))
    assert received["body"] == PAYLOAD
    assert received["isBase64Encoded"] is False
    # The handler sees the body as if it had been sent plain.
    assert received["contentEncoding"] == ("identity" if coding == "identity" else None)


def test_codings_applied_in_turn_come_off_in_reverse(dev: RunningGateway) -> None:
    data = PAYLOAD.encode()
    received = seen(upload(dev.base, gzip.compress(zlib.compress(data)), "deflate, gzip"))
    assert received["body"] == PAYLOAD
    assert received["contentEncoding"] is None


def test_a_plain_body_is_passed_on_as_sent(dev: RunningGateway) -> None:
    received = seen(upload(dev.base, PAYLOAD.encode(), None))
    assert received["body"] == PAYLOAD
    assert received["contentEncoding"] is None


def test_a_body_not_in_its_coding_is_refused_with_415(dev: RunningGateway) -> None:
    data = PAYLOAD.encode()
    cases = [
        (b"this is not gzip", "gzip"),
        (gzip.compress(data)[:-12], "gzip"),  # truncated
        (gzip.compress(data)[:-4] + b"\x00\x00\x00\x00", "gzip"),  # the wrong length in its trailer
        (b"\x78\x9c not deflate", "deflate"),
        (brotli.compress(data)[:-3], "br"),
        (b"not zstd", "zstd"),
        (data, "compress"),  # a coding the gateway cannot decode: refused before the body is read
        (gzip.compress(data), "deflate, gzip"),  # only one of the two codings was applied
    ]
    before = seen(upload(dev.base, data, None))["calls"]
    refused = [upload(dev.base, body, coding) for body, coding in cases]
    after = seen(upload(dev.base, data, None))["calls"]
    for response in refused:
        assert response.status_code == 415
        assert response.content == UNSUPPORTED
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-amzn-errortype"] == "UnsupportedMediaTypeException"
        assert response.headers["x-amzn-requestid"]
    assert after == before + 1  # no refused request reached the handler


def test_the_cache_keeps_the_uncompressed_answer(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(API, FUNCTIONS, stage="cached")
    zipped, zipped_raw = fetch(gw.base, "/report", "gzip")  # a miss: fetched, cached, then compressed
    plain, plain_raw = fetch(gw.base, "/report", None)  # a hit, served as stored
    brotli_answer, brotli_raw = fetch(gw.base, "/report", "br")  # a hit, compressed on the way out
    assert zipped.status_code == plain.status_code == brotli_answer.status_code == 200
    body = plain_raw
    # The handler was called once: every answer is the first one's.
    assert json.loads(body) == {"calls": 1, "rows": [f"row {i:02d}" for i in range(20)]}
    assert len(body) > 100
    assert "content-encoding" not in plain.headers
    assert "vary" not in plain.headers
    assert plain.headers["content-length"] == str(len(body))
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.headers["content-length"] == str(len(zipped_raw))
    assert gzip.decompress(zipped_raw) == body
    assert brotli_answer.headers["content-encoding"] == "br"
    assert brotli_answer.headers["content-length"] == str(len(brotli_raw))
    assert brotli.decompress(brotli_raw) == body
    # And in the store itself: the entry is the handler's answer, uncompressed.
    assert gw.service.app is not None
    gateway = gw.gateway
    key = cache_key(
        cache_prefix(gateway.api_info.api_id, gateway.stage),
        "/report",
        "GET",
        (),
        path_parameters={},
        query_string=b"",
        headers=[],
    )
    data = gw.call(gw.service.resources.store.cache_get(key, time.time()))
    assert isinstance(data, bytes)
    entry = decode_entry(data)
    assert entry is not None
    assert entry.status == 200
    assert entry.body == body
    assert {name.lower() for name, _ in entry.headers}.isdisjoint({b"content-encoding", b"vary"})
