"""Protection: what smsgate refuses to pay for (docs/protection.md).

Three parts of the routing document, each validated with the rest of it (an invalid document
keeps the last good one):

- `destinations`: allowed and blocked countries (ISO codes) and E.164 prefixes, overall and per
  provider. The most specific entry that matches a number decides: a prefix beats a country, a
  longer prefix a shorter one, and a block beats an allow of the same weight. With an `allow`
  list, a number no entry matches is refused too. Default: nothing refused.
- `velocity`: at most `per_hour` / `per_day` messages to one recipient number per clock hour and
  UTC day (default 10 and 50), optionally at most N per country per hour
  (`per_country_hour`); over a limit a message fails (`when_exceeded: "fail"`) or is held until
  the window frees (`"hold"`).
- `monthly_budgets`: a cap per provider and/or in `total`, in the currency of `prices`, per UTC
  month. A provider whose cap would be passed is skipped (another may carry the message, as the
  routing rules allow); with none left the message waits for the next month.

A provider's own free test number is exempt from all three. This module decides; the counts it
decides on are read and written by `store.counters`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .commercial import ANY_COUNTRY
from .providers import PROVIDERS

TOTAL = "total"  # the monthly_budgets key of the cap over every provider
WARN_AT = 0.8  # share of a budget at which SpendBudgetUsed reaches its alarm
_COUNTRY = re.compile(r"[A-Z]{2}")
_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")

# error_code of each refusal (docs/contract.md, Error codes)
DESTINATION_BLOCKED = "destination_blocked"
VELOCITY_EXCEEDED = "velocity_exceeded"
BUDGET_EXHAUSTED = "budget_exhausted"


def _entries(value: tuple[str, ...]) -> tuple[str, ...]:
    checked = []
    for raw in value:
        entry = raw.strip().upper()
        if not (_COUNTRY.fullmatch(entry) or _PREFIX.fullmatch(entry)):
            raise ValueError(
                f"{raw!r} is neither an ISO country code (FR) nor an E.164 prefix (+336)"
            )
        checked.append(entry)
    return tuple(checked)


def known_providers(names: Iterable[str]) -> None:
    """A ValueError naming the entries of a document's provider table that are no provider."""
    unknown = sorted(set(names) - set(PROVIDERS))
    if unknown:
        raise ValueError(f"unknown providers {unknown}; known: {sorted(PROVIDERS)}")


def country_key(key: str) -> str:
    """A per-country table's key: an ISO country code (any case) or `*` (every other)."""
    country = key.strip().upper()
    if country != ANY_COUNTRY and not _COUNTRY.fullmatch(country):
        raise ValueError(f"key {key!r} is not an ISO country code or {ANY_COUNTRY!r}")
    return country


def _weight(entry: str) -> int:
    """How specific an entry is: any prefix beats a country, a longer prefix a shorter one."""
    return len(entry) + 100 if entry.startswith("+") else 1


class DestinationList(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()

    @field_validator("allow", "block")
    @classmethod
    def _checked(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _entries(value)

    def refusal(self, to: str, region: str | None, where: str) -> str | None:
        """Why `to` may not be texted (None: it may). `where` names the list in the reason."""
        best: tuple[int, bool, str] | None = None  # (weight, blocked, entry)
        for blocked, entries in ((False, self.allow), (True, self.block)):
            for entry in entries:
                hit = to.startswith(entry) if entry.startswith("+") else entry == region
                if hit and (best is None or (_weight(entry), blocked) > best[:2]):
                    best = (_weight(entry), blocked, entry)
        if best is None:
            if self.allow:
                return f"country {region or 'unknown'} is not in {where}.allow"
            return None
        return f"{where}.block has {best[2]}" if best[1] else None


class Destinations(DestinationList):
    providers: dict[str, DestinationList] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _known(cls, value: dict[str, DestinationList]) -> dict[str, DestinationList]:
        known_providers(value)
        return value

    @property
    def empty(self) -> bool:
        """No list at all (the default): nothing is refused, and nothing need be looked up."""
        return not (self.allow or self.block or self.providers)

    def refused_overall(self, to: str, region: str | None) -> str | None:
        return self.refusal(to, region, "destinations")

    def refused_by(self, provider: str, to: str, region: str | None) -> str | None:
        own = self.providers.get(provider)
        return own.refusal(to, region, f"destinations.providers.{provider}") if own else None


class Velocity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    per_hour: Annotated[int, Field(ge=1)] | None = 10
    per_day: Annotated[int, Field(ge=1)] | None = 50
    per_country_hour: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    when_exceeded: Literal["fail", "hold"] = "fail"

    @field_validator("per_country_hour")
    @classmethod
    def _countries(cls, value: dict[str, int]) -> dict[str, int]:
        return {country_key(key): limit for key, limit in value.items()}

    def country_limit(self, region: str | None) -> int | None:
        if region and region in self.per_country_hour:
            return self.per_country_hour[region]
        return self.per_country_hour.get(ANY_COUNTRY)


Budget = Annotated[float, Field(gt=0)]


@dataclass(frozen=True)
class Counts:
    """The messages already counted for one recipient (and its country) in the current
    windows."""

    hour: int = 0
    day: int = 0
    country_hour: int = 0


@dataclass(frozen=True)
class Exceeded:
    """A velocity limit a message would pass, and when its window frees."""

    window: str  # "hour", "day", "country_hour"
    limit: int
    frees_at: datetime

    @property
    def reason(self) -> str:
        per = {"hour": "this hour", "day": "today (UTC)", "country_hour": "to its country"}
        extra = " this hour" if self.window == "country_hour" else ""
        return f"recipient velocity: {self.limit} messages {per[self.window]}{extra} already"


def velocity_exceeded(
    velocity: Velocity, counts: Counts, region: str | None, now: datetime
) -> Exceeded | None:
    """The first limit one more message would pass (None: it may go)."""
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    next_day = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    country = velocity.country_limit(region)
    checks = (
        ("day", velocity.per_day, counts.day, next_day),
        ("hour", velocity.per_hour, counts.hour, next_hour),
        ("country_hour", country, counts.country_hour, next_hour),
    )
    for window, limit, seen, frees in checks:
        if limit is not None and seen >= limit:
            return Exceeded(window, limit, frees)
    return None


@dataclass(frozen=True)
class BudgetView:
    """A month's spend against the caps (`spent` per provider, in the currency of prices)."""

    caps: Mapping[str, float]
    spent: Mapping[str, float]

    @property
    def total(self) -> float:
        return sum(self.spent.values())

    def refusal(self, provider: str, cost: float) -> str | None:
        """Why `provider` may not carry a message costing `cost` (None: it may)."""
        own = self.caps.get(provider)
        if own is not None and self.spent.get(provider, 0.0) + cost > own:
            return f"{provider}'s monthly budget ({own:g}) would be passed"
        cap = self.caps.get(TOTAL)
        if cap is not None and self.total + cost > cap:
            return f"the total monthly budget ({cap:g}) would be passed"
        return None

    def used(self) -> dict[str, float]:
        """Each cap's used share (0-1+), `total` included."""
        shares = {p: self.spent.get(p, 0.0) / cap for p, cap in self.caps.items() if p != TOTAL}
        if TOTAL in self.caps:
            shares[TOTAL] = self.total / self.caps[TOTAL]
        return shares
