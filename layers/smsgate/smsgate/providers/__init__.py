"""The provider registry: every provider smsgate can send through, by its contract name.

Each provider is one package here (`<name>/`) that owns all of its rules; everything else in
smsgate reads them from the registry and the providers' declared capabilities
(`ProviderClient`'s class attributes), never by a provider's name. Adding a provider: see
CONTRIBUTING.md."""

from __future__ import annotations

from .base import (
    CallbackRoute,
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    ProviderError,
    RuleViolation,
    StatusLookup,
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
PROVIDER_NAMES: tuple[str, ...] = tuple(PROVIDERS)
# When a message and the stack name none (the template's DefaultProvider overrides it): the one
# provider that reaches numbers outside the US.
DEFAULT_PROVIDER = TextingHouse.name
TEST_NUMBERS: dict[str, str] = {  # a provider's free test number -> that provider
    cls.test_number: name for name, cls in PROVIDERS.items() if cls.test_number
}


def is_test_number(to: str) -> bool:
    """True for a provider's free test number (not E.164: no opt-out, no region)."""
    return to in TEST_NUMBERS


__all__ = [
    "DEFAULT_PROVIDER",
    "PROVIDERS",
    "PROVIDER_NAMES",
    "TEST_NUMBERS",
    "CallbackRoute",
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
    "StatusLookup",
    "TextingHouse",
    "Transport",
    "is_test_number",
]
