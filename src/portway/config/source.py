"""Reading YAML or JSON files into plain data, refusing duplicate keys (YAML would silently keep the last)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from portway.config.errors import DefinitionError

__all__ = ["StrictLoader", "load_document"]

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """SafeLoader that reports a duplicate mapping key instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    # Only the mapping's own keys can clash: keys merged in with `<<` are overridden by them, as YAML says.
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable mapping key", key_node.start_mark
            ) from None
        if key in seen:
            first = seen[key].start_mark
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined on line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
StrictLoader = _StrictLoader  # for loaders that add tags of their own (CloudFormation's)


def _problem_mark(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_document(file: Path, loader: type[yaml.SafeLoader] | None = None) -> Any:
    """Parse ``file`` (YAML or JSON: JSON is YAML) into plain data; problems become one-line errors."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError(file, "", "file not found") from None
    except IsADirectoryError:
        raise DefinitionError(file, "", "is a directory, not a definition file") from None
    except UnicodeDecodeError as exc:
        raise DefinitionError(file, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DefinitionError(file, "", f"cannot be read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=loader or _StrictLoader)
    except yaml.YAMLError as exc:
        raise DefinitionError(file, "", f"not valid YAML/JSON: {_problem_mark(exc)}") from None
