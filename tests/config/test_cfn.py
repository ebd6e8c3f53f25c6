"""CloudFormation intrinsics: short-form tags read as long form, and evaluated for one local stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from portway.config.cfn import ResolveError, Resolver, load_template
from portway.config.errors import DefinitionError

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: dev
    AllowedValues: [dev, prod]
  Subnets:
    Type: CommaDelimitedList
    Default: "a, b"
  NoDefault:
    Type: String
Mappings:
  Sizes:
    dev: {memory: 128}
    prod: {memory: 1024}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition IsProd, !Condition NotProd]
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-fn-${Stage}"
      MemorySize: !FindInMap [Sizes, !Ref Stage, memory]
      Environment:
        Variables:
          TABLE: !Ref Table
          ARN: !GetAtt Table.Arn
          MODE: !If [IsProd, production, development]
          JOINED: !Join ["-", [a, !Ref Stage, c]]
          FIRST: !Select [0, !Ref Subnets]
          PARTS: !Split [",", "x,y"]
          LITERAL: !Sub "${!NotAVariable}"
          WITH_VARS: !Sub ["${A}/${B}", {A: one, B: !Ref Stage}]
          GONE: !Ref AWS::NoValue
          REGION: !Sub "${AWS::Region}:${AWS::AccountId}"
          B64: !Base64 hi
  Table:
    Type: AWS::DynamoDB::Table
"""


@pytest.fixture
def template(tmp_path: Path) -> Any:
    file = tmp_path / "template.yaml"
    file.write_text(TEMPLATE)
    return load_template(file)


def test_short_forms_load_as_long_forms(template: Any) -> None:
    env = template["Resources"]["Fn"]["Properties"]["Environment"]["Variables"]
    assert env["TABLE"] == {"Ref": "Table"}
    assert env["ARN"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert env["MODE"] == {"Fn::If": ["IsProd", "production", "development"]}
    assert template["Conditions"]["NotProd"] == {"Fn::Not": [{"Condition": "IsProd"}]}


def test_intrinsics_are_evaluated(template: Any) -> None:
    resolver = Resolver(template, region="eu-west-1", account_id="111122223333")
    props = resolver.resolve(template["Resources"]["Fn"]["Properties"], "$.Resources.Fn.Properties")
    assert props["FunctionName"] == "portway-fn-dev"
    assert props["MemorySize"] == 128
    assert props["Environment"]["Variables"] == {
        "TABLE": "Table",
        "ARN": "arn:aws:portway:eu-west-1:111122223333:Table/Arn",
        "MODE": "development",
        "JOINED": "a-dev-c",
        "FIRST": "a",
        "PARTS": ["x", "y"],
        "LITERAL": "${NotAVariable}",
        "WITH_VARS": "one/dev",
        "REGION": "eu-west-1:111122223333",
        "B64": "aGk=",
    }


def test_overrides_and_conditions(template: Any) -> None:
    resolver = Resolver(template, parameter_overrides={"Stage": "prod"})
    assert resolver.condition("IsProd", "$") is True
    assert resolver.condition("NotProd", "$") is False
    assert resolver.condition("Both", "$") is False
    assert resolver.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "memory"]}) == 1024


def test_refs_to_resources_go_through_the_callers_rules(template: Any) -> None:
    resolver = Resolver(
        template,
        ref_of=lambda logical_id, r: f"name-of-{logical_id}",
        attribute_of=lambda logical_id, attribute, r: f"{logical_id}.{attribute}!",
    )
    assert resolver.resolve({"Fn::Sub": "${Table}|${Table.Arn}"}) == "name-of-Table|Table.Arn!"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"Ref": "Nowhere"}, "no such parameter or resource"),
        ({"Ref": "NoDefault"}, "--parameter-overrides NoDefault=VALUE"),
        ({"Fn::GetAtt": ["Ghost", "Arn"]}, "no such resource"),
        ({"Fn::If": ["Unknown", 1, 2]}, "no condition 'Unknown'"),
        ({"Fn::ImportValue": "x"}, "not supported locally"),
        ({"Fn::Select": [5, ["a"]]}, "out of range"),
        ({"Fn::FindInMap": ["Sizes", "test", "memory"]}, "no Sizes.test.memory"),
        ({"Fn::Sub": ["${Missing}", {}]}, "no such parameter or resource"),
    ],
)
def test_problems_name_where_and_why(template: Any, value: Any, words: str) -> None:
    with pytest.raises(ResolveError) as caught:
        Resolver(template).resolve({"Key": value}, "$.Resources.Fn.Properties")
    assert caught.value.path.startswith("$.Resources.Fn.Properties.Key")
    assert words in caught.value.message


def test_a_disallowed_parameter_value_is_refused(template: Any) -> None:
    with pytest.raises(ResolveError, match="not one of"):
        Resolver(template, parameter_overrides={"Stage": "qa"}).ref("Stage", "$")


def test_cyclic_refs_are_reported_not_followed() -> None:
    template: dict[str, Any] = {
        "Resources": {
            "A": {"Type": "AWS::Serverless::Function", "Properties": {"FunctionName": {"Ref": "B"}}},
            "B": {"Type": "AWS::Serverless::Function", "Properties": {"FunctionName": {"Ref": "A"}}},
        }
    }

    def name_of(logical_id: str, resolver: Resolver) -> Any:
        props = template["Resources"][logical_id]["Properties"]
        return resolver.resolve(props["FunctionName"], f"$.Resources.{logical_id}.Properties.FunctionName")

    with pytest.raises(ResolveError, match=r"cyclic reference: A -> B -> A"):
        Resolver(template, ref_of=name_of).ref("A", "$")


def test_cyclic_conditions_are_reported() -> None:
    template = {
        "Conditions": {"A": {"Fn::Not": [{"Condition": "B"}]}, "B": {"Fn::Not": [{"Condition": "A"}]}}
    }
    with pytest.raises(ResolveError, match="cyclic reference"):
        Resolver(template).condition("A", "$")


def test_an_unparsable_template_is_a_definition_error(tmp_path: Path) -> None:
    file = tmp_path / "template.yaml"
    file.write_text("Resources:\n  Fn: !Ref [unclosed\n")
    with pytest.raises(DefinitionError, match="not valid YAML"):
        load_template(file)
