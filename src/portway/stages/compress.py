"""Payload compression (``minimumCompressionSize``): request bodies decoded, response bodies encoded.

What API Gateway does (REST APIs), from "Payload compression for REST APIs in API Gateway" and its pages
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-gzip-compression-decompression.html,
…/api-gateway-make-request-with-compressed-payload.html,
…/api-gateway-receive-response-with-compressed-payload.html, …/api-gateway-enable-compression.html):

- Supported codings: ``gzip``, ``deflate``, ``identity``. ``minimumCompressionSize`` is 0 to 10,485,760; unset
  (null) turns response compression off.
- A request with ``Content-Encoding`` is decompressed before mapping templates and the integration. A coding
  it does not support, *or a payload that is not compressed with the named coding*, is answered 415
  Unsupported Media Type.
- A response is compressed only when the request's ``Accept-Encoding`` explicitly names a supported coding
  (no header, which RFC 9110 reads as ``*``, compresses nothing; and "without an explicit specification of
  supported values" nothing is compressed, so a bare ``*`` does not either), the integration response has
  no ``Content-Encoding`` (it is taken to be compressed already), and the payload is *greater than or equal
  to* ``minimumCompressionSize``.

Where Portway differs, on purpose:

- ``br`` and ``zstd`` are offered too when ``brotli`` / ``zstandard`` import (``codings=("gzip", "deflate")``
  gives AWS's set exactly). Server preference on a q-value tie: zstd > br > gzip > deflate. zstd first for
  CPU (a 2.3 KB JSON answer through this stage: zstd-3 ≈ 10 µs → 363 bytes, gzip-6 ≈ 19 µs → 397,
  br-4 ≈ 29 µs → 307), br next for its ratio, gzip before deflate because "deflate" has been decoded
  inconsistently (zlib vs raw) by clients. Without Accept-Encoding the stage costs ≈ 1.3 µs a request.
- AWS notes that when the client's *highest-priority* coding is one it does not support, it compresses
  nothing; Portway picks the best coding it supports among those the client accepts (RFC 9110).
- A compressed response gets ``Vary: Accept-Encoding`` (whether AWS adds it is undocumented; it is what
  keeps shared caches from handing a compressed body to a client that cannot read it) and a strong ETag is
  made weak (the bytes differ). Uncompressed responses are left untouched: an identity body is fine for
  every client, and the no-Accept-Encoding path stays allocation-free.
- Not compressed either: HEAD answers, 204/304, a response with ``Content-Range`` (the range is of the
  uncompressed bytes), or with ``Cache-Control: no-transform``.
- Streamed responses (an HTTP proxy's) are compressed on the fly, with a sync flush after every upstream
  chunk so a slow stream (server-sent events) is never held back. The threshold applies when the upstream
  sends Content-Length; with no length the stream is compressed (holding data back to measure it would
  stall streaming, and compressing a short body costs a few bytes at most).
- Decompressed request bodies are held to the 10 MB payload limit (413), decoded with a bounded output
  (a "zip bomb" is stopped at the limit, never inflated whole); Content-Length is set to the decoded size.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from portway.pipeline.context import MAX_BODY_BYTES, RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.types import Headers, Response

try:
    import brotli
except ImportError:  # pragma: no cover - brotli is an optional extra
    brotli = None
try:
    import zstandard
except ImportError:  # pragma: no cover - zstandard is an optional extra
    zstandard = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE_CODINGS",
    "DECODABLE_CODINGS",
    "MAX_MINIMUM_COMPRESSION_SIZE",
    "PREFERENCE",
    "CompressionStage",
    "negotiate",
]

MAX_MINIMUM_COMPRESSION_SIZE: Final = 10_485_760  # minimumCompressionSize's upper bound on AWS
PREFERENCE: Final = ("zstd", "br", "gzip", "deflate")  # the server's order when q-values tie

_ZLIB_LEVEL = 6
_BROTLI_QUALITY = 4  # quality 11 (the library default) costs ~150 times the CPU for ~13% fewer bytes
_ZSTD_LEVEL = 3
_ZSTD_MAX_WINDOW = 1 << 23  # RFC 9659: HTTP zstd decoders need not accept windows over 8 MB
_OFFLOAD_BYTES = 1 << 20  # bodies bigger than this are (de)compressed in a worker thread, off the event loop
_STEP = (
    1 << 20
)  # decoded output asked for per decoder call (brotli may give twice that): bounds a bomb's overshoot
_CHOICE_CACHE_SIZE = 256  # distinct Accept-Encoding values remembered per stage (clients send a handful)


class _TooLarge(Exception):
    """The decoded body would exceed the payload limit."""


class _Corrupt(Exception):
    """The body is not valid data in the coding its Content-Encoding names."""


class _Encoder(Protocol):
    """An incremental compressor: every ``compress`` call returns all it was given, flushed."""

    def compress(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class _Codec:
    name: str
    token: bytes  # the Content-Encoding value
    compress: Callable[[bytes], bytes]
    encoder: Callable[[], _Encoder]


def _window_bits(size: int, low: int, high: int) -> int:
    """The smallest window covering the whole body: the same output for a fraction of the set-up cost
    (a 2 KB body gzips in ~30 µs with a 4 KB window against ~80 µs with the default 32 KB one)."""
    return min(high, max(low, (size + 262).bit_length()))  # 262: zlib's lookahead, lost from the window


# --- gzip and deflate (zlib, always there) ---------------------------------------------------------------


def _gzip(data: bytes) -> bytes:
    return zlib.compress(data, _ZLIB_LEVEL, 16 + _window_bits(len(data), 9, 15))


def _deflate(data: bytes) -> bytes:
    # RFC 9110's "deflate" is the zlib format (RFC 1950), not a raw deflate stream.
    return zlib.compress(data, _ZLIB_LEVEL, _window_bits(len(data), 9, 15))


class _ZlibEncoder:
    __slots__ = ("_compressor",)

    def __init__(self, wbits: int) -> None:
        self._compressor = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, wbits)

    def compress(self, chunk: bytes) -> bytes:
        return self._compressor.compress(chunk) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush()


def _inflate(data: bytes, limit: int, wbits: int, *, members: bool = False) -> bytes:
    """Decode a zlib/gzip/raw deflate stream into at most ``limit`` bytes; gzip may hold several members."""
    out: list[bytes] = []
    size = 0
    while True:
        decoder = zlib.decompressobj(wbits)
        tail = data
        while not decoder.eof:
            chunk = decoder.decompress(tail, min(limit + 1 - size, _STEP))
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            if not chunk and len(decoder.unconsumed_tail) == len(tail) and not decoder.eof:
                raise _Corrupt("the stream ends before its end marker")
            out.append(chunk)
            tail = decoder.unconsumed_tail
        data = decoder.unused_data
        if not data:
            return b"".join(out)
        if not members:
            raise _Corrupt("data after the end of the stream")


def _gunzip(data: bytes, limit: int) -> bytes:
    return _inflate(data, limit, 16 + zlib.MAX_WBITS, members=True)


def _undeflate(data: bytes, limit: int) -> bytes:
    # The zlib format as RFC 9110 says; a raw deflate stream as some clients send anyway.
    zlib_header = len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
    return _inflate(data, limit, zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)


# --- br (brotli, optional) -------------------------------------------------------------------------------


def _brotli(data: bytes) -> bytes:
    result: bytes = brotli.compress(data, quality=_BROTLI_QUALITY, lgwin=_window_bits(len(data), 10, 22))
    return result


class _BrotliEncoder:
    __slots__ = ("_compressor",)

    def __init__(self) -> None:
        self._compressor = brotli.Compressor(quality=_BROTLI_QUALITY)

    def compress(self, chunk: bytes) -> bytes:
        return bytes(self._compressor.process(chunk) + self._compressor.flush())

    def finish(self) -> bytes:
        return bytes(self._compressor.finish())


def _unbrotli(data: bytes, limit: int) -> bytes:
    decoder = brotli.Decompressor()
    out: list[bytes] = []
    size = 0
    chunk: bytes = decoder.process(data, output_buffer_limit=min(limit + 1, _STEP))
    while True:
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        out.append(chunk)
        if decoder.is_finished():
            return b"".join(out)
        if not chunk:  # all the input was given at once: no more output before the end means truncated
            raise _Corrupt("the stream ends before its end marker")
        chunk = decoder.process(b"", output_buffer_limit=min(limit + 1 - size, _STEP))


# brotli before 1.2 cannot bound a decoder's output: without that, br request bodies are refused (415)
# rather than risk inflating a bomb; br responses work with any version.
_BROTLI_BOUNDED = brotli is not None and "output_buffer_limit" in (brotli.Decompressor.process.__doc__ or "")


# --- zstd (zstandard, optional) --------------------------------------------------------------------------

_local = threading.local()  # a ZstdCompressor serves one operation at a time: one per thread


def _zstd(data: bytes) -> bytes:
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    result: bytes = compressor.compress(data)
    return result


class _ZstdEncoder:
    __slots__ = ("_compressor",)

    def __init__(self) -> None:
        self._compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compressobj()

    def compress(self, chunk: bytes) -> bytes:
        return self._compressor.compress(chunk) + self._compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._compressor.flush()


def _unzstd(data: bytes, limit: int) -> bytes:
    declared = zstandard.get_frame_parameters(data).content_size  # a bad or empty header raises
    unknown = declared == zstandard.CONTENTSIZE_UNKNOWN
    if not unknown and declared > limit:
        raise _TooLarge
    decoder = zstandard.ZstdDecompressor(max_window_size=_ZSTD_MAX_WINDOW)
    try:
        # With a declared size the output buffer is that size (a lie fails to decode); without one it is
        # capped at the limit, and running past it fails the same way as a truncated frame...
        return decoder.decompress(data, max_output_size=limit, allow_extra_data=False)
    except zstandard.ZstdError:
        # ...so tell the two apart by counting, never holding more than one step of output.
        if unknown and _zstd_exceeds(decoder, data, limit):
            raise _TooLarge from None
        raise


def _zstd_exceeds(decoder: Any, data: bytes, limit: int) -> bool:
    size = 0
    try:
        with decoder.stream_reader(data) as reader:
            while chunk := reader.read(_STEP):
                size += len(chunk)
                if size > limit:
                    return True
    except zstandard.ZstdError:
        pass
    return False


# --- the registry ----------------------------------------------------------------------------------------


def _codecs() -> dict[str, _Codec]:
    codecs = {
        "gzip": _Codec("gzip", b"gzip", _gzip, lambda: _ZlibEncoder(16 + zlib.MAX_WBITS)),
        "deflate": _Codec("deflate", b"deflate", _deflate, lambda: _ZlibEncoder(zlib.MAX_WBITS)),
    }
    if brotli is not None:
        codecs["br"] = _Codec("br", b"br", _brotli, _BrotliEncoder)
    if zstandard is not None:
        codecs["zstd"] = _Codec("zstd", b"zstd", _zstd, _ZstdEncoder)
    return codecs


def _decoders() -> dict[str, Callable[[bytes, int], bytes]]:
    decoders: dict[str, Callable[[bytes, int], bytes]] = {
        "gzip": _gunzip,
        "x-gzip": _gunzip,  # RFC 9110 §8.4.1.3: to be read as gzip
        "deflate": _undeflate,
    }
    if _BROTLI_BOUNDED:
        decoders["br"] = _unbrotli
    if zstandard is not None:
        decoders["zstd"] = _unzstd
    return decoders


_CODECS: Final = _codecs()
_DECODERS: Final = _decoders()
_CODEC_ERRORS: Final[tuple[type[Exception], ...]] = (
    _Corrupt,
    zlib.error,
    *((brotli.error,) if brotli is not None else ()),
    *((zstandard.ZstdError,) if zstandard is not None else ()),
)

AVAILABLE_CODINGS: Final = frozenset(_CODECS)  # what responses can be compressed with, here
DECODABLE_CODINGS: Final = frozenset(_DECODERS)  # what request bodies can be decoded from, here


# --- negotiation (no I/O) --------------------------------------------------------------------------------


def _qvalue(params: str) -> float | None:
    """The ``q`` of one Accept-Encoding element's parameters (1 when absent); None when malformed."""
    q = 1.0
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            q = float(value.strip())
        except ValueError:
            return None
        if not 0.0 <= q <= 1.0:  # also false for NaN
            return None
    return q


def negotiate(accept: str, available: Collection[str], *, wildcard: bool = True) -> str | None:
    """The content coding to answer with, or None for identity (no compression).

    ``accept`` is an Accept-Encoding value (RFC 9110 §12.5.3); ``available`` the codings on offer, a subset
    of :data:`PREFERENCE`, whose order breaks q-value ties. Names are case-insensitive, ``x-gzip`` is gzip,
    ``q=0`` refuses, malformed elements are ignored, and the first mention of a coding counts.
    ``*`` gives its q to every coding not named, unless ``wildcard`` is False (API Gateway compresses only
    for codings named explicitly). Identity wins only when named with a higher q than the best coding.

    >>> negotiate("gzip;q=0.5, br", {"gzip", "br"})
    'br'
    >>> negotiate("gzip, deflate", {"gzip", "deflate", "br", "zstd"})
    'gzip'
    >>> negotiate("*;q=0.1, gzip;q=0", {"gzip", "deflate"})
    'deflate'
    """
    named: dict[str, float] = {}
    star: float | None = None
    identity: float | None = None
    for element in accept.split(","):
        coding, _, params = element.partition(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        q = _qvalue(params) if params else 1.0
        if q is None:
            continue
        if coding == "*":
            star = q if star is None else star
        elif coding == "identity":
            identity = q if identity is None else identity
        else:
            named.setdefault("gzip" if coding == "x-gzip" else coding, q)
    fallback = star if wildcard and star is not None else 0.0
    best: str | None = None
    best_q = 0.0
    for coding in PREFERENCE:
        if coding in available:
            q = named.get(coding, fallback)
            if q > best_q:
                best, best_q = coding, q
    if best is not None and identity is not None and identity > best_q:
        return None
    return best


# --- the stage -------------------------------------------------------------------------------------------

_NO_BODY_STATUS = frozenset({204, 304})
_MISSING: Final[Any] = object()
_DROPPED_REQUEST_HEADERS = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})


class CompressionStage:
    """Decodes compressed request bodies; compresses responses of at least ``minimum_size`` bytes.

    ``minimum_size`` None decodes requests only (API Gateway decompresses request bodies whether or not
    response compression is on). ``table`` is the API's gateway responses (REST or HTTP API); ``codings``
    narrows the response codings offered (default: all that import here).

    >>> stage = CompressionStage(1024, codings=("gzip", "deflate"))  # exactly AWS's codings
    """

    name = "compress"
    needs_body = False

    def __init__(
        self,
        minimum_size: int | None,
        table: ResponseTable = REST_RESPONSES,
        *,
        codings: Iterable[str] | None = None,
    ) -> None:
        if minimum_size is not None and not 0 <= minimum_size <= MAX_MINIMUM_COMPRESSION_SIZE:
            raise ValueError(
                f"minimum compression size {minimum_size} is outside 0..{MAX_MINIMUM_COMPRESSION_SIZE}"
            )
        names = AVAILABLE_CODINGS if codings is None else frozenset(c.lower() for c in codings)
        unknown = sorted(names - AVAILABLE_CODINGS)
        if unknown:
            raise ValueError(
                f"compression codings {', '.join(unknown)} are not available "
                f"(available: {', '.join(c for c in PREFERENCE if c in AVAILABLE_CODINGS)})"
            )
        self.minimum_size = minimum_size
        self.responds = minimum_size is not None  # decoding requests only: nothing to do on the way out
        self.table = table
        self.codings = names
        self._choices: dict[bytes, _Codec | None] = {}

    # Requests: decode the body before any stage or integration reads it.

    async def on_request(self, ctx: RequestContext) -> Response | None:
        for name, _ in ctx.headers:
            if name == b"content-encoding":
                return await self._decode(ctx)
        return None

    async def _decode(self, ctx: RequestContext) -> Response | None:
        values = b",".join(value for name, value in ctx.headers if name == b"content-encoding")
        codings = [c.strip() for c in values.decode("latin-1").lower().split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        decoders = [_DECODERS.get(coding) for coding in reversed(codings)]  # the last applied comes off first
        if None in decoders:
            # AWS checks the coding first: one it does not support is 415, before the body is looked at.
            return gateway_response(ResponseType.UNSUPPORTED_MEDIA_TYPE, self.table)
        body = await ctx.body()
        if not body:
            return None  # nothing was compressed (a GET with a stray header): pass it on as it is
        try:
            if len(body) > _OFFLOAD_BYTES:
                body = await asyncio.to_thread(_decode_all, decoders, body)
            else:
                body = _decode_all(decoders, body)
        except _TooLarge:
            return gateway_response(ResponseType.REQUEST_TOO_LARGE, self.table)
        except _CODEC_ERRORS:
            # AWS answers 415 (not 400) for "the supplied payload isn't compressed with specified coding".
            return gateway_response(ResponseType.UNSUPPORTED_MEDIA_TYPE, self.table)
        ctx.replace_body(body)
        headers = [h for h in ctx.headers if h[0] not in _DROPPED_REQUEST_HEADERS]
        headers.append((b"content-length", b"%d" % len(body)))
        ctx.headers = headers  # a new list: the ASGI scope's own stays as the client sent it
        return None

    # Responses: compress when the client asked and the body is big enough.

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        minimum = self.minimum_size
        if minimum is None or response.status in _NO_BODY_STATUS or ctx.method == "HEAD":
            return response
        stream = response.stream
        if stream is None and (not response.body or len(response.body) < minimum):
            return response
        accept: bytes | None = None
        for name, value in ctx.headers:
            if name == b"accept-encoding":
                accept = value if accept is None else accept + b"," + value
        if accept is None:
            return response
        codec = self._choose(accept)
        if codec is None:
            return response
        headers: Headers = []
        length: bytes | None = None
        vary_covered = False
        for name, value in response.headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value
                continue
            if lower in (b"content-encoding", b"content-range"):
                return response
            if lower == b"cache-control" and b"no-transform" in value.lower():
                return response
            if lower == b"etag" and value.startswith(b'"'):
                value = b"W/" + value  # another representation: a strong validator no longer holds
            elif lower == b"vary":
                tokens = {t.strip() for t in value.lower().split(b",")}
                vary_covered = vary_covered or b"accept-encoding" in tokens or b"*" in tokens
            headers.append((name, value))
        headers.append((b"content-encoding", codec.token))
        if not vary_covered:
            headers.append((b"vary", b"Accept-Encoding"))
        if stream is not None:
            if length is not None and length.strip().isdigit() and int(length) < max(minimum, 1):
                return response
            return Response(response.status, headers, stream=_encode_stream(stream, codec.encoder()))
        body = response.body
        if len(body) > _OFFLOAD_BYTES:
            encoded = await asyncio.to_thread(codec.compress, body)
        else:
            encoded = codec.compress(body)
        return Response(response.status, headers, encoded)

    def _choose(self, accept: bytes) -> _Codec | None:
        codec: _Codec | None = self._choices.get(accept, _MISSING)
        if codec is _MISSING:
            name = negotiate(accept.decode("latin-1"), self.codings, wildcard=False)
            codec = _CODECS[name] if name is not None else None
            if len(self._choices) >= _CHOICE_CACHE_SIZE:
                self._choices.clear()
            self._choices[accept] = codec
        return codec


def _decode_all(decoders: list[Callable[[bytes, int], bytes] | None], body: bytes) -> bytes:
    for decode in decoders:
        assert decode is not None
        body = decode(body, MAX_BODY_BYTES)
    return body


async def _encode_stream(source: AsyncIterator[bytes], encoder: _Encoder) -> AsyncIterator[bytes]:
    """Compress a streamed body chunk by chunk; closing this closes the source (e.g. releases an upstream)."""
    try:
        async for chunk in source:
            if chunk:
                out = encoder.compress(chunk)
                if out:
                    yield out
        yield encoder.finish()
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
