"""API Gateway access logs: a stage's ``accessLogSettings.format`` compiled once; a writer that never blocks.

A format is text with ``$context.NAME`` variables (listed in :mod:`portway.observability.access_log_vars`).
:meth:`AccessLogFormat.parse` compiles it once into one generated Python function (each variable read once,
inline; constant text folded; one f-string), so :attr:`AccessLogFormat.render` is a single call per request.

>>> fmt = AccessLogFormat.parse('$context.identity.sourceIp "$context.httpMethod" $context.requestId')
>>> fmt.variables
('identity.sourceIp', 'httpMethod', 'requestId')

What AWS does, and what Portway does (developer guide: *Set up CloudWatch logging for REST APIs*, *Configure
logging for HTTP APIs*, *Variables for access logging*):

- Only ``$context`` variables are substituted (not ``$input``, ``$stageVariables`` …), in the
  ``$context.NAME`` form: AWS documents no ``${context.NAME}`` form for access logs, so Portway refuses it
  (and ``$input``, ``$stageVariables``, ``$util``) at load time rather than print it as text. An unknown
  variable is a load-time error too, naming it.
- The format must include ``$context.requestId`` or ``$context.extendedRequestId`` (AWS refuses the stage
  otherwise), and must be a single line; AWS allows one trailing newline, which Portway drops (every entry is
  written as one line).
- A variable without a value prints ``-``.
- AWS substitutes values as they are, in every format: a quote or backslash in a user agent breaks a JSON
  format's line (a known complaint). Portway keeps that for text formats (CLF, CSV, XML, custom), except that
  a carriage return or line feed in a value is written ``\\r`` / ``\\n`` so an entry stays one line. A format
  that starts with ``{`` is a JSON template, and there Portway keeps every line valid JSON: a value inside a
  JSON string is escaped (quotes, backslashes, control characters); a value outside a string is written as
  JSON (numbers, ``true`` / ``false`` and ``$context.error.messageString`` as they are, other text quoted) and
  a missing one as ``null`` instead of AWS's bare ``-``.
"""

from __future__ import annotations

import atexit
import difflib
import json
import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import orjson

from portway.observability.access_log_vars import NAMESPACE, VARIABLES, Kind, lookup
from portway.observability.exchange import Exchange

__all__ = [
    "DEFAULT",
    "DEFAULT_LOG_FORMAT",
    "MAX_BACKLOG",
    "MISSING",
    "NOT_ONE_LINE",
    "NO_REQUEST_ID",
    "PRESETS",
    "REFUSED_SYNTAX",
    "UNKNOWN_VARIABLE",
    "AccessLogFormat",
    "AccessLogOpenError",
    "AccessLogWriter",
    "LogStreamHandler",
    "format_named",
    "preset",
]

log = logging.getLogger("portway.access")

# --- formats ----------------------------------------------------------------------------------------------

# The examples the API Gateway console offers (developer guide, "Access log formats" / "Example log formats"),
# by kind of API: HTTP APIs print the route key where REST APIs print the resource path and the IAM caller.
# AWS's REST CLF text reads "[$context.requestTime]\"$context.httpMethod" with no space; earlier versions of
# the same page had one, and CLF has one, so Portway keeps it.
PRESETS: Mapping[str, Mapping[str, str]] = {
    "REST": {
        "clf": (
            "$context.identity.sourceIp $context.identity.caller $context.identity.user "
            '[$context.requestTime] "$context.httpMethod $context.resourcePath $context.protocol" '
            "$context.status $context.responseLength $context.requestId $context.extendedRequestId"
        ),
        "json": (
            '{ "requestId":"$context.requestId", "extendedRequestId":"$context.extendedRequestId",'
            '"ip": "$context.identity.sourceIp", "caller":"$context.identity.caller", '
            '"user":"$context.identity.user", "requestTime":"$context.requestTime", '
            '"httpMethod":"$context.httpMethod", "resourcePath":"$context.resourcePath", '
            '"status":"$context.status", "protocol":"$context.protocol", '
            '"responseLength":"$context.responseLength" }'
        ),
        "xml": (
            '<request id="$context.requestId"> '
            "<extendedRequestId>$context.extendedRequestId</extendedRequestId> "
            "<ip>$context.identity.sourceIp</ip> <caller>$context.identity.caller</caller> "
            "<user>$context.identity.user</user> <requestTime>$context.requestTime</requestTime> "
            "<httpMethod>$context.httpMethod</httpMethod> <resourcePath>$context.resourcePath</resourcePath> "
            "<status>$context.status</status> <protocol>$context.protocol</protocol> "
            "<responseLength>$context.responseLength</responseLength> </request>"
        ),
        "csv": (
            "$context.identity.sourceIp,$context.identity.caller,$context.identity.user,$context.requestTime,"
            "$context.httpMethod,$context.resourcePath,$context.protocol,$context.status,"
            "$context.responseLength,$context.requestId,$context.extendedRequestId"
        ),
    },
    "HTTP": {
        "clf": (
            '$context.identity.sourceIp - - [$context.requestTime] "$context.httpMethod $context.routeKey '
            '$context.protocol" $context.status $context.responseLength $context.requestId '
            "$context.extendedRequestId"
        ),
        "json": (
            '{ "requestId":"$context.requestId", "ip": "$context.identity.sourceIp", '
            '"requestTime":"$context.requestTime", "httpMethod":"$context.httpMethod",'
            '"routeKey":"$context.routeKey", "status":"$context.status","protocol":"$context.protocol", '
            '"responseLength":"$context.responseLength", "extendedRequestId": "$context.extendedRequestId" }'
        ),
        "xml": (
            '<request id="$context.requestId"> <ip>$context.identity.sourceIp</ip> '
            "<requestTime>$context.requestTime</requestTime> <httpMethod>$context.httpMethod</httpMethod> "
            "<routeKey>$context.routeKey</routeKey> <status>$context.status</status> "
            "<protocol>$context.protocol</protocol> <responseLength>$context.responseLength</responseLength> "
            "<extendedRequestId>$context.extendedRequestId</extendedRequestId> </request>"
        ),
        "csv": (
            "$context.identity.sourceIp,$context.requestTime,$context.httpMethod,$context.routeKey,"
            "$context.protocol,$context.status,$context.responseLength,$context.requestId,"
            "$context.extendedRequestId"
        ),
    },
}

MISSING = "-"
_IDENTIFIER = r"[A-Za-z0-9_]+"
_VARIABLE = re.compile(rf"\$context((?:\.{_IDENTIFIER})+)")
# What AWS does not substitute in access logs; refused rather than printed as text.
_REFUSED = re.compile(r"\$!?\{\s*context\b|\$!?\{?(?:input|stageVariables|util|method|integration)\.")
_JSON_LITERAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false")
_ID_VARIABLES = ("requestId", "extendedRequestId")
UNKNOWN_VARIABLE = "$context.{name} is not an API Gateway access log variable"
NO_REQUEST_ID = "an access log format must include $context.requestId or $context.extendedRequestId"
NOT_ONE_LINE = "an access log format must be a single line"
REFUSED_SYNTAX = (
    "{found!r}: access logs substitute $context.NAME variables only "
    "(no ${{...}} form, no $input, $stageVariables or $util)"
)

# A format compiled: the entry for one exchange.
_Render = Callable[[Exchange], str]


def _json_escape(value: str) -> str:
    """``value`` as the inside of a JSON string."""
    if '"' not in value and "\\" not in value and value.isprintable():
        return value  # the common case: nothing to escape (non-ASCII printable text stays as it is)
    try:
        return orjson.dumps(value).decode()[1:-1]
    except TypeError:  # a lone surrogate: orjson refuses it, the standard library escapes it
        return json.dumps(value)[1:-1]


def _json_value(value: str) -> str:
    """``value`` where a JSON value is expected: numbers and booleans as they are, other text quoted."""
    if _JSON_LITERAL.fullmatch(value):
        return value
    return '"' + _json_escape(value) + '"'


def _one_line(value: str) -> str:
    if "\n" not in value and "\r" not in value:
        return value
    return value.replace("\r", "\\r").replace("\n", "\\n")


# How a value is written at one place of a format (the module docstring's rules), by the kind of value, the
# kind of format and, in a JSON template, whether the place is inside a string.
_PLAIN = "plain"  # as it is, "-" when missing
_ONE_LINE = "one line"  # text formats: a line break written \r / \n
_JSON_STRING = "JSON string"  # inside a JSON template's string: escaped
_JSON_NUMBER = "JSON number"  # outside a string, a number or JSON text: as it is, null when missing
_JSON_VALUE = "JSON value"  # outside a string, other text: a number or boolean as it is, text quoted


def _mode(kind: Kind, json_template: bool, in_string: bool) -> str:
    if json_template and not in_string:
        return _JSON_NUMBER if kind is Kind.NUMBER or kind is Kind.JSON else _JSON_VALUE
    if kind is Kind.TEXT or kind is Kind.JSON:
        return _JSON_STRING if json_template else _ONE_LINE
    return _PLAIN


def _write(mode: str, value: str, raw: str) -> list[str]:
    """The statements that set the local ``value`` from the expression ``raw`` (a local if used twice).

    The checks before escaping are :func:`_json_escape`'s and :func:`_one_line`'s own, inlined: values rarely
    need escaping, and a call costs more than the check.
    """
    missing = repr(MISSING)
    if mode == _PLAIN:
        return [f"{value} = {raw} or {missing}"]
    if mode == _ONE_LINE:
        special = rf"'\n' in {value} or '\r' in {value}"
        return [f"{value} = {raw} or {missing}", f"if {special}: {value} = _one_line({value})"]
    if mode == _JSON_STRING:
        special = rf"""'"' in {value} or '\\' in {value} or not {value}.isprintable()"""
        return [f"{value} = {raw} or {missing}", f"if {special}: {value} = _json_escape({value})"]
    if mode == _JSON_NUMBER:
        return [f"{value} = {raw} or 'null'"]
    return [f"{value} = _json_value({raw}) if {raw} else 'null'"]


# The locals a generated function sets first, when a variable's source reads them (a name in a string literal
# counts too: an unused local costs next to nothing).
_LOCALS = {"c": "ex.ctx", "a": "ex.api"}
_READS = {local: re.compile(rf"(?<![\w.]){local}\b") for local in _LOCALS}


def _generate(literals: Sequence[str], slots: Sequence[tuple[str, str]]) -> str:
    """The source of ``render(ex)`` for a format: ``literals`` around ``slots`` (a variable's source, a mode).

    Each variable is read once however often the format prints it, ``ex.ctx`` and ``ex.api`` once, and the
    entry is one f-string. Format text reaches the code only as string literals (``repr``, braces doubled);
    the expressions are :mod:`~portway.observability.access_log_vars`'s own.
    """
    body = [
        f"{local} = {value}"
        for local, value in _LOCALS.items()
        if any(_READS[local].search(source) for source, _ in slots)
    ]
    modes: dict[str, set[str]] = {}
    for source, mode in slots:
        modes.setdefault(source, set()).add(mode)
    raw: dict[str, str] = {}  # source → the local holding its value, when it is needed more than once
    written: dict[tuple[str, str], str] = {}  # (source, mode) → the local holding what is printed
    for slot in slots:
        if slot in written:
            continue
        source, mode = slot
        if len(modes[source]) > 1 or mode == _JSON_VALUE:
            if source not in raw:
                raw[source] = f"r{len(raw)}"
                body.append(f"{raw[source]} = {source}")
            expression = raw[source]
        else:
            expression = f"({source})"
        value = written[slot] = f"v{len(written)}"
        body += _write(mode, value, expression)
    parts = [f"f{_braces(literals[0])!r}"]
    for slot, literal in zip(slots, literals[1:], strict=True):
        parts.append(f"f'{{{written[slot]}}}'")
        parts.append(f"f{_braces(literal)!r}")
    body.append("return " + " ".join(part for part in parts if part not in ("f''", 'f""')))
    return "def render(ex):\n" + "".join(f"    {line}\n" for line in body)


def _braces(literal: str) -> str:
    return literal.replace("{", "{{").replace("}", "}}")


def _compile(source: str) -> _Render:
    namespace: dict[str, object] = {
        **NAMESPACE,
        "_json_escape": _json_escape,
        "_json_value": _json_value,
        "_one_line": _one_line,
    }
    exec(compile(source, "<access log format>", "exec"), namespace)
    render: _Render = namespace["render"]  # type: ignore[assignment]  # what the source defines
    return render


def _json_string_states(pieces: list[str]) -> list[bool]:
    """For each gap between literal pieces (where a variable goes): is it inside a JSON string?"""
    states: list[bool] = []
    in_string = escaped = False
    for piece in pieces[:-1]:
        for char in piece:
            if escaped:
                escaped = False
            elif in_string and char == "\\":
                escaped = True
            elif char == '"':
                in_string = not in_string
        states.append(in_string)
        escaped = False
    return states


class AccessLogFormat:
    """A compiled access log format; :attr:`render` gives one exchange's entry (one line, no newline)."""

    __slots__ = ("_source", "json", "render", "text", "variables")

    render: _Render
    """The entry for an exchange: one line, without a newline (a function generated for this format)."""

    def __init__(self, text: str, source: str, variables: tuple[str, ...]) -> None:
        self.text = text
        self.json = text.lstrip().startswith("{")
        self.variables = variables  # the names used, without "context.", in order
        self._source = source  # the Python source of render, for a curious reader
        self.render = _compile(source)

    @classmethod
    def parse(cls, text: str) -> AccessLogFormat:
        """Compile ``text``; a ``ValueError`` names what AWS would not accept (an unknown variable …)."""
        text = text.removesuffix("\n").removesuffix("\r")
        if "\n" in text or "\r" in text:
            raise ValueError(NOT_ONE_LINE)
        refused = _REFUSED.search(text)
        if refused is not None:
            raise ValueError(REFUSED_SYNTAX.format(found=refused.group(0)))
        pieces: list[str] = []
        names: list[str] = []
        position = 0
        for found in _VARIABLE.finditer(text):
            pieces.append(text[position : found.start()])
            names.append(found.group(1)[1:])
            position = found.end()
        pieces.append(text[position:])
        if not any(name in _ID_VARIABLES for name in names):
            raise ValueError(NO_REQUEST_ID)
        json_template = text.lstrip().startswith("{")
        in_string = _json_string_states(pieces) if json_template else [False] * len(names)
        # Variables Portway never has a value for are folded into the text around them.
        literals: list[str] = [pieces[0]]
        slots: list[tuple[str, str]] = []
        for name, piece, quoted in zip(names, pieces[1:], in_string, strict=True):
            variable = lookup(name)
            if variable is None:
                raise ValueError(_unknown(name))
            if variable.source is None:
                constant = "null" if json_template and not quoted else MISSING
                literals[-1] += constant + piece
                continue
            slots.append((variable.source, _mode(variable.kind, json_template, quoted)))
            literals.append(piece)
        return cls(text, _generate(literals, slots), tuple(names))

    def __repr__(self) -> str:
        return f"AccessLogFormat.parse({self.text!r})"


def _unknown(name: str) -> str:
    message = UNKNOWN_VARIABLE.format(name=name)
    close = difflib.get_close_matches(name, VARIABLES.keys(), n=1)
    return f"{message} (did you mean $context.{close[0]}?)" if close else message


_COMPILED_PRESETS: dict[tuple[str, str], AccessLogFormat] = {}


def preset(name: str, kind: str = "REST") -> AccessLogFormat:
    """The console's ``clf``, ``json``, ``xml`` or ``csv`` example (any case) for a REST or HTTP API."""
    key = (kind.upper(), name.lower())
    compiled = _COMPILED_PRESETS.get(key)
    if compiled is None:
        presets = PRESETS.get(key[0])
        if presets is None:
            raise ValueError(f"{kind!r}: the kind of API is REST or HTTP")
        text = presets.get(key[1])
        if text is None:
            raise ValueError(f"{name!r} is not a preset access log format ({', '.join(presets)})")
        compiled = _COMPILED_PRESETS[key] = AccessLogFormat.parse(text)
    return compiled


def format_named(text: str, kind: str = "REST") -> AccessLogFormat:
    """A preset by name (``clf``, ``json``, ``xml``, ``csv``, any case) or a custom format."""
    if text.strip().lower() in PRESETS["REST"]:
        return preset(text.strip(), kind)
    return AccessLogFormat.parse(text)


# What the gateway logs when a stage sets no format: the JSON example (HTTP APIs: preset("json", "HTTP")).
DEFAULT = preset("json", "REST")

# --- the writer -------------------------------------------------------------------------------------------

MAX_BACKLOG = 100_000  # lines queued and not yet written; past it new lines are dropped (and counted)
FLUSH_INTERVAL_S = 0.01  # how often the writer thread wakes to write what is queued
DEFAULT_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class AccessLogOpenError(OSError):
    """The access log's destination cannot be written."""


class AccessLogWriter:
    """Lines to a stream, written by a daemon thread so the event loop never waits on a disk or a pipe.

    :meth:`write` only appends the line to a deque (atomic, no lock, no wake-up); every
    :data:`FLUSH_INTERVAL_S` (10 ms: few lines held, few wake-ups) the thread takes everything queued, writes
    it in one go and flushes. (Waking the thread per line cost the event loop more than rendering the line:
    each wake-up contends for the GIL.)
    Past ``max_backlog`` queued lines new ones are dropped and counted in :attr:`dropped` (a warning is
    logged once per overflow). :meth:`close` writes what is queued and stops the thread; it also runs when
    the interpreter exits.
    """

    def __init__(
        self, stream: TextIO, *, name: str = "", owns_stream: bool = False, max_backlog: int = MAX_BACKLOG
    ) -> None:
        self.name = name or getattr(stream, "name", "") or repr(stream)
        self.dropped = 0
        self.max_backlog = max_backlog
        self._stream = stream
        self._owns_stream = owns_stream
        self._pending: deque[str] = deque()
        self._stop = threading.Event()
        self._overflowing = False
        self._closed = False
        self._lock = threading.Lock()  # counts drops and serialises close()
        self._thread = threading.Thread(target=self._run, name=f"portway-log-writer {self.name}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    @classmethod
    def open(cls, destination: str, *, max_backlog: int = MAX_BACKLOG) -> AccessLogWriter:
        """``-`` or ``stdout``, ``stderr``, or a file path (appended to; missing directories are made)."""
        if destination in ("-", "stdout"):
            return cls(sys.stdout, name="stdout", max_backlog=max_backlog)
        if destination == "stderr":
            return cls(sys.stderr, name="stderr", max_backlog=max_backlog)
        path = Path(destination).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = path.open("a", encoding="utf-8", errors="backslashreplace")
        except OSError as exc:
            raise AccessLogOpenError(
                exc.errno, f"cannot write the access log there ({exc.strerror or exc})", str(path)
            ) from exc
        return cls(stream, name=str(path), owns_stream=True, max_backlog=max_backlog)

    def write(self, line: str) -> None:
        """Queue ``line`` (without its newline); never blocks. (Once closed, every line is dropped: close()
        sets the bound to 0.)"""
        pending = self._pending
        if len(pending) < self.max_backlog:
            pending.append(line)
        else:
            self._drop()

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1
            if self._overflowing or self._closed:
                return
            self._overflowing = True
        log.warning(
            "log writer %s: %d lines are waiting to be written; dropping new lines until it catches up",
            self.name,
            self.max_backlog,
        )

    def close(self) -> None:
        """Write everything queued, then stop the thread (and close the file this writer opened)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.max_backlog = 0  # what is written from now on is dropped
        atexit.unregister(self.close)
        self._stop.set()
        self._thread.join()
        if self._owns_stream:
            self._stream.close()

    def _run(self) -> None:
        pending, popleft = self._pending, self._pending.popleft
        while True:
            stopping = self._stop.wait(FLUSH_INTERVAL_S)
            count = len(pending)  # lines appended meanwhile wait for the next round
            if count:
                self._write_batch([popleft() for _ in range(count)])
                self._overflowing = False  # caught up: the next overflow is reported again
            if stopping:  # close() is waiting; nothing is written after _closed is set
                if pending:
                    self._write_batch(list(pending))
                return

    def _write_batch(self, lines: list[str]) -> None:
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError) as exc:  # a full disk, a closed pipe, a closed stream
            with self._lock:
                self.dropped += len(lines)
            print(f"portway: cannot write to {self.name}: {exc}", file=sys.__stderr__)


class LogStreamHandler(logging.Handler):
    """Log records, formatted, through an :class:`AccessLogWriter`: so Lambda handler output and the gateway's
    execution logs share the access log's stream (and its writer thread)."""

    def __init__(
        self, writer: AccessLogWriter, fmt: str = DEFAULT_LOG_FORMAT, level: int = logging.NOTSET
    ) -> None:
        super().__init__(level)
        self.writer = writer
        self.setFormatter(logging.Formatter(fmt))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)
