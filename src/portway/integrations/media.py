"""Media-type matching as API Gateway does it for ``binaryMediaTypes`` and template selection."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["first_accept_type", "matches_any", "media_type"]


def media_type(header_value: bytes | str | None) -> str:
    """``'Text/HTML; charset=utf-8'`` → ``'text/html'``; ``''`` when absent."""
    if header_value is None:
        return ""
    value = header_value.decode("latin-1") if isinstance(header_value, bytes) else header_value
    return value.split(";", 1)[0].strip().lower()


def first_accept_type(accept: bytes | str | None) -> str:
    """API Gateway looks only at the first media type of an Accept header."""
    if not accept:
        return ""
    if isinstance(accept, bytes):
        accept = accept.decode("latin-1")
    return media_type(accept.split(",", 1)[0])


def _match(pattern: str, value: str) -> bool:
    if pattern == value or pattern == "*/*":
        return True
    p_type, _, p_sub = pattern.partition("/")
    v_type, _, v_sub = value.partition("/")
    return (p_type in ("*", v_type)) and (p_sub in ("*", v_sub))


def matches_any(patterns: Sequence[str], value: str) -> bool:
    return bool(value) and any(_match(p, value) for p in patterns)
