"""IAM policy evaluation for Lambda authorizers' answers, as tables: ARNs, wildcards, actions, effects."""

from __future__ import annotations

from typing import Any

import pytest

from portway.stages.policy import (
    INVALIDATE_CACHE,
    INVOKE,
    Decision,
    PolicyError,
    arn_prefix,
    compile_policy,
    evaluate,
    method_arn,
    partition,
)

ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/pets/a1b2"
ROOT = "arn:aws:execute-api:us-east-1:123456789012:abc123/dev/GET/"
API = "arn:aws:execute-api:us-east-1:123456789012:abc123"

# --- method ARNs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "stage", "method", "path", "expected"),
    [
        ("us-east-1", "dev", "GET", "/pets/a1b2", ARN),
        ("us-east-1", "dev", "GET", "/", ROOT),
        ("us-east-1", "dev", "GET", "", ROOT),
        ("us-east-1", "dev", "POST", "/pets", f"{API}/dev/POST/pets"),
        ("us-east-1", "$default", "GET", "/items/7", f"{API}/$default/GET/items/7"),
        ("us-east-1", "dev", "GET", "/a%20b/c", f"{API}/dev/GET/a%20b/c"),  # the path as the caller sent it
        ("us-east-1", "dev", "GET", "/trailing/", f"{API}/dev/GET/trailing/"),
        (
            "cn-north-1",
            "dev",
            "GET",
            "/x",
            "arn:aws-cn:execute-api:cn-north-1:123456789012:abc123/dev/GET/x",
        ),
        (
            "us-gov-west-1",
            "prod",
            "PUT",
            "/x",
            "arn:aws-us-gov:execute-api:us-gov-west-1:123456789012:abc123/prod/PUT/x",
        ),
    ],
)
def test_method_arn(region: str, stage: str, method: str, path: str, expected: str) -> None:
    assert method_arn(region, "123456789012", "abc123", stage, method, path) == expected
    prefix = arn_prefix(region, "123456789012", "abc123", stage)
    assert expected.startswith(prefix)
    assert expected == f"{prefix}{method}/{path.removeprefix('/')}"


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("us-east-1", "aws"),
        ("eu-west-1", "aws"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-east-1", "aws-us-gov"),
    ],
)
def test_partition(region: str, expected: str) -> None:
    assert partition(region) == expected


# --- resources: wildcards as IAM matches them -------------------------------------------------------------


def allow(resource: str | list[str], action: str | list[str] = INVOKE) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    }


RESOURCES = [
    # (Resource pattern, method ARN, matches)
    (ARN, ARN, True),
    ("*", ARN, True),
    ("arn:aws:execute-api:*", ARN, True),  # a * that ends a segment runs on past colons
    ("arn:aws:execute-api:*:*:*", ARN, True),  # AWS: "equivalent to *"
    ("arn:aws:execute-api:us-east-1:*:*", ARN, True),
    ("arn:aws:execute-api:us-east-1:*:abc123/*", ARN, True),
    ("arn:aws:execute-api:us-west-2:*:*", ARN, False),
    ("arn:aws:execute-api:us-east-1:999999999999:*", ARN, False),
    (f"{API}/*", ARN, True),
    (f"{API}/dev/*", ARN, True),
    (f"{API}/prod/*", ARN, False),
    (f"{API}/*/GET/*", ARN, True),
    (f"{API}/*/POST/*", ARN, False),
    (f"{API}/*/GET/pets/*", ARN, True),
    (f"{API}/*/GET/pets/*", f"{API}/dev/GET/pets", False),  # the pattern needs the slash
    (f"{API}/*/*/pets/a1b2", ARN, True),
    (f"{API}/dev/GET/pets/a1b?", ARN, True),
    (f"{API}/dev/GET/pets/a1b??", ARN, False),  # ? is exactly one character
    (f"{API}/dev/GET/pets/a?b2", ARN, True),
    (f"{API}/dev/GET/pets/a.b2", ARN, False),  # regular-expression characters are literal
    (f"{API}/dev/GET/pets/a1b2+", ARN, False),
    (f"{API}/dev/GET/pets/(a1b2)", f"{API}/dev/GET/pets/(a1b2)", True),
    (f"{API}/dev/get/pets/a1b2", ARN, False),  # ARNs are case sensitive
    (f"{API}/dev/GET/PETS/a1b2", ARN, False),
    (f"{API}/DEV/*", ARN, False),
    (f"{API}/dev/GET/pets/a1b2/", ARN, False),
    (f"{API}/dev/GET/pets", ARN, False),  # no prefix matching without a wildcard
    ("arn:aws:execute-api:us-*-1:123456789012:abc123/dev/GET/pets/a1b2", ARN, True),  # inside a segment
    ("arn:aws:exec*1:123456789012:abc123/dev/GET/pets/a1b2", ARN, False),  # a mid-segment * stops at ':'
    ("arn:aws:exec*:123456789012:abc123/dev/GET/pets/a1b2", ARN, True),  # …one ending a segment does not
    ("arn:aws:execute-api?us-east-1:123456789012:abc123/dev/GET/pets/a1b2", ARN, False),  # ? is not ':'
    ("arn:aws:execute-api:us-east-?:123456789012:abc123/dev/GET/pets/a1b2", ARN, True),
    (f"{API}/dev/GET/", ROOT, True),  # the root resource
    (f"{API}/dev/GET/*", ROOT, True),  # * matches nothing too
    (f"{API}/dev/GET", ROOT, False),
    ("arn:aws-cn:execute-api:*", ARN, False),
    ("", ARN, False),
    ([f"{API}/*/POST/*", f"{API}/*/GET/*"], ARN, True),  # a list: any one of them
    ([f"{API}/*/POST/*", f"{API}/*/PUT/*"], ARN, False),
    ([], ARN, False),
]


@pytest.mark.parametrize(("pattern", "arn", "matches"), RESOURCES)
def test_resource_patterns(pattern: str | list[str], arn: str, matches: bool) -> None:
    expected = Decision.ALLOW if matches else Decision.IMPLICIT_DENY
    assert evaluate(allow(pattern), INVOKE, arn) is expected


ACTIONS = [
    # (Action pattern, action asked, matches)
    ("execute-api:Invoke", INVOKE, True),
    ("execute-api:invoke", INVOKE, True),  # action names are case insensitive
    ("EXECUTE-API:INVOKE", INVOKE, True),
    ("execute-api:*", INVOKE, True),
    ("execute-api:*", INVALIDATE_CACHE, True),
    ("*", INVOKE, True),
    ("*", INVALIDATE_CACHE, True),
    ("execute-api:In*", INVOKE, True),
    ("execute-api:In*", INVALIDATE_CACHE, True),
    ("execute-api:In?oke", INVOKE, True),
    ("execute-api:Invoke?", INVOKE, False),
    ("execute-api:Invoke", INVALIDATE_CACHE, False),
    ("execute-api:InvalidateCache", INVALIDATE_CACHE, True),
    ("execute-api:InvalidateCache", INVOKE, False),
    ("execute-api", INVOKE, False),
    ("execute-api:", INVOKE, False),
    ("s3:GetObject", INVOKE, False),
    ("s3:*", INVOKE, False),
    ("execute-api:ManageConnections", INVOKE, False),
    (["s3:GetObject", "execute-api:Invoke"], INVOKE, True),
    ([], INVOKE, False),
]


@pytest.mark.parametrize(("pattern", "action", "matches"), ACTIONS)
def test_action_patterns(pattern: str | list[str], action: str, matches: bool) -> None:
    expected = Decision.ALLOW if matches else Decision.IMPLICIT_DENY
    assert evaluate(allow("*", pattern), action, ARN) is expected


# --- effects and the evaluation order ---------------------------------------------------------------------


def statement(effect: str, resource: Any = "*", action: Any = INVOKE, **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource, **extra}


GET_ANY = f"{API}/*/GET/*"
POST_ARN = f"{API}/dev/POST/pets"

DOCUMENTS = [
    # (name, policy document, action, method ARN, decision)
    ("one statement as an object", {"Statement": statement("Allow", ARN)}, INVOKE, ARN, Decision.ALLOW),
    ("no Version is fine", {"Statement": [statement("Allow", ARN)]}, INVOKE, ARN, Decision.ALLOW),
    ("no statements: nothing allowed", {"Statement": []}, INVOKE, ARN, Decision.IMPLICIT_DENY),
    ("a Deny alone", {"Statement": [statement("Deny", ARN)]}, INVOKE, ARN, Decision.DENY),
    (
        "a Deny elsewhere leaves the Allow",
        {"Statement": [statement("Deny", POST_ARN), statement("Allow", "*")]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "the explicit Deny wins (Deny first)",
        {"Statement": [statement("Deny", ARN), statement("Allow", "*")]},
        INVOKE,
        ARN,
        Decision.DENY,
    ),
    (
        "the explicit Deny wins (Allow first)",
        {"Statement": [statement("Allow", "*"), statement("Deny", GET_ANY)]},
        INVOKE,
        ARN,
        Decision.DENY,
    ),
    (
        "Deny on another action leaves Invoke",
        {"Statement": [statement("Allow", "*", "execute-api:*"), statement("Deny", "*", INVALIDATE_CACHE)]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "…and denies InvalidateCache",
        {"Statement": [statement("Allow", "*", "execute-api:*"), statement("Deny", "*", INVALIDATE_CACHE)]},
        INVALIDATE_CACHE,
        ARN,
        Decision.DENY,
    ),
    (
        "Invoke granted is not InvalidateCache",
        {"Statement": [statement("Allow", "*")]},
        INVALIDATE_CACHE,
        ARN,
        Decision.IMPLICIT_DENY,
    ),
    (
        "NotResource on a Deny: everything but GET",
        {
            "Statement": [
                statement("Allow", "*"),
                {"Effect": "Deny", "Action": INVOKE, "NotResource": GET_ANY},
            ]
        },
        INVOKE,
        POST_ARN,
        Decision.DENY,
    ),
    (
        "NotResource on a Deny spares what it names",
        {
            "Statement": [
                statement("Allow", "*"),
                {"Effect": "Deny", "Action": INVOKE, "NotResource": GET_ANY},
            ]
        },
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "NotResource on an Allow",
        {"Statement": [{"Effect": "Allow", "Action": INVOKE, "NotResource": [POST_ARN]}]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "NotResource on an Allow leaves out what it names",
        {"Statement": [{"Effect": "Allow", "Action": INVOKE, "NotResource": [POST_ARN]}]},
        INVOKE,
        POST_ARN,
        Decision.IMPLICIT_DENY,
    ),
    (
        "NotAction on an Allow covers Invoke",
        {"Statement": [{"Effect": "Allow", "NotAction": INVALIDATE_CACHE, "Resource": "*"}]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "NotAction on an Allow leaves out InvalidateCache",
        {"Statement": [{"Effect": "Allow", "NotAction": INVALIDATE_CACHE, "Resource": "*"}]},
        INVALIDATE_CACHE,
        ARN,
        Decision.IMPLICIT_DENY,
    ),
    (
        "NotAction on a Deny",
        {
            "Statement": [
                statement("Allow", "*", "*"),
                {"Effect": "Deny", "NotAction": INVOKE, "Resource": "*"},
            ]
        },
        INVALIDATE_CACHE,
        ARN,
        Decision.DENY,
    ),
    (
        "lists of actions and resources",
        {"Statement": [statement("Allow", [POST_ARN, ARN], ["s3:GetObject", "execute-api:invoke"])]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "an Allow with a Condition grants nothing (not evaluated: fail closed)",
        {"Statement": [statement("Allow", "*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})]},
        INVOKE,
        ARN,
        Decision.IMPLICIT_DENY,
    ),
    (
        "a Deny with a Condition applies (fail closed)",
        {
            "Statement": [
                statement("Allow", "*"),
                statement("Deny", "*", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            ]
        },
        INVOKE,
        ARN,
        Decision.DENY,
    ),
    (
        "an empty Condition is no condition",
        {"Statement": [statement("Allow", "*", Condition={})]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "Sid, Principal and unknown keys are ignored",
        {"Id": "p1", "Statement": [statement("Allow", ARN, Sid="s1", Principal="*", Extra=1)]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
    (
        "a later matching Allow after a non-matching Deny",
        {"Statement": [statement("Deny", POST_ARN), statement("Allow", POST_ARN), statement("Allow", ARN)]},
        INVOKE,
        ARN,
        Decision.ALLOW,
    ),
]


@pytest.mark.parametrize(
    ("document", "action", "arn", "decision"),
    [pytest.param(*case[1:], id=case[0]) for case in DOCUMENTS],
)
def test_evaluation(document: dict[str, Any], action: str, arn: str, decision: Decision) -> None:
    assert evaluate(document, action, arn) is decision
    assert compile_policy(document).decide(action, arn) is decision


def test_conditions_are_reported() -> None:
    assert not compile_policy(allow("*")).unevaluated_conditions
    conditional = {
        "Statement": [statement("Allow", "*", Condition={"Bool": {"aws:SecureTransport": "true"}})]
    }
    assert compile_policy(conditional).unevaluated_conditions


def test_a_compiled_policy_answers_many_arns() -> None:
    policy = compile_policy(
        {"Statement": [statement("Allow", GET_ANY), statement("Deny", f"{API}/*/GET/admin/*")]}
    )
    assert policy.decide(INVOKE, ARN) is Decision.ALLOW
    assert policy.decide(INVOKE, f"{API}/prod/GET/") is Decision.ALLOW
    assert policy.decide(INVOKE, f"{API}/dev/GET/admin/users") is Decision.DENY
    assert policy.decide(INVOKE, POST_ARN) is Decision.IMPLICIT_DENY


# --- documents API Gateway cannot read ---------------------------------------------------------------------

INVALID = [
    (None, "policyDocument must be an object"),
    ("Allow", "policyDocument must be an object"),
    ([statement("Allow")], "policyDocument must be an object"),
    ({}, "policyDocument has no Statement"),
    ({"statement": [statement("Allow")]}, "policyDocument has no Statement"),  # element names are exact
    ({"Statement": "Allow"}, "Statement must be an object or a list"),
    ({"Statement": None}, "Statement must be an object or a list"),
    ({"Statement": ["Allow"]}, "Statement[0] must be an object"),
    ({"Statement": [statement("Allow"), 3]}, "Statement[1] must be an object"),
    ({"Statement": [statement("allow")]}, "Effect must be 'Allow' or 'Deny' (case sensitive), got 'allow'"),
    ({"Statement": [statement("ALLOW")]}, "got 'ALLOW'"),
    ({"Statement": [{"Action": INVOKE, "Resource": "*"}]}, "Effect must be 'Allow' or 'Deny'"),
    ({"Statement": [statement(True)]}, "Effect must be 'Allow' or 'Deny'"),  # type: ignore[arg-type]
    ({"Statement": [{"Effect": "Allow", "Resource": "*"}]}, "exactly one of Action and NotAction"),
    (
        {"Statement": [{"Effect": "Allow", "Action": INVOKE, "NotAction": INVOKE, "Resource": "*"}]},
        "exactly one of Action and NotAction",
    ),
    ({"Statement": [{"Effect": "Allow", "Action": INVOKE}]}, "exactly one of Resource and NotResource"),
    (
        {"Statement": [{"Effect": "Allow", "Action": INVOKE, "Resource": "*", "NotResource": "*"}]},
        "exactly one of Resource and NotResource",
    ),
    (
        {"Statement": [statement("Allow", action=5)]},
        "Statement[0].Action must be a string or a list of strings",
    ),
    ({"Statement": [statement("Allow", action=[INVOKE, 1])]}, "Action must be a string or a list of strings"),
    ({"Statement": [statement("Allow", resource=None)]}, "Resource must be a string or a list of strings"),
    ({"Statement": [statement("Allow", resource={"arn": ARN})]}, "Resource must be a string or a list"),
    ({"Statement": [statement("Allow", Condition="x")]}, "Statement[0].Condition must be an object"),
]


@pytest.mark.parametrize(("document", "message"), INVALID)
def test_unreadable_documents(document: Any, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        compile_policy(document)
    assert message in str(caught.value)
