"""What a stage module is given to build a route's stage at compile time (``build_stage(op, build)``).

Each feature module in ``portway.stages`` that reads its settings from the definition exposes

    def build_stage(op: Operation, build: StageBuild) -> Stage | None

returning the route's stage, or None when the route does not use the feature. Problems in what the user
wrote are reported with ``build.problem(where, message)`` (``where``: a JSON path in the definition), never
raised: the compiler collects them all. Objects every route of the API shares (one result cache per
authorizer, one JWKS per issuer …) live in ``build.shared``, keyed by the module; ``build.lasting`` outlives
reloads (a JWKS fetched once stays fetched).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from portway.config.model import ApiDefinition, StageSettings
from portway.integrations.events import ApiInfo
from portway.lambdas.runtime import LambdaRuntime
from portway.pipeline.responses import ResponseTable
from portway.state.store import Store

__all__ = ["FunctionResolver", "StageBuild"]

# (Lambda uri or None, x-portway-handler or None, label for messages, uri's JSON path, handler's JSON path)
#   -> the function's name (registered, so its workers start with the gateway), or None (reported).
FunctionResolver = Callable[[str | None, str | None, str, str, str], str | None]


@dataclass(slots=True)
class StageBuild:
    api: ApiDefinition
    api_info: ApiInfo
    stage: str
    stage_variables: MutableMapping[str, str]
    settings: StageSettings
    table: ResponseTable
    runtime: LambdaRuntime
    store: Store  # the gateway's state store (memory or Redis): buckets, cache entries, WAF counters
    clock: Callable[[], float]
    problem: Callable[[str, str], None]  # (JSON path in the definition, message)
    settings_problem: Callable[[str, str], None]  # (JSON path in the stage settings' file, message)
    function: FunctionResolver
    shared: dict[str, Any] = field(default_factory=dict)  # per compiled gateway
    lasting: dict[str, Any] = field(default_factory=dict)  # per running service, across reloads
