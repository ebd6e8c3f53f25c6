"""A web ACL on a stage, modelled on AWS WAF: rules of match statements, by priority, each with an action.

AWS associates a WAF web ACL with a REST API stage; Portway writes it under the stage in the functions file
(any API kind may use it). The statements, fields and values are AWS WAF's, spelled in camelCase
(``ByteMatchStatement`` is ``byteMatch``, ``FieldToMatch`` is ``fieldToMatch``); a value AWS names in
capitals may be written in any case, with or without underscores (``URL_DECODE``, ``urlDecode``,
``url_decode``). AWS's own statement names are refused with the name to write instead, so one spelling
stays in use.

```yaml
stages:
  prod:
    webAcl:
      defaultAction: allow            # allow | block: what happens when no rule decides (default allow)
      bodyInspectionLimit: KB_16      # KB_16 (default) | KB_32 | KB_48 | KB_64: how much body rules see
      rules:                          # evaluated by priority, lowest first
        - name: block-bad-ips         # 1-128 letters, digits, '-' or '_'; unique
          priority: 0                 # a whole number >= 0; unique
          action: block               # allow | block | count
          statement:
            ipSet: {addresses: ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]}
        - name: limit-per-ip
          priority: 1
          action: block
          statement:
            rateBased:
              limit: 100              # requests per window, 10 to 2,000,000,000
              windowSeconds: 300      # 60 | 120 | 300 (default) | 600
              aggregateKey: ip        # ip (default): per client address | constant: all requests together
              scopeDown:              # optional: count (and act on) only the requests matching this
                byteMatch: {fieldToMatch: method, searchString: POST, positionalConstraint: exactly}
        - name: sqli
          priority: 2
          action: block
          statement:
            sqliMatch:
              fieldToMatch: {queryString: {}}
              textTransformations: [urlDecode, htmlEntityDecode]
              sensitivityLevel: low   # low (default) | high
        - name: no-admin-from-outside
          priority: 3
          action: count
          statement:
            and:
              - byteMatch:
                  fieldToMatch: uriPath
                  searchString: /admin
                  positionalConstraint: contains   # exactly | startsWith | endsWith | contains | containsWord
                  textTransformations: [urlDecode, lowercase]
              - not: {ipSet: {addresses: ["10.0.0.0/8"]}}
```

Statements (one key each):

- ``ipSet: {addresses: [...]}``: the client address is in one of the CIDR ranges (IPv4 and IPv6; a bare
  address is a /32 or /128; /0 and host bits set are refused). AWS names a separate IP set; Portway takes the
  addresses inline. At most 10,000 addresses (AWS's IP set bound).
- ``byteMatch: {fieldToMatch, searchString, positionalConstraint, textTransformations}``: the component
  (after the transformations) contains / equals / starts or ends with ``searchString`` (1-200 bytes, UTF-8);
  ``containsWord`` wants it between non-word characters (``searchString`` then may hold only ``A-Za-z0-9_``).
- ``regexMatch: {fieldToMatch, regexString, textTransformations}``: a regular expression (1-512 characters,
  Python's ``re``; AWS runs PCRE) searches the component. It runs on bytes, as AWS's does: a non-ASCII
  character is its UTF-8 bytes (so ``é+`` repeats its last byte; write ``(?:é)+``).
- ``sizeConstraint: {fieldToMatch, comparisonOperator, size, textTransformations}``: the component's length
  in bytes compared (``eq ne le lt ge gt``) with ``size`` (0 to 21,474,836,480).
- ``sqliMatch: {fieldToMatch, textTransformations, sensitivityLevel}`` and
  ``xssMatch: {fieldToMatch, textTransformations}``: SQL injection / cross-site scripting in the component
  (:mod:`portway.stages.waf_match` says how they are detected).
- ``rateBased: {limit, windowSeconds, aggregateKey, scopeDown}``: only as a rule's own statement (AWS does not
  nest it). It matches while the client (or, with ``constant``, everyone) sent more than ``limit`` requests
  in the trailing window.
- ``and: [two or more statements]``, ``or: [two or more]``, ``not: statement``.

``fieldToMatch`` is one of ``uriPath`` (the path as the client sent it, stage included, not decoded),
``queryString`` (after ``?``, not decoded), ``method``, ``singleHeader: {name}``, ``singleQueryArgument:
{name}`` (names compared without case; the value not decoded), ``allQueryArguments`` (every argument's value),
``body: {oversizeHandling: continue | match | noMatch}``; written ``{uriPath: {}}`` or just ``uriPath``. A
component with several values (a repeated header or argument, all arguments) matches when one value does; a
header or argument the request lacks matches nothing (so ``not`` of it matches). ``textTransformations`` is a
list of AWS's transformation types (at most 10), applied in the order written: ``none``, ``urlDecode``,
``urlDecodeUni``, ``htmlEntityDecode``, ``lowercase``, ``compressWhiteSpace``, ``cmdLine``, ``base64Decode``,
``base64DecodeExt``, ``hexDecode``, ``md5``, ``replaceComments``, ``escapeSeqDecode``, ``sqlHexDecode``,
``cssDecode``, ``jsDecode``, ``normalizePath``, ``normalizePathWin``, ``removeNulls``, ``replaceNulls``,
``utf8ToUnicode``.

The body: API Gateway forwards the first 16 KB of a body to WAF by default (``bodyInspectionLimit``, up to
64 KB in 16 KB steps); rules see only that much. ``oversizeHandling`` decides for a longer body: ``continue``
(default) inspects what is there, ``match`` / ``noMatch`` decide without looking. Only a web ACL with a rule
on the body makes the route read the body before the integration, and only when there is one: an HTTP/1
request without Content-Length (or with 0) and without Transfer-Encoding has none, so its body rules see
b"" at once.

Evaluation: rules run by priority; the first matching rule whose action is ``allow`` or ``block`` decides;
a matching ``count`` rule is recorded (logged at INFO with the rule's name and the request id, counted in
:class:`WebAclStats`) and evaluation goes on; when no rule decides, ``defaultAction`` does. A blocked request
gets the ``WAF_FILTERED`` gateway response (403 ``{"message":"Forbidden"}``). ``ctx.waf_status`` is
``BLOCK``, ``COUNT`` (let through, a count rule matched) or ``ALLOW``.

Rate-based rules count in the gateway's state store (so every node sharing a Redis store counts together),
with a two-window sliding estimate of AWS's trailing window: a counter per client per fixed window (aligned to
multiples of ``windowSeconds``), and the rate is this window's count plus the previous window's count weighted
by the part of it still inside the trailing window. A client blocked at the end of one window is therefore
still blocked at the start of the next, and let through again as its old requests slide out, as AWS's
trailing window does (within the estimate's error; AWS too says its limit is approximate). Every request that
reaches the rule (and its scope-down statement) counts, blocked ones too. When the store fails, a rate-based
rule matches nothing (fail open) and the outage is logged once, when it starts and when it ends.

Where Portway differs: AWS's statements not here are ``geoMatch``, ``labelMatch``, ``asnMatch``, regex pattern
sets, managed and custom rule groups, forwarded-IP configuration, and the ``headers``, ``cookies``,
``jsonBody``, ``headerOrder``, ``ja3Fingerprint``, ``ja4Fingerprint`` and ``uriFragment`` fields; rule
labels, CAPTCHA / challenge actions and custom responses neither. Each is refused by name at load time.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from portway.config.model import Operation
from portway.pipeline.build import StageBuild
from portway.pipeline.context import RequestContext
from portway.pipeline.responses import REST_RESPONSES, ResponseTable, ResponseType, gateway_response
from portway.stages import waf_match
from portway.stages.waf_match import TRANSFORMATIONS, IpMatcher, Transformation, canonical, ip_key
from portway.state.memory import MemoryStore
from portway.state.outage import StoreOutage
from portway.state.store import Store, StoreUnavailable
from portway.types import Response

__all__ = [
    "BODY_INSPECTION_LIMITS",
    "DEFAULT_BODY_INSPECTION_LIMIT",
    "RATE_WINDOWS",
    "Action",
    "AllQueryArguments",
    "AndStatement",
    "Body",
    "ByteMatch",
    "FieldToMatch",
    "Inspection",
    "IpSetMatch",
    "Method",
    "NotStatement",
    "OrStatement",
    "PlanStep",
    "QueryString",
    "RateBased",
    "RegexMatch",
    "Rule",
    "RuleTest",
    "SingleHeader",
    "SingleQueryArgument",
    "SizeConstraint",
    "SqliMatch",
    "Statement",
    "UriPath",
    "Verdict",
    "WafRequest",
    "WafStage",
    "WebAcl",
    "WebAclStats",
    "XssMatch",
    "build_stage",
    "decide",
    "parse",
]

log = logging.getLogger("portway.waf")

BODY_INSPECTION_LIMITS: Final = {"KB_16": 16_384, "KB_32": 32_768, "KB_48": 49_152, "KB_64": 65_536}
DEFAULT_BODY_INSPECTION_LIMIT: Final = BODY_INSPECTION_LIMITS["KB_16"]  # API Gateway's default
RATE_WINDOWS: Final = (60, 120, 300, 600)  # AWS's EvaluationWindowSec values
DEFAULT_RATE_WINDOW: Final = 300
RATE_LIMIT_RANGE: Final = (10, 2_000_000_000)
MAX_RULES: Final = 100  # Portway's bound (AWS bounds a web ACL by capacity units instead)
MAX_ADDRESSES: Final = 10_000  # addresses in one AWS IP set
MAX_TRANSFORMATIONS: Final = 10
MAX_SEARCH_BYTES: Final = 200
MAX_REGEX_CHARS: Final = 512
MAX_SIZE: Final = 21_474_836_480
MAX_NAME_CHARS: Final = 64  # a header or query argument name
MAX_NESTING: Final = 20
DEFAULT_ACTION_RULE: Final = "Default_Action"  # AWS's CloudWatch Rule dimension for the default action
_PREVIOUS_CACHE_BOUND = 100_000  # clients whose previous-window count is kept per rate-based rule


class Action(StrEnum):
    ALLOW = "ALLOW"
    BLOCK = "BLOCK"
    COUNT = "COUNT"


# --- the request, as the rules see it ---------------------------------------------------------------------


class WafRequest:
    """The parts of a request the rules inspect, as plain data; parsed further (query arguments, the client
    address, transformed components) only when a rule asks, and then once.

    ``path`` is the path as the client sent it (stage included, still percent-encoded); ``headers`` are
    ``(lower-case name, value)`` pairs, as ASGI gives them; ``body`` is cut to ``body_limit`` bytes.
    ``cache`` holds what the compiled rules took from the request, by inspection slot (a transformed
    component, shared by every rule inspecting the same component with the same transformations).
    """

    __slots__ = (
        "_args",
        "_ip",
        "_ip_parsed",
        "body",
        "body_oversize",
        "cache",
        "client_ip",
        "headers",
        "method",
        "path",
        "query",
    )

    def __init__(
        self,
        method: str,
        path: bytes,
        query: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        client_ip: str = "127.0.0.1",
        *,
        body_limit: int = DEFAULT_BODY_INSPECTION_LIMIT,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.body_oversize = False
        if body:
            self.set_body(body, body_limit)
        self.client_ip = client_ip
        # An inspection's slot -> its value (a single-valued component) or values; see _Compiler.
        self.cache: dict[int, Any] = {}
        self._args: dict[bytes, tuple[bytes, ...]] | None = None
        self._ip: tuple[int, int] | None = None
        self._ip_parsed = False

    def set_body(self, body: bytes, body_limit: int = DEFAULT_BODY_INSPECTION_LIMIT) -> None:
        """The body, cut to ``body_limit`` bytes (``body_oversize`` says whether it was longer)."""
        self.body_oversize = len(body) > body_limit
        self.body = body[:body_limit] if self.body_oversize else body

    def header(self, name: bytes) -> tuple[bytes, ...]:
        """Every value of a header (``name`` lower-case), in order."""
        found: tuple[bytes, ...] = ()
        for key, value in self.headers:  # a loop: no generator per call
            if key == name:
                found = (*found, value)
        return found

    def args(self) -> dict[bytes, tuple[bytes, ...]]:
        """Query arguments: decoded lower-case name -> the raw values, in order."""
        if self._args is None:
            found: dict[bytes, tuple[bytes, ...]] = {}
            for part in self.query.split(b"&"):
                if part:
                    name, _, value = part.partition(b"=")
                    if 0x25 in name or 0x2B in name:  # "%" or "+"
                        name = _URL_DECODE(name)
                    name = name.lower()
                    found[name] = (*found[name], value) if name in found else (value,)
            self._args = found
        return self._args

    def ip(self) -> tuple[int, int] | None:
        """The client address as ``(version, integer)``; None when it is no IP address."""
        if not self._ip_parsed:
            self._ip = ip_key(self.client_ip)
            self._ip_parsed = True
        return self._ip


_URL_DECODE = TRANSFORMATIONS["URL_DECODE"]


# --- fields to match --------------------------------------------------------------------------------------
# A field with one value (the path, the query string, the method, the body) is read as bytes; the others as
# a tuple of every value, which matches when one value does.


@dataclass(frozen=True, slots=True)
class UriPath:
    def values(self, request: WafRequest) -> Sequence[bytes]:
        return (request.path,)


@dataclass(frozen=True, slots=True)
class QueryString:
    def values(self, request: WafRequest) -> Sequence[bytes]:
        return (request.query,)


@dataclass(frozen=True, slots=True)
class Method:
    def values(self, request: WafRequest) -> Sequence[bytes]:
        return (request.method.encode("latin-1"),)


@dataclass(frozen=True, slots=True)
class SingleHeader:
    name: bytes  # lower-case

    def values(self, request: WafRequest) -> Sequence[bytes]:
        return request.header(self.name)


@dataclass(frozen=True, slots=True)
class SingleQueryArgument:
    name: bytes  # lower-case

    def values(self, request: WafRequest) -> Sequence[bytes]:
        return request.args().get(self.name, ())


@dataclass(frozen=True, slots=True)
class AllQueryArguments:
    def values(self, request: WafRequest) -> Sequence[bytes]:
        """Every argument's raw value, in the query's order (a match needs one: names are not decoded)."""
        found = []
        for part in request.query.split(b"&"):
            if part:
                found.append(part.partition(b"=")[2])
        return found


@dataclass(frozen=True, slots=True)
class Body:
    oversize: bool | None = (
        None  # a body over the limit: None inspects what is there (CONTINUE), else decides
    )

    def values(self, request: WafRequest) -> Sequence[bytes]:
        return (request.body,)


FieldToMatch = UriPath | QueryString | Method | SingleHeader | SingleQueryArgument | AllQueryArguments | Body


def _method(request: WafRequest) -> bytes:
    return request.method.encode("latin-1")


# The fields with one value, read straight off the request.
_SINGLE: Final[dict[type, Callable[[WafRequest], bytes]]] = {
    UriPath: operator.attrgetter("path"),
    QueryString: operator.attrgetter("query"),
    Method: _method,
    Body: operator.attrgetter("body"),
}


class Inspection:
    """A field and its transformations; equal inspections share a slot, so a request transforms once."""

    __slots__ = ("chain", "field", "oversize", "slot", "transformations")

    def __init__(self, field: FieldToMatch, transformations: tuple[str, ...], slot: int) -> None:
        self.field = field
        self.transformations = transformations  # AWS's names, in the order applied
        self.chain: tuple[Transformation, ...] = tuple(TRANSFORMATIONS[name] for name in transformations)
        self.slot = slot
        self.oversize = field.oversize if isinstance(field, Body) else None


# --- statements -------------------------------------------------------------------------------------------
# The parsed definition: data, compiled into plain functions of a request by _Compiler (see WebAcl.plan).


class _Inspecting:
    """A statement over one inspected component: it matches when one of the component's values passes
    ``test`` (set by each kind of statement)."""

    __slots__ = ("inspection", "test")

    def __init__(self, inspection: Inspection, test: Callable[[bytes], bool]) -> None:
        self.inspection = inspection
        self.test = test


class ByteMatch(_Inspecting):
    __slots__ = ("position", "search")

    def __init__(self, inspection: Inspection, search: bytes, position: str) -> None:
        # find, not "in": on CPython 3.11 "search in value" costs about three times as much.
        test: Callable[[bytes], bool]
        if position == "EXACTLY":
            test = search.__eq__
        elif position == "STARTS_WITH":
            test = lambda value: value.startswith(search)  # noqa: E731
        elif position == "ENDS_WITH":
            test = lambda value: value.endswith(search)  # noqa: E731
        elif position == "CONTAINS":
            test = lambda value: value.find(search) >= 0  # noqa: E731
        else:  # CONTAINS_WORD
            word = re.compile(rb"(?<![A-Za-z0-9_])" + re.escape(search) + rb"(?![A-Za-z0-9_])")
            test = lambda value: value.find(search) >= 0 and word.search(value) is not None  # noqa: E731
        super().__init__(inspection, test)
        self.search = search
        self.position = position  # AWS's name: EXACTLY, STARTS_WITH, ENDS_WITH, CONTAINS, CONTAINS_WORD


class RegexMatch(_Inspecting):
    __slots__ = ("pattern",)

    def __init__(self, inspection: Inspection, pattern: re.Pattern[bytes]) -> None:
        super().__init__(inspection, waf_match.regex_test(pattern))
        self.pattern = pattern


_COMPARE: Final[dict[str, Callable[[int, int], bool]]] = {
    "EQ": operator.eq,
    "NE": operator.ne,
    "LE": operator.le,
    "LT": operator.lt,
    "GE": operator.ge,
    "GT": operator.gt,
}


class SizeConstraint(_Inspecting):
    __slots__ = ("operator", "size")

    def __init__(self, inspection: Inspection, comparison: str, size: int) -> None:
        test: Callable[[bytes], bool]
        if comparison == "GT":  # the usual one: without a second call
            test = lambda value: len(value) > size  # noqa: E731
        else:
            compare = _COMPARE[comparison]
            test = lambda value: compare(len(value), size)  # noqa: E731
        super().__init__(inspection, test)
        self.operator = comparison  # AWS's name: EQ, NE, LE, LT, GE, GT
        self.size = size


class SqliMatch(_Inspecting):
    __slots__ = ("high",)

    def __init__(self, inspection: Inspection, high: bool) -> None:
        test = functools.partial(waf_match.sqli, high=True) if high else waf_match.sqli
        super().__init__(inspection, test)
        self.high = high


class XssMatch(_Inspecting):
    __slots__ = ()

    def __init__(self, inspection: Inspection) -> None:
        super().__init__(inspection, waf_match.xss)


class IpSetMatch:
    __slots__ = ("addresses", "matcher")

    def __init__(self, addresses: tuple[str, ...], matcher: IpMatcher) -> None:
        self.addresses = addresses
        self.matcher = matcher


class AndStatement:
    __slots__ = ("statements",)

    def __init__(self, statements: tuple[Statement, ...]) -> None:
        self.statements = statements


class OrStatement:
    __slots__ = ("statements",)

    def __init__(self, statements: tuple[Statement, ...]) -> None:
        self.statements = statements


class NotStatement:
    __slots__ = ("statement",)

    def __init__(self, statement: Statement) -> None:
        self.statement = statement


Statement = (
    ByteMatch
    | RegexMatch
    | SizeConstraint
    | SqliMatch
    | XssMatch
    | IpSetMatch
    | AndStatement
    | OrStatement
    | NotStatement
)


@dataclass(frozen=True, slots=True)
class RateBased:
    """A rate-based rule's settings: over ``limit`` requests in the trailing ``window_s`` seconds."""

    limit: int
    window_s: int
    per_ip: bool  # aggregate key IP (else CONSTANT: every request in one count)
    scope_down: Statement | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    priority: int
    action: Action
    statement: Statement | None  # None for a rate-based rule
    rate: RateBased | None = None
    index: int = 0  # the rule's place in priority order
    where: str = ""


# --- compiled statements ----------------------------------------------------------------------------------

RuleTest = Callable[[WafRequest], bool]
# A rule as evaluated: the rule, its statement compiled (for a rate-based rule its scope-down statement, or
# None), and whether it is rate-based (the caller counts the request and answers whether it is over).
PlanStep = tuple[Rule, RuleTest | None, bool]
_IP_CACHE_BOUND = 10_000  # client addresses whose membership one IP set remembers
_PLAIN_FALSE_KEYS = 1 << 32  # request.cache keys above: a slot's values without the empty and alphanumeric


class _Compiler:
    """Turns statements into plain functions of a :class:`WafRequest`, once, when the web ACL is built.

    Each inspected component is taken once per request. One that several statements inspect (equal field
    and transformations: equal slot) is kept in ``request.cache`` under the slot, transformed, for the next
    one; a field of several values read by several slots (different transformations) is kept too, under a
    negative key per field, so they share the reading. What one statement alone inspects is not kept.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        slots: dict[FieldToMatch, set[int]] = {}
        self.slot_uses: dict[int, int] = {}
        self.every_value_used: set[int] = set()  # slots a statement other than SQLi or XSS inspects
        for rule in rules:
            for leaf in _inspecting(rule.statement if rule.rate is None else rule.rate.scope_down):
                inspection = leaf.inspection
                slots.setdefault(inspection.field, set()).add(inspection.slot)
                self.slot_uses[inspection.slot] = self.slot_uses.get(inspection.slot, 0) + 1
                if not isinstance(leaf, SqliMatch | XssMatch):
                    self.every_value_used.add(inspection.slot)
        shared = [field for field, used in slots.items() if len(used) > 1]
        self.field_keys = {field: -1 - i for i, field in enumerate(shared)}

    def statement(self, statement: Statement) -> RuleTest:
        if isinstance(statement, _Inspecting):
            return self.inspecting(statement)
        if isinstance(statement, IpSetMatch):
            return _ip_set(statement.matcher)
        if isinstance(statement, NotStatement):
            inner = self.statement(statement.statement)
            return lambda request: not inner(request)
        parts = tuple(self.statement(part) for part in statement.statements)
        if isinstance(statement, AndStatement):

            def all_of(request: WafRequest) -> bool:
                for part in parts:  # noqa: SIM110 (a loop: no generator per call)
                    if not part(request):
                        return False
                return True

            return all_of

        def any_of(request: WafRequest) -> bool:
            for part in parts:  # noqa: SIM110 (a loop: no generator per call)
                if part(request):
                    return True
            return False

        return any_of

    def inspecting(self, statement: _Inspecting) -> RuleTest:
        inspection = statement.inspection
        test = statement.test
        slot = inspection.slot
        shared = self.slot_uses.get(slot, 0) > 1
        chain = _chain(inspection.transformations)
        # SQL injection and XSS are never in an empty or alphanumeric value (most values: "2", "price"):
        # skip their call for one; before the transformations too, when those keep such a value.
        plain_false = isinstance(statement, SqliMatch | XssMatch)
        skip_raw = plain_false and (
            chain is None or all(name in waf_match.PLAIN_VALUES_KEPT for name in inspection.transformations)
        )
        read = _SINGLE.get(type(inspection.field))
        if read is not None:
            fused = None if shared else _fused(statement, read, chain)
            test_one = fused or self.single(read, chain, test, slot, shared=shared, skip_raw=skip_raw)
            oversize = inspection.oversize
            if oversize is None:
                return test_one
            return lambda request: oversize if request.body_oversize else test_one(request)
        field = inspection.field
        if isinstance(field, SingleHeader) and chain is None and not shared and field not in self.field_keys:
            name = field.name

            def header(request: WafRequest) -> bool:
                for key, value in request.headers:
                    if key == name and not (plain_false and (not value or value.isalnum())) and test(value):
                        return True
                return False

            return header
        read_all = self.values_of(field)
        if chain is None:
            if shared:
                read_all = self.kept_values(read_all, slot)

            def multiple(request: WafRequest) -> bool:
                for value in read_all(request):
                    if plain_false and (not value or value.isalnum()):
                        continue
                    if test(value):
                        return True
                return False

            return multiple
        transform = chain
        if not shared:

            def each(request: WafRequest) -> bool:
                for value in read_all(request):
                    if skip_raw and (not value or value.isalnum()):
                        continue
                    if test(transform(value)):
                        return True
                return False

            return each

        def every_value(request: WafRequest) -> list[bytes]:
            cache = request.cache
            values: list[bytes] | None = cache.get(slot)
            if values is None:
                values = cache[slot] = [transform(value) for value in read_all(request)]
            return values

        if plain_false:
            # Kept without the empty and alphanumeric values, which the test passes over (under a key of
            # its own), taken from every value when another statement of the slot wants those.
            key = _PLAIN_FALSE_KEYS + slot
            from_every_value = slot in self.every_value_used
            query_values = (
                skip_raw
                and isinstance(inspection.field, AllQueryArguments)
                and inspection.field not in self.field_keys
            )

            def kept_unplain(request: WafRequest) -> bool:
                cache = request.cache
                values: list[bytes] | None = cache.get(key)
                if values is None:
                    values = cache[key] = []
                    if from_every_value:
                        for value in every_value(request):
                            if value and not value.isalnum():
                                values.append(value)
                    elif query_values:  # AllQueryArguments.values, read here: one loop, not two
                        for part in request.query.split(b"&"):
                            value = part.partition(b"=")[2]
                            if not value or value.isalnum():
                                continue  # an empty part too: it is no argument, and would be skipped
                            value = transform(value)
                            if value and not value.isalnum():
                                values.append(value)
                    else:
                        for value in read_all(request):
                            if skip_raw and (not value or value.isalnum()):
                                continue  # the transformations keep it so
                            value = transform(value)
                            if value and not value.isalnum():
                                values.append(value)
                for value in values:  # noqa: SIM110 (a loop: no generator per call)
                    if test(value):
                        return True
                return False

            return kept_unplain

        def kept(request: WafRequest) -> bool:
            for value in every_value(request):  # noqa: SIM110 (a loop: no generator per call)
                if test(value):
                    return True
            return False

        return kept

    @staticmethod
    def single(
        read: Callable[[WafRequest], bytes],
        chain: Transformation | None,
        test: Callable[[bytes], bool],
        slot: int,
        *,
        shared: bool,
        skip_raw: bool,
    ) -> RuleTest:
        """A statement over a field of one value (the path, the query string, the method, the body)."""
        if chain is None:
            if skip_raw:

                def plain(request: WafRequest) -> bool:
                    value = read(request)
                    return bool(value) and not value.isalnum() and test(value)

                return plain
            return lambda request: test(read(request))
        transform = chain
        if not shared:
            if skip_raw:

                def plain_transformed(request: WafRequest) -> bool:
                    value = read(request)
                    return bool(value) and not value.isalnum() and test(transform(value))

                return plain_transformed
            return lambda request: test(transform(read(request)))

        def kept(request: WafRequest) -> bool:
            if skip_raw:
                value = read(request)
                if not value or value.isalnum():
                    return False
            cache = request.cache
            found: bytes | None = cache.get(slot)
            if found is None:
                found = cache[slot] = transform(read(request))
            return test(found)

        return kept

    def values_of(self, field: FieldToMatch) -> Callable[[WafRequest], Sequence[bytes]]:
        """The field's raw values; kept on the request when several inspections read the field."""
        key = self.field_keys.get(field)
        return field.values if key is None else self.kept_values(field.values, key)

    @staticmethod
    def kept_values(
        read: Callable[[WafRequest], Sequence[bytes]], key: int
    ) -> Callable[[WafRequest], Sequence[bytes]]:
        """``read``, kept on the request under ``key`` after the first call."""

        def values(request: WafRequest) -> Sequence[bytes]:
            cache = request.cache
            found: Sequence[bytes] | None = cache.get(key)
            if found is None:
                found = cache[key] = read(request)
            return found

        return values


def _inspecting(statement: Statement | None) -> list[_Inspecting]:
    """The statements inspecting a component, in ``statement``."""
    if statement is None or isinstance(statement, IpSetMatch):
        return []
    if isinstance(statement, _Inspecting):
        return [statement]
    if isinstance(statement, NotStatement):
        return _inspecting(statement.statement)
    return [found for part in statement.statements for found in _inspecting(part)]


def _fused(
    statement: _Inspecting, read: Callable[[WafRequest], bytes], chain: Transformation | None
) -> RuleTest | None:
    """A byte match or size constraint on a field of one value as one function, the test written out (one
    call less per request); None for other statements."""
    if isinstance(statement, ByteMatch) and statement.position != "CONTAINS_WORD":
        search = statement.search
        position = statement.position
        if chain is None:
            if position == "CONTAINS":
                return lambda request: read(request).find(search) >= 0
            if position == "EXACTLY":
                return lambda request: read(request) == search
            if position == "STARTS_WITH":
                return lambda request: read(request).startswith(search)
            return lambda request: read(request).endswith(search)
        transform = chain
        if position == "CONTAINS":
            return lambda request: transform(read(request)).find(search) >= 0
        if position == "EXACTLY":
            return lambda request: transform(read(request)) == search
        if position == "STARTS_WITH":
            return lambda request: transform(read(request)).startswith(search)
        return lambda request: transform(read(request)).endswith(search)
    if isinstance(statement, SizeConstraint) and statement.operator == "GT" and chain is None:
        size = statement.size
        return lambda request: len(read(request)) > size
    return None


def _chain(names: tuple[str, ...]) -> Transformation | None:
    """The transformations (AWS's names, in order) as one function; None for none. When each of them leaves
    an empty or ASCII-alphanumeric value as it is (most values of most requests: ``2``, ``price``), such a
    value skips them."""
    if not names:
        return None
    chain = tuple(TRANSFORMATIONS[name] for name in names)
    plain = all(name in waf_match.PLAIN_VALUES_KEPT for name in names)
    if len(chain) == 1:
        (only,) = chain
        if names[0] == "URL_DECODE":  # the usual first one: what it needs is looked for here, one call less
            return lambda value: value if 0x25 not in value and 0x2B not in value else only(value)
        if plain:
            return lambda value: value if not value or value.isalnum() else only(value)
        return only
    if len(chain) == 2:
        first, second = chain
        if names[0] == "URL_DECODE":
            if plain:
                return lambda value: (
                    value
                    if not value or value.isalnum()
                    else second(value if 0x25 not in value and 0x2B not in value else first(value))
                )
            return lambda value: second(value if 0x25 not in value and 0x2B not in value else first(value))
        if plain:
            return lambda value: value if not value or value.isalnum() else second(first(value))
        return lambda value: second(first(value))

    def transform(value: bytes) -> bytes:
        if plain and (not value or value.isalnum()):
            return value
        for step in chain:
            value = step(value)
        return value

    return transform


def _ip_set(matcher: IpMatcher) -> RuleTest:
    """Membership of the client address, remembered per address (a client sends many requests)."""
    known: dict[str, bool] = {}

    def ip_set(request: WafRequest) -> bool:
        address = request.client_ip
        found = known.get(address)
        if found is None:
            if len(known) >= _IP_CACHE_BOUND:
                known.clear()
            found = known[address] = matcher.contains(request.ip())
        return found

    return ip_set


def _plans(rules: tuple[Rule, ...]) -> tuple[tuple[PlanStep, ...], tuple[PlanStep, ...]]:
    """The plan, and the plan for a request without a body: there a statement that inspects nothing but
    the body has one answer, found here (a rule it never matches is left out; one it always matches tests
    nothing)."""
    compiler = _Compiler(rules)
    steps: list[PlanStep] = []
    without_body: list[PlanStep] = []
    for rule in rules:
        if rule.statement is not None:
            test = compiler.statement(rule.statement)
            steps.append((rule, test, False))
            if not _body_only(rule.statement):
                without_body.append((rule, test, False))
            elif test(WafRequest("GET", b"/")):
                without_body.append((rule, _always, False))
        else:
            assert rule.rate is not None
            scope = rule.rate.scope_down
            step = (rule, compiler.statement(scope) if scope is not None else None, True)
            steps.append(step)
            without_body.append(step)
    return tuple(steps), tuple(without_body)


def _body_only(statement: Statement) -> bool:
    if isinstance(statement, _Inspecting):
        return isinstance(statement.inspection.field, Body)
    if isinstance(statement, IpSetMatch):
        return False
    if isinstance(statement, NotStatement):
        return _body_only(statement.statement)
    return all(_body_only(part) for part in statement.statements)


def _always(request: WafRequest) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class WebAcl:
    default_action: Action  # ALLOW or BLOCK
    rules: tuple[Rule, ...]  # in priority order
    body_limit: int = DEFAULT_BODY_INSPECTION_LIMIT
    inspects_body: bool = False  # some rule reads the body: the route must read it first
    where: str = ""
    # The rules compiled, in priority order (made from ``rules`` when the web ACL is built), and compiled
    # for a request without a body (most: GET, HEAD, DELETE), where what inspects only the body is known.
    plan: tuple[PlanStep, ...] = dataclasses.field(init=False, repr=False, compare=False)
    plan_without_body: tuple[PlanStep, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plan, without_body = _plans(self.rules)
        object.__setattr__(self, "plan", plan)
        object.__setattr__(self, "plan_without_body", without_body)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the web ACL decided: ``action`` (ALLOW or BLOCK), the rule that decided (None: the default
    action), and the count rules that matched on the way."""

    action: Action
    rule: Rule | None
    counted: tuple[Rule, ...] = ()

    @property
    def status(self) -> str:
        """``ctx.waf_status``: BLOCK, COUNT (let through, a count rule matched) or ALLOW."""
        if self.action is Action.BLOCK:
            return "BLOCK"
        return "COUNT" if self.counted else "ALLOW"


# --- evaluation (no I/O) ----------------------------------------------------------------------------------


def decide(
    acl: WebAcl, request: WafRequest, over_limit: Callable[[Rule], bool] = lambda rule: False
) -> Verdict:
    """Run the rules in priority order, without a store: ``over_limit`` answers for each rate-based rule
    the request reaches (its scope-down statement, if any, matched) whether the client is over the limit.

    The stage runs the same plan (:attr:`WebAcl.plan`), counting in the store for rate-based rules.

    >>> acl, problems = parse({"defaultAction": "block", "rules": [{"name": "home", "priority": 0,
    ...     "action": "allow", "statement": {"ipSet": {"addresses": ["192.0.2.0/24"]}}}]}, "$.webAcl")
    >>> decide(acl, WafRequest("GET", b"/", client_ip="192.0.2.10")).action
    <Action.ALLOW: 'ALLOW'>
    >>> decide(acl, WafRequest("GET", b"/", client_ip="198.51.100.1")).rule is None  # the default: block
    True
    """
    counted: list[Rule] = []
    for rule, test, rated in acl.plan if request.body else acl.plan_without_body:
        if test is not None and not test(request):
            continue
        if rated and not over_limit(rule):
            continue
        if rule.action is Action.COUNT:
            counted.append(rule)
            continue
        return Verdict(rule.action, rule, tuple(counted))
    return Verdict(acl.default_action, None, tuple(counted))


_METRICS: Final = {
    Action.ALLOW: "AllowedRequests",
    Action.BLOCK: "BlockedRequests",
    Action.COUNT: "CountedRequests",
}


class WebAclStats:
    """Requests per rule and decision, named as AWS WAF's CloudWatch metrics (``AllowedRequests``,
    ``BlockedRequests``, ``CountedRequests``; rule ``ALL`` for the web ACL, ``Default_Action`` for the
    default action). Plain integers, bumped on the event loop's thread: read them any time.
    """

    __slots__ = ("allowed", "blocked", "by_default", "counted", "default", "matched", "rules")

    def __init__(self, rules: Sequence[Rule], default_action: Action = Action.ALLOW) -> None:
        self.rules = tuple(rules)
        self.default = default_action
        self.matched = [0] * len(self.rules)  # per rule, in priority order: requests it matched
        self.allowed = 0  # requests the web ACL let through (by a rule or the default)
        self.blocked = 0
        self.counted = 0  # count-rule matches
        self.by_default = 0  # requests the default action decided

    def record(self, verdict: Verdict) -> None:
        self.record_decision(verdict.action, verdict.rule, verdict.counted)

    def record_decision(self, action: Action, rule: Rule | None, counted: Sequence[Rule] = ()) -> None:
        """:meth:`record` from a verdict's parts (the stage decides without making a :class:`Verdict`)."""
        if counted:
            for matched in counted:
                self.matched[matched.index] += 1
            self.counted += len(counted)
        if rule is not None:
            self.matched[rule.index] += 1
        else:
            self.by_default += 1
        if action is Action.BLOCK:
            self.blocked += 1
        else:
            self.allowed += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{rule name: {metric: value}}``, plus ``ALL`` and ``Default_Action``.

        >>> WebAclStats([]).snapshot()["ALL"]
        {'AllowedRequests': 0, 'BlockedRequests': 0, 'CountedRequests': 0}
        """
        out = {
            "ALL": {
                "AllowedRequests": self.allowed,
                "BlockedRequests": self.blocked,
                "CountedRequests": self.counted,
            }
        }
        for rule, matched in zip(self.rules, self.matched, strict=True):
            out[rule.name] = {_METRICS[rule.action]: matched}
        out[DEFAULT_ACTION_RULE] = {_METRICS[self.default]: self.by_default}
        return out


# --- the stage --------------------------------------------------------------------------------------------


def _may_have_body(scope: Mapping[str, Any], headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether the request may carry a body. An HTTP/1 request without Content-Length or Transfer-Encoding
    has none (RFC 9112, 6.3), nor has one with Content-Length 0: its body is b"", known without awaiting
    the server. HTTP/2 and later need neither header, so there the body is always read."""
    if scope.get("http_version", "1.1") not in ("1.1", "1.0"):
        return True
    for name, value in headers:
        if name == b"content-length":
            if value.strip().lstrip(b"0"):
                return True
        elif name == b"transfer-encoding":
            return True
    return False


class _RateCounter:
    """One rate-based rule's keys, and the previous window's counts already read (they no longer change)."""

    __slots__ = ("end", "known_keys", "limit", "per_ip", "prefix", "previous", "start", "window", "window_s")

    def __init__(self, rate: RateBased, prefix: str) -> None:
        self.limit = rate.limit
        self.window_s = rate.window_s
        self.per_ip = rate.per_ip
        self.prefix = prefix
        self.window = -1  # the window whose previous counts ``previous`` holds
        self.start = 0  # that window's start, and when its counter expires (two windows on)
        self.end = 0
        self.previous: dict[str, int] = {}
        self.known_keys: dict[str, tuple[str, str]] = {}  # what keys() made, by client

    def roll(self, window: int) -> None:
        """A new window: the previous counts remembered were the last window's."""
        self.window = window
        self.start = window * self.window_s
        self.end = self.start + 2 * self.window_s
        self.previous.clear()

    def keys(self, who: str) -> tuple[str, str]:
        """The client's two counters' keys, for even and odd windows."""
        found = self.known_keys.get(who)
        if found is None:
            if len(self.known_keys) >= _PREVIOUS_CACHE_BOUND:
                self.known_keys.clear()
            key = self.prefix + who
            found = self.known_keys[who] = (f"{key}:0", f"{key}:1")
        return found


class WafStage:
    """The web ACL in a route's pipeline; one instance serves every route of the stage.

    ``stats`` (:class:`WebAclStats`) counts what it decided, for metrics.
    """

    name = "waf"
    responds = False

    def __init__(
        self,
        acl: WebAcl,
        store: Store,
        *,
        table: ResponseTable = REST_RESPONSES,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "waf",
        outage: StoreOutage | None = None,
    ) -> None:
        self.acl = acl
        self.store = store
        self.table = table
        self.clock = clock
        self.needs_body = acl.inspects_body
        self.stats = WebAclStats(acl.rules, acl.default_action)
        # The in-process store answers without awaiting: count in it directly, one coroutine less per rule.
        self._local = store if isinstance(store, MemoryStore) else None
        self._outage = outage or StoreOutage(
            "web ACL", "rate-based rules match nothing (requests go on unlimited by them)", log
        )
        self._rates = {
            rule.index: _RateCounter(rule.rate, f"{key_prefix}:{rule.name}:{rule.rate.window_s}:")
            for rule in acl.rules
            if rule.rate is not None
        }
        # The web ACL's plans with each rate-based rule's counter (None for the other rules).
        self._steps = self._with_counters(acl.plan)
        self._steps_without_body = self._with_counters(acl.plan_without_body)
        # With no rate-based rule to await (none, or the in-process store), each rule is one function,
        # paired with its place in the plan (the rules, by place: _rules and _rules_without_body).
        self._default_allows = acl.default_action is Action.ALLOW
        self._rules = tuple(rule for rule, _, _ in acl.plan)
        self._rules_without_body = tuple(rule for rule, _, _ in acl.plan_without_body)
        self._tests: tuple[tuple[RuleTest, int], ...] | None = None
        self._tests_without_body: tuple[tuple[RuleTest, int], ...] = ()
        if self._local is not None or not self._rates:
            self._tests = self._one_function_each(self._steps)
            self._tests_without_body = self._one_function_each(self._steps_without_body)

    def _with_counters(
        self, plan: tuple[PlanStep, ...]
    ) -> tuple[tuple[Rule, RuleTest | None, _RateCounter | None], ...]:
        return tuple((rule, test, self._rates.get(rule.index)) for rule, test, _ in plan)

    def _one_function_each(
        self, steps: tuple[tuple[Rule, RuleTest | None, _RateCounter | None], ...]
    ) -> tuple[tuple[RuleTest, int], ...]:
        tests = []
        for at, (_, test, counter) in enumerate(steps):
            if counter is not None:
                test = self._rate_test(self._local, test, counter)
            assert test is not None
            tests.append((test, at))
        return tuple(tests)

    async def on_request(self, ctx: RequestContext) -> Response | None:
        scope = ctx.scope
        raw_path: bytes | None = scope.get("raw_path")
        request = WafRequest(
            ctx.method,
            raw_path if raw_path else str(scope["path"]).encode("utf-8"),
            scope.get("query_string", b""),
            ctx.headers,
            b"",
            ctx.client_ip,
        )
        if self.needs_body:
            body = ctx.buffered_body
            if body is None and _may_have_body(scope, request.headers):
                body = await ctx.body()
            if body:
                request.set_body(body, self.acl.body_limit)
        tests = self._tests
        if tests is None:  # a rate-based rule counts in a store to await
            return await self._evaluate_awaiting(ctx, request)
        if not request.body:
            tests = self._tests_without_body
        for test, at in tests:
            if test(request):
                return self._matched(ctx, request, tests, at)
        # No rule matched (most requests): the default action decides.
        stats = self.stats
        stats.by_default += 1
        if self._default_allows:
            stats.allowed += 1
            ctx.waf_status = "ALLOW"
            return None
        stats.blocked += 1
        return self._decided(ctx, Action.BLOCK, None, None)

    def _matched(
        self,
        ctx: RequestContext,
        request: WafRequest,
        tests: tuple[tuple[RuleTest, int], ...],
        at: int,
    ) -> Response | None:
        """The rest of :meth:`on_request` once the rule at ``at`` matched: a count rule is recorded and the
        rules after it run; an allow or block rule decides."""
        rules = self._rules if tests is self._tests else self._rules_without_body
        counted: list[Rule] | None = None
        decided: Rule | None = rules[at]
        while decided is not None and decided.action is Action.COUNT:
            if counted is None:
                counted = [decided]
            else:
                counted.append(decided)
            following = decided = None
            for test, place in tests[at + 1 :]:
                if test(request):
                    following = place
                    break
            if following is not None:
                at = following
                decided = rules[at]
        action = self.acl.default_action if decided is None else decided.action
        self.stats.record_decision(action, decided, counted or ())
        return self._decided(ctx, action, decided, counted)

    async def _evaluate_awaiting(self, ctx: RequestContext, request: WafRequest) -> Response | None:
        """:meth:`on_request`'s rules when a rate-based rule counts in a store to await (Redis)."""
        counted: list[Rule] | None = None
        decided: Rule | None = None
        for rule, matches, counter in self._steps if request.body else self._steps_without_body:
            if matches is not None and not matches(request):
                continue
            if counter is not None and not await self._over_limit(counter, request.client_ip):
                continue
            if rule.action is Action.COUNT:
                if counted is None:
                    counted = [rule]
                else:
                    counted.append(rule)
                continue
            decided = rule
            break
        action = self.acl.default_action if decided is None else decided.action
        self.stats.record_decision(action, decided, counted or ())
        return self._decided(ctx, action, decided, counted)

    def _decided(
        self, ctx: RequestContext, action: Action, decided: Rule | None, counted: list[Rule] | None
    ) -> Response | None:
        """Log what the web ACL decided, set ``ctx.waf_status``; the response when it blocks (stats are
        recorded by the caller)."""
        for rule in counted or ():
            log.info(
                "[%s] web ACL rule %s matched (count): %s %s",
                ctx.request_id,
                rule.name,
                ctx.method,
                ctx.path,
            )
        if action is Action.ALLOW:
            ctx.waf_status = "ALLOW" if counted is None else "COUNT"
            return None
        ctx.waf_status = "BLOCK"
        log.info(
            "[%s] web ACL blocked %s %s (%s)",
            ctx.request_id,
            ctx.method,
            ctx.path,
            f"rule {decided.name}" if decided is not None else "default action",
        )
        return gateway_response(ResponseType.WAF_FILTERED, self.table)

    async def on_response(self, ctx: RequestContext, response: Response) -> Response:
        return response

    def _rate_test(
        self, store: MemoryStore | None, scope_down: RuleTest | None, counter: _RateCounter
    ) -> RuleTest:
        """A rate-based rule on the in-process store as one function: the scope-down statement, if any,
        then the count (:meth:`_over_limit` without a coroutine: this store cannot fail)."""
        assert store is not None
        clock = self.clock
        count_now = store.count_now
        window_s = counter.window_s
        per_ip = counter.per_ip
        known_keys = counter.known_keys
        previous_counts = counter.previous
        limit = counter.limit

        def over_limit_now(request: WafRequest) -> bool:
            if scope_down is not None and not scope_down(request):
                return False
            now = clock()
            window = math.floor(now / window_s)
            if window != counter.window:
                counter.roll(window)
            who = request.client_ip if per_ip else "*"
            keys = known_keys.get(who) or counter.keys(who)
            current = count_now(keys[window & 1], 1, counter.end, now)
            if current > limit:
                return True
            previous = previous_counts.get(who)
            if previous is None:
                previous = store.counter_now(keys[~window & 1], now)
                if len(previous_counts) >= _PREVIOUS_CACHE_BOUND:
                    previous_counts.clear()
                previous_counts[who] = previous
            return current + previous * (1.0 - (now - counter.start) / window_s) > limit

        return over_limit_now

    # Two counters per client, for alternate windows: each lives two windows, so the previous one can be read
    # while the current one fills, and a counter's slot is reused (reset) two windows later. The rate is this
    # window's count plus the previous window's, weighted by the part of it still inside the trailing window.

    async def _over_limit(self, counter: _RateCounter, client_ip: str) -> bool:
        """Count the request for a rate-based rule; whether the client is over its limit. A store that
        fails makes the rule match nothing (fail open)."""
        now = self.clock()
        window_s = counter.window_s
        window = math.floor(now / window_s)
        start = window * window_s
        who = client_ip if counter.per_ip else "*"
        keys = counter.keys(who)
        try:
            current = await self.store.count(keys[window & 1], 1, None, start + 2 * window_s, now)
            over = current.value > counter.limit
            if not over:
                previous = await self._previous(counter, window, who, keys[~window & 1], now)
                weight = 1.0 - (now - start) / window_s
                over = current.value + previous * weight > counter.limit
        except StoreUnavailable as exc:
            self._outage.failed(exc)
            return False
        if self._outage.down_since is not None:
            self._outage.recovered()
        return over

    async def _previous(self, counter: _RateCounter, window: int, who: str, key: str, now: float) -> int:
        """The previous window's count for ``who``: read from the store once per window, then remembered."""
        if counter.window != window:
            counter.roll(window)
        found = counter.previous.get(who)
        if found is None:
            found = await self.store.counter(key, now)
            if len(counter.previous) >= _PREVIOUS_CACHE_BOUND:
                counter.previous.clear()
            counter.previous[who] = found
        return found


def build_stage(op: Operation, build: StageBuild) -> WafStage | None:
    """The stage's web ACL stage, shared by every route (``build.shared``), or None when the stage has no
    ``webAcl`` or it has problems (reported once, with their JSON paths in the functions file, through
    ``build.settings_problem``)."""
    if __name__ in build.shared:
        stage: WafStage | None = build.shared[__name__]
        return stage
    stage = None
    raw = build.settings.web_acl
    if raw is not None:
        where = f"{build.settings.where or '$'}.webAcl"
        acl, problems = parse(raw, where)
        for path, message in problems:
            build.settings_problem(path, message)
        if acl is not None:
            stage = WafStage(
                acl,
                build.store,
                table=build.table,
                clock=build.clock,
                key_prefix=f"waf:{build.api_info.api_id}:{build.stage}",
            )
    build.shared[__name__] = stage
    return stage


# --- the definition ---------------------------------------------------------------------------------------

_ACL_KEYS = ("defaultAction", "bodyInspectionLimit", "rules")
_RULE_KEYS = ("name", "priority", "action", "statement")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_WORD = re.compile(rb"^[A-Za-z0-9_]+$")
_STATEMENTS = (
    "ipSet",
    "byteMatch",
    "regexMatch",
    "sizeConstraint",
    "sqliMatch",
    "xssMatch",
    "rateBased",
    "and",
    "or",
    "not",
)
# AWS's names, for a hint: write Portway's.
_AWS_STATEMENTS = {
    canonical(aws): ours
    for aws, ours in {
        "IPSetReferenceStatement": "ipSet",
        "ByteMatchStatement": "byteMatch",
        "RegexMatchStatement": "regexMatch",
        "SizeConstraintStatement": "sizeConstraint",
        "SqliMatchStatement": "sqliMatch",
        "XssMatchStatement": "xssMatch",
        "RateBasedStatement": "rateBased",
        "AndStatement": "and",
        "OrStatement": "or",
        "NotStatement": "not",
    }.items()
}
_UNSUPPORTED_STATEMENTS = {
    canonical(name): name
    for name in (
        "geoMatch",
        "GeoMatchStatement",
        "labelMatch",
        "LabelMatchStatement",
        "asnMatch",
        "AsnMatchStatement",
        "regexPatternSetReference",
        "RegexPatternSetReferenceStatement",
        "managedRuleGroup",
        "ManagedRuleGroupStatement",
        "ruleGroupReference",
        "RuleGroupReferenceStatement",
    )
}
_FIELDS = (
    "uriPath",
    "queryString",
    "method",
    "singleHeader",
    "singleQueryArgument",
    "allQueryArguments",
    "body",
)
_UNSUPPORTED_FIELDS = frozenset(
    canonical(name)
    for name in (
        "headers",
        "cookies",
        "jsonBody",
        "headerOrder",
        "ja3Fingerprint",
        "ja4Fingerprint",
        "uriFragment",
    )
)
_POSITIONS = ("EXACTLY", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "CONTAINS_WORD")
_OVERSIZE = {"CONTINUE": None, "MATCH": True, "NO_MATCH": False}
_ACTIONS = ("ALLOW", "BLOCK", "COUNT")
_UNSUPPORTED_ACTIONS = frozenset(canonical(name) for name in ("CAPTCHA", "CHALLENGE"))


def parse(raw: Any, where: str) -> tuple[WebAcl | None, list[tuple[str, str]]]:
    """A web ACL from what the definition holds at ``where`` (a JSON path). Every problem is reported;
    the web ACL is None when there is any (a firewall is never run with rules left out).

    >>> acl, problems = parse({"rules": [{"name": "x", "priority": 0, "action": "deny",
    ...     "statement": {"ipSet": {"addresses": ["10.0.0.0/33"]}}}]}, "$.webAcl")
    >>> acl is None, [path for path, _ in problems]
    (True, ['$.webAcl.rules[0].action', '$.webAcl.rules[0].statement.ipSet.addresses[0]'])
    """
    return _Parser(where).web_acl(raw)


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where
        self.problems: list[tuple[str, str]] = []
        self.slots: dict[tuple[FieldToMatch, tuple[str, ...]], int] = {}
        self.inspects_body = False

    def problem(self, where: str, message: str) -> None:
        self.problems.append((where, message))

    def web_acl(self, raw: Any) -> tuple[WebAcl | None, list[tuple[str, str]]]:
        where = self.where
        if not isinstance(raw, Mapping):
            self.problem(where, "must be a mapping with 'rules' (and 'defaultAction', 'bodyInspectionLimit')")
            return None, self.problems
        self.unknown_keys(raw, _ACL_KEYS, where)
        default = self.choice(raw.get("defaultAction", "ALLOW"), ("ALLOW", "BLOCK"), f"{where}.defaultAction")
        limit_name = self.choice(
            raw.get("bodyInspectionLimit", "KB_16"),
            tuple(BODY_INSPECTION_LIMITS),
            f"{where}.bodyInspectionLimit",
        )
        rules = self.rules(raw.get("rules", []), f"{where}.rules")
        if self.problems or default is None or limit_name is None:
            return None, self.problems
        acl = WebAcl(
            default_action=Action(default),
            rules=rules,
            body_limit=BODY_INSPECTION_LIMITS[limit_name],
            inspects_body=self.inspects_body,
            where=where,
        )
        return acl, self.problems

    def rules(self, raw: Any, where: str) -> tuple[Rule, ...]:
        if not isinstance(raw, list):
            self.problem(where, "must be a list of rules (name, priority, action, statement)")
            return ()
        if len(raw) > MAX_RULES:
            self.problem(where, f"at most {MAX_RULES} rules")
        parsed: list[Rule] = []
        names: dict[str, str] = {}
        priorities: dict[int, str] = {}
        for i, item in enumerate(raw):
            here = f"{where}[{i}]"
            rule = self.rule(item, here)
            if rule is None:
                continue
            if rule.name in names:
                self.problem(
                    f"{here}.name", f"{rule.name!r} is the name of {names[rule.name]} too: names are unique"
                )
            names.setdefault(rule.name, here)
            if rule.priority in priorities:
                self.problem(
                    f"{here}.priority",
                    f"priority {rule.priority} is {priorities[rule.priority]}'s too: priorities are unique",
                )
            priorities.setdefault(rule.priority, here)
            parsed.append(rule)
        ordered = sorted(parsed, key=lambda rule: rule.priority)
        return tuple(
            Rule(rule.name, rule.priority, rule.action, rule.statement, rule.rate, index, rule.where)
            for index, rule in enumerate(ordered)
        )

    def rule(self, raw: Any, where: str) -> Rule | None:
        if not isinstance(raw, Mapping):
            self.problem(where, "must be a mapping with name, priority, action and statement")
            return None
        self.unknown_keys(raw, _RULE_KEYS, where)
        before = len(self.problems)
        name = raw.get("name")
        if not isinstance(name, str) or not _RULE_NAME.match(name):
            self.problem(f"{where}.name", "must be 1-128 letters, digits, '-' or '_'")
        priority = raw.get("priority")
        if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
            self.problem(f"{where}.priority", "must be a whole number, 0 or more (lower runs first)")
        action = raw.get("action")
        if isinstance(action, str) and canonical(action) in _UNSUPPORTED_ACTIONS:
            self.problem(
                f"{where}.action", f"{action!r} is not supported by Portway: use allow, block or count"
            )
            action = None
        elif action is None:
            self.problem(f"{where}.action", "is required: allow, block or count")
        else:
            action = self.choice(action, _ACTIONS, f"{where}.action")
        if "statement" not in raw:
            self.problem(f"{where}.statement", "is required")
            return None
        statement = self.statement(raw["statement"], f"{where}.statement", depth=0, top=True)
        if len(self.problems) > before or statement is None or action is None:
            return None
        assert isinstance(name, str)
        assert isinstance(priority, int)
        if isinstance(statement, RateBased):
            return Rule(name, priority, Action(action), None, statement, where=where)
        return Rule(name, priority, Action(action), statement, where=where)

    def statement(
        self, raw: Any, where: str, *, depth: int, top: bool = False
    ) -> Statement | RateBased | None:
        if depth > MAX_NESTING:
            self.problem(where, f"statements nest at most {MAX_NESTING} deep")
            return None
        if not isinstance(raw, Mapping) or len(raw) != 1:
            self.problem(where, f"must be a mapping with exactly one statement: {', '.join(_STATEMENTS)}")
            return None
        ((kind, body),) = raw.items()
        kind = str(kind)
        here = f"{where}.{kind}"
        if kind not in _STATEMENTS:
            ours = _AWS_STATEMENTS.get(canonical(kind))
            if ours is not None:
                self.problem(here, f"write {ours!r} (Portway's name for AWS's {kind})")
            elif canonical(kind) in _UNSUPPORTED_STATEMENTS:
                self.problem(
                    here, f"{kind!r} is not supported by Portway (supported: {', '.join(_STATEMENTS)})"
                )
            else:
                self.problem(here, f"unknown statement (known: {', '.join(_STATEMENTS)})")
            return None
        if kind in ("and", "or"):
            if not isinstance(body, list) or len(body) < 2:
                self.problem(here, "must be a list of two or more statements")
                return None
            parts = [self.statement(item, f"{here}[{i}]", depth=depth + 1) for i, item in enumerate(body)]
            nested = tuple(part for part in parts if isinstance(part, Statement))
            if len(nested) != len(parts):
                return None
            return AndStatement(nested) if kind == "and" else OrStatement(nested)
        if kind == "not":
            inner = self.statement(body, here, depth=depth + 1)
            return NotStatement(inner) if isinstance(inner, Statement) else None
        if not isinstance(body, Mapping):
            self.problem(here, "must be a mapping of settings")
            return None
        if kind == "rateBased":
            if not top:
                self.problem(
                    here, "a rateBased statement can only be a rule's own statement (AWS does not nest it)"
                )
                return None
            return self.rate_based(body, here, depth)
        if kind == "ipSet":
            return self.ip_set(body, here)
        return self.inspecting(kind, body, here)

    def ip_set(self, body: Mapping[str, Any], where: str) -> IpSetMatch | None:
        self.unknown_keys(body, ("addresses",), where)
        addresses = body.get("addresses")
        if not isinstance(addresses, list) or not addresses:
            self.problem(f"{where}.addresses", "must be a list of IPv4 or IPv6 addresses or CIDR ranges")
            return None
        if len(addresses) > MAX_ADDRESSES:
            self.problem(f"{where}.addresses", f"at most {MAX_ADDRESSES} addresses")
            return None
        networks = []
        for i, text in enumerate(addresses):
            found = waf_match.check_cidr(text) if isinstance(text, str) else f"{text!r} is not a string"
            if isinstance(found, str):
                self.problem(f"{where}.addresses[{i}]", found)
            else:
                networks.append(found)
        if len(networks) != len(addresses):
            return None
        return IpSetMatch(tuple(str(network) for network in networks), IpMatcher(networks))

    def rate_based(self, body: Mapping[str, Any], where: str, depth: int) -> RateBased | None:
        self.unknown_keys(body, ("limit", "windowSeconds", "aggregateKey", "scopeDown"), where)
        ok = True
        limit = body.get("limit")
        low, high = RATE_LIMIT_RANGE
        if isinstance(limit, bool) or not isinstance(limit, int) or not low <= limit <= high:
            self.problem(f"{where}.limit", f"must be a whole number of requests from {low:,} to {high:,}")
            ok = False
        window = body.get("windowSeconds", DEFAULT_RATE_WINDOW)
        if isinstance(window, bool) or window not in RATE_WINDOWS:
            self.problem(
                f"{where}.windowSeconds", f"must be one of {', '.join(map(str, RATE_WINDOWS))} (seconds)"
            )
            ok = False
        key = body.get("aggregateKey", "IP")
        aggregate: str | None = None
        if isinstance(key, str) and canonical(key) in ("forwardedip", "customkeys"):
            self.problem(f"{where}.aggregateKey", f"{key!r} is not supported by Portway: use ip or constant")
        else:
            aggregate = self.choice(key, ("IP", "CONSTANT"), f"{where}.aggregateKey")
        scope: Statement | None = None
        if body.get("scopeDown") is not None:
            found = self.statement(body["scopeDown"], f"{where}.scopeDown", depth=depth + 1)
            if not isinstance(found, Statement):
                return None
            scope = found
        if not ok or aggregate is None or not isinstance(limit, int):
            return None
        return RateBased(limit=limit, window_s=int(window), per_ip=aggregate == "IP", scope_down=scope)

    def inspecting(self, kind: str, body: Mapping[str, Any], where: str) -> Statement | None:
        extra = {
            "byteMatch": ("searchString", "positionalConstraint"),
            "regexMatch": ("regexString",),
            "sizeConstraint": ("comparisonOperator", "size"),
            "sqliMatch": ("sensitivityLevel",),
            "xssMatch": (),
        }[kind]
        self.unknown_keys(body, ("fieldToMatch", "textTransformations", *extra), where)
        before = len(self.problems)
        inspection = self.inspection(body, where)
        statement: Statement | None = None
        if kind == "byteMatch":
            search = body.get("searchString")
            encoded = search.encode("utf-8") if isinstance(search, str) else b""
            if not isinstance(search, str) or not 1 <= len(encoded) <= MAX_SEARCH_BYTES:
                self.problem(
                    f"{where}.searchString", f"must be a string of 1 to {MAX_SEARCH_BYTES} bytes (UTF-8)"
                )
            position = self.choice(
                body.get("positionalConstraint"), _POSITIONS, f"{where}.positionalConstraint"
            )
            if position == "CONTAINS_WORD" and encoded and not _WORD.match(encoded):
                self.problem(
                    f"{where}.searchString",
                    "with containsWord, may hold only letters, digits and '_' (as AWS requires)",
                )
            if inspection is not None and position is not None and len(self.problems) == before:
                statement = ByteMatch(inspection, encoded, position)
        elif kind == "regexMatch":
            pattern = body.get("regexString")
            if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_REGEX_CHARS:
                self.problem(
                    f"{where}.regexString",
                    f"must be a regular expression of 1 to {MAX_REGEX_CHARS} characters",
                )
            else:
                compiled = waf_match.compile_pattern(pattern)
                if isinstance(compiled, str):
                    self.problem(f"{where}.regexString", compiled)
                elif inspection is not None:
                    statement = RegexMatch(inspection, compiled)
        elif kind == "sizeConstraint":
            comparison = self.choice(
                body.get("comparisonOperator"), tuple(_COMPARE), f"{where}.comparisonOperator"
            )
            size = body.get("size")
            if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
                self.problem(f"{where}.size", f"must be a whole number of bytes from 0 to {MAX_SIZE:,}")
            elif inspection is not None and comparison is not None:
                statement = SizeConstraint(inspection, comparison, size)
        elif kind == "sqliMatch":
            level = self.choice(
                body.get("sensitivityLevel", "LOW"), ("LOW", "HIGH"), f"{where}.sensitivityLevel"
            )
            if inspection is not None and level is not None:
                statement = SqliMatch(inspection, high=level == "HIGH")
        elif inspection is not None:
            statement = XssMatch(inspection)
        return statement if len(self.problems) == before else None

    def inspection(self, body: Mapping[str, Any], where: str) -> Inspection | None:
        field = self.field_to_match(body.get("fieldToMatch"), f"{where}.fieldToMatch")
        transformations = self.transformations(
            body.get("textTransformations", []), f"{where}.textTransformations"
        )
        if field is None or transformations is None:
            return None
        if isinstance(field, Body):
            self.inspects_body = True
        key = (field, transformations)
        slot = self.slots.setdefault(key, len(self.slots))
        return Inspection(field, transformations, slot)

    def field_to_match(self, raw: Any, where: str) -> FieldToMatch | None:
        if isinstance(raw, str):
            raw = {raw: {}}
        if not isinstance(raw, Mapping) or len(raw) != 1:
            self.problem(where, f"must name one request component: {', '.join(_FIELDS)}")
            return None
        ((kind, settings),) = raw.items()
        kind = str(kind)
        here = f"{where}.{kind}"
        if settings is None:
            settings = {}
        if kind not in _FIELDS:
            if canonical(kind) in _UNSUPPORTED_FIELDS:
                self.problem(here, f"{kind!r} is not supported by Portway (supported: {', '.join(_FIELDS)})")
            else:
                self.problem(here, f"unknown request component (known: {', '.join(_FIELDS)})")
            return None
        if not isinstance(settings, Mapping):
            self.problem(here, "must be a mapping of settings ({} when there are none)")
            return None
        if kind in ("singleHeader", "singleQueryArgument"):
            self.unknown_keys(settings, ("name",), here)
            name = settings.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
                self.problem(f"{here}.name", f"must be a name of 1 to {MAX_NAME_CHARS} characters")
                return None
            lowered = name.lower().encode("utf-8")
            return SingleHeader(lowered) if kind == "singleHeader" else SingleQueryArgument(lowered)
        if kind == "body":
            self.unknown_keys(settings, ("oversizeHandling",), here)
            handling = self.choice(
                settings.get("oversizeHandling", "CONTINUE"), tuple(_OVERSIZE), f"{here}.oversizeHandling"
            )
            return Body(_OVERSIZE[handling]) if handling is not None else None
        self.unknown_keys(settings, (), here)
        if kind == "uriPath":
            return UriPath()
        if kind == "queryString":
            return QueryString()
        if kind == "method":
            return Method()
        return AllQueryArguments()

    def transformations(self, raw: Any, where: str) -> tuple[str, ...] | None:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(
                where, "must be a list of text transformations, applied in order (urlDecode, lowercase …)"
            )
            return None
        if len(raw) > MAX_TRANSFORMATIONS:
            self.problem(where, f"at most {MAX_TRANSFORMATIONS} text transformations")
            return None
        names = []
        for i, item in enumerate(raw):
            name = self.choice(item, tuple(TRANSFORMATIONS), f"{where}[{i}]")
            if name is None:
                return None
            if name != "NONE":
                names.append(name)
        return tuple(names)

    def choice(self, raw: Any, choices: tuple[str, ...], where: str) -> str | None:
        """One of AWS's names (``URL_DECODE``), written in any case, ``_`` and ``-`` optional."""
        if isinstance(raw, str):
            wanted = canonical(raw)
            for choice in choices:
                if canonical(choice) == wanted:
                    return choice
        shown = ", ".join(_camel(choice) for choice in choices)
        self.problem(where, f"must be one of {shown}" + (f", not {raw!r}" if raw is not None else ""))
        return None

    def unknown_keys(self, raw: Mapping[str, Any], known: Sequence[str], where: str) -> None:
        for key in raw:
            if key not in known:
                listed = f" (known: {', '.join(known)})" if known else " (it takes none)"
                self.problem(f"{where}.{key}", f"unknown setting{listed}")


def _camel(name: str) -> str:
    """``URL_DECODE`` → ``urlDecode``; ``KB_16`` stays as AWS writes it."""
    if name.startswith("KB_"):
        return name
    first, *rest = name.lower().split("_")
    return first + "".join(part.capitalize() for part in rest)
