"""template.yaml's per-provider sections are the ones the registry gives
(`python -m smsgate_local.template_sections`): committed fresh, one of each per provider, and
following the registry rather than a list of its own."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from smsgate.providers import PROVIDERS, OutboundSms, Outcome, Prepared, ProviderClient
from smsgate.providers.base import Reply
from smsgate_local import template_sections as ts
from smsgate_local.stack import ROOT, load_template, resources_of_type

TEMPLATE = ROOT / "template.yaml"


def section_text(text: str, section: str) -> str:
    begin, end = ts.markers(section)
    return text[text.index(begin) + len(begin) : text.index(end)]


def test_committed_template_is_what_the_generator_writes() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    stale = [
        section for section, body in ts.sections().items() if section_text(text, section) != body
    ]
    assert stale == [], f"template.yaml is stale ({', '.join(stale)}): run `{ts.COMMAND}`"
    assert ts.render(text) == text


def test_each_provider_is_named_as_its_docs_section_names_it() -> None:
    headings = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
    for client in PROVIDERS.values():
        assert f"\n## {ts.display_name(client)}\n" in headings, client.__name__


# --------------------------------------------------------------------------- per provider


def alarms_on(template: Mapping[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    return {
        lid: alarm
        for lid, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items()
        if alarm["Properties"].get("MetricName") == metric
    }


def dashboard_body(template: Mapping[str, Any]) -> str:
    body = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    return body


def dashboard_widgets(template: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's widgets, every `${...}` made 0 (a string inside quotes, else a number)."""
    widgets: list[dict[str, Any]] = json.loads(
        re.sub(r"\$\{[^}]+\}", "0", dashboard_body(template))
    )["widgets"]
    return widgets


def check_provider_sections(
    template: Mapping[str, Any], registry: Mapping[str, type[ProviderClient]]
) -> None:
    """Every provider of `registry` has its health alarm and dashboard lines; each with a
    balance call, its low-credit parameter, condition and alarm; nothing for another."""
    health, credit = alarms_on(template, "ProviderHealthy"), alarms_on(template, "CreditBalance")
    credited = {name: client for name, client in registry.items() if client.has_balance}
    assert set(health) == {f"{c.__name__}Unhealthy" for c in registry.values()}
    assert set(credit) == {f"{c.__name__}LowCredit" for c in credited.values()}
    parameters = {p for p in template["Parameters"] if p.startswith("LowCreditThreshold")}
    assert parameters == {f"LowCreditThreshold{c.__name__}" for c in credited.values()}
    conditions = {c for c in template["Conditions"] if c.endswith("CreditAlarm")}
    assert conditions == {f"Has{c.__name__}CreditAlarm" for c in credited.values()}
    body = dashboard_body(template)
    for name, client in registry.items():
        ident, dimension = client.__name__, {"Name": "Provider", "Value": name}
        alarm = health[f"{ident}Unhealthy"]["Properties"]
        assert dimension in alarm["Dimensions"]
        assert ts.display_name(client) in alarm["AlarmDescription"]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "LessThanThreshold")
        for metric in ("MessagesSent", "MessagesFailed", "ProviderHealthy"):
            assert f'"{metric}", "service", "smsgate", "Provider", "{name}"' in body
        for queue in ("LaneQueue", "LaneDeadLetterQueue"):
            assert f"${{{ident}{queue}.QueueName}}" in body
        if name in credited:
            low = template["Resources"][f"{ident}LowCredit"]
            assert low["Condition"] == f"Has{ident}CreditAlarm"
            assert low["Properties"]["Threshold"] == {"Ref": f"LowCreditThreshold{ident}"}
            assert dimension in low["Properties"]["Dimensions"]
            assert f"${{LowCreditThreshold{ident}}}" in body
        assert (f'"CreditBalance", "service", "smsgate", "Provider", "{name}"' in body) == (
            name in credited
        )


def test_each_provider_in_the_registry_has_its_sections() -> None:
    template = load_template()
    check_provider_sections(template, PROVIDERS)
    for client in PROVIDERS.values():  # the lanes the dashboard shows are the template's own
        for queue in ("LaneQueue", "LaneDeadLetterQueue"):
            assert f"{client.__name__}{queue}" in template["Resources"]


# --------------------------------------------------------------------------- another registry


class FakeTexting(ProviderClient):
    """A fourth provider, with a balance call (never instantiated: only its attributes count)."""

    name = "faketexting"
    display_name = "Fake Texting"
    has_balance = True
    send_path = "/send"
    default_url = "https://fake.example"

    def check(self, sms: OutboundSms) -> Prepared:
        raise NotImplementedError

    def parse_send(self, reply: Reply) -> Outcome:
        raise NotImplementedError


def rendered(registry: Mapping[str, type[ProviderClient]], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "template.yaml"
    text = ts.render(TEMPLATE.read_text(encoding="utf-8"), registry)
    assert ts.render(text, registry) == text  # a fixed point
    path.write_text(text, encoding="utf-8")
    return load_template(path)


def test_a_provider_added_to_the_registry_gets_its_sections(tmp_path: Path) -> None:
    registry = {**PROVIDERS, FakeTexting.name: FakeTexting}
    template = rendered(registry, tmp_path)
    check_provider_sections(template, registry)
    assert "Fake Texting" in template["Parameters"]["LowCreditThresholdFakeTexting"]["Description"]
    messages = [w for w in dashboard_widgets(template) if w["y"] == 2]
    assert [(w["x"], w["width"]) for w in messages] == [(0, 6), (6, 6), (12, 6), (18, 6)]
    assert messages[-1]["properties"]["title"] == "Fake Texting: messages"


@pytest.mark.parametrize("credited", [True, False])
def test_a_registry_without_some_providers_loses_their_sections(
    tmp_path: Path, credited: bool
) -> None:
    registry = {n: c for n, c in PROVIDERS.items() if c.has_balance == credited}
    assert registry
    template = rendered(registry, tmp_path)
    check_provider_sections(template, registry)
    titles = [w["properties"].get("title") for w in dashboard_widgets(template)]
    assert ("Provider credit" in titles) == credited


def test_a_template_without_the_markers_is_refused() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    begin, _ = ts.markers("provider health alarms")
    with pytest.raises(ValueError, match="provider health alarms"):
        ts.render(text.replace(begin, ""))
