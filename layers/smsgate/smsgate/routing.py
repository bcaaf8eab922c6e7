"""Routing: which providers may carry a message, in which order.

The rules are a JSON document the user edits without a redeploy (the SSM parameter
`ROUTING_PARAMETER`, read through Powertools with a short cache; its format and an example are
in docs/contract.md, SSM parameters). The first rule whose match holds for the message gives the
providers and their weights; with no matching rule (or no document) the stack's default
provider carries everything. The document also gives commercial messages' quiet hours per
country (`quiet_hours`, read by the sender's holds).

The router only orders candidates. Whether a candidate can carry the message (credentials, the
provider's own number and text rules, health) is decided by the sender, which walks the list.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .commercial import parse_windows
from .protection import TOTAL, Budget, Destinations, Velocity, country_key, known_providers
from .providers import PROVIDERS
from .validation import summarise

Weight = Annotated[float, Field(ge=0)]


class RoutingError(ValueError):
    """The routing document is not valid: the sender keeps its last good one (or the default)."""


class Rule(BaseModel):
    """One routing rule: a match (every given field must hold) and the providers it allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    countries: tuple[str, ...] = ()  # ISO 3166 region codes of the recipient: "US", "FR"
    prefixes: tuple[str, ...] = ()  # E.164 prefixes: "+1212", "+336"
    commercial: bool | None = None  # None: either kind
    providers: dict[str, Weight] = Field(min_length=1)  # weight 0: failover only
    strategy: Literal["weighted", "cheapest"] = "weighted"

    @field_validator("providers")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        known_providers(value)
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one provider needs a weight above 0")
        return value

    @field_validator("countries")
    @classmethod
    def _upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(c.upper() for c in value)

    def matches(self, to: str, region: str | None, commercial: bool) -> bool:
        if self.countries and region not in self.countries:
            return False
        if self.prefixes and not any(to.startswith(p) for p in self.prefixes):
            return False
        return self.commercial is None or self.commercial == commercial


class HealthPolicy(BaseModel):
    """When a provider counts as unhealthy, and for how long it is skipped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_seconds: int = Field(default=300, ge=60, le=3600)
    min_samples: int = Field(default=10, ge=1)
    max_error_rate: float = Field(default=0.5, gt=0, le=1)
    max_latency_ms: int = Field(default=8000, ge=100)
    cooldown_seconds: int = Field(default=120, ge=10, le=3600)


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()
    prices: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    health: HealthPolicy = HealthPolicy()
    # When commercial messages may go, per recipient country (ISO code, or `*`: every other
    # country), over smsgate's defaults (commercial.DEFAULT_QUIET_HOURS)
    quiet_hours: dict[str, str] = Field(default_factory=dict)
    # What smsgate refuses to pay for (protection, docs/protection.md)
    destinations: Destinations = Destinations()
    velocity: Velocity = Velocity()
    monthly_budgets: dict[str, Budget] = Field(default_factory=dict)

    @field_validator("monthly_budgets")
    @classmethod
    def _budgets(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PROVIDERS) - {TOTAL})
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known: {sorted(PROVIDERS)} and {TOTAL!r}")
        return value

    @model_validator(mode="after")
    def _priced_budgets(self) -> RoutingConfig:
        # A provider's spend is counted from its price: a cap with nothing to count is a typo.
        unpriced = sorted(p for p in self.monthly_budgets if p != TOTAL and p not in self.prices)
        if unpriced:
            raise ValueError(f"monthly_budgets for {unpriced} need their prices in `prices`")
        if TOTAL in self.monthly_budgets and not self.prices:
            raise ValueError("a total monthly budget needs the providers' prices in `prices`")
        return self

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_windows(cls, value: dict[str, str]) -> dict[str, str]:
        checked = {}
        for key, spec in value.items():
            parse_windows(spec)  # a ValueError names the bad part
            checked[country_key(key)] = spec
        return checked

    @classmethod
    def parse(cls, document: Any) -> RoutingConfig:
        """The validated document; a RoutingError naming what is wrong otherwise."""
        if document in (None, "", {}):
            return cls()
        try:
            return cls.model_validate(document)
        except ValidationError as exc:
            raise RoutingError(f"invalid routing rules: {summarise(exc, 'document')}") from None

    def price(self, provider: str) -> float | None:
        return self.prices.get(provider)


@dataclass(frozen=True)
class Plan:
    """The providers to try for one message, best first, and whether it may move on."""

    providers: tuple[str, ...]
    failover: bool
    rule: str  # the matching rule's name ("default" when none matched, "named" when named)


def region_of(to: str) -> str | None:
    """ISO region of an E.164 number (None for a provider's test number or no region)."""
    import phonenumbers  # here: the credit check reads the routing rules' health policy only

    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(to, None))
    except phonenumbers.NumberParseException:
        return None


class Router:
    def __init__(
        self,
        config: Callable[[], RoutingConfig],
        default_provider: str,
        rng: random.Random | None = None,
    ) -> None:
        self.config, self.default_provider = config, default_provider
        self.rng = rng or random.Random()

    def plan(
        self,
        to: str,
        commercial: bool,
        named: str | None,
        failover: bool | None,
        segments: Callable[[str], int] | None = None,
    ) -> Plan:
        """The order to try providers in.

        A message that names its provider keeps it first and moves on only when it allows
        failover (`"failover": true`), to the other providers of its matching rule. A message
        that names none follows its rule (failover allowed unless `"failover": false`).
        `segments` (a provider's parts for this message, from its own rules) prices the
        `cheapest` strategy; it is only called for that strategy's providers.
        """
        config = self.config()
        rule = next(
            (r for r in config.rules if r.matches(to, region_of(to), commercial)),
            None,
        )
        ordered = self._order(rule, config, segments) if rule else [self.default_provider]
        if named is not None:
            allowed = bool(failover)
            rest = [p for p in ordered if p != named] if allowed else []
            return Plan((named, *rest), allowed, "named")
        label = (rule.name or "rule") if rule else "default"
        allowed = failover is not False
        return Plan(tuple(ordered if allowed else ordered[:1]), allowed, label)

    def _order(
        self, rule: Rule, config: RoutingConfig, segments: Callable[[str], int] | None
    ) -> list[str]:
        weighted = {p: w for p, w in rule.providers.items() if w > 0}
        standby = sorted((p for p, w in rule.providers.items() if w == 0), key=self._cost(config))
        if rule.strategy == "cheapest":
            key = self._cost(config, segments)
            primary = sorted(weighted, key=lambda p: (key(p), -weighted[p]))
        else:
            primary = weighted_order(weighted, self.rng)
        return [*primary, *standby]

    @staticmethod
    def _cost(
        config: RoutingConfig, segments: Callable[[str], int] | None = None
    ) -> Callable[[str], float]:
        def cost(provider: str) -> float:
            price = config.price(provider)
            if price is None:
                return float("inf")
            return price * (segments(provider) if segments else 1)

        return cost


def weighted_order(weights: Mapping[str, float], rng: random.Random) -> list[str]:
    """Providers in a random order where each comes first with probability weight / total
    (weighted sampling without replacement)."""
    left = dict(weights)
    order: list[str] = []
    while left:
        total = sum(left.values())
        pick = rng.uniform(0, total)
        chosen = next(iter(left))
        for chosen, weight in left.items():  # noqa: B007 - `chosen` is the loop's answer
            pick -= weight
            if pick <= 0:
                break
        order.append(chosen)
        del left[chosen]
    return order


def estimated_cost(config: RoutingConfig, provider: str, segments: int) -> float | None:
    """Price per part times billed parts, when the provider has a price."""
    price = config.price(provider)
    return None if price is None else round(price * segments, 6)
