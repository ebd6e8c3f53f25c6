"""The compiled router: a resource tree matched segment by segment.

Priority follows API Gateway: a static segment beats ``{param}``, which beats a greedy ``{proxy+}``; an
exact method beats ``ANY``. Matching backtracks over path segments only: once the most specific resource
for the path is found, a method it lacks is "no route", as API Gateway answers.

>>> router = Router([("GET", "/items/{id}", "a"), ("ANY", "/{proxy+}", "b")])
>>> router.match("GET", "/items/42")
Match(target='a', resource='/items/{id}', path_parameters={'id': '42'})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

__all__ = ["BadPath", "DuplicateRoute", "Match", "Router", "decode_segment", "split_path"]

T = TypeVar("T")
ANY = "ANY"
_HEX = frozenset("0123456789abcdefABCDEF")


class DuplicateRoute(ValueError):
    """Two routes for the same method on the same resource shape, or sibling variables that clash."""


class BadPath(ValueError):
    """A request path that cannot be decoded: malformed percent-encoding or invalid UTF-8."""


def decode_segment(segment: str) -> str:
    """Percent-decode strictly: a ``%`` not followed by two hex digits, or bytes that are not UTF-8, fail."""
    if "%" not in segment:
        return segment
    i = segment.find("%")
    while i != -1:
        if i + 2 >= len(segment) or segment[i + 1] not in _HEX or segment[i + 2] not in _HEX:
            raise BadPath(f"malformed percent-encoding in {segment!r}")
        i = segment.find("%", i + 3)
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadPath(f"percent-encoded bytes in {segment!r} are not UTF-8") from None


def split_path(path: str) -> list[str]:
    """Raw (still encoded) segments of a path; ``/`` and a trailing slash give no empty segment."""
    if path.endswith("/"):
        path = path[:-1]
    return path.split("/")[1:] if path else []


@dataclass(slots=True)
class Match(Generic[T]):
    target: T
    resource: str
    path_parameters: dict[str, str]


@dataclass(slots=True)
class _Node(Generic[T]):
    resource: str = "/"
    static: dict[str, _Node[T]] = field(default_factory=dict)
    param: tuple[str, _Node[T]] | None = None
    greedy: tuple[str, _Node[T]] | None = None
    methods: dict[str, T] = field(default_factory=dict)
    matches: dict[str, Match[T]] = field(default_factory=dict)  # static resources: made once, shared


class Router(Generic[T]):
    """Immutable once built: ``match`` only reads."""

    __slots__ = ("_root", "_static", "method_aware", "routes")

    def __init__(
        self,
        routes: Iterable[tuple[str, str, T]],
        on_conflict: Callable[[str, str, DuplicateRoute], None] | None = None,
        *,
        method_aware: bool = False,
    ) -> None:
        """Build from (method, resource template, target); a clash raises :class:`DuplicateRoute`, or is
        passed to ``on_conflict(method, resource, error)`` (the route is then left out).

        ``method_aware``: a path's most specific template without the request's method is passed over for a
        less specific one that has it, as HTTP APIs choose routes (``POST /pets`` goes to ``ANY /{proxy+}``
        when only ``GET /pets`` exists); a REST API stops at the most specific resource.
        """
        self.method_aware = method_aware
        self._root: _Node[T] = _Node()
        # Resources without variables, by path: most requests are answered by one dict lookup.
        self._static: dict[str, _Node[T]] = {}
        added: list[tuple[str, str, T]] = []
        for method, resource, target in routes:
            try:
                self._add(method.upper(), resource, target)
            except DuplicateRoute as exc:
                if on_conflict is None:
                    raise
                on_conflict(method, resource, exc)
                continue
            added.append((method, resource, target))
        self.routes: tuple[tuple[str, str, T], ...] = tuple(added)

    def _add(self, method: str, resource: str, target: T) -> None:
        node = self._root
        segments = split_path(resource)
        for segment in segments:
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                if name.endswith("+"):
                    node = self._variable(node, "greedy", name[:-1], resource)
                else:
                    node = self._variable(node, "param", name, resource)
            else:
                node = node.static.setdefault(segment, _Node())
        if method in node.methods:
            raise DuplicateRoute(f"{method} {resource} is defined twice")
        node.resource = resource
        node.methods[method] = target
        if not any(s.startswith("{") for s in segments):
            self._static["/" + "/".join(segments)] = node
            node.matches[method] = Match(target, resource, {})

    @staticmethod
    def _variable(node: _Node[T], kind: str, name: str, resource: str) -> _Node[T]:
        current: tuple[str, _Node[T]] | None = getattr(node, kind)
        if current is None:
            child: _Node[T] = _Node()
            setattr(node, kind, (name, child))
            return child
        if current[0] != name:
            raise DuplicateRoute(
                f"{resource}: a sibling resource already uses the variable {{{current[0]}}} here; "
                "only one variable name is allowed at one position"
            )
        return current[1]

    def match(self, method: str, path: str) -> Match[T] | None:
        """Find the route for a request path (without the stage, still percent-encoded).

        Raises :class:`BadPath` when a segment cannot be decoded.
        """
        # A static resource that matches the whole path is the most specific match there is.
        if "%" not in path:
            node = self._static.get(path[:-1] if len(path) > 1 and path[-1] == "/" else path)
            if node is not None:
                found = node.matches.get(method) or node.matches.get(ANY)
                if found is not None or not self.method_aware:
                    return found
        params: dict[str, str] = {}
        segments = [decode_segment(s) for s in split_path(path)]
        node = self._find(self._root, segments, 0, params, method if self.method_aware else None)
        if node is None:
            return None
        target = node.methods.get(method)
        if target is None:
            target = node.methods.get(ANY)
            if target is None:
                return None
        return Match(target, node.resource, params)

    def _find(
        self, node: _Node[T], segments: list[str], i: int, params: dict[str, str], method: str | None
    ) -> _Node[T] | None:
        if i == len(segments):
            return node if self._serves(node, method) else None
        segment = segments[i]
        child = node.static.get(segment)
        if child is not None:
            found = self._find(child, segments, i + 1, params, method)
            if found is not None:
                return found
        if node.param is not None and segment:
            name, child = node.param
            params[name] = segment
            found = self._find(child, segments, i + 1, params, method)
            if found is not None:
                return found
            del params[name]
        if node.greedy is not None:
            name, child = node.greedy
            if self._serves(child, method) and any(segments[i:]):
                params[name] = "/".join(segments[i:])
                return child
        return None

    @staticmethod
    def _serves(node: _Node[T], method: str | None) -> bool:
        """Has routes at all (method None), or one for ``method``."""
        if method is None:
            return bool(node.methods)
        return method in node.methods or ANY in node.methods
