"""Least privilege (issue 9): every function's IAM statements, read from template.yaml.

A STATIC check: each function's granted actions must equal an allow-list kept here, with
the code path that uses each one. A new permission must be added here with its reason, and
one the code stops using must be removed from both places (the lists are compared both ways,
so a permission left behind fails). No statement may name every resource ("*"), nor use
NotAction/NotResource. (Deriving the used actions by recording boto3 calls per function
under moto was left for later.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from smsgate_local.stack import function_ids, load_template

# function -> action -> why (which code path calls it)
ALLOWED: dict[str, dict[str, str]] = {
    "SendFunction": {
        "dynamodb:GetItem": "Store.get_message (claim lost, cancel)",
        "dynamodb:PutItem": "history items in Store.advance's transaction",
        "dynamodb:UpdateItem": "Store.claim / release / set_attrs / advance, add_opt_out",
        "dynamodb:BatchGetItem": "Store.opted_out, once per batch",
        "dynamodb:Query": "receipt index lookups by provider id",
        "secretsmanager:GetSecretValue": "provider credentials",
        "sqs:ChangeMessageVisibility": "retry back-off",
        "scheduler:CreateSchedule": "commercial hold outside the allowed hours",
        "iam:PassRole": "the hold schedule's role (HoldSchedulerRole only)",
    },
    "CallbacksFunction": {
        "dynamodb:GetItem": "duplicate inbound check, receipt's message",
        "dynamodb:PutItem": "history items, unmatched receipts",
        "dynamodb:UpdateItem": "Store.advance (receipts, inbound), add_opt_out (STOP)",
        "dynamodb:DeleteItem": "remove_opt_out (START)",
        "dynamodb:Query": "find_by_provider_id (receipt index)",
        "secretsmanager:GetSecretValue": "callback token",
        "ssm:GetParameter": "keyword replies",
    },
    "CreditCheckFunction": {"secretsmanager:GetSecretValue": "provider credentials"},
    "ReconcileFunction": {
        "dynamodb:Query": "Store.pending_page on ByPendingStatus",
        "dynamodb:UpdateItem": "advance / recheck_later / stop_reconciling",
        "dynamodb:PutItem": "history items in Store.advance's transaction",
        "secretsmanager:GetSecretValue": "TextingHouse credentials (status lookup)",
    },
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def statements(template: dict[str, Any], fid: str) -> Iterator[dict[str, Any]]:
    for policy in template["Resources"][fid]["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, f"{fid}: {policy}"
        for statement in policy["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                _cond, yes, no = statement["Fn::If"]
                yield from (s for s in (yes, no) if s != {"Ref": "AWS::NoValue"})
            else:
                yield statement


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_every_function_is_listed(template: dict[str, Any]) -> None:
    assert set(function_ids(template)) == set(ALLOWED)


@pytest.mark.parametrize("fid", sorted(ALLOWED))
def test_granted_actions_are_exactly_the_used_ones(template: dict[str, Any], fid: str) -> None:
    granted = {a for s in statements(template, fid) for a in as_list(s["Action"])}
    assert granted == set(ALLOWED[fid]), (
        f"{fid}: unused {sorted(granted - set(ALLOWED[fid]))}, "
        f"missing {sorted(set(ALLOWED[fid]) - granted)}"
    )


@pytest.mark.parametrize("fid", sorted(ALLOWED))
def test_no_wildcard_resource(template: dict[str, Any], fid: str) -> None:
    for s in statements(template, fid):
        assert s["Effect"] == "Allow" and "NotResource" not in s and "NotAction" not in s
        for resource in as_list(s["Resource"]):
            assert resource != "*", f"{fid}: {s}"
            if isinstance(resource, str):
                assert not resource.startswith("arn:") or ":*" not in resource, f"{fid}: {s}"
        assert not any(a == "*" or a.endswith(":*") for a in as_list(s["Action"])), s


def test_no_function_may_scan_or_delete_tables(template: dict[str, Any]) -> None:
    """Scans and bulk deletion (the CLI's `messages`, `optouts list`, `erase`) run with the
    operator's credentials, never a function's."""
    for fid in ALLOWED:
        granted = {a for s in statements(template, fid) for a in as_list(s["Action"])}
        assert not granted & {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:DeleteTable"}


def test_customer_key_policy_names_only_the_key(template: dict[str, Any]) -> None:
    policy = template["Resources"]["DataKeyPolicy"]
    assert policy["Condition"] == "HasKmsKey"
    for s in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert s["Resource"] == {"Ref": "KmsKeyArn"}
