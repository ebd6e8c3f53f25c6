"""The functions file: Lambda function names bound to local Python handlers, and stage variables.

```yaml
functions:
  products:
    handler: src/products.handler   # path/to/module.function, relative to this file
    timeout: 10                     # function timeout in seconds (Lambda's default: 3)
    memory: 256                     # MB, reported to the handler as Lambda does
    concurrency: 4                  # warm workers at most; further requests queue
    environment: {TABLE: products}
stages:
  dev:
    variables: {fn: products}
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from portway.config.errors import DefinitionErrors, Problem, json_path
from portway.config.model import Deployment, FunctionEntry
from portway.config.source import load_document
from portway.lambdas.spec import RESERVED_ENVIRONMENT

__all__ = ["load_functions"]

_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HANDLER = re.compile(r"^([^\s]+/)?[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
_FUNCTION_KEYS = {"handler", "timeout", "memory", "environment", "concurrency", "description"}
MAX_TIMEOUT_S = 900
MEMORY_RANGE = (128, 10_240)


def load_functions(file: Path) -> Deployment:
    """Read a functions file; every problem is reported with its JSON path."""
    document = load_document(file)
    problems: list[Problem] = []

    def add(path: str, message: str) -> None:
        problems.append(Problem(file, path, message))

    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        add("$", "must be a mapping with 'functions' (and optionally 'stages')")
        raise DefinitionErrors(problems)
    for key in document:
        if key not in {"functions", "stages"}:
            add(json_path(str(key)), "unknown key: expected 'functions' or 'stages'")
    functions: dict[str, FunctionEntry] = {}
    raw_functions = document.get("functions") or {}
    if not isinstance(raw_functions, Mapping):
        add(json_path("functions"), "must be a mapping of function names to settings")
        raw_functions = {}
    for name, spec in raw_functions.items():
        entry = _function(str(name), spec, file, add)
        if entry is not None:
            functions[entry.name] = entry
    stages: dict[str, dict[str, str]] = {}
    raw_stages = document.get("stages") or {}
    if not isinstance(raw_stages, Mapping):
        add(json_path("stages"), "must be a mapping of stage names to settings")
        raw_stages = {}
    for stage, spec in raw_stages.items():
        where = json_path("stages", str(stage))
        if isinstance(spec, Mapping):
            for key in spec:
                if key != "variables":
                    add(f"{where}.{key}", "unknown setting (known: variables)")
        variables = spec.get("variables", {}) if isinstance(spec, Mapping) else None
        if not isinstance(variables, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in variables.items()
        ):
            add(f"{where}.variables", "must be a mapping of variable names to string values")
            continue
        stages[str(stage)] = {k: str(v) for k, v in variables.items()}
    if problems:
        raise DefinitionErrors(problems)
    return Deployment(source=file, functions=functions, stage_variables=stages)


def _function(name: str, spec: Any, file: Path, add: Any) -> FunctionEntry | None:
    where = json_path("functions", name)
    ok = True
    if not _FUNCTION_NAME.match(name):
        add(where, "a Lambda function name has 1-64 letters, digits, '-' or '_'")
        ok = False
    if isinstance(spec, str):
        spec = {"handler": spec}
    if not isinstance(spec, Mapping):
        add(where, "must be a mapping with at least 'handler: path/to/module.function'")
        return None
    for key in spec:
        if key not in _FUNCTION_KEYS:
            add(f"{where}.{key}", f"unknown setting (known: {', '.join(sorted(_FUNCTION_KEYS))})")
            ok = False
    handler = spec.get("handler")
    if not isinstance(handler, str) or not _HANDLER.match(handler):
        add(f"{where}.handler", f"must be 'path/to/module.function', got {handler!r}")
        ok = False
    timeout = spec.get("timeout", 3)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT_S:
        add(f"{where}.timeout", f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S}")
        ok = False
    memory = spec.get("memory", 128)
    if (
        isinstance(memory, bool)
        or not isinstance(memory, int)
        or not (MEMORY_RANGE[0] <= memory <= MEMORY_RANGE[1])
    ):
        add(f"{where}.memory", f"must be a whole number of MB from {MEMORY_RANGE[0]} to {MEMORY_RANGE[1]}")
        ok = False
    concurrency = spec.get("concurrency", 4)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 1000:
        add(f"{where}.concurrency", "must be a whole number from 1 to 1000")
        ok = False
    environment = spec.get("environment") or {}
    if not isinstance(environment, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in environment.items()
    ):
        add(f"{where}.environment", "must be a mapping of variable names to string values")
        ok = False
    else:
        for key in environment:
            if key in RESERVED_ENVIRONMENT:
                add(f"{where}.environment.{key}", "is reserved: Lambda sets it itself and refuses it here")
                ok = False
    if not ok:
        return None
    return FunctionEntry(
        name=name,
        handler=str(handler),
        base_dir=file.parent,
        timeout_s=float(timeout),
        memory_mb=int(memory),
        environment={k: _env_value(v) for k, v in environment.items()},
        concurrency=int(concurrency),
        where=where,
    )


def _env_value(value: str | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
