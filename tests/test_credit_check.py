"""The scheduled credit check against the simulators, EMF output parsed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import LambdaContext, load_function


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def balances(lines: list[dict[str, Any]]) -> dict[str, float]:
    return {
        m["Provider"]: m["CreditBalance"][0]
        for m in lines
        if "CreditBalance" in m and "Provider" in m
    }


@pytest.fixture
def credit_check(stack: Any) -> Any:
    return load_function("credit_check").lambda_handler


def sample_event() -> dict[str, Any]:
    return json.loads((Path(__file__).parent.parent / "events" / "credit_check.json").read_text())


def test_one_balance_metric_per_provider_with_a_balance_api(
    stack: Any, sims: Any, credit_check: Any, capsys: Any
) -> None:
    sims.grouptexting.account("smsgate").credit = 420
    sims.textinghouse.account("smsgate").credit = 12.5
    result = credit_check(sample_event(), LambdaContext())
    lines = emf(capsys.readouterr().out)
    assert balances(lines) == {"grouptexting": 420.0, "textinghouse": 12.5}
    metric = next(m for m in lines if m.get("Provider") == "textinghouse")
    definition = metric["_aws"]["CloudWatchMetrics"][0]
    assert definition["Namespace"] == "smsgate"
    assert ["service", "Provider"] in definition["Dimensions"]
    assert result["balances"]["clubtexting"] == "no balance API"
    assert sims.clubtexting.requests == []


def test_a_provider_down_is_counted_without_hiding_the_others(
    stack: Any, sims: Any, credit_check: Any, capsys: Any
) -> None:
    sims.grouptexting.set_fault("http_500")
    result = credit_check(sample_event(), LambdaContext())
    lines = emf(capsys.readouterr().out)
    assert set(balances(lines)) == {"textinghouse"}
    failed = [m for m in lines if "CreditCheckFailed" in m and m.get("Provider") == "grouptexting"]
    assert failed and failed[0]["CreditCheckFailed"] == [1.0]
    assert result["balances"]["grouptexting"].startswith("failed")


def test_wrong_password_is_a_failed_check(
    stack: Any, sims: Any, credit_check: Any, capsys: Any
) -> None:
    sims.textinghouse.account("smsgate").password = "rotated"
    credit_check(sample_event(), LambdaContext())
    lines = emf(capsys.readouterr().out)
    assert "textinghouse" not in balances(lines)
    assert any(m.get("Provider") == "textinghouse" for m in lines if "CreditCheckFailed" in m)


def test_club_texting_without_balance_api_is_said_once(
    stack: Any, sims: Any, credit_check: Any, log_stream: Any
) -> None:
    from smsgate import credit

    credit._said_no_api.clear()
    credit_check(sample_event(), LambdaContext())
    credit_check(sample_event(), LambdaContext())
    out = log_stream.getvalue()
    assert out.count("provider has no balance API") == 1
    assert '"level":"ERROR"' not in out
