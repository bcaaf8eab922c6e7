"""Protection's rules without AWS (smsgate.protection, docs/protection.md): how destination lists
match, which velocity limit a message would pass and when its window frees, what a budget
allows, and what the routing document's validation refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from smsgate.protection import BudgetView, Counts, Destinations, Velocity, velocity_exceeded
from smsgate.routing import RoutingConfig, RoutingError, region_of

DOCUMENT = {"allow": ["US", "CA", "FR", "+336801"], "block": ["+3368", "+1900"]}


@pytest.mark.parametrize(
    ("number", "refusal"),
    [
        ("+33612345678", None),
        ("+33681234567", "destinations.block has +3368"),  # a prefix beats its country
        ("+33680123456", None),  # the longer prefix
        ("+19005550100", "destinations.block has +1900"),
        ("+447400123456", "country GB is not in destinations.allow"),  # unlisted
        ("+14165550100", None),
    ],
)
def test_the_most_specific_entry_decides(number: str, refusal: str | None) -> None:
    destinations = Destinations.model_validate(DOCUMENT)
    assert destinations.refused_overall(number, region_of(number)) == refusal


def test_a_block_wins_a_tie_and_lists_are_case_blind() -> None:
    tie = Destinations.model_validate({"allow": ["+3361"], "block": ["+3361"]})
    assert tie.refused_overall("+33612345678", "FR") == "destinations.block has +3361"
    lower = Destinations.model_validate({"block": ["fr"]})
    assert lower.refused_overall("+33612345678", "FR") == "destinations.block has FR"
    assert Destinations().refused_overall("+33612345678", "FR") is None


def test_a_providers_list_is_its_own() -> None:
    d = Destinations.model_validate({"providers": {"clubtexting": {"block": ["CA"]}}})
    assert d.refused_by("clubtexting", "+14165550100", "CA") == (
        "destinations.providers.clubtexting.block has CA"
    )
    assert d.refused_by("grouptexting", "+14165550100", "CA") is None
    assert d.refused_overall("+14165550100", "CA") is None


NOON = datetime(2026, 12, 2, 12, 30, tzinfo=UTC)
NEXT_HOUR, MIDNIGHT = "2026-12-02T13:00:00+00:00", "2026-12-03T00:00:00+00:00"


@pytest.mark.parametrize(
    ("limits", "counts", "window", "frees"),
    [
        ({"per_hour": 3}, Counts(2, 2), None, None),  # at the limit after this one: it goes
        ({"per_hour": 3}, Counts(3, 3), "hour", NEXT_HOUR),
        ({"per_hour": None, "per_day": 5}, Counts(4, 4), None, None),
        ({"per_hour": None, "per_day": 5}, Counts(0, 5), "day", MIDNIGHT),
        ({"per_hour": 3, "per_day": 5}, Counts(3, 5), "day", MIDNIGHT),
        (
            {"per_country_hour": {"US": 2}},
            Counts(0, 0, 2),
            "country_hour",
            NEXT_HOUR,
        ),
        (
            {"per_country_hour": {"*": 2}},
            Counts(0, 0, 2),
            "country_hour",
            NEXT_HOUR,
        ),
        ({"per_country_hour": {"FR": 2}}, Counts(0, 0, 9), None, None),  # US not limited
    ],
)
def test_which_limit_one_more_message_would_pass(
    limits: dict[str, Any], counts: Counts, window: str | None, frees: str | None
) -> None:
    exceeded = velocity_exceeded(Velocity.model_validate(limits), counts, "US", NOON)
    if window is None:
        assert exceeded is None
    else:
        assert exceeded is not None
        assert (exceeded.window, exceeded.frees_at.isoformat()) == (window, frees)


def test_a_budget_allows_reaching_its_cap_not_passing_it() -> None:
    view = BudgetView({"clubtexting": 1.0, "total": 2.0}, {"clubtexting": 0.9, "grouptexting": 1.0})
    assert view.refusal("clubtexting", 0.1) is None  # exactly the cap
    assert view.refusal("clubtexting", 0.11) == "clubtexting's monthly budget (1) would be passed"
    assert view.refusal("grouptexting", 0.2) == "the total monthly budget (2) would be passed"
    assert view.used() == {"clubtexting": 0.9, "total": 0.95}


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"destinations": {"allow": ["France"]}}, "neither an ISO country code"),
        ({"destinations": {"block": ["+0123"]}}, "neither an ISO country code"),
        ({"destinations": {"providers": {"twilio": {}}}}, "unknown providers ['twilio']"),
        ({"destinations": {"allowed": ["FR"]}}, "allowed"),
        ({"velocity": {"per_hour": 0}}, "per_hour"),
        ({"velocity": {"per_country_hour": {"USA": 5}}}, "key 'USA' is not an ISO country code"),
        ({"velocity": {"when_exceeded": "drop"}}, "when_exceeded"),
        ({"monthly_budgets": {"clubtexting": 5}}, "need their prices"),
        ({"monthly_budgets": {"total": 5}}, "needs the providers' prices"),
        ({"monthly_budgets": {"all": 5}, "prices": {"clubtexting": 1}}, "unknown keys ['all']"),
        ({"monthly_budgets": {"clubtexting": 0}, "prices": {"clubtexting": 1}}, "greater than 0"),
    ],
)
def test_the_document_refuses_what_it_cannot_mean(document: dict[str, Any], error: str) -> None:
    with pytest.raises(RoutingError) as caught:
        RoutingConfig.parse(document)
    assert error in str(caught.value)


def test_the_defaults_refuse_nothing_but_velocity() -> None:
    config = RoutingConfig.parse({})
    assert config.destinations.refused_overall("+2348012345678", "NG") is None
    assert (config.velocity.per_hour, config.velocity.per_day) == (10, 50)
    assert config.monthly_budgets == {}
