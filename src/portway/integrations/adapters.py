"""The adapters a Lambda worker applies around its handler, by name: request facts → event, result → answer.

The gateway names one per invocation (``adapter=`` of :meth:`LambdaRuntime.invoke`); the worker looks it up
here. Imported by every worker, so it only gathers the pure payload modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from portway.integrations.events import ProxyRequest, build_event_v1, rest_v1_answer
from portway.integrations.events_v2 import build_event_v2, http_v2_answer

__all__ = ["ADAPTERS", "HTTP_V2", "REST_V1", "Adapter"]

REST_V1 = "rest-v1"  # REST API Lambda proxy: payload 1.0
HTTP_V2 = "http-v2"  # HTTP API Lambda proxy: payload 2.0

# (facts → event, (result, the result's JSON text, facts) → answer)
Adapter = tuple[Callable[[ProxyRequest], Any], Callable[[Any, str, ProxyRequest], Any]]

ADAPTERS: dict[str, Adapter] = {
    REST_V1: (build_event_v1, rest_v1_answer),
    HTTP_V2: (build_event_v2, http_v2_answer),
}
