"""IAM policy documents as API Gateway reads a Lambda authorizer's answer: pure functions, no I/O.

An authorizer grants or refuses a method by returning an IAM policy over ``execute-api`` actions on method
ARNs (developer guide, *Output from an API Gateway Lambda authorizer* and *Control access for invoking an
API*)::

    arn:aws:execute-api:REGION:ACCOUNT:API_ID/STAGE/METHOD/RESOURCE-PATH

``RESOURCE-PATH`` is the path the caller asked for (``/pets/a1b2``, not ``/pets/{petId}``), without its
leading slash; the root resource leaves it empty (``…/GET/``). Actions are ``execute-api:Invoke`` and
``execute-api:InvalidateCache`` (``execute-api:*`` is both).

Evaluation follows IAM's rules (*IAM JSON policy elements*: Effect, Action, NotAction, Resource,
NotResource; *Policy evaluation logic*):

- ``Effect`` is ``Allow`` or ``Deny``, exactly (the value is case sensitive);
- ``Action`` / ``NotAction`` and ``Resource`` / ``NotResource`` are a string or a list of strings, with the
  wildcards ``*`` (any run of characters) and ``?`` (any one character);
- action names are case insensitive (``execute-api:invoke`` is ``execute-api:Invoke``), ARNs are not;
- in an ARN a wildcard stays inside its colon-separated segment, except a ``*`` that ends a segment, which
  may run on past colons (so ``arn:aws:execute-api:*`` covers every method ARN);
- ``Statement`` is one statement object or a list of them;
- an explicit ``Deny`` that matches wins; otherwise a matching ``Allow`` allows; otherwise the method is
  refused (an implicit deny).

``Condition`` blocks cannot be evaluated here (there are no request keys to test), so they are read
fail-closed: an ``Allow`` with a condition grants nothing, a ``Deny`` with a condition always applies.
:attr:`Policy.unevaluated_conditions` says when that happened, so the caller can log it.

>>> policy = compile_policy({"Statement": {"Effect": "Allow", "Action": "execute-api:Invoke",
...     "Resource": "arn:aws:execute-api:us-east-1:123456789012:abc/*/GET/*"}})
>>> policy.decide(INVOKE, "arn:aws:execute-api:us-east-1:123456789012:abc/dev/GET/pets/1")
<Decision.ALLOW: 'allow'>
>>> policy.decide(INVOKE, "arn:aws:execute-api:us-east-1:123456789012:abc/dev/POST/pets")
<Decision.IMPLICIT_DENY: 'implicit deny'>
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "INVALIDATE_CACHE",
    "INVOKE",
    "Decision",
    "Policy",
    "PolicyError",
    "Statement",
    "arn_prefix",
    "compile_policy",
    "evaluate",
    "method_arn",
    "partition",
]

INVOKE = "execute-api:Invoke"
INVALIDATE_CACHE = "execute-api:InvalidateCache"

_EFFECTS = {"Allow": True, "Deny": False}


class Decision(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"  # an explicit Deny matched
    IMPLICIT_DENY = "implicit deny"  # no Allow matched


class PolicyError(ValueError):
    """The document is not a policy API Gateway can read ("Could not parse policy"); says what is wrong."""


def partition(region: str) -> str:
    """The ARN partition of a region: ``aws``, ``aws-cn`` (China) or ``aws-us-gov`` (GovCloud)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def arn_prefix(region: str, account_id: str, api_id: str, stage: str) -> str:
    """Every method ARN of one API stage starts with this; the method and the path follow.

    >>> arn_prefix("us-east-1", "123456789012", "abc", "dev")
    'arn:aws:execute-api:us-east-1:123456789012:abc/dev/'
    """
    return f"arn:{partition(region)}:execute-api:{region}:{account_id}:{api_id}/{stage}/"


def method_arn(region: str, account_id: str, api_id: str, stage: str, method: str, path: str) -> str:
    """The ARN of a request: ``path`` is the request's path without the stage, starting with ``/``.

    >>> method_arn("us-east-1", "123456789012", "abc", "dev", "GET", "/")
    'arn:aws:execute-api:us-east-1:123456789012:abc/dev/GET/'
    >>> method_arn("us-east-1", "123456789012", "abc", "dev", "GET", "/pets/a1b2")
    'arn:aws:execute-api:us-east-1:123456789012:abc/dev/GET/pets/a1b2'
    """
    return f"{arn_prefix(region, account_id, api_id, stage)}{method}/{path.removeprefix('/')}"


@lru_cache(maxsize=4096)
def _action_pattern(pattern: str) -> re.Pattern[str]:
    """An action pattern (``execute-api:*``) as a regular expression: case insensitive, whole string."""
    parts = ["(?s)"]
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE)


@lru_cache(maxsize=4096)
def _resource_pattern(pattern: str) -> re.Pattern[str]:
    """An ARN pattern as a regular expression: case sensitive, whole string; wildcards keep to their
    colon-separated segment unless a ``*`` ends the segment."""
    parts = ["(?s)"]
    last = len(pattern) - 1
    for i, char in enumerate(pattern):
        if char == "*":
            parts.append(".*" if i == last or pattern[i + 1] == ":" else "[^:]*")
        elif char == "?":
            parts.append("[^:]")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts))


def _strings(statement: Mapping[str, Any], key: str, index: int) -> tuple[str, ...]:
    value = statement[key]
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise PolicyError(f"Statement[{index}].{key} must be a string or a list of strings, got {value!r}")


def _one_of(statement: Mapping[str, Any], key: str, not_key: str, index: int) -> tuple[tuple[str, ...], bool]:
    """The statement's ``key`` or ``not_key`` values (exactly one must be there), and whether it was the
    ``Not`` form."""
    has, has_not = key in statement, not_key in statement
    if has == has_not:
        raise PolicyError(f"Statement[{index}] must have exactly one of {key} and {not_key}")
    return (
        (_strings(statement, not_key, index), True) if has_not else (_strings(statement, key, index), False)
    )


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement, its patterns compiled."""

    allow: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool  # NotAction: the statement covers every action *but* these
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditional: bool  # it has a Condition block (not evaluated: read fail-closed)

    def covers(self, action: str, resource: str) -> bool:
        """Whether the statement applies to ``action`` on ``resource`` (conditions aside)."""
        if any(p.fullmatch(action) for p in self.actions) == self.not_action:
            return False
        return any(p.fullmatch(resource) for p in self.resources) != self.not_resource


@dataclass(frozen=True, slots=True)
class Policy:
    """A readable policy document, ready to answer for any action and method ARN."""

    statements: tuple[Statement, ...]
    unevaluated_conditions: bool = False  # some statement had a Condition block (see the module's doc)

    def decide(self, action: str, resource: str) -> Decision:
        allowed = False
        for statement in self.statements:
            if statement.allow:
                if not allowed and not statement.conditional and statement.covers(action, resource):
                    allowed = True
            elif statement.covers(action, resource):
                return Decision.DENY
        return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def _statement(raw: Any, index: int) -> Statement:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"Statement[{index}] must be an object, got {raw!r}")
    effect = raw.get("Effect")
    if not isinstance(effect, str) or effect not in _EFFECTS:
        raise PolicyError(
            f"Statement[{index}].Effect must be 'Allow' or 'Deny' (case sensitive), got {effect!r}"
        )
    actions, not_action = _one_of(raw, "Action", "NotAction", index)
    resources, not_resource = _one_of(raw, "Resource", "NotResource", index)
    condition = raw.get("Condition")
    if condition is not None and not isinstance(condition, Mapping):
        raise PolicyError(f"Statement[{index}].Condition must be an object, got {condition!r}")
    return Statement(
        allow=_EFFECTS[effect],
        actions=tuple(_action_pattern(a) for a in actions),
        not_action=not_action,
        resources=tuple(_resource_pattern(r) for r in resources),
        not_resource=not_resource,
        conditional=bool(condition),
    )


def compile_policy(document: Any) -> Policy:
    """Read a ``policyDocument``; :class:`PolicyError` says what makes it unreadable."""
    if not isinstance(document, Mapping):
        raise PolicyError(f"policyDocument must be an object, got {document!r}")
    if "Statement" not in document:
        raise PolicyError("policyDocument has no Statement")
    raw = document["Statement"]
    items: Sequence[Any]
    if isinstance(raw, Mapping):
        items = [raw]
    elif isinstance(raw, list):
        items = raw
    else:
        raise PolicyError(f"policyDocument.Statement must be an object or a list of them, got {raw!r}")
    statements = tuple(_statement(item, i) for i, item in enumerate(items))
    return Policy(statements, any(s.conditional for s in statements))


def evaluate(document: Any, action: str, resource: str) -> Decision:
    """Read ``document`` and decide ``action`` on ``resource`` (raises :class:`PolicyError`)."""
    return compile_policy(document).decide(action, resource)
