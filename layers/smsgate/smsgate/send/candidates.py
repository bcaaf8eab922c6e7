"""The candidates for one message: the providers the routing plan names, each checked once
against its rules (configured, and its rules accept the message), and which of them are healthy
enough to try now."""

from __future__ import annotations

from ..health import Verdict
from ..protection import DESTINATION_BLOCKED
from ..providers import (
    OutboundSms,
    RuleViolation,
    is_test_number,
)
from ..queue_body import Job
from ..routing import Plan, region_of
from ..sending import (
    Option,
    Refusal,
    Route,
)
from .base import SendBase


class Candidates(SendBase):
    """Which providers may carry a message, in the order to try them."""

    def route(
        self,
        item: Job,
        sms: OutboundSms,
        routed: tuple[tuple[str, ...], str] | None = None,
    ) -> Route:
        """The providers that may carry `item`, in the router's order (or in `routed`'s, the
        order the router gave a lane's message), with the ones that cannot (not configured,
        or their rules refuse the message, or the destinations allowed to it do) and why. Only
        the plan's providers (and a `cheapest` rule's) are checked, each once."""
        checks: dict[str, Option | Refusal] = {}
        destinations = self.router.config().destinations
        exempt = destinations.empty or is_test_number(item.to)
        region = None if exempt else region_of(item.to)
        overall = None if exempt else destinations.refused_overall(item.to, region)

        def check(provider: str) -> Option | Refusal:
            if provider not in checks:
                blocked = overall or (
                    None if exempt else destinations.refused_by(provider, item.to, region)
                )
                checks[provider] = (
                    Refusal(provider, DESTINATION_BLOCKED, f"destination refused: {blocked}")
                    if blocked
                    else self._check(provider, sms)
                )
            return checks[provider]

        def segments(provider: str) -> int:
            found = check(provider)
            return found.prepared.segments if isinstance(found, Option) else 1

        m = item.message
        if routed is not None:
            providers, rule = routed
            plan = Plan(providers, len(providers) > 1, rule or "default")
        else:
            plan = self.router.plan(item.to, m.commercial, m.provider, m.failover, segments)
        ready = [c for p in plan.providers if isinstance(c := check(p), Option)]
        refused = [c for p in plan.providers if isinstance(c := check(p), Refusal)]
        return Route(plan, ready, refused)

    def _check(self, provider: str, sms: OutboundSms) -> Option | Refusal:
        client = self.client(provider)
        if client is None:
            return Refusal(
                provider,
                "provider_not_configured",
                f"provider {provider} has no credentials in the provider secret",
            )
        try:
            return Option(provider, client, client.check(sms))
        except RuleViolation as exc:
            return Refusal(provider, f"rule:{exc.rule}", str(exc))

    def _healthy(self, ready: list[Option]) -> tuple[list[Option], list[tuple[str, Verdict]]]:
        if self.health is None:
            return ready, []
        usable, waiting = [], []
        for option in ready:
            verdict = self.health.verdict(option.provider)
            if verdict.available:
                usable.append(option)
            else:
                waiting.append((option.provider, verdict))
        return usable, waiting
