"""A quote: what the sender would do with a message, and what it would cost — without sending
or recording anything (`smsgate quote`, `Producer.quote`).

For each provider the routing rules would try, in order: the encoding and parts it would bill,
the estimated cost, whether its rules, its destinations or its budget refuse the message, and
(for a commercial message) when its quiet hours let it out. Then the message's answer: sent
now, held until a moment, waiting for budget, or refused with the error code the sender would
record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import commercial
from .config import DEFAULT_WINDOWS
from .observability import mask
from .protection import (
    BUDGET_EXHAUSTED,
    DESTINATION_BLOCKED,
    TOTAL,
    VELOCITY_EXCEEDED,
    BudgetView,
    Counts,
    Exceeded,
    velocity_exceeded,
)
from .providers import PROVIDERS, OutboundSms, ProviderClient, RuleViolation, is_test_number
from .routing import Plan, RoutingConfig, estimated_cost, region_of
from .store.counters import CounterItems, Counters
from .text import segments as text_segments
from .timestamps import now_iso


@dataclass(frozen=True)
class ProviderQuote:
    provider: str
    encoding: str
    parts: int
    cost: float | None  # price per part times parts (None: no price in `prices`)
    refused: str = ""  # "<code>: <reason>" when its rules or destinations refuse it
    over_budget: str = ""  # "budget_exhausted: <reason>" when its month's budget has no room
    opens_at: str = ""  # a commercial message's first moment out (ISO, UTC); "" = now


@dataclass(frozen=True)
class Quote:
    to: str  # masked
    route: str  # the routing rule's name, "default" or "named"
    providers: tuple[ProviderQuote, ...]
    answer: str  # "send", "hold", "wait" or "refuse"
    provider: str = ""  # the provider that would carry it (send, hold)
    at: str = ""  # when it would go out (ISO, UTC): now, or the hold's end
    code: str = ""  # the error code it would be recorded with (refuse, wait)
    reason: str = ""
    velocity: dict[str, Any] = field(default_factory=dict)  # counts and limits
    budget: dict[str, Any] = field(default_factory=dict)  # the month's spend and caps

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists, not tuples)."""
        plain: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return plain


def quote(
    config: RoutingConfig,
    plan: Plan,
    sms: OutboundSms,
    checkers: Mapping[str, ProviderClient],
    *,
    counters: Counters | None = None,
    opted_out: bool = False,
    now: datetime | None = None,
) -> Quote:
    """The quote for `sms`, whose `plan` (the providers the sender would try, in order, and
    the rule's name) comes from the producer's routing. `counters` (the stack's health
    table) gives velocity and spend; without it those are not judged."""
    now = now or datetime.now(UTC)
    exempt = is_test_number(sms.to)
    region = None if exempt else region_of(sms.to)
    items = None
    if counters is not None and not exempt:
        countries = [region] if region and config.velocity.per_country_hour else []
        budgeted = sorted(PROVIDERS) if config.monthly_budgets else []
        items = counters.load([sms.to], countries, budgeted, now)
    view = BudgetView(config.monthly_budgets, dict(items.spend) if items else {})

    where = _Where(config, sms, checkers, view, exempt, region, now)
    rows = [_provider_quote(where, provider) for provider in plan.providers]
    velocity, exceeded = _velocity(config, items, sms.to, region, now)
    budget: dict[str, Any] = {"caps": dict(config.monthly_budgets), "spent": dict(view.spent)}
    if TOTAL in config.monthly_budgets:
        budget["spent_total"] = view.total
    rows_t = tuple(rows)

    def answer(
        kind: str, code: str = "", reason: str = "", chosen: str = "", at: str = ""
    ) -> Quote:
        return Quote(mask(sms.to), plan.rule, rows_t, kind, chosen, at, code, reason,
                     velocity, budget)  # fmt: skip

    # in the sender's order (send/service.py): opt-out, destinations and rules, quiet hours,
    # velocity, budgets
    if opted_out:
        return answer("refuse", "opted_out", "recipient has opted out")
    overall = None if exempt else config.destinations.refused_overall(sms.to, region)
    if overall:
        return answer("refuse", DESTINATION_BLOCKED, overall)
    ready = [r for r in rows if not r.refused]
    if not ready:
        code, _, reason = (rows[0].refused if rows else "no provider: none").partition(": ")
        return answer("refuse", code, reason)
    if ready[0].opens_at:
        why = "commercial message outside its window"
        return answer("hold", "", why, ready[0].provider, ready[0].opens_at)
    if exceeded is not None:
        if config.velocity.when_exceeded == "hold":
            frees = now_iso(exceeded.frees_at)
            return answer("hold", VELOCITY_EXCEEDED, exceeded.reason, ready[0].provider, frees)
        return answer("refuse", VELOCITY_EXCEEDED, exceeded.reason)
    within = [r for r in ready if not r.over_budget]
    if not within:
        _, _, reason = ready[0].over_budget.partition(": ")
        return answer("wait", BUDGET_EXHAUSTED, reason)
    return answer("send", chosen=within[0].provider, at=now_iso(now))


def _velocity(
    config: RoutingConfig,
    items: CounterItems | None,
    to: str,
    region: str | None,
    now: datetime,
) -> tuple[dict[str, Any], Exceeded | None]:
    """The velocity part of the quote (limits, and the counts when they were read), and the
    limit one more message would pass."""
    velocity: dict[str, Any] = {
        "per_hour": config.velocity.per_hour,
        "per_day": config.velocity.per_day,
    }
    if items is None:
        return velocity, None
    hour, day = items.recipient(to)
    counts = Counts(hour, day, items.country(region))
    velocity.update(this_hour=hour, today=day)
    if config.velocity.per_country_hour:
        velocity.update(
            country=region,
            country_limit=config.velocity.country_limit(region),
            country_this_hour=counts.country_hour,
        )
    return velocity, velocity_exceeded(config.velocity, counts, region, now)


@dataclass(frozen=True)
class _Where:
    """What every provider's row of one quote is judged on."""

    config: RoutingConfig
    sms: OutboundSms
    checkers: Mapping[str, ProviderClient]
    view: BudgetView
    exempt: bool
    region: str | None
    now: datetime


def _provider_quote(where: _Where, provider: str) -> ProviderQuote:
    config, sms, view, exempt, region, now = (
        where.config, where.sms, where.view, where.exempt, where.region, where.now
    )  # fmt: skip
    checkers = where.checkers
    encoding = text_segments(sms.text).encoding
    try:
        parts = checkers[provider].check(sms).segments
    except RuleViolation as exc:
        parts = text_segments(sms.text).parts
        return ProviderQuote(provider, encoding, parts, None, f"rule:{exc.rule}: {exc.detail}")
    cost = estimated_cost(config, provider, parts)
    blocked = None if exempt else config.destinations.refused_by(provider, sms.to, region)
    if blocked:
        refused = f"{DESTINATION_BLOCKED}: destination refused: {blocked}"
        return ProviderQuote(provider, encoding, parts, cost, refused)
    over = None if exempt else view.refusal(provider, cost or 0.0)
    opens = ""
    if sms.commercial:
        client = PROVIDERS[provider]
        window = DEFAULT_WINDOWS if client.holds_commercial else None
        moment = commercial.opens_at(now, sms.to, config.quiet_hours, window, client.home_zone)
        opens = now_iso(moment) if moment is not None else ""
    over_budget = f"{BUDGET_EXHAUSTED}: {over}" if over else ""
    return ProviderQuote(provider, encoding, parts, cost, "", over_budget, opens)
