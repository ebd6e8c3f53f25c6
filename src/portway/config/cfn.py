"""CloudFormation templates (and so SAM's): YAML with short-form intrinsic tags, and the intrinsics evaluated.

The loader turns ``!Ref X`` into ``{"Ref": "X"}``, ``!GetAtt A.B`` into ``{"Fn::GetAtt": ["A", "B"]}``
and every other ``!Name value`` into ``{"Fn::Name": value}``, so one evaluator reads both forms. The
:class:`Resolver` evaluates them with the template's Parameters (defaults and overrides), Mappings and
Conditions and the pseudo parameters, the way CloudFormation would for one local stack; how a resource answers
``Ref`` and ``Fn::GetAtt`` is the caller's (SAM functions give their name and ARN, resources Portway does not
run their logical id). Every problem names its JSON path; a cycle of Refs is reported, never followed forever.

>>> Resolver({"Parameters": {"Env": {"Type": "String", "Default": "dev"}}}).resolve({"Fn::Sub": "api-${Env}"})
'api-dev'
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from portway.config.source import StrictLoader, load_document

__all__ = ["NO_VALUE", "ResolveError", "Resolver", "load_template"]

NO_VALUE = object()  # AWS::NoValue: the key or list item it stands for is left out


class ResolveError(ValueError):
    """An intrinsic that cannot be evaluated: ``path`` is where, the message says why."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class _TemplateLoader(StrictLoader):
    """The project's strict YAML loader, plus CloudFormation's short-form intrinsic tags."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(file: Path) -> Any:
    """Read a CloudFormation/SAM template (YAML or JSON) into plain data with long-form intrinsics."""
    return load_document(file, loader=_TemplateLoader)


_PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "portway",
    "AWS::NotificationARNs": [],
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")

RefOf = Callable[[str, "Resolver"], Any]
AttributeOf = Callable[[str, str, "Resolver"], Any]


class Resolver:
    """Evaluates intrinsic functions against one template, for one local stack."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        parameter_overrides: Mapping[str, str] | None = None,
        region: str = "us-east-1",
        account_id: str = "123456789012",
        ref_of: RefOf | None = None,
        attribute_of: AttributeOf | None = None,
    ) -> None:
        self.template = template
        self.region = region
        self.account_id = account_id
        self._ref_of = ref_of or (lambda logical_id, resolver: logical_id)
        self._attribute_of = attribute_of or (
            lambda logical_id, attribute, resolver: (
                f"arn:aws:portway:{region}:{account_id}:{logical_id}/{attribute}"
            )
        )
        self._overrides = dict(parameter_overrides or {})
        self._parameters: dict[str, Any] = {}
        self._conditions: dict[str, bool] = {}
        self._active: list[str] = []  # what is being evaluated now: a Ref back into it is a cycle

    # --- the names a Ref can reach ---------------------------------------------------------------------

    def parameter(self, name: str, path: str) -> Any:
        if name in self._parameters:
            return self._parameters[name]
        declared = (self.template.get("Parameters") or {}).get(name)
        if not isinstance(declared, Mapping):
            raise ResolveError(path, f"no parameter {name!r}")
        if name in self._overrides:
            value: Any = self._overrides[name]
        elif "Default" in declared:
            value = declared["Default"]
        else:
            raise ResolveError(
                path, f"parameter {name!r} has no Default: pass --parameter-overrides {name}=VALUE"
            )
        allowed = declared.get("AllowedValues")
        if isinstance(allowed, list) and value not in allowed and str(value) not in map(str, allowed):
            raise ResolveError(path, f"parameter {name!r} is {value!r}, not one of {allowed}")
        if (
            str(declared.get("Type", "String")).startswith("List<")
            or declared.get("Type") == "CommaDelimitedList"
        ):
            value = [item.strip() for item in str(value).split(",")]
        elif not isinstance(value, list):
            value = str(value)
        self._parameters[name] = value
        return value

    def ref(self, name: Any, path: str) -> Any:
        if not isinstance(name, str):
            raise ResolveError(path, f"Ref takes a name, got {name!r}")
        if name == "AWS::Region":
            return self.region
        if name == "AWS::AccountId":
            return self.account_id
        if name == "AWS::StackId":
            return f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/portway/local"
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in _PSEUDO:
            return _PSEUDO[name]
        if name in (self.template.get("Parameters") or {}):
            return self.parameter(name, path)
        if name in (self.template.get("Resources") or {}):
            return self._guarded(name, path, lambda: self._ref_of(name, self))
        raise ResolveError(path, f"Ref to {name!r}: no such parameter or resource")

    def _guarded(self, name: str, path: str, compute: Callable[[], Any]) -> Any:
        if name in self._active:
            chain = " -> ".join([*self._active[self._active.index(name) :], name])
            raise ResolveError(path, f"cyclic reference: {chain}")
        self._active.append(name)
        try:
            return compute()
        finally:
            self._active.pop()

    def condition(self, name: Any, path: str) -> bool:
        if not isinstance(name, str):
            raise ResolveError(path, f"a condition is named by a string, got {name!r}")
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise ResolveError(path, f"no condition {name!r}")
        key = f"Conditions.{name}"
        value = self._guarded(key, path, lambda: self.resolve(conditions[name], f"$.Conditions.{name}"))
        if not isinstance(value, bool):
            raise ResolveError(f"$.Conditions.{name}", f"a condition must be true or false, got {value!r}")
        self._conditions[name] = value
        return value

    # --- evaluation ------------------------------------------------------------------------------------

    def resolve(self, value: Any, path: str = "$") -> Any:
        """``value`` with every intrinsic evaluated (and AWS::NoValue left out)."""
        if isinstance(value, list):
            items = [self.resolve(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument, path)
            if key == "Condition" and path.endswith("]"):
                return self.condition(argument, path)
            if isinstance(key, str) and key.startswith("Fn::"):
                return self._function(key, argument, f"{path}.{key}")
        resolved = {key: self.resolve(item, f"{path}.{key}") for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def _function(self, name: str, argument: Any, path: str) -> Any:
        handler = _FUNCTIONS.get(name)
        if handler is None:
            raise ResolveError(path, f"{name} is not supported locally")
        return handler(self, argument, path)

    def _sub(self, argument: Any, path: str) -> str:
        if isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], Mapping):
            text, variables = argument[0], self.resolve(argument[1], f"{path}[1]")
        else:
            text, variables = argument, {}
        if not isinstance(text, str):
            raise ResolveError(path, "Fn::Sub takes a string, or [string, {variables}]")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stands for the text ${Literal}
            if name in variables:
                return _text(variables[name], path)
            if "." in name and not name.startswith("AWS::"):
                logical_id, _, attribute = name.partition(".")
                return _text(self._get_att([logical_id, attribute], path), path)
            return _text(self.ref(name, path), path)

        return _SUB_VARIABLE.sub(substitute, text)

    def _get_att(self, argument: Any, path: str) -> Any:
        argument = self.resolve(argument, path)
        if not (
            isinstance(argument, list) and len(argument) == 2 and all(isinstance(a, str) for a in argument)
        ):
            raise ResolveError(path, "Fn::GetAtt takes [LogicalId, Attribute]")
        logical_id, attribute = argument
        if logical_id not in (self.template.get("Resources") or {}):
            raise ResolveError(path, f"Fn::GetAtt of {logical_id!r}: no such resource")
        return self._guarded(logical_id, path, lambda: self._attribute_of(logical_id, attribute, self))

    def _if(self, argument: Any, path: str) -> Any:
        if not (isinstance(argument, list) and len(argument) == 3):
            raise ResolveError(path, "Fn::If takes [Condition, value if true, value if false]")
        chosen = 1 if self.condition(argument[0], path) else 2
        return self.resolve(argument[chosen], f"{path}[{chosen}]")


def _text(value: Any, path: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ResolveError(path, f"cannot put {value!r} into a string")


def _join(resolver: Resolver, argument: Any, path: str) -> str:
    argument = resolver.resolve(argument, path)
    if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], list)):
        raise ResolveError(path, "Fn::Join takes [delimiter, [values]]")
    return _text(argument[0], path).join(_text(item, path) for item in argument[1])


def _select(resolver: Resolver, argument: Any, path: str) -> Any:
    argument = resolver.resolve(argument, path)
    if not (isinstance(argument, list) and len(argument) == 2 and isinstance(argument[1], list)):
        raise ResolveError(path, "Fn::Select takes [index, [values]]")
    try:
        return argument[1][int(argument[0])]
    except (ValueError, IndexError):
        raise ResolveError(path, f"Fn::Select index {argument[0]!r} is out of range") from None


def _split(resolver: Resolver, argument: Any, path: str) -> list[str]:
    argument = resolver.resolve(argument, path)
    if not (isinstance(argument, list) and len(argument) == 2):
        raise ResolveError(path, "Fn::Split takes [delimiter, string]")
    return _text(argument[1], path).split(_text(argument[0], path))


def _find_in_map(resolver: Resolver, argument: Any, path: str) -> Any:
    argument = resolver.resolve(argument, path)
    if not (isinstance(argument, list) and len(argument) == 3):
        raise ResolveError(path, "Fn::FindInMap takes [MapName, TopLevelKey, SecondLevelKey]")
    try:
        return resolver.template["Mappings"][argument[0]][argument[1]][argument[2]]
    except (KeyError, TypeError):
        raise ResolveError(path, f"Fn::FindInMap: no {'.'.join(map(str, argument))} in Mappings") from None


def _equals(resolver: Resolver, argument: Any, path: str) -> bool:
    argument = resolver.resolve(argument, path)
    if not (isinstance(argument, list) and len(argument) == 2):
        raise ResolveError(path, "Fn::Equals takes [value, value]")
    return bool(str(argument[0]) == str(argument[1]))


def _booleans(resolver: Resolver, argument: Any, path: str, name: str) -> list[bool]:
    if not isinstance(argument, list) or not argument:
        raise ResolveError(path, f"{name} takes a list of conditions")
    values = []
    for i, item in enumerate(argument):
        value = resolver.resolve(item, f"{path}[{i}]")
        if not isinstance(value, bool):
            raise ResolveError(f"{path}[{i}]", f"{name} needs conditions, got {value!r}")
        values.append(value)
    return values


_FUNCTIONS: dict[str, Callable[[Resolver, Any, str], Any]] = {
    "Fn::Sub": lambda r, a, p: r._sub(a, p),
    "Fn::GetAtt": lambda r, a, p: r._get_att(a, p),
    "Fn::If": lambda r, a, p: r._if(a, p),
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": _split,
    "Fn::FindInMap": _find_in_map,
    "Fn::Equals": _equals,
    "Fn::Not": lambda r, a, p: not _booleans(r, a, p, "Fn::Not")[0],
    "Fn::And": lambda r, a, p: all(_booleans(r, a, p, "Fn::And")),
    "Fn::Or": lambda r, a, p: any(_booleans(r, a, p, "Fn::Or")),
    "Fn::Base64": lambda r, a, p: base64.b64encode(_text(r.resolve(a, p), p).encode()).decode(),
    "Fn::GetAZs": lambda r, a, p: [f"{r.region}{zone}" for zone in "abc"],
}
