"""The provider registry: every provider smsgate can send through, by its contract name."""

from __future__ import annotations

from .base import (
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    ProviderError,
    RuleViolation,
    Transport,
)
from .clubtexting import ClubTexting
from .grouptexting import Card, GroupTexting
from .textinghouse import TextingHouse

PROVIDERS: dict[str, type[ProviderClient]] = {
    ClubTexting.name: ClubTexting,
    GroupTexting.name: GroupTexting,
    TextingHouse.name: TextingHouse,
}

__all__ = [
    "PROVIDERS",
    "Card",
    "Category",
    "ClubTexting",
    "GroupTexting",
    "OutboundSms",
    "Outcome",
    "OutcomeKind",
    "Prepared",
    "ProviderClient",
    "ProviderError",
    "RuleViolation",
    "TextingHouse",
    "Transport",
]
