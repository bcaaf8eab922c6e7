"""Routing rules: the router alone — rule matching, weights, cheapest, named
providers and failover permission, and the rules document's validation."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from smsgate.routing import Router, RoutingConfig, RoutingError, region_of, weighted_order

US, CA, FR, NYC = "+12125551234", "+14165551234", "+33612345678", "+12125550000"

RULES = {
    "rules": [
        {
            "name": "us-promo",
            "countries": ["US"],
            "commercial": True,
            "providers": {"grouptexting": 1},
        },
        {
            "name": "north-america",
            "countries": ["us", "CA"],
            "providers": {"grouptexting": 3, "clubtexting": 1, "textinghouse": 0},
        },
        {"name": "paris-mobiles", "prefixes": ["+336"], "providers": {"textinghouse": 1}},
        {"name": "rest", "providers": {"textinghouse": 1}},
    ],
    "prices": {"clubtexting": 0.02, "grouptexting": 0.03, "textinghouse": 0.05},
}


def router(document: Any = RULES, seed: int = 7, default: str = "textinghouse") -> Router:
    config = RoutingConfig.parse(document)
    return Router(lambda: config, default, random.Random(seed))


# (label, to, commercial, named, failover, providers (None: weighted), may fail over, rule, doc)
PLANS = [
    ("no rules: the default", US, False, None, None, ("textinghouse",), True, "default", None),
    (
        "named keeps its provider",
        US,
        False,
        "clubtexting",
        None,
        ("clubtexting",),
        False,
        "named",
        None,
    ),
    (
        "named with failover adds the rule's others",
        US,
        False,
        "clubtexting",
        True,
        ("clubtexting", "grouptexting", "textinghouse"),
        True,
        "named",
        RULES,
    ),
    (
        "named without failover",
        US,
        False,
        "clubtexting",
        False,
        ("clubtexting",),
        False,
        "named",
        RULES,
    ),
    ("commercial US rule", US, True, None, None, ("grouptexting",), True, "us-promo", RULES),
    (
        "country match, lower-case in the rule",
        CA,
        False,
        None,
        None,
        None,
        True,
        "north-america",
        RULES,
    ),
    ("prefix rule", FR, False, None, None, ("textinghouse",), True, "paris-mobiles", RULES),
    ("catch-all", "+4915123456789", False, None, None, ("textinghouse",), True, "rest", RULES),
    (
        "failover false keeps only the first",
        US,
        False,
        None,
        False,
        None,
        False,
        "north-america",
        RULES,
    ),
]


@pytest.mark.parametrize(
    ("label", "to", "commercial", "named", "failover", "providers", "may_move", "rule", "doc"),
    PLANS,
    ids=[p[0] for p in PLANS],
)
def test_plans(
    label: str,
    to: str,
    commercial: bool,
    named: str | None,
    failover: bool | None,
    providers: tuple[str, ...] | None,
    may_move: bool,
    rule: str,
    doc: Any,
) -> None:
    plan = router(doc).plan(to, commercial, named, failover)
    assert plan.failover is may_move
    assert plan.rule == rule
    if providers is not None:
        assert plan.providers == providers
    if rule == "north-america" and failover is None:
        # weighted first pick, then the other weighted one, then the standby (weight 0)
        assert set(plan.providers[:2]) == {"grouptexting", "clubtexting"}
        assert plan.providers[2] == "textinghouse"
    if failover is False and named is None:
        assert len(plan.providers) == 1


def test_weights_share_the_first_pick_within_tolerance() -> None:
    r = router(seed=1)
    n = 4000
    firsts = Counter(r.plan(US, False, None, None).providers[0] for _ in range(n))
    # 3:1 -> 75 % / 25 %; 4000 draws: a standard deviation of ~0.7 %, tolerance 3 %
    assert abs(firsts["grouptexting"] / n - 0.75) < 0.03
    assert abs(firsts["clubtexting"] / n - 0.25) < 0.03
    assert firsts["textinghouse"] == 0  # weight 0: failover only


def test_weighted_order_is_a_permutation() -> None:
    rng = random.Random(3)
    for _ in range(200):
        order = weighted_order({"a": 1, "b": 2, "c": 0.5}, rng)
        assert sorted(order) == ["a", "b", "c"]


def test_cheapest_strategy_prices_each_providers_parts() -> None:
    doc = {
        "rules": [
            {
                "countries": ["US"],
                "strategy": "cheapest",
                "providers": {"clubtexting": 1, "grouptexting": 1, "textinghouse": 1},
            }
        ],
        "prices": {"clubtexting": 0.04, "grouptexting": 0.03, "textinghouse": 0.02},
    }
    r = router(doc)
    assert r.plan(US, False, None, None).providers == (
        "textinghouse",
        "grouptexting",
        "clubtexting",
    )
    # a long text costs TextingHouse 3 parts, the others 1: TextingHouse is now the dearest
    parts = {"clubtexting": 1, "grouptexting": 1, "textinghouse": 3}
    assert r.plan(US, False, None, None, parts.__getitem__).providers == (
        "grouptexting",
        "clubtexting",
        "textinghouse",
    )
    # a provider without a price comes last
    del doc["prices"]["grouptexting"]
    assert router(doc).plan(US, False, None, None).providers[-1] == "grouptexting"


BAD = [
    ("unknown provider", {"rules": [{"providers": {"twilio": 1}}]}, "unknown providers"),
    ("all weights zero", {"rules": [{"providers": {"textinghouse": 0}}]}, "weight above 0"),
    ("negative weight", {"rules": [{"providers": {"textinghouse": -1}}]}, "greater than or equal"),
    ("no providers", {"rules": [{"countries": ["US"], "providers": {}}]}, "at least 1"),
    ("unknown field", {"rules": [], "route": 1}, "Extra inputs"),
    (
        "bad strategy",
        {"rules": [{"providers": {"textinghouse": 1}, "strategy": "fast"}]},
        "strategy",
    ),
    ("negative price", {"prices": {"textinghouse": -0.1}}, "prices.textinghouse"),
    ("cool-down too short", {"health": {"cooldown_seconds": 1}}, "health.cooldown_seconds"),
    ("not an object", [1, 2], "document"),
]


@pytest.mark.parametrize(("label", "doc", "message"), BAD, ids=[b[0] for b in BAD])
def test_invalid_documents_say_what_is_wrong(label: str, doc: Any, message: str) -> None:
    with pytest.raises(RoutingError, match="invalid routing rules") as caught:
        RoutingConfig.parse(doc)
    assert message in str(caught.value)


def test_empty_document_is_the_default() -> None:
    for empty in (None, "", {}):
        assert RoutingConfig.parse(empty) == RoutingConfig()
    assert RoutingConfig().health.cooldown_seconds == 120


def test_region_of() -> None:
    assert (region_of(US), region_of(CA), region_of(FR)) == ("US", "CA", "FR")
    assert region_of("999") is None
    assert region_of(NYC) == "US"
