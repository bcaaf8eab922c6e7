"""README "Personal data" -> "Who can read it" names, per principal, what template.yaml grants.

Each bullet of that list that starts with a name in backticks is a principal: a function, a
role of the template, or a resource that holds a resource policy (a queue, topic, bucket or
event bus policy, a KMS key policy, an API's resource policy). The rest of the bullet names,
in backticks, the resources, parameters, table indexes and managed policies it may use, e.g.

    - `ReconcileFunction`: queries the `ByPendingStatus` index of `MessagesTable`, ...

Those names are compared, both ways, with what the template grants the principal:

- a function: its role's statements and managed policies as SAM generates them (policy
  templates such as DynamoDBCrudPolicy expanded, the managed policy each event source adds),
  or those of the role it names, and the statements of the AWS::IAM::Policy resources
  attached to that role. So the IAM side is read from the template as SAM transforms it;
- a role of the template that is not a function's: the same;
- a resource policy: its policy document, read from template.yaml itself (SAM resolves an
  API's parameters at transform time, see the CallbackAllowedCidrs parameter).

A statement names every template resource and parameter it refers to (Ref, GetAtt, Sub, also
inside Fn::If and Conditions), and the table indexes its ARNs end in (`${Table.Arn}/index/*`
names every index of that table). A grant that exists only under a Condition (the principal's,
or that of an attached policy) names the condition's parameters too. What every function gets,
its log group and X-Ray traces (COMMON_MANAGED), is said once above the list, not per bullet.

Not listed: the invoke permissions SAM adds to let API Gateway and the schedules call a
function (they read nothing).

Every CamelCase word in backticks in the list (any bullet) must be a name the template knows,
so a renamed resource fails here too. tests/test_privileges.py checks the statements against
the calls each function makes; this test keeps the README in step with the statements.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import pytest
from samtranslator.internal.managed_policies import get_bundled_managed_policy_map
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from smsgate_local.stack import REGION, ROOT, function_ids, load_template

README = ROOT / "README.md"
MARKER = "**Who can read it.**"

# SAM gives every function its logs and X-Ray (Tracing: Active); EventsFunctionRole names
# the same two itself. Said once in the README, above the list.
COMMON_MANAGED = frozenset(
    {"AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSXRayDaemonWriteAccess"}
)
# Resource types holding a resource policy -> the property that holds it.
RESOURCE_POLICIES = {
    "AWS::SQS::QueuePolicy": ("PolicyDocument",),
    "AWS::SNS::TopicPolicy": ("PolicyDocument",),
    "AWS::S3::BucketPolicy": ("PolicyDocument",),
    "AWS::KMS::Key": ("KeyPolicy",),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy",),
    "AWS::Events::EventBusPolicy": ("Statement",),
    "AWS::ApiGateway::RestApi": ("Policy",),
    "AWS::Serverless::Api": ("Auth", "ResourcePolicy"),
}
IAM_TYPES = {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}
# Properties that hold permissions: a resource with one must be understood by this test.
POLICY_PROPERTIES = {"Policies", "PolicyDocument", "KeyPolicy", "ResourcePolicy", "Policy"}
# How a README bullet names a principal, and which backticked words must be template names.
PRINCIPAL = re.compile(r"- `([A-Za-z0-9]+)`")
IDENTIFIER = re.compile(r"[A-Z][A-Za-z0-9]*\Z")
SUB_VAR = re.compile(r"\$\{([^}]+)\}")
SUB_INDEX = re.compile(r"\$\{([^}!]+)\}/index/([A-Za-z0-9_.*-]+)")


# --------------------------------------------------------------------------- the template


def transformed(template: Mapping[str, Any]) -> dict[str, Any]:
    """`template` as SAM transforms it: the functions' roles and policies as deployed."""
    source = copy.deepcopy(dict(template))
    for res in source["Resources"].values():
        props = res.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):  # local folders: SAM takes only S3 (sam package)
            if isinstance(props.get(key), str):
                props[key] = "s3://smsgate-code/package.zip"
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=REGION))
    result: dict[str, Any] = translator.translate(
        source,
        parameter_values={},
        get_managed_policy_map=lambda: get_bundled_managed_policy_map("aws") or {},
    )
    return result


def table_indexes(template: Mapping[str, Any]) -> dict[str, set[str]]:
    """Table logical id -> its index names."""
    out: dict[str, set[str]] = {}
    for lid, res in template["Resources"].items():
        if res.get("Type") == "AWS::DynamoDB::Table":
            props = res.get("Properties", {})
            indexes = props.get("GlobalSecondaryIndexes", []) + props.get(
                "LocalSecondaryIndexes", []
            )
            out[lid] = {str(i["IndexName"]) for i in indexes}
    return out


class Names:
    """The template resources, parameters and indexes a piece of template refers to."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.conditions: Mapping[str, Any] = template.get("Conditions", {})
        self.indexes = table_indexes(template)

    def of(self, value: Any) -> set[str]:
        if isinstance(value, list):
            return {n for item in value for n in self.of(item)}
        if not isinstance(value, dict):
            return set()
        if set(value) == {"Ref"} and isinstance(value["Ref"], str):
            return set() if value["Ref"].startswith("AWS::") else {value["Ref"]}
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            return {str(target[0] if isinstance(target, list) else target.split(".")[0])}
        if set(value) == {"Fn::Sub"}:
            return self._sub(value["Fn::Sub"])
        if set(value) == {"Fn::If"}:
            condition, *branches = value["Fn::If"]
            return self.condition(condition) | self.of(branches)
        if set(value) == {"Condition"} and isinstance(value["Condition"], str):
            return self.condition(value["Condition"])
        return {n for item in value.values() for n in self.of(item)}

    def condition(self, name: str) -> set[str]:
        """The parameters (and resources) a condition depends on."""
        return self.of(self.conditions[name])

    def _sub(self, sub: Any) -> set[str]:
        text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        out = self.of(list(variables.values()))
        for var in SUB_VAR.findall(text):
            name = var.split(".")[0]
            if not var.startswith("!") and not name.startswith("AWS::") and var not in variables:
                out.add(name)
        for var, index in SUB_INDEX.findall(text):
            tables = self.of(variables[var]) if var in variables else {var.split(".")[0]}
            for table in tables & set(self.indexes):
                out |= self.indexes[table] if index == "*" else {index}
        return out


def managed_policy_names(role: Mapping[str, Any]) -> set[str]:
    """The managed policies of a role, by name (the ARN's last part)."""
    out = set()
    for arn in role.get("Properties", {}).get("ManagedPolicyArns", []):
        text = arn if isinstance(arn, str) else arn.get("Fn::Sub")
        if isinstance(text, str):
            out.add(text.rsplit("/", 1)[-1])
    return out


def role_grants(deployed: Mapping[str, Any], names: Names, role_id: str) -> set[str]:
    """What a role of the transformed template may use: its inline and attached statements,
    its managed policies (COMMON_MANAGED left out), and the parameters of the conditions
    they exist under."""
    resources = deployed["Resources"]
    role = resources[role_id]
    out = managed_policy_names(role) - COMMON_MANAGED
    if "Condition" in role:
        out |= names.condition(role["Condition"])
    for policy in role["Properties"].get("Policies", []):
        out |= names.of(policy["PolicyDocument"])
    out |= names.of(
        [
            arn
            for arn in role["Properties"].get("ManagedPolicyArns", [])
            if isinstance(arn, dict) and "Fn::Sub" not in arn  # a managed policy of the stack
        ]
    )
    for res in resources.values():
        if res.get("Type") in IAM_TYPES - {"AWS::IAM::Role"}:
            roles = res["Properties"].get("Roles", [])
            if {"Ref": role_id} in (roles if isinstance(roles, list) else [roles]):
                out |= names.of(res["Properties"]["PolicyDocument"])
                if "Condition" in res:
                    out |= names.condition(res["Condition"])
    return out


def function_role(deployed: Mapping[str, Any], fid: str) -> str:
    role = deployed["Resources"][fid]["Properties"]["Role"]
    assert isinstance(role, dict) and "Fn::GetAtt" in role, f"{fid}: a role outside the stack"
    return str(role["Fn::GetAtt"][0])


def resource_policy(res: Mapping[str, Any]) -> Any:
    value: Any = res.get("Properties", {})
    for key in RESOURCE_POLICIES[str(res["Type"])]:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def principals(template: Mapping[str, Any]) -> list[str]:
    """Every principal the README must list (from template.yaml; no transform needed)."""
    resources = template["Resources"]
    fids = function_ids(template)
    own_roles = {
        resources[f]["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in fids
        if isinstance(resources[f]["Properties"].get("Role"), dict)
    }
    roles = [
        lid
        for lid, res in resources.items()
        if res.get("Type") == "AWS::IAM::Role" and lid not in own_roles
    ]
    holders = [
        lid
        for lid, res in resources.items()
        if res.get("Type") in RESOURCE_POLICIES and resource_policy(res) is not None
    ]
    return sorted([*fids, *roles, *holders])


def granted(template: Mapping[str, Any], deployed: Mapping[str, Any]) -> dict[str, set[str]]:
    """Principal -> the names of what the template grants it (its own ids left out)."""
    names = Names(template)
    resources = template["Resources"]
    out: dict[str, set[str]] = {}
    for lid in principals(template):
        res = resources[lid]
        if res["Type"] == "AWS::Serverless::Function":
            role_id = function_role(deployed, lid)
            out[lid] = role_grants(deployed, names, role_id) - {lid, role_id}
        elif res["Type"] == "AWS::IAM::Role":
            out[lid] = role_grants(deployed, names, lid) - {lid}
        else:
            found = names.of(resource_policy(res))
            if "Condition" in res:
                found |= names.condition(res["Condition"])
            out[lid] = found - {lid}
    return out


def known_names(template: Mapping[str, Any], deployed: Mapping[str, Any]) -> set[str]:
    """Every name the README may put in backticks in the list."""
    managed = {
        n
        for res in deployed["Resources"].values()
        if res.get("Type") == "AWS::IAM::Role"
        for n in managed_policy_names(res)
    }
    indexes = {i for found in table_indexes(template).values() for i in found}
    return (
        set(template["Resources"])
        | set(deployed["Resources"])
        | set(template.get("Parameters", {}))
        | indexes
        | managed
    )


# --------------------------------------------------------------------------- the README


def readme_bullets(text: str) -> list[str]:
    """The bullets of the list after the "Who can read it" paragraph, one string each."""
    assert text.count(MARKER) == 1, f"README.md: one paragraph starting {MARKER}"
    lines = text[text.index(MARKER) :].splitlines()
    start = lines.index("") + 1  # the list follows the paragraph and one blank line
    assert lines[start].startswith("- "), f"README.md: no list after the {MARKER} paragraph"
    bullets: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        if line.startswith("- "):
            bullets.append(line)
        else:
            assert line.startswith("  "), f"README.md: not part of a bullet: {line!r}"
            bullets[-1] += " " + line.strip()
    return bullets


def readme_list(text: str) -> dict[str, list[str]]:
    """Principal -> the words in backticks its bullet names after it (duplicate principals
    are kept apart: `principal#2`)."""
    out: dict[str, list[str]] = {}
    for bullet in readme_bullets(text):
        match = PRINCIPAL.match(bullet)
        if match:
            key = match.group(1)
            while key in out:
                key += "#2"
            out[key] = re.findall(r"`([^`]+)`", bullet[match.end() :])
    return out


def mismatches(text: str, template: Mapping[str, Any], deployed: Mapping[str, Any]) -> list[str]:
    """Every difference between the README's list and the template, in words."""
    problems = []
    known = known_names(template, deployed)
    for bullet in readme_bullets(text):
        for word in re.findall(r"`([^`]+)`", bullet):
            if IDENTIFIER.match(word) and word not in known:
                problems.append(f"`{word}` is no resource, parameter, index or policy of the stack")
    listed = readme_list(text)
    grants = granted(template, deployed)
    for key in sorted(set(listed) - set(grants)):
        problems.append(f"`{key}` is listed but is no principal of the stack (or listed twice)")
    for key in sorted(set(grants) - set(listed)):
        problems.append(f"`{key}` is missing from the list; the template grants it {grants[key]}")
    for key in sorted(set(grants) & set(listed)):
        own = {key, f"{key}Role"}
        named = {w for w in listed[key] if w in known} - own - COMMON_MANAGED
        for name in sorted(named - grants[key]):
            problems.append(f"`{key}`: the README names `{name}`, the template grants it not")
        for name in sorted(grants[key] - named):
            problems.append(f"`{key}`: the template grants `{name}`, the README does not name it")
    return problems


# --------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    loaded: dict[str, Any] = load_template()
    return loaded


@pytest.fixture(scope="module")
def deployed(template: dict[str, Any]) -> dict[str, Any]:
    return transformed(template)


def test_readme_lists_exactly_what_the_template_grants(
    template: dict[str, Any], deployed: dict[str, Any]
) -> None:
    problems = mismatches(README.read_text(encoding="utf-8"), template, deployed)
    assert not problems, "README.md, Personal data, Who can read it:\n" + "\n".join(problems)


def _edit_bullet(text: str, principal: str, edit: Callable[[str], str]) -> str:
    """`text` with the bullet of `principal` (its first line and continuation lines) edited;
    an edit to "" removes the bullet."""
    lines = text.split("\n")
    first = next(n for n, line in enumerate(lines) if line.startswith(f"- `{principal}`"))
    last = first + 1
    while lines[last].startswith("  "):
        last += 1
    block = edit("\n".join(lines[first:last]))
    return "\n".join([*lines[:first], *([block] if block else []), *lines[last:]])


def test_the_check_fails_on_a_name_too_many_or_too_few(
    template: dict[str, Any], deployed: dict[str, Any]
) -> None:
    """On the real list: a name left out, a name added and a misspelt one are each found."""
    text = README.read_text(encoding="utf-8")
    assert not mismatches(text, template, deployed)

    def found(edit: Callable[[str], str]) -> list[str]:
        return mismatches(_edit_bullet(text, "RetentionFunction", edit), template, deployed)

    assert found(lambda b: b.replace("`MessagesTable`", "the messages table")) == [
        "`RetentionFunction`: the template grants `MessagesTable`, the README does not name it"
    ]
    assert found(lambda b: b + " `OptOutsTable`") == [
        "`RetentionFunction`: the README names `OptOutsTable`, the template grants it not"
    ]
    assert found(lambda b: b + " `OptOutTable`") == [
        "`OptOutTable` is no resource, parameter, index or policy of the stack"
    ]
    no_bullet = mismatches(
        _edit_bullet(text, "RetentionFunction", lambda b: ""), template, deployed
    )
    assert len(no_bullet) == 1 and no_bullet[0].startswith("`RetentionFunction` is missing")


def _sam(resources: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"Transform": "AWS::Serverless-2016-10-31", "Resources": resources, **extra}


def _table(*indexes: str) -> dict[str, Any]:
    key = [{"AttributeName": "k", "KeyType": "HASH"}]
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "KeySchema": key,
            "GlobalSecondaryIndexes": [
                {"IndexName": i, "KeySchema": key, "Projection": {"ProjectionType": "ALL"}}
                for i in indexes
            ],
        },
    }


def test_policy_templates_event_sources_and_attached_policies_resolve() -> None:
    """SAM policy templates, an SQS event source's managed policy, a statement's Sub of an
    index, an attached conditional policy and a queue policy, on a small template."""
    fn = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": "f/",
            "Handler": "app.handler",
            "Runtime": "python3.11",
            "Policies": [
                {"DynamoDBCrudPolicy": {"TableName": {"Ref": "T"}}},
                {"DynamoDBReadPolicy": {"TableName": {"Ref": "U"}}},
                {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["Q", "QueueName"]}}},
                {
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "dynamodb:Query",
                            "Resource": {"Fn::Sub": "${V.Arn}/index/ByX"},
                        }
                    ]
                },
            ],
            "Events": {
                "In": {"Type": "SQS", "Properties": {"Queue": {"Fn::GetAtt": ["R", "Arn"]}}}
            },
        },
    }
    key_use = {
        "Type": "AWS::IAM::Policy",
        "Condition": "HasKey",
        "Properties": {
            "PolicyName": "k",
            "Roles": [{"Ref": "FnRole"}],
            "PolicyDocument": {
                "Statement": [
                    {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": {"Ref": "Key"}}
                ]
            },
        },
    }
    queue_policy = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": "Q"}],
            "PolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": ["Q", "Arn"]},
                        "Condition": {"ArnEquals": {"aws:SourceArn": {"Ref": "Rule"}}},
                    }
                ]
            },
        },
    }
    template = _sam(
        {
            "Fn": fn,
            "T": _table("ByA", "ByB"),
            "U": _table(),
            "V": _table("ByX", "ByY"),
            "Q": {"Type": "AWS::SQS::Queue"},
            "R": {"Type": "AWS::SQS::Queue"},
            "Rule": {
                "Type": "AWS::Events::Rule",
                "Properties": {"ScheduleExpression": "rate(1 day)"},
            },
            "KeyUse": key_use,
            "QPolicy": queue_policy,
        },
        Parameters={"Key": {"Type": "String", "Default": ""}},
        Conditions={"HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Key"}, ""]}]}},
    )
    grants = granted(template, transformed(template))
    assert grants == {
        "Fn": {"T", "ByA", "ByB", "U", "Q", "V", "ByX", "Key", "AWSLambdaSQSQueueExecutionRole"},
        "QPolicy": {"Q", "Rule"},
    }


def _iter_policy_holders(template: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        held = POLICY_PROPERTIES & set(props) | POLICY_PROPERTIES & set(props.get("Auth", {}))
        if held:
            yield lid, str(res.get("Type"))


def test_every_resource_holding_permissions_is_understood(template: dict[str, Any]) -> None:
    """A new kind of resource with a policy (a state machine's Policies, a log group's
    resource policy...) must be taught to this test before the README can be checked."""
    understood = IAM_TYPES | set(RESOURCE_POLICIES) | {"AWS::Serverless::Function"}
    strange = sorted(
        f"{lid} ({t})" for lid, t in _iter_policy_holders(template) if t not in understood
    )
    assert not strange, f"teach tests/test_readme_privileges.py these resources: {strange}"
