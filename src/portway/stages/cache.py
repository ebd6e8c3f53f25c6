"""Response caching as API Gateway does it for REST APIs: per route, keyed, with a time to live.

What AWS documents (https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-caching.html),
and what this stage does the same way:

- An entry lives ``cacheTtlInSeconds`` (default 300, at most 3600; 0 turns caching off).
- Only ``GET`` is cached unless a method's own settings enable caching for it.
- A key is the route's *cache namespace* (``cacheNamespace``; by default the resource, e.g. ``/items/{id}``),
  the method, and the values of the ``cacheKeyParameters`` only: ``method.request.querystring.NAME``,
  ``…header.NAME``, ``…path.NAME`` (and the ``multivalue…`` forms). Any other query string or header does
  not count, and neither does a path parameter that is not listed: on AWS, ``/items/1`` and ``/items/2`` share
  one entry unless ``method.request.path.id`` is a key parameter. Portway keeps that (so a definition that
  serves the wrong item from the cache does so locally too, before production); see
  :func:`unkeyed_path_parameters` for a compile-time warning.
- A response over 1,048,576 bytes is not cached.
- ``Cache-Control: max-age=0`` on a request fetches a fresh answer and replaces the entry, when the caller may
  (``requireAuthorizationForCacheControl`` false, or the caller holds ``execute-api:InvalidateCache``, which
  earlier stages report as ``ctx.can_invalidate_cache``). Otherwise ``unauthorizedCacheControlHeaderStrategy``
  decides: ``FAIL_WITH_403`` refuses the request, ``SUCCEED_WITH_RESPONSE_HEADER`` (the default) ignores the
  header and adds a ``Warning`` to the response, ``SUCCEED_WITHOUT_RESPONSE_HEADER`` ignores it silently.
- API Gateway adds no header telling a hit from a miss (its docs point to the CacheHitCount/CacheMissCount
  metrics); nor does this stage. ``ctx.cache_status`` carries it to logs and metrics.

What AWS does not document, and what this stage chose:

- Which statuses: API Gateway caches what the integration answered whatever its status (users report a
  backend's 429 served from the cache). A 5xx is not cached here by default: a Lambda error or an integration
  timeout reaches this stage as a 502/504 that cannot be told from a backend's own, and caching it would pin
  an outage for the TTL. ``cache_server_errors=True`` caches them too.
- A streamed response (an HTTP proxy's) is passed through and not cached: only buffered bodies are.
- The ``Warning`` value and the 403 body are not in AWS's docs; see :data:`UNAUTHORIZED_WARNING` and
  :data:`INVALIDATION_DENIED`.

A store failure never fails a request: a failed lookup is a miss, a failed write is skipped, and the outage is
logged once when it starts and once when it ends.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, GatewayResponse, ResponseTable
from portway.state.memory import MemoryStore
from portway.state.outage import StoreOutage
from portway.state.store import Store, StoreUnavailable
from portway.types import Headers, Response

__all__ = [
    "DEFAULT_TTL_S",
    "FAIL_WITH_403",
    "INVALIDATION_DENIED",
    "MAX_ENTRY_BYTES",
    "MAX_TTL_S",
    "STRATEGIES",
    "SUCCEED_WITHOUT_RESPONSE_HEADER",
    "SUCCEED_WITH_RESPONSE_HEADER",
    "UNAUTHORIZED_WARNING",
    "CacheSettings",
    "CacheStage",
    "KeyParameter",
    "KeyPlan",
    "cache_key",
    "decode_entry",
    "encode_entry",
    "key_parameter",
    "parse_cache_key_parameters",
    "settings_problems",
    "unkeyed_path_parameters",
    "wants_refresh",
]

log = logging.getLogger("portway.cache")

DEFAULT_TTL_S = 300
MAX_TTL_S = 3600
MAX_ENTRY_BYTES = 1_048_576  # the largest response API Gateway caches

FAIL_WITH_403 = "FAIL_WITH_403"
SUCCEED_WITH_RESPONSE_HEADER = "SUCCEED_WITH_RESPONSE_HEADER"
SUCCEED_WITHOUT_RESPONSE_HEADER = "SUCCEED_WITHOUT_RESPONSE_HEADER"
STRATEGIES = (FAIL_WITH_403, SUCCEED_WITH_RESPONSE_HEADER, SUCCEED_WITHOUT_RESPONSE_HEADER)

# The header SUCCEED_WITH_RESPONSE_HEADER adds. AWS's docs say only "a warning header"; this is the value
# another API Gateway emulator sends as AWS's (not confirmed against a captured AWS response yet).
UNAUTHORIZED_WARNING = (
    b"warning",
    b"199 Cache-control headers were ignored because the caller was unauthorized.",
)

# FAIL_WITH_403's answer. AWS's docs say only "a 403 Unauthorized response"; this is API Gateway's generic
# 403 body (as for a missing API key) until a captured response says otherwise.
INVALIDATION_DENIED = GatewayResponse(403, "Forbidden", "ForbiddenException")
_INVALIDATION_DENIED_HTTP = GatewayResponse(403, "Forbidden", None)

ERR_KEY_LIST = (
    "must be a list of strings like ['method.request.querystring.type', 'method.request.header.Accept']"
)
ERR_KEY_FORM = (
    "{value!r}: expected method.request.querystring.NAME, method.request.header.NAME, "
    "method.request.path.NAME (or method.request.multivaluequerystring.NAME / multivalueheader.NAME)"
)
ERR_KEY_UNMAPPED = (
    "{value!r}: the integration's requestParameters do not map it from a method request parameter"
)
ERR_KEY_TWICE = "{value!r} is listed twice"

_SOURCES = {
    "querystring": ("querystring", False),
    "multivaluequerystring": ("querystring", True),
    "header": ("header", False),
    "multivalueheader": ("header", True),
    "path": ("path", False),
}


@dataclass(frozen=True, slots=True)
class KeyParameter:
    """One cache key parameter, compiled: where its value comes from and whether every value counts.

    ``querystring`` and ``header`` take the last value when a request repeats one (as
    ``method.request.querystring.NAME`` does on AWS); the ``multivalue…`` forms take all of them, in order.
    Header names are compared lower-case, query string and path names as written.
    """

    source: str  # "querystring", "header" or "path"
    name: str
    all_values: bool = False
    raw: bytes = field(init=False, repr=False, compare=False)  # the name as bytes, as requests carry it

    def __post_init__(self) -> None:
        name = self.name.lower() if self.source == "header" else self.name
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "raw", name.encode())

    @property
    def expression(self) -> str:
        kind = {"querystring": "querystring", "header": "header", "path": "path"}[self.source]
        return f"method.request.{'multivalue' if self.all_values else ''}{kind}.{self.name}"


def key_parameter(value: str) -> KeyParameter:
    """``"method.request.querystring.type"`` → its :class:`KeyParameter`; ValueError when malformed.

    >>> key_parameter("method.request.header.Accept-Language")
    KeyParameter(source='header', name='accept-language', all_values=False)
    """
    prefix, _, rest = value.partition("method.request.")
    kind, dot, name = rest.partition(".")
    if prefix or not dot or kind not in _SOURCES or not name or name.strip() != name:
        raise ValueError(ERR_KEY_FORM.format(value=value))
    source, all_values = _SOURCES[kind]
    return KeyParameter(source, name, all_values)


def parse_cache_key_parameters(
    values: Any, where: str, integration_parameters: Mapping[str, str] | None = None
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """Check a definition's ``cacheKeyParameters``; the usable ones, and problems as (JSON path, message).

    ``integration.request.…`` names are resolved through the integration's ``requestParameters`` (AWS
    allows both); one mapped from a static ``'value'`` is constant and left out of the key.

    >>> keys, problems = parse_cache_key_parameters(["method.request.querystring.type", "type"], "$.k")
    >>> keys, [where for where, _ in problems]
    (('method.request.querystring.type',), ['$.k[1]'])
    """
    problems: list[tuple[str, str]] = []
    if values is None:
        return (), problems
    if not isinstance(values, list | tuple):
        return (), [(where, ERR_KEY_LIST)]
    mapping = integration_parameters or {}
    found: list[str] = []
    seen: set[KeyParameter] = set()
    for index, value in enumerate(values):
        at = f"{where}[{index}]"
        if not isinstance(value, str):
            problems.append((at, f"must be a string, not {type(value).__name__}"))
            continue
        expression = value
        if value.startswith("integration.request."):
            source = mapping.get(value)
            if source is None or not (source.startswith("method.request.") or _is_literal(source)):
                problems.append((at, ERR_KEY_UNMAPPED.format(value=value)))
                continue
            if _is_literal(source):
                continue
            expression = source
        try:
            parameter = key_parameter(expression)
        except ValueError as exc:
            problems.append((at, str(exc)))
            continue
        if parameter in seen:
            problems.append((at, ERR_KEY_TWICE.format(value=value)))
            continue
        seen.add(parameter)
        found.append(parameter.expression)
    return tuple(found), problems


def _is_literal(source: str) -> bool:
    return len(source) >= 2 and source[0] == "'" and source[-1] == "'"


def unkeyed_path_parameters(resource: str, key_parameters: Iterable[str]) -> tuple[str, ...]:
    """Path parameters of ``resource`` that are not cache key parameters: requests differing only in them
    share one entry (as on AWS). Worth a warning when a route is cached.

    >>> unkeyed_path_parameters("/items/{id}/parts/{proxy+}", ["method.request.path.proxy"])
    ('id',)
    """
    keyed = {p.name for p in map(key_parameter, key_parameters) if p.source == "path"}
    names: list[str] = []
    for segment in resource.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1].removesuffix("+")
            if name not in keyed:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """One route's cache, as a stage's ``methodSettings`` and the integration describe it.

    - ``ttl_s``: seconds an entry lives (``cacheTtlInSeconds``), 0 to 3600; 0 caches nothing.
    - ``require_authorization``: ``requireAuthorizationForCacheControl``: whether ``Cache-Control: max-age=0``
      needs ``ctx.can_invalidate_cache`` to refresh an entry (else anyone may).
    - ``unauthorized_strategy``: ``unauthorizedCacheControlHeaderStrategy``, what happens to an unauthorized
      refresh: one of :data:`STRATEGIES`.
    - ``key_parameters``: ``cacheKeyParameters``, ``method.request.(querystring|header|path).NAME`` (and
      ``multivaluequerystring`` / ``multivalueheader``); their order does not matter.
    - ``namespace``: ``cacheNamespace``; routes sharing one share entries. None: the route's resource.
    - ``methods``: the request methods whose answers are cached (API Gateway: GET unless a method enables its
      own caching; an ``ANY`` route caches only these).
    - ``max_entry_bytes``: the largest body kept (AWS: 1,048,576 bytes).
    - ``cache_server_errors``: also keep 5xx answers (off: see the module's notes).
    """

    ttl_s: int = DEFAULT_TTL_S
    require_authorization: bool = True
    unauthorized_strategy: str = SUCCEED_WITH_RESPONSE_HEADER
    key_parameters: tuple[str, ...] = ()
    namespace: str | None = None
    methods: frozenset[str] = frozenset({"GET"})
    max_entry_bytes: int = MAX_ENTRY_BYTES
    cache_server_errors: bool = False


def settings_problems(settings: CacheSettings, where: str) -> list[tuple[str, str]]:
    """Everything wrong with ``settings``, as (JSON path, message); empty when the stage can be built."""
    problems: list[tuple[str, str]] = []
    if isinstance(settings.ttl_s, bool) or not 0 <= settings.ttl_s <= MAX_TTL_S:
        problems.append(
            (f"{where}.cacheTtlInSeconds", f"must be a whole number of seconds from 0 to {MAX_TTL_S}")
        )
    if settings.unauthorized_strategy not in STRATEGIES:
        problems.append(
            (f"{where}.unauthorizedCacheControlHeaderStrategy", f"must be one of {', '.join(STRATEGIES)}")
        )
    _, key_problems = parse_cache_key_parameters(list(settings.key_parameters), f"{where}.cacheKeyParameters")
    problems.extend(key_problems)
    if settings.namespace is not None and not settings.namespace:
        problems.append((f"{where}.cacheNamespace", "must not be empty"))
    if not settings.methods or any(not m.isalpha() or m != m.upper() for m in settings.methods):
        problems.append((f"{where}.methods", "must be HTTP methods in capitals, like GET"))
    if settings.max_entry_bytes <= 0:
        problems.append((f"{where}.maxEntryBytes", "must be a positive number of bytes"))
    return problems


# --- keys ---------------------------------------------------------------------------------------------------


_PERCENT, _PLUS, _EQUALS = (
    b"%+="  # byte values: ``int in bytes`` is several times faster than ``bytes in bytes``
)


def _query_values(query: bytes, wanted: Container[bytes]) -> dict[bytes, list[bytes]]:
    """The raw values of the wanted query string names, in order. Names are percent-decoded (``ty%70e`` is
    ``type``); values are kept as sent: two spellings of one value make two entries, never a wrong hit."""
    found: dict[bytes, list[bytes]] = {}
    encoded = _PERCENT in query or _PLUS in query
    for piece in query.split(b"&"):
        name, _, value = piece.partition(b"=")
        if encoded:
            name = unquote_to_bytes(name.replace(b"+", b" "))
        if name in wanted:
            if name in found:
                found[name].append(value)
            else:
                found[name] = [value]
    return found


class KeyPlan:
    """Cache key parameters compiled once: sorted (their order in a definition does not matter) and split
    by where their values come from. :meth:`key` is what :func:`cache_key` computes."""

    __slots__ = ("_headers", "_queries", "parameters")

    def __init__(self, parameters: Iterable[KeyParameter]) -> None:
        self.parameters = tuple(sorted(set(parameters), key=_order))
        self._queries = frozenset(p.raw for p in self.parameters if p.source == "querystring")
        self._headers = frozenset(p.raw for p in self.parameters if p.source == "header")

    def key(
        self,
        prefix: str,
        namespace: str,
        method: str,
        path_parameters: Mapping[str, str],
        query_string: bytes,
        headers: Sequence[tuple[bytes, bytes]],
    ) -> str:
        # Framed so that different values never hash alike: every value as <length>:<bytes>, an absent one
        # as "-", a multivalue parameter as <count>* then its values.
        namespace_bytes = namespace.encode()
        out = [b"%d:%b%d:%b" % (len(namespace_bytes), namespace_bytes, len(method), method.encode())]
        if self.parameters:
            queries = _query_values(query_string, self._queries) if self._queries and query_string else {}
            header_values: dict[bytes, list[bytes]] = {}
            if self._headers:
                wanted = self._headers
                for name, value in headers:
                    if name in wanted:
                        if name in header_values:
                            header_values[name].append(value)
                        else:
                            header_values[name] = [value]
            for parameter in self.parameters:
                if parameter.source == "path":
                    text = path_parameters.get(parameter.name)
                    if text is None:
                        out.append(b"-")
                    else:
                        value = text.encode()
                        out.append(b"%d:%b" % (len(value), value))
                    continue
                found = (queries if parameter.source == "querystring" else header_values).get(parameter.raw)
                if parameter.all_values:
                    out.append(b"%d*" % len(found or ()))
                    out.extend(b"%d:%b" % (len(value), value) for value in found or ())
                elif found:
                    value = found[-1]
                    out.append(b"%d:%b" % (len(value), value))
                else:
                    out.append(b"-")
        return prefix + hashlib.blake2b(b"".join(out), digest_size=16).hexdigest()


def cache_key(
    prefix: str,
    namespace: str,
    method: str,
    parameters: Iterable[KeyParameter],
    *,
    path_parameters: Mapping[str, str],
    query_string: bytes,
    headers: Sequence[tuple[bytes, bytes]],
) -> str:
    """The store key of a request: ``prefix`` + a 128-bit BLAKE2b of namespace, method and the parameters'
    values, framed so that different values never collide. Pure: no I/O.

    >>> cache_key("c:", "/items", "GET", (), path_parameters={}, query_string=b"", headers=[])
    'c:360e912aba12a42dce01c2033b9aed7a'
    """
    return KeyPlan(parameters).key(prefix, namespace, method, path_parameters, query_string, headers)


def wants_refresh(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a request carries ``Cache-Control: max-age=0`` (among other directives, any case).

    >>> wants_refresh([(b"cache-control", b"no-store, Max-Age=0")])
    True
    >>> wants_refresh([(b"cache-control", b"max-age=60")])
    False
    """
    for name, value in headers:
        if name == b"cache-control" and _EQUALS in value:
            for directive in value.split(b","):
                key, _, argument = directive.partition(b"=")
                if key.strip().lower() == b"max-age":
                    argument = argument.strip().strip(b'"')
                    if argument.isdigit() and int(argument) == 0:
                        return True
    return False


# --- entries ------------------------------------------------------------------------------------------------

# version, status, header count; then per header its name's and value's lengths, name, value; then the body.
_VERSION = 1
_HEAD = struct.Struct("!BHH")
_PAIR = struct.Struct("!II")


def encode_entry(status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A response as stored: a small binary framing (read back 1.5 times faster than
    JSON with a base64 body for a small answer, 100 times for a 1 MB one)."""
    parts: list[bytes] = []
    pack = _PAIR.pack
    for name, value in headers:
        parts.append(pack(len(name), len(value)))
        parts.append(name)
        parts.append(value)
    return b"".join((_HEAD.pack(_VERSION, status, len(parts) // 3), *parts, body))


def decode_entry(data: bytes) -> Response | None:
    """A stored response back, with headers of its own; None when ``data`` is not an entry of this format."""
    try:
        version, status, count = _HEAD.unpack_from(data)
        if version != _VERSION:
            return None
        headers: Headers = []
        pos = _HEAD.size
        unpack = _PAIR.unpack_from
        for _ in range(count):
            name_len, value_len = unpack(data, pos)
            pos += 8
            end = pos + name_len
            value_end = end + value_len
            if value_end > len(data):
                return None
            headers.append((data[pos:end], data[end:value_end]))
            pos = value_end
    except struct.error:
        return None
    return Response(status, headers, data[pos:])


# --- the stage ----------------------------------------------------------------------------------------------

_MEMO_ENTRIES = 4096  # decoded entries kept per route (all dropped when full: bounded, and cheap to refill)


class CacheStage:
    """Answers from the cache when it can; stores what the integration answered when it may.

    ``key_prefix`` separates APIs and stages sharing one store (``store.cache_drop(key_prefix)`` flushes
    them); ``table`` says whether answers are a REST API's (with ``x-amzn-ErrorType``) or an HTTP API's.
    """

    name = "cache"
    needs_body = False
    responds = True

    def __init__(
        self,
        settings: CacheSettings,
        store: Store,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "cache:",
        table: ResponseTable = REST_RESPONSES,
        *,
        outage: StoreOutage | None = None,
    ) -> None:
        problems = settings_problems(settings, "$")
        if problems:
            raise ValueError("; ".join(f"{where}: {message}" for where, message in problems))
        self.settings = settings
        self.store = store
        self.clock = clock
        self.key_prefix = key_prefix
        self._ttl = float(settings.ttl_s)
        self._methods = settings.methods if settings.ttl_s > 0 else frozenset()
        self._plan = KeyPlan(map(key_parameter, settings.key_parameters))
        self._max_bytes = settings.max_entry_bytes
        self._max_status = 599 if settings.cache_server_errors else 499
        self._may_refresh = not settings.require_authorization
        self._strategy = settings.unauthorized_strategy
        rest = any(spec.error_type is not None for spec in table.values())
        self._denied = INVALIDATION_DENIED if rest else _INVALIDATION_DENIED_HTTP
        self._outage = outage or StoreOutage("response cache", "serving from the integration", log)
        # Without key parameters a route's key depends on its resource and the method only: hash it once.
        self._fixed_keys: dict[tuple[str, str], str] = {}
        # An in-process store answers without awaiting and without copying: read it directly, and keep the
        # decoding of the entries it hands back (key -> (the stored bytes, their decoding)).
        self._local = store if isinstance(store, MemoryStore) else None
        self._memo: dict[str, tuple[bytes, Response]] = {}

    def key(self, ctx: RequestContext) -> str:
        namespace = self.settings.namespace or ctx.resource
        if not self._plan.parameters:
            fixed = self._fixed_keys.get((namespace, ctx.method))
            if fixed is None:
                fixed = self._fixed_keys[(namespace, ctx.method)] = self._key(ctx, namespace)
            return fixed
        return self._key(ctx, namespace)

    def _key(self, ctx: RequestContext, namespace: str) -> str:
        return self._plan.key(
            self.key_prefix, namespace, ctx.method, ctx.path_parameters, ctx.query_string, ctx.headers
        )

    def _decoded(self, key: str, data: bytes) -> Response | None:
        """The entry as a Response of its own (the gateway adds headers to what it sends). An in-process
        store hands back the very bytes it was given: their decoding is remembered until the entry changes."""
        if self._local is None:
            return decode_entry(data)
        memo = self._memo.get(key)
        if memo is None or memo[0] is not data:
            decoded = decode_entry(data)
            if decoded is None:
                return None
            if len(self._memo) >= _MEMO_ENTRIES:
                self._memo.clear()
            memo = self._memo[key] = (data, decoded)
        template = memo[1]
        return Response(template.status, list(template.headers), template.body)

    def _unauthorized_refresh(self, ctx: RequestContext) -> bool:
        return not self._may_refresh and not ctx.can_invalidate_cache and wants_refresh(ctx.headers)

    async def on_request(self, ctx: RequestContext) -> Response | None:
        if ctx.method not in self._methods:
            return None
        warn = False
        if wants_refresh(ctx.headers):
            if self._may_refresh or ctx.can_invalidate_cache:
                ctx.cache_status = "miss"  # fetch afresh; on_response replaces the entry
                return None
            if self._strategy == FAIL_WITH_403:
                spec = self._denied
                headers: Headers = [(b"content-type", b"application/json")]
                if spec.error_type is not None:
                    headers.append((b"x-amzn-errortype", spec.error_type.encode()))
                return Response(spec.status, headers, spec.encoded)
            warn = self._strategy == SUCCEED_WITH_RESPONSE_HEADER
        ctx.cache_status = "miss"
        key = self.key(ctx)
        if self._local is not None:
            data = self._local.cache_get_now(key, self.clock())
        else:
            try:
                data = await self.store.cache_get(key, self.clock())
            except StoreUnavailable as exc:
                self._outage.failed(exc)
                return None
            if self._outage.down_since is not None:
                self._outage.recovered()
        if data is None:
            return None
        response = self._decoded(key, data)
        if response is None:
            log.warning(
                "[%s] unreadable cache entry for %s %s; refetching", ctx.request_id, ctx.method, ctx.path
            )
            return None
        ctx.cache_status = "hit"
        if warn:
            response.headers.append(UNAUTHORIZED_WARNING)
        return response

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        if ctx.cache_status != "miss":
            return response  # a hit, a refused refresh, or a method this route does not cache
        entry = None
        if (
            response.stream is None
            and response.status <= self._max_status
            and len(response.body) <= self._max_bytes
        ):
            entry = encode_entry(response.status, response.headers, response.body)
        if self._strategy == SUCCEED_WITH_RESPONSE_HEADER and self._unauthorized_refresh(ctx):
            response.headers.append(UNAUTHORIZED_WARNING)
        if entry is None:
            return response
        try:
            await self.store.cache_put(self.key(ctx), entry, self._ttl, self.clock())
        except StoreUnavailable as exc:
            self._outage.failed(exc)
            return response
        if self._outage.down_since is not None:
            self._outage.recovered()
        return response


def _order(parameter: KeyParameter) -> tuple[str, str, bool]:
    return parameter.source, parameter.name, parameter.all_values
