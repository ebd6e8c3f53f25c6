"""The HTTP proxy integration (``http_proxy``): the request goes to an upstream URL, streamed both ways.

One pooled keep-alive client per upstream origin. Upstream timeout → 504, refused or reset connection →
502, with API Gateway's bodies.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from portway.pipeline.context import MAX_BODY_BYTES, BodyTooLarge, RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.types import Headers, Response

if TYPE_CHECKING:
    import aiohttp

    from portway.observability.tracing import Tracing

__all__ = ["HttpProxyIntegration", "ParameterSource", "UpstreamPools"]

log = logging.getLogger("portway.integration")
_W3C_TRACE = frozenset({b"traceparent", b"tracestate"})  # replaced by our span's when spans are exported

# RFC 9110 §7.6.1 connection-specific headers, never forwarded by a proxy; Host is the upstream's.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z0-9._\-]+)\+?\}")
_CHUNK = 64 * 1024


class UpstreamPools:
    """One aiohttp session (a keep-alive connection pool) per upstream origin, made on first use."""

    def __init__(self, limit_per_host: int = 100) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._limit = limit_per_host

    def session(self, origin: str) -> aiohttp.ClientSession:
        # Imported on first use: aiohttp is a quarter of a second of start-up that APIs without an HTTP
        # proxy route should not pay.
        import aiohttp

        session = self._sessions.get(origin)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit_per_host=self._limit, keepalive_timeout=30, ttl_dns_cache=60
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            self._sessions[origin] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


@dataclass(frozen=True, slots=True)
class ParameterSource:
    """Where an integration request parameter's value comes from: a method request part, or a constant."""

    location: str  # "path", "querystring", "header" or "static"
    name: str  # the method request parameter's name, or the static value

    def value(self, ctx: RequestContext) -> str | None:
        if self.location == "static":
            return self.name
        if self.location == "path":
            return ctx.path_parameters.get(self.name)
        if self.location == "header":
            raw = ctx.header(self.name.lower().encode("latin-1"))
            return raw.decode("latin-1") if raw is not None else None
        from portway.integrations.events import parse_query

        found = None
        for name, value in parse_query(ctx.query_string):
            if name == self.name:
                found = value
        return found


class HttpProxyIntegration:
    needs_body = False

    def __init__(
        self,
        *,
        uri: str,
        method: str | None,
        timeout_s: float,
        pools: UpstreamPools,
        path_parameters: Mapping[str, ParameterSource],
        headers: Mapping[str, ParameterSource],
        query: Mapping[str, ParameterSource],
        table: ResponseTable = REST_RESPONSES,
        tracing: Tracing | None = None,
    ) -> None:
        self.table = table
        self.tracing = tracing  # when spans are exported: the upstream gets the W3C traceparent too
        self.uri = uri
        self.method = None if method in (None, "ANY") else method
        self.timeout_s = timeout_s
        self.pools = pools
        self.path_parameters = dict(path_parameters)
        self.headers = dict(headers)
        self.query = dict(query)
        parts = urlsplit(uri)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc.encode("latin-1")

    def describe(self) -> str:
        return f"http_proxy {self.method or 'ANY'} {self.uri}"

    def _url(self, ctx: RequestContext) -> str:
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            source = self.path_parameters.get(name)
            value = source.value(ctx) if source is not None else ctx.path_parameters.get(name)
            if value is None:
                return ""
            # A greedy value keeps its slashes; anything else is one path segment.
            return quote(value, safe="/" if match.group(0).endswith("+}") or "/" in value else "")

        url = _PLACEHOLDER.sub(substitute, self.uri)
        query = ctx.query_string.decode("latin-1")
        extra = [
            f"{quote(name, safe='')}={quote(value, safe='')}"
            for name, source in self.query.items()
            if (value := source.value(ctx)) is not None
        ]
        query = "&".join(filter(None, [query, *extra]))
        if query:
            url += ("&" if "?" in url else "?") + query
        return url

    def _request_headers(self, ctx: RequestContext, *, sized_body: bool = False) -> list[tuple[str, str]]:
        """The headers sent upstream; with ``sized_body`` the client's Content-Length is left for aiohttp to
        set from the bytes actually sent (a stage may have replaced the body)."""
        headers: list[tuple[str, str]] = []
        forwarded_for = None
        for name, value in ctx.headers:
            if name in _HOP_BY_HOP or name == b"host" or (sized_body and name == b"content-length"):
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value.decode("latin-1")
                continue
            if name == b"x-amzn-trace-id" or (self.tracing is not None and name in _W3C_TRACE):
                continue  # the request's trace headers follow (the client's own X-Ray one if it sent one)
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        headers.append(("Host", self.host.decode("latin-1")))
        headers.append(("X-Amzn-Trace-Id", ctx.trace_id))
        if self.tracing is not None:
            headers.extend(self.tracing.upstream_headers())
        client = ctx.client_ip
        headers.append(("X-Forwarded-For", f"{forwarded_for}, {client}" if forwarded_for else client))
        headers.append(("X-Forwarded-Proto", ctx.scheme))
        for target, source in self.headers.items():
            mapped = source.value(ctx)
            if mapped is not None:
                headers = [h for h in headers if h[0].lower() != target.lower()]
                headers.append((target, mapped))
        return headers

    async def _body(self, ctx: RequestContext) -> AsyncIterator[bytes]:
        receive = ctx.receive()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def __call__(self, ctx: RequestContext) -> Response:
        length = ctx.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return gateway_response(ResponseType.REQUEST_TOO_LARGE, self.table)
        buffered = ctx.buffered_body
        data: bytes | AsyncIterator[bytes] | None
        if buffered:
            data = buffered  # read (and perhaps replaced, e.g. decompressed) by a stage: send that
        elif buffered is None and (
            length not in (None, b"0") or ctx.header(b"transfer-encoding") is not None
        ):
            data = self._body(ctx)
        else:
            data = None
        method = self.method or ctx.method
        url = self._url(ctx)
        session = self.pools.session(self.origin)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                upstream = await session.request(
                    method,
                    url,
                    headers=self._request_headers(ctx, sized_body=isinstance(data, bytes)),
                    data=data,
                    allow_redirects=False,
                    compress=None,
                )
        except BodyTooLarge:
            return gateway_response(ResponseType.REQUEST_TOO_LARGE, self.table)
        except TimeoutError:
            log.error("[%s] upstream %s timed out after %.0f ms", ctx.request_id, url, self.timeout_s * 1000)
            ctx.integration_error = f"upstream timed out after {self.timeout_s * 1000:.0f} ms"
            return gateway_response(ResponseType.INTEGRATION_TIMEOUT, self.table)
        except (_client_error(), OSError) as exc:
            log.error("[%s] upstream %s failed: %s: %s", ctx.request_id, url, type(exc).__name__, exc)
            ctx.integration_error = f"{type(exc).__name__}: {exc}"
            return gateway_response(ResponseType.INTEGRATION_FAILURE, self.table)
        ctx.integration_status = upstream.status
        headers: Headers = [
            (name, value) for name, value in upstream.raw_headers if name.lower() not in _HOP_BY_HOP
        ]
        return Response(upstream.status, headers, stream=self._relay(upstream, deadline, ctx.request_id))

    @staticmethod
    async def _relay(
        upstream: aiohttp.ClientResponse, deadline: float, request_id: str
    ) -> AsyncIterator[bytes]:
        """Stream the upstream body; past the integration deadline the connection is cut, never hung.

        The timeout wraps each read only: a timeout spanning a ``yield`` would cancel the consumer instead.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                async with asyncio.timeout_at(deadline):
                    chunk = await upstream.content.readany()
                if not chunk:
                    break
                yield chunk
        except (TimeoutError, _client_error(), OSError) as exc:
            log.error(
                "[%s] upstream body interrupted at %.3f: %s", request_id, loop.time(), type(exc).__name__
            )
            upstream.close()
            raise
        finally:
            upstream.release()


def _client_error() -> type[Exception]:
    """aiohttp's base error class, imported only once an HTTP proxy route has been used."""
    import aiohttp

    return aiohttp.ClientError
