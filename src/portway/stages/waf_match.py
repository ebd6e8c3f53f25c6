"""The web ACL's matching cores, without I/O: text transformations, IP sets, SQL-injection and XSS detection.

Everything here works on ``bytes``, as AWS WAF inspects bytes: a transformation takes and gives bytes, and the
detectors read bytes (ASCII case-insensitively). :mod:`portway.stages.waf` builds statements from these.

SQL injection and XSS detection
-------------------------------

AWS does not publish its detectors. The well-known open one is libinjection (the C library ModSecurity and
many WAFs use); its Python bindings on PyPI are ``libinjection-python`` (a source-only, GPL-3.0 Cython
wrapper of libinjection 3.10 from 2017, last released 2022: a C toolchain on every install, and a licence
that does not sit with Portway's Apache-2.0), ``libinjection-wheel`` (2019, not installable here) and
``pylibinjection`` (2014). None is a dependency worth taking, so the detectors below are Portway's own, built
the way libinjection works and checked against it on the corpus in ``tests/stages/test_waf.py``:

- :func:`sqli` tokenizes the input as SQL three times: as it stands (a number or a name spliced into a query)
  and as if it were inside a ``'…'`` or ``"…"`` literal (the attacker's first quote closes the literal). An
  input is an injection when, right after that first value, SQL goes on in a way plain text does not: a
  boolean operator with a condition (``' OR '1'='1``, ``1 AND 1=1``, ``' or sleep(5)#``), ``UNION SELECT``, a
  stacked statement (``1; DROP TABLE users``), a comment cutting the query short (``admin'--``), ``ORDER BY``,
  ``HAVING``, ``INTO OUTFILE``, ``WAITFOR DELAY``. Text with apostrophes and SQL words (``O'Brien``,
  ``select a plan``, ``this or that``) has none of these shapes where they count. ``high`` sensitivity (AWS's
  ``HIGH``) looks for the same shapes after *every* value, not only the first, and treats a comment after a
  number as a cut-off too (``1--``): more attacks, more false positives, as AWS describes its HIGH level.
  Known false positive at LOW: text that is itself a SQL condition after ``name=`` (``x=1 and y=2``).
- :func:`xss` looks for markup that runs script: a dangerous element (``<script``, ``<iframe``, ``<svg`` …),
  any element with an event-handler attribute (``<img src=x onerror=…>``) or a script URL or CSS expression in
  its attributes (entities such as ``&#x09;`` decoded first, as browsers do), an attribute injected after a
  closing quote (``" onmouseover="…``), or a value that is itself a script URL (``javascript:alert(1)``).
  ``<3 love``, ``a < b`` and plain ``<b>bold</b>`` are not.

Example:

>>> sqli(b"1' OR '1'='1"), sqli(b"O'Brien"), xss(b"<img src=x onerror=alert(1)>"), xss(b"<3 love")
(True, False, True, False)
>>> TRANSFORMATIONS["URL_DECODE"](b"%3Cscript%3E")
b'<script>'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = [
    "PLAIN_VALUES_KEPT",
    "TRANSFORMATIONS",
    "IpMatcher",
    "Transformation",
    "canonical",
    "check_cidr",
    "compile_pattern",
    "ip_key",
    "regex_test",
    "sqli",
    "xss",
]

Transformation = Callable[[bytes], bytes]

# Membership tests here take a byte's value (``0x25 in data``) or use ``find``: ``b"%" in data`` first tries
# to read the needle as an integer, raising and clearing an exception, and costs several times as much.


def canonical(name: str) -> str:
    """How a name from the definition is compared with AWS's: case, ``_`` and ``-`` do not matter.

    >>> canonical("URL_DECODE") == canonical("urlDecode") == canonical("url-decode")
    True
    """
    return name.replace("_", "").replace("-", "").lower()


# --- text transformations ---------------------------------------------------------------------------------
# As the AWS WAF developer guide describes each (which follows ModSecurity's transformation functions).

_WHITESPACE = bytes.maketrans(b"\f\t\n\r\v\xa0", b"      ")
_SPACES = re.compile(rb" {2,}")


def _compress_white_space(data: bytes) -> bytes:
    """\\f \\t \\n \\r \\v and non-breaking space (160) become spaces; runs of spaces become one."""
    data = data.translate(_WHITESPACE)
    return _SPACES.sub(b" ", data) if data.find(b"  ") >= 0 else data


def _url_decode(data: bytes) -> bytes:
    """``%XX`` decoded (an invalid escape stays as it is) and ``+`` read as a space."""
    if 0x25 not in data:  # no "%": at most "+" to read (a query string's spaces, most often)
        return data.replace(b"+", b" ") if 0x2B in data else data
    return _PERCENT.sub(_percent_byte, data.replace(b"+", b" "))


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _percent_byte(match: re.Match[bytes]) -> bytes:
    return bytes((int(match.group(1), 16),))


_PERCENT_U = re.compile(rb"%[uU]([0-9A-Fa-f]{4})")


def _url_decode_uni(data: bytes) -> bytes:
    """URL_DECODE, and Microsoft's ``%uHHHH`` too: full-width ASCII (U+FF01-FF5E) becomes ASCII, other code
    points their UTF-8 bytes."""
    if 0x25 in data:  # "%"
        data = _PERCENT_U.sub(_percent_u, data)
    return _url_decode(data)


def _percent_u(match: re.Match[bytes]) -> bytes:
    code = int(match.group(1), 16)
    if 0xFF01 <= code <= 0xFF5E:
        code -= 0xFEE0
    return chr(code).encode("utf-8", "surrogatepass")


_ENTITY = re.compile(rb"&(?:#[xX]([0-9A-Fa-f]{1,8})|#([0-9]{1,10})|(quot|amp|lt|gt|nbsp|apos));?", re.I)
_NAMED = {b"quot": b'"', b"amp": b"&", b"lt": b"<", b"gt": b">", b"nbsp": b"\xa0", b"apos": b"'"}


def _html_entity_decode(data: bytes) -> bytes:
    """``&#xhhhh;`` ``&#nnnn;`` ``&quot;`` ``&amp;`` ``&lt;`` ``&gt;`` ``&nbsp;`` (and ``&apos;``)
    decoded, the ``;`` optional. A code point under 256 becomes that byte (``&nbsp;``: byte 160), others
    their UTF-8 bytes."""
    return _ENTITY.sub(_entity, data) if 0x26 in data else data


def _entity(match: re.Match[bytes]) -> bytes:
    hexadecimal, decimal, name = match.groups()
    if name is not None:
        return _NAMED[name.lower()]
    code = int(hexadecimal, 16) if hexadecimal is not None else int(decimal)
    return _code_point(code, match.group(0))


def _code_point(code: int, original: bytes) -> bytes:
    if code < 256:
        return bytes((code,))
    if code > 0x10FFFF:
        return original
    return chr(code).encode("utf-8", "surrogatepass")


_CMD_DELETE = re.compile(rb"""[\\"'^]""")
_CMD_SPACE_BEFORE = re.compile(rb" +(?=[/(])")


def _cmd_line(data: bytes) -> bytes:
    """Delete ``\\ " ' ^``; delete spaces before ``/`` and ``(``; ``,`` and ``;`` become spaces; runs of
    spaces become one; lowercase."""
    data = _CMD_SPACE_BEFORE.sub(b"", _CMD_DELETE.sub(b"", data))
    data = data.replace(b",", b" ").replace(b";", b" ")
    return _SPACES.sub(b" ", data).lower()


def _remove_nulls(data: bytes) -> bytes:
    return data.replace(b"\x00", b"")


def _replace_nulls(data: bytes) -> bytes:
    return data.replace(b"\x00", b" ")


_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _base64_decode(data: bytes) -> bytes:
    """Decode Base64 (missing padding tolerated); input that is not Base64 is left as it is."""
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        return data


def _base64_decode_ext(data: bytes) -> bytes:
    """Forgiving Base64: the URL-safe alphabet too, and any character outside the alphabet ignored."""
    data = _BASE64_JUNK.sub(b"", data.replace(b"-", b"+").replace(b"_", b"/"))
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):  # a single leftover character
        return base64.b64decode(data[: len(data) - len(data) % 4]) if len(data) >= 4 else b""


def _hex_decode(data: bytes) -> bytes:
    """Pairs of hex digits to bytes; input that is not hex is left as it is."""
    try:
        return bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return data


def _md5(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


_C_COMMENT = re.compile(rb"/\*.*?(?:\*/|\Z)", re.S)


def _replace_comments(data: bytes) -> bytes:
    """Each C-style comment ``/* … */`` becomes one space (an unterminated one to the end too); a lone
    ``*/`` is kept, as AWS documents."""
    return _C_COMMENT.sub(b" ", data) if data.find(b"/*") >= 0 else data


def _normalize_path(data: bytes) -> bytes:
    """Multiple slashes become one, ``./`` segments go, ``../`` removes the segment before it (never above
    the start); leading and trailing slashes are kept."""
    if 0x2F not in data and data not in (b".", b".."):
        return data
    absolute = data.startswith(b"/")
    trailing = data.endswith((b"/", b"/.", b"/..")) or data in (b".", b"..")
    out: list[bytes] = []
    for segment in data.split(b"/"):
        if segment in (b"", b"."):
            continue
        if segment == b"..":
            if out:
                out.pop()
            continue
        out.append(segment)
    path = b"/".join(out)
    if absolute:
        path = b"/" + path
    if trailing and path and not path.endswith(b"/"):
        path += b"/"
    return path


def _normalize_path_win(data: bytes) -> bytes:
    """NORMALIZE_PATH after every ``\\`` became ``/``."""
    return _normalize_path(data.replace(b"\\", b"/"))


_SQL_HEX = re.compile(rb"0[xX]((?:[0-9A-Fa-f]{2})+)")


def _sql_hex_decode(data: bytes) -> bytes:
    """``0x414243`` becomes ``ABC``."""
    return _SQL_HEX.sub(lambda m: bytes.fromhex(m.group(1).decode("ascii")), data) if 0x30 in data else data


_SIMPLE_ESCAPES = {
    b"a": b"\a",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"v": b"\v",
    b"\\": b"\\",
    b"?": b"?",
    b"'": b"'",
    b'"': b'"',
}
_C_ESCAPE = re.compile(rb"\\(?:x([0-9A-Fa-f]{1,2})|([0-7]{1,3})|(.))", re.S)


def _escape_seq_decode(data: bytes) -> bytes:
    """ANSI C escapes: ``\\a \\b \\f \\n \\r \\t \\v \\\\ \\? \\' \\"``, ``\\xHH``, ``\\0OOO``; any other
    escaped character stands for itself."""
    return _C_ESCAPE.sub(_c_escape, data) if 0x5C in data else data


def _c_escape(match: re.Match[bytes]) -> bytes:
    hexadecimal, octal, other = match.groups()
    if hexadecimal is not None:
        return bytes((int(hexadecimal, 16),))
    if octal is not None:
        return bytes((int(octal, 8) & 0xFF,))
    return _SIMPLE_ESCAPES.get(other, other)


_JS_ESCAPE = re.compile(rb"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([0-7]{1,3})|(.))", re.S)


def _js_decode(data: bytes) -> bytes:
    """JavaScript escapes: ``\\uHHHH`` (full-width ASCII to ASCII, else the low byte, as AWS documents),
    ``\\xHH``, ``\\OOO``, the C letter escapes; any other escaped character stands for itself."""
    return _JS_ESCAPE.sub(_js_escape, data) if 0x5C in data else data


def _js_escape(match: re.Match[bytes]) -> bytes:
    unicode, hexadecimal, octal, other = match.groups()
    if unicode is not None:
        code = int(unicode, 16)
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        return bytes((code & 0xFF,))
    if hexadecimal is not None:
        return bytes((int(hexadecimal, 16),))
    if octal is not None:
        return bytes((int(octal, 8) & 0xFF,))
    return _SIMPLE_ESCAPES.get(other, other)


_CSS_ESCAPE = re.compile(rb"\\(?:([0-9A-Fa-f]{1,6})[ \t\n\r\f]?|\n|(.))", re.S)


def _css_decode(data: bytes) -> bytes:
    """CSS 2.x escapes: ``\\HHHHHH`` (one following whitespace eaten) to the character (its low two bytes),
    an escaped newline removed, ``\\c`` to ``c``."""
    return _CSS_ESCAPE.sub(_css_escape, data) if 0x5C in data else data


def _css_escape(match: re.Match[bytes]) -> bytes:
    hexadecimal, other = match.groups()
    if hexadecimal is not None:
        code = int(hexadecimal, 16)
        if 0xFF01 <= code <= 0xFF5E:
            code -= 0xFEE0
        return _code_point(code & 0xFFFF, match.group(0)) if code >= 256 else bytes((code,))
    return other if other is not None else b""


def _utf8_to_unicode(data: bytes) -> bytes:
    """Every non-ASCII UTF-8 character becomes ``%uHHHH``; bytes that are not UTF-8 stay as they are."""
    if data.isascii():
        return data
    text = data.decode("utf-8", "surrogateescape")
    out = bytearray()
    for char in text:
        code = ord(char)
        if code < 128:
            out.append(code)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(code - 0xDC00)
        else:
            out += b"%%u%04x" % code if code <= 0xFFFF else b"%%u%x" % code
    return bytes(out)


# AWS's name -> the transformation; NONE does nothing and is left out of a statement's chain.
TRANSFORMATIONS: Final[dict[str, Transformation]] = {
    "NONE": bytes,
    "COMPRESS_WHITE_SPACE": _compress_white_space,
    "HTML_ENTITY_DECODE": _html_entity_decode,
    "LOWERCASE": bytes.lower,  # A-Z only, as AWS documents
    "CMD_LINE": _cmd_line,
    "URL_DECODE": _url_decode,
    "BASE64_DECODE": _base64_decode,
    "HEX_DECODE": _hex_decode,
    "MD5": _md5,
    "REPLACE_COMMENTS": _replace_comments,
    "ESCAPE_SEQ_DECODE": _escape_seq_decode,
    "SQL_HEX_DECODE": _sql_hex_decode,
    "CSS_DECODE": _css_decode,
    "JS_DECODE": _js_decode,
    "NORMALIZE_PATH": _normalize_path,
    "NORMALIZE_PATH_WIN": _normalize_path_win,
    "REMOVE_NULLS": _remove_nulls,
    "REPLACE_NULLS": _replace_nulls,
    "BASE64_DECODE_EXT": _base64_decode_ext,
    "URL_DECODE_UNI": _url_decode_uni,
    "UTF8_TO_UNICODE": _utf8_to_unicode,
}

# The transformations that leave an empty or ASCII-alphanumeric value as it is (each needs a byte such a
# value does not hold: "%", "+", "&", "\\", "/", "/*", white space, a null, a non-ASCII byte). LOWERCASE,
# CMD_LINE, SQL_HEX_DECODE (0x41), the Base64 and hex decodings and MD5 change some.
PLAIN_VALUES_KEPT: Final = frozenset(
    {
        "COMPRESS_WHITE_SPACE",
        "HTML_ENTITY_DECODE",
        "URL_DECODE",
        "URL_DECODE_UNI",
        "REPLACE_COMMENTS",
        "ESCAPE_SEQ_DECODE",
        "CSS_DECODE",
        "JS_DECODE",
        "NORMALIZE_PATH",
        "NORMALIZE_PATH_WIN",
        "REMOVE_NULLS",
        "REPLACE_NULLS",
        "UTF8_TO_UNICODE",
    }
)


# --- IP sets ----------------------------------------------------------------------------------------------


def ip_key(address: str) -> tuple[int, int] | None:
    """``(version, address as an integer)`` for a client address; an IPv4-mapped IPv6 address counts as the
    IPv4 address it carries. None when it is no IP address (a Unix socket's peer)."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, address))
    except OSError:
        pass
    try:
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, address.partition("%")[0]))
    except (OSError, ValueError):
        return None
    if value >> 32 == 0xFFFF:
        return 4, value & 0xFFFFFFFF
    return 6, value


class IpMatcher:
    """Membership in a set of networks, in one set lookup per distinct prefix length.

    >>> nets = IpMatcher([ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("2001:db8::/32")])
    >>> [nets.contains(ip_key(a)) for a in ("203.0.113.9", "2001:db8::1", "::ffff:203.0.113.1", "::1")]
    [True, True, True, False]
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for network in networks:
            bits, table = (32, v4) if network.version == 4 else (128, v6)
            shift = bits - network.prefixlen
            table.setdefault(shift, set()).add(int(network.network_address) >> shift)
        self._v4 = tuple(v4.items())
        self._v6 = tuple(v6.items())

    def contains(self, key: tuple[int, int] | None) -> bool:
        if key is None:
            return False
        version, value = key
        for shift, prefixes in self._v4 if version == 4 else self._v6:  # noqa: SIM110 (no generator per call)
            if value >> shift in prefixes:
                return True
        return False


# --- SQL injection ----------------------------------------------------------------------------------------

# Token kinds (one character each, as libinjection's fingerprints):
#   s string literal   1 number   v @variable   n name   f function name (a name before "(")
#   & AND/OR/XOR/&&/||   o operator   c comment (to the end of the line)   ( ) , ; . punctuation
#   U UNION   E SELECT   T TRUE/FALSE/NULL   k any other keyword (its word is the token's text)
# Read from lower-cased input (no re.I: it slows every character class). Groups, by number:
_SQL_TOKEN = re.compile(
    rb"""
    ([\s\xa0]+)                                                   # 1 space
  | ((?:0x[0-9a-f]+|0b[01]+|\d+\.?\d*(?:e[+-]?\d+)?|\.\d+)(?![a-z_$\x80-\xff]))    # 2 number
  | ([a-z0-9_$\x80-\xff]+)                                       # 3 word
  | (--[^\n]*|\#[^\n]*|/\*(?:.*?\*/|.*))                          # 4 comment (/*...*/ inline: space)
  | ('(?:[^'\\]|\\.|'')*(?:'|\Z)|"(?:[^"\\]|\\.|"")*(?:"|\Z)|`(?:[^`\\]|\\.|``)*(?:`|\Z))  # 5 string
  | (@@?[a-z0-9_$.]*)                                             # 6 variable
  | (\|\||&&)                                                     # 7 logic
  | (<=>|<>|!=|<=|>=|:=|[=<>+\-*/%|&^!~])                         # 8 operator
  | ([(),;.])                                                     # 9 punctuation
  | (.)                                                           # 10 anything else
    """,
    re.S | re.X,
)
_GROUP_KINDS = ("", "", "1", "n", "c", "s", "v", "&", "o", "", "x")
_LOGIC_WORDS = frozenset({b"and", b"or", b"xor"})
_LITERALS = frozenset({b"true", b"false", b"null"})
_COMPARISON_WORDS = frozenset({b"like", b"rlike", b"regexp", b"is", b"in", b"between", b"sounds"})
_COMPARISONS = frozenset({b"=", b"<", b">", b"<=", b">=", b"<>", b"!=", b"<=>", *_COMPARISON_WORDS})
_KEYWORDS = frozenset(
    [
        *b"""
    all alter analyse by create database declare delay delete distinct drop dumpfile exec execute
    from grant group having insert into limit not order outfile procedure revoke set shutdown table
    truncate update waitfor where
""".split(),
        *_COMPARISON_WORDS,
    ]
)
_WORD_KINDS: Final[dict[bytes, str]] = {
    **dict.fromkeys(_KEYWORDS, "k"),
    **dict.fromkeys(_LITERALS, "T"),
    **dict.fromkeys(_LOGIC_WORDS, "&"),
    b"union": "U",
    b"select": "E",
}
_ARITHMETIC = frozenset({b"+", b"-", b"*", b"/", b"%", b"^", b"|", b"&"})
_DROP_TARGETS = frozenset(
    {b"table", b"database", b"schema", b"procedure", b"function", b"view", b"index", b"user", b"trigger"}
)
_VALUES = frozenset("s1vnT")
# Every shape of an injection has one of these; text without any is not SQL injection, quotes or not.
_TRIGGER_SYMBOLS = re.compile(rb";|#|--|/\*|\|\||&&")
_TRIGGER_WORDS = frozenset({b"or", b"and", b"xor", b"union", b"select", b"having"})
_PHRASE_WORDS = frozenset({b"order", b"group", b"limit", b"procedure", b"into", b"waitfor"})
_TRIGGER_PHRASES = re.compile(
    rb"(?:order|group)[\s\xa0]+by|limit[\s\xa0]+[\d@]|procedure[\s\xa0]+analyse|into[\s\xa0]+(?:out|dump)file"
    rb"|waitfor[\s\xa0]+(?:delay|time)"
)
# Lower-case letters stay, capitals are lowered, everything else splits words.
_LETTERS = bytes(c if 0x61 <= c <= 0x7A else c + 0x20 if 0x41 <= c <= 0x5A else 0x20 for c in range(256))
_VERSION_COMMENT = re.compile(rb"/\*!\d*|\*/")
_MAX_TOKENS = 256

Token = tuple[str, bytes]


def _sql_tokens(low: bytes, start: int = 0) -> list[Token]:
    """The tokens of lower-cased ``low`` from ``start``, as (kind, text)."""
    tokens: list[Token] = []
    words = _WORD_KINDS
    kinds = _GROUP_KINDS
    for match in _SQL_TOKEN.finditer(low, start):
        group = match.lastindex
        if group == 1:
            continue
        text = match.group(group)  # type: ignore[arg-type]
        if group == 3:
            tokens.append((words.get(text, "n"), text))
        elif group == 9:
            tokens.append((text.decode("latin-1"), text))
        elif group == 4 and len(text) >= 4 and text[:2] == b"/*" and text[-2:] == b"*/":
            continue  # an inline comment separates like a space
        else:
            tokens.append((kinds[group], text))  # type: ignore[index]
        if len(tokens) >= _MAX_TOKENS:
            break
    # A name directly before "(" is a function call.
    for i in range(len(tokens) - 1):
        if tokens[i + 1][0] == "(" and tokens[i][0] in "nk" and tokens[i][1] not in _COMPARISON_WORDS:
            tokens[i] = ("f", tokens[i][1])
    return tokens


class _Sql:
    """The token list of one reading of the input, and the shapes of an injection in it."""

    __slots__ = ("end", "quoted", "tokens", "unterminated")

    def __init__(self, tokens: list[Token], quoted: bool) -> None:
        self.tokens = tokens
        self.end = len(tokens)
        self.quoted = quoted  # read as the rest of a quoted literal: the first quote broke out of it
        # The last token is a literal left open: the query's own closing quote will end it.
        self.unterminated = bool(tokens) and tokens[-1][0] == "s" and not _closed(tokens[-1][1])

    def kind(self, i: int) -> str:
        return self.tokens[i][0] if i < self.end else "$"

    def text(self, i: int) -> bytes:
        return self.tokens[i][1] if i < self.end else b""

    def injected_after(self, i: int, high: bool) -> bool:
        """Does SQL go on, at token ``i``, the way an injection does (right after a value)?"""
        value = self.kind(i - 1) if i > 0 else ""
        while self.kind(i) == ")":
            i += 1
        kind, text = self.kind(i), self.text(i)
        if kind == "&":
            return self.condition(i + 1)
        if kind == "U":
            return self.union(i + 1)
        if kind == ";":
            return self.stacked(i + 1)
        if kind == "c":  # admin'-- ; with high sensitivity 1-- too
            return self.quoted or (high and value == "1")
        if text in _COMPARISONS:
            j = i + 1
            while self.kind(j) == "(":
                j += 1
            if j > i + 1 and self.kind(j) == "E":  # a subquery: 1 RLIKE (SELECT …), x' = (SELECT …)
                return True
            if kind == "o" and self.quoted:  # x'='0-- : a comparison cut short
                end = self.operand(i + 1)
                return end is not None and self.kind(end) in "c&"
            return False
        if kind == "k":
            following = self.text(i + 1)
            if text in (b"order", b"group"):
                return following == b"by" and self.kind(i + 2) in _VALUES
            if text == b"having":
                return self.condition(i + 1)
            if text == b"limit":
                return self.kind(i + 1) in "1v"
            if text == b"into":
                return following in (b"outfile", b"dumpfile")
            if text == b"procedure":
                return following == b"analyse"
            if text == b"waitfor":
                return following in (b"delay", b"time")
            return False
        return False

    def operand(self, i: int) -> int | None:
        """The index after one operand starting at ``i``: a literal, name, variable or function call, or an
        arithmetic chain of them (``17-7``)."""
        end = self.term(i)
        while end is not None and self.kind(end) == "o" and self.text(end) in _ARITHMETIC:
            following = self.term(end + 1)
            if following is None:
                break
            end = following
        return end

    def term(self, i: int) -> int | None:
        while self.kind(i) == "o" and self.text(i) in (b"-", b"+", b"!", b"~"):
            i += 1
        kind = self.kind(i)
        if kind == "f":
            return self.after_call(i + 1)
        if kind == "(":
            return self.after_call(i)
        if kind in _VALUES:
            return i + 1
        return None

    def after_call(self, i: int) -> int:
        """The index after the parenthesised group opening at ``i`` (the end when it never closes)."""
        depth = 0
        while i < self.end:
            kind = self.kind(i)
            if kind == "(":
                depth += 1
            elif kind == ")":
                depth -= 1
                if depth <= 0:
                    return i + 1
            i += 1
        return i

    def condition(self, i: int) -> bool:
        """After AND/OR (or HAVING): a condition, as ``1=1``, ``'a'='a``, ``sleep(5)``, ``(SELECT …)``."""
        while self.kind(i) == "(" or self.text(i) in (b"not", b"!"):
            i += 1
        kind = self.kind(i)
        if kind == "E":
            return True
        if kind == "f":  # a function call where a condition belongs: sleep(5), extractvalue(…)
            after = self.kind(self.after_call(i + 1))
            return after in "$c&o);U"
        first = i
        j = self.operand(i)
        if j is None:
            return False
        if (self.kind(j) == "o" and self.text(j) in _COMPARISONS) or self.text(j) in _COMPARISON_WORDS:
            k = j + 1
            while self.kind(k) == "(" or self.text(k) in (b"not", b"!"):
                k += 1
            if self.kind(k) == "E":
                return True
            second = k
            if self.operand(k) is None:
                return False
            kinds = self.kind(first), self.kind(second)
            if kinds != ("n", "n"):
                return True
            return self.text(first) == self.text(second)  # x=x, but not "cats = dogs"
        # A lone operand: a number or variable (1 OR 1), TRUE/NULL after a quote, or the literal the query
        # itself closes (1' OR '1).
        kind = self.kind(first)
        ends = self.kind(j) in "$c);&U"
        if kind in "1v" or (kind == "T" and self.quoted):
            return ends
        if kind == "s" and self.quoted:
            return (j == self.end and self.unterminated) or self.kind(j) == "c"
        return False

    def union(self, i: int) -> bool:
        if self.text(i) in (b"all", b"distinct"):
            i += 1
        while self.kind(i) == "(":
            i += 1
        return self.kind(i) == "E"

    def select(self, i: int) -> bool:
        """After SELECT: a select list, not English (``select a plan``)."""
        kind = self.kind(i)
        if kind in "1svTf(" or self.text(i) in (b"*", b"all", b"distinct"):
            return True
        if kind == "n":
            for j in range(i + 1, min(i + 8, self.end)):
                if self.text(j) == b"from" or self.kind(j) == ",":
                    return True
        return False

    def stacked(self, i: int) -> bool:
        """After ``;``: a second statement (or, after a quote, a comment ending the query)."""
        kind, text, following = self.kind(i), self.text(i), self.text(i + 1)
        if kind in "c$":
            return self.quoted and kind == "c"
        if kind == "E":
            return self.select(i + 1)
        if text in (b"drop", b"create", b"alter", b"truncate"):
            return following in _DROP_TARGETS
        if text == b"insert":
            return following == b"into"
        if text == b"delete":
            return following == b"from"
        if text == b"update":
            return self.kind(i + 1) == "n" and self.text(i + 2) == b"set"
        if text in (b"exec", b"execute", b"shutdown", b"grant", b"revoke"):
            return True
        if text == b"declare":
            return self.kind(i + 1) == "v"
        if text == b"waitfor":
            return following in (b"delay", b"time")
        return False


def _closed(literal: bytes) -> bool:
    """Whether a string token ends with its closing quote (not merely an escaped or doubled one)."""
    if len(literal) < 2 or literal[-1] != literal[0]:
        return False
    body = literal[1:-1]
    trailing = len(body) - len(body.rstrip(literal[:1]))
    backslashes = len(body) - len(body.rstrip(b"\\"))
    return trailing % 2 == 0 and backslashes % 2 == 0


def _quote_break(data: bytes, quote: int) -> int:
    """The index just past the first quote not escaped by a backslash, or -1."""
    i = data.find(bytes((quote,)))
    while i >= 0:
        backslashes = 0
        j = i - 1
        while j >= 0 and data[j] == 0x5C:
            backslashes += 1
            j -= 1
        if backslashes % 2 == 0:
            return i + 1
        i = data.find(bytes((quote,)), i + 1)
    return -1


def sqli(data: bytes, high: bool = False) -> bool:
    """Whether ``data`` carries SQL injection (see the module's docstring for how it decides).

    >>> [sqli(s) for s in (b"1 OR 1=1", b"admin'--", b"1; DROP TABLE users", b"select a plan", b"O'Brien")]
    [True, True, True, False, False]
    """
    if data.isalnum() or not data or not _may_be_sqli(data):  # most values are one plain word or number
        return False
    data = data.lower()
    if data.find(b"/*!") >= 0:  # MySQL runs what is inside /*!…*/: read it as code
        data = _VERSION_COMMENT.sub(b" ", data)
    # As it stands: a number or name spliced into a query, right at the start or after "name=".
    sql = _Sql(_sql_tokens(data), quoted=False)
    if sql.kind(0) == "&" and sql.condition(1):  # the value left out: "or 1=1--"
        return True
    for i in range(sql.end):
        if sql.kind(i) in _VALUES and _anchored(sql, i, high) and sql.injected_after(i + 1, high):
            return True
    # Inside a literal: the first quote closes it, then SQL goes on.
    for quote in b"'\"":
        start = _quote_break(data, quote)
        if start < 0:
            continue
        sql = _Sql(_sql_tokens(data, start), quoted=True)
        if sql.injected_after(0, high):
            return True
        if high:
            for i in range(sql.end):
                if sql.kind(i) in _VALUES and sql.injected_after(i + 1, high):
                    return True
    return False


def _may_be_sqli(data: bytes) -> bool:
    if _TRIGGER_SYMBOLS.search(data) is not None:
        return True
    words = data.translate(_LETTERS).split()
    if not _TRIGGER_WORDS.isdisjoint(words):
        return True
    return not _PHRASE_WORDS.isdisjoint(words) and _TRIGGER_PHRASES.search(data.lower()) is not None


def _anchored(sql: _Sql, i: int, high: bool) -> bool:
    """Could the value at ``i`` be where the input starts in the query? The first value (after a sign or
    parentheses) and a value right after ``name=``; with ``high``, any value."""
    if high:
        return True
    j = i - 1
    while j >= 0 and (sql.kind(j) == "(" or (sql.kind(j) == "o" and sql.text(j) in (b"-", b"+"))):
        j -= 1
    if j < 0:
        return True
    return sql.kind(j) == "o" and sql.text(j) == b"=" and j >= 1 and sql.kind(j - 1) == "n"


# --- cross-site scripting ---------------------------------------------------------------------------------

_DANGEROUS_ELEMENTS = frozenset(
    b"""
    applet base embed frame frameset iframe import isindex link math meta noscript object portal script
    style svg vmlframe xml xss
""".split()
)
# DOM event handler attributes (the WHATWG list and common vendor ones), for injections outside any element.
_EVENTS = frozenset(
    b"on" + name
    for name in b"""
    abort activate afterprint afterscriptexecute animationcancel animationend animationiteration
    animationstart auxclick beforecopy beforecut beforeinput beforepaste beforeprint
    beforescriptexecute beforetoggle beforeunload begin blur cancel canplay canplaythrough change
    click close contextmenu copy cuechange cut dblclick drag dragend dragenter dragleave dragover
    dragstart drop durationchange emptied end ended error focus focusin focusout formdata
    fullscreenchange hashchange input invalid keydown keypress keyup load loadeddata loadedmetadata
    loadstart message mousedown mouseenter mouseleave mousemove mouseout mouseover mouseup
    mousewheel offline online pagehide pageshow paste pause play playing pointercancel pointerdown
    pointerenter pointerleave pointermove pointerout pointerover pointerrawupdate pointerup popstate
    progress ratechange readystatechange repeat reset resize scroll scrollend search seeked seeking
    select selectionchange selectstart show stalled storage submit suspend timeupdate toggle
    touchcancel touchend touchmove touchstart transitioncancel transitionend transitionrun
    transitionstart unhandledrejection unload volumechange waiting wheel
""".split()
)
# An element: "<" then a letter ("</" for an end tag), as HTML parses it; its attributes run to ">".
# A "<" inside a name or the attributes starts the next scan, so "<scr<script>" is read as the <script> it is.
_ELEMENT = re.compile(rb"</?([a-z][^\s/<>\x00]*)([^<>]*)", re.I)
_HANDLER_IN_ELEMENT = re.compile(rb"(?:^|[\s/\"'`])on[a-z]+\s*=", re.I)
_SCRIPT_IN_ELEMENT = re.compile(
    rb"(?:java|vb|live)script\s*:|data\s*:\s*text/html|expression\s*\(|-moz-binding|srcdoc\s*=", re.I
)
# Outside an element: an attribute added after a closing quote (or space), or a value that is a script URL.
_HANDLER_INJECTED = re.compile(rb"""[\s/"'`](on[a-z]+)\s*=""", re.I)
_SCRIPT_URL = re.compile(
    rb"""^[\s"'`]*(?:java|vb|live)script\s*:\s*(?:[a-z_$][\w$.]*\s*[(\[=`]|[/'"(\[{!~+-])""", re.I
)
_INVISIBLE = re.compile(rb"[\t\n\r\x00]")


def xss(data: bytes) -> bool:
    """Whether ``data`` carries cross-site scripting (see the module's docstring for how it decides).

    >>> [xss(s) for s in (b"<script>alert(1)</script>", b'" onmouseover="alert(1)', b"<b>bold</b>", b"a < b")]
    [True, True, False, False]
    """
    if data.isalnum() or not data:
        return False
    if 0x3C in data:  # "<"
        for element in _ELEMENT.finditer(data):
            if element.group(1).lower() in _DANGEROUS_ELEMENTS:
                return True
            attributes = element.group(2)
            if not attributes:
                continue
            if 0x26 in attributes:  # "&": a browser decodes entities in attribute values: &#x09; &colon; …
                attributes = html.unescape(attributes.decode("latin-1")).encode("utf-8", "surrogateescape")
            attributes = _INVISIBLE.sub(b"", attributes) if _INVISIBLE.search(attributes) else attributes
            if _HANDLER_IN_ELEMENT.search(attributes) or _SCRIPT_IN_ELEMENT.search(attributes):
                return True
    if 0x3D in data:  # "="
        for handler in _HANDLER_INJECTED.finditer(data):
            if handler.group(1).lower() in _EVENTS:
                return True
    if 0x3A in data:  # ":"
        value = _INVISIBLE.sub(b"", data) if _INVISIBLE.search(data) else data
        if _SCRIPT_URL.search(value):
            return True
    return False


def check_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    """A network from ``text`` (CIDR, or one address meaning /32 or /128), or why it is not one."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            return f"{text!r} is not an IPv4 or IPv6 address or CIDR range ({exc})"
        return f"{text!r} has host bits set: the range is {loose}"
    if network.prefixlen == 0:
        return f"{text!r}: a /0 range is not allowed (AWS WAF refuses it; it would match every address)"
    return network


def compile_pattern(pattern: str) -> re.Pattern[bytes] | str:
    """A regular expression over bytes, or why it does not compile."""
    try:
        return re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        return f"is not a valid regular expression: {exc}"


# --- regular expressions: a literal prefilter -------------------------------------------------------------
# ``re`` tries a case-insensitive alternation (``(?i)(sqlmap|nikto|…)``) at every position of the value, with
# no literal prefix to skip ahead by: about 3 µs on a browser's User-Agent. Most patterns name strings every
# match must contain; looking for those first (one ``find``, or one case-sensitive alternation over the
# lower-cased value) rejects most values in a fraction of that, and only a value holding one runs the pattern.
# When the whole pattern is such a set of strings, finding one *is* the answer and the pattern never runs.

_MAX_LITERALS = 64  # strings in a set: more and the set is not worth it (nor safe to multiply out)


class _Literals:
    """What the pattern's parse tree says about one part of it: ``exact``, every string the part matches (a
    finite set), and ``needed``, strings one of which every match of the part contains; None: not known."""

    __slots__ = ("exact", "needed")

    def __init__(self, exact: frozenset[bytes] | None, needed: frozenset[bytes] | None) -> None:
        self.exact = exact
        self.needed = needed


_UNKNOWN = _Literals(None, None)


def _better(found: frozenset[bytes] | None, best: frozenset[bytes] | None) -> frozenset[bytes] | None:
    """The more selective of two needed sets (longest shortest string, then fewer strings)."""
    if not found or b"" in found or len(found) > _MAX_LITERALS:
        return best
    if best is None:
        return found
    rank = (min(map(len, found)), -len(found))
    return found if rank > (min(map(len, best)), -len(best)) else best


class _LiteralScan:
    """Walks a parse tree (``re._parser``'s) for :func:`regex_test`."""

    def __init__(self, constants: Any) -> None:
        self.c = constants
        self.scoped_flags = False  # a (?i:…) or (?-i:…) group: the lower-cased search is no longer exact
        self.locale = False  # re.LOCALE: case follows the locale, not ASCII; no prefilter

    def sequence(self, items: Any) -> _Literals:
        c = self.c
        run = frozenset((b"",))  # the strings the current run of exact items matches
        best: frozenset[bytes] | None = None
        exact = True
        for op, av in items:
            part = self.item(op, av, c)
            if part.exact is not None:
                joined = frozenset(a + b for a in run for b in part.exact)
                if len(joined) <= _MAX_LITERALS:
                    run = joined
                    continue
                # Too many to join: the run ends, this part starts the next.
                best = _better(run, best)
                run = part.exact
                exact = False
                continue
            best = _better(part.needed, _better(run, best))
            run = frozenset((b"",))
            exact = False
        best = _better(run, best)
        return _Literals(run if exact else None, best)

    def item(self, op: Any, av: Any, c: Any) -> _Literals:
        if op is c.LITERAL:
            one = frozenset((bytes((av,)),))
            return _Literals(one, one)
        if op is c.SUBPATTERN:
            _group, add_flags, del_flags, inner = av
            if (add_flags | del_flags) & re.LOCALE:
                self.locale = True
            if (add_flags | del_flags) & re.IGNORECASE:
                self.scoped_flags = True
            return self.sequence(inner)
        if op is c.IN:  # a class of a few bytes ([cd], what "abc|abd" parses to): each is a string
            chars: set[int] = set()
            for kind, value in av:
                if kind is c.LITERAL:
                    chars.add(value)
                elif kind is c.RANGE and value[1] - value[0] < 16:
                    chars.update(range(value[0], value[1] + 1))
                else:  # a negated class, a category (\d, \w …), a wide range
                    return _UNKNOWN
            strings = frozenset(bytes((char,)) for char in chars)
            return _Literals(strings, strings)
        if op is c.ATOMIC_GROUP:
            return self.sequence(av)
        if op is c.BRANCH:
            parts = [self.sequence(branch) for branch in av[1]]
            exact: frozenset[bytes] | None = None
            if all(part.exact is not None for part in parts):
                exact = frozenset(s for part in parts for s in part.exact or ())
                if len(exact) > _MAX_LITERALS:
                    exact = None
            needed: frozenset[bytes] | None = None
            if all(part.needed for part in parts):
                needed = frozenset(s for part in parts for s in part.needed or ())
                if b"" in needed or len(needed) > _MAX_LITERALS:
                    needed = None
            return _Literals(exact, needed)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)):
            low, high, inner = av
            if low < 1:
                return _UNKNOWN
            part = self.sequence(inner)
            return _Literals(part.exact if low == high == 1 else None, part.needed)
        return _UNKNOWN  # classes, any, anchors, lookarounds, back references, conditionals


def regex_test(pattern: re.Pattern[bytes]) -> Callable[[bytes], bool]:
    """``lambda value: pattern.search(value) is not None``, answered faster where the pattern allows.

    The strings every match must contain come from the pattern's parse tree (runs of literal characters,
    alternations of them, groups, repetitions of at least one). Under ``(?i)`` they are looked for in the
    lower-cased value: a bytes pattern folds ASCII letters only, as ``bytes.lower`` does (``re.LOCALE``
    would fold by the locale: such a pattern is run as it is).

    >>> test = regex_test(re.compile(rb"(?i)(sqlmap|nikto)"))
    >>> test(b"Mozilla/5.0 (X11) Firefox/128.0"), test(b"NiKtO/2.5"), test(b"sqlma")
    (False, True, False)
    >>> regex_test(re.compile(rb"id=\\d+;(drop|delete) "))(b"id=1;drop ")
    True
    """
    search = pattern.search

    def full(value: bytes) -> bool:
        return search(value) is not None

    if pattern.flags & re.LOCALE:
        return full
    try:
        from re import _constants, _parser  # type: ignore[attr-defined]  # CPython 3.11+

        tree = _parser.parse(pattern.pattern, pattern.flags & ~re.DEBUG)
        scan = _LiteralScan(_constants)
        found = scan.sequence(tree.data)
        flags = int(tree.state.flags)
    except Exception:  # another Python's parser: run the pattern as it is
        return full
    strings = found.exact if found.exact is not None else found.needed
    if scan.locale or flags & re.LOCALE or not strings or b"" in strings:
        return full
    lower = bool(flags & re.IGNORECASE) or scan.scoped_flags
    exact = found.exact is not None and not scan.scoped_flags
    # One function per case, each a single call: the test runs on every request.
    ordered = sorted({s.lower() for s in strings}) if lower else sorted(strings)
    if len(ordered) == 1:
        (needle,) = ordered
        if exact:
            if lower:
                return lambda value: value.lower().find(needle) >= 0
            return lambda value: value.find(needle) >= 0
        if lower:
            return lambda value: value.lower().find(needle) >= 0 and search(value) is not None
        return lambda value: value.find(needle) >= 0 and search(value) is not None
    # Several: a case-sensitive alternation, which re scans with a first-byte set (find per string costs
    # more from about three strings on).
    any_of = re.compile(b"|".join(re.escape(s) for s in ordered)).search
    if exact:
        if lower:
            return lambda value: any_of(value.lower()) is not None
        return lambda value: any_of(value) is not None
    if lower:
        return lambda value: any_of(value.lower()) is not None and search(value) is not None
    return lambda value: any_of(value) is not None and search(value) is not None
