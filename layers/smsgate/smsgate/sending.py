"""The values a send passes around: the providers that may carry a message (candidates and
refusals), the router's choice and what it puts on a lane, the claimed message on its way out,
and the result for its SQS record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .observability import mask
from .providers import PROVIDERS, ProviderClient
from .providers.base import Prepared
from .queue_body import Job
from .routing import Plan
from .status import Status

ROUTE_ATTRIBUTE = "smsgate-route"  # a lane message's providers and rule, from the router


@dataclass(frozen=True)
class Option:
    """A provider that can carry the message: configured, and its rules accept it."""

    provider: str
    client: ProviderClient = field(repr=False)
    prepared: Prepared = field(repr=False)


@dataclass(frozen=True)
class Refusal:
    """A provider that cannot carry the message, and why (the message's error if none can)."""

    provider: str
    code: str
    reason: str


@dataclass(frozen=True)
class Route:
    plan: Plan
    ready: list[Option]
    refused: list[Refusal]


@dataclass(frozen=True)
class LaneChoice:
    """The router's decision: the lane, and the providers to try there and after, in order."""

    provider: str
    providers: tuple[str, ...]
    rule: str


@dataclass(frozen=True)
class Forward:
    """One message on its way to a lane: `key` names it in the batch."""

    key: str
    body: dict[str, Any]
    providers: tuple[str, ...]
    rule: str


def lane_route(record: Mapping[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """The providers and rule the router gave a lane's record (None without them: a message
    put on a lane by hand is routed as if it came from the send queue)."""
    attribute = (record.get("messageAttributes") or {}).get(ROUTE_ATTRIBUTE) or {}
    try:
        value = json.loads(attribute.get("stringValue") or "")
        providers = tuple(str(p) for p in value["providers"] if p in PROVIDERS)
        return (providers, str(value.get("rule") or "")) if providers else None
    except (ValueError, TypeError, KeyError):
        return None


@dataclass
class Sending:
    """One claimed message on its way out: the lease, the history it starts with, and every
    provider attempt so far (kept on the record as `provider_attempts`)."""

    job: Job
    lease: str
    queued: list[tuple[Status, str, str]]
    receive_count: int
    attempts: list[dict[str, Any]] = field(default_factory=list)
    rule: str = ""
    recorded: str = ""  # the provider the record names (a retry may have named another)
    requested: bool = False  # a provider request has started: the lease is never given back
    lane: str | None = None  # the lane this message is sent from (None: no lanes)
    first_claim: bool = False  # the first time smsgate sees this message (its times checked)
    deadline: datetime | None = None  # never sent after (valid_until / validity_seconds)
    # What the message took from its batch's protection counters (given back if never sent)
    velocity_taken: tuple[str, str | None] | None = None  # (number, country)
    velocity_reserved: bool = False  # taken in the recipient's item before the request
    spend_taken: tuple[str, Any] | None = None  # (provider, cost)

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def provider(self) -> str:
        return self.job.provider

    def facts(self) -> dict[str, Any]:
        """Routing facts every write of the outcome carries."""
        facts: dict[str, Any] = {"provider": self.provider}
        if self.attempts:
            facts["provider_attempts"] = self.attempts
        if self.rule:
            facts["route"] = self.rule
        return facts

    def log(self, **extra: Any) -> dict[str, Any]:
        return {"message_id": self.id, "provider": self.provider, "to": mask(self.job.to), **extra}


@dataclass(frozen=True)
class Done:
    """The record is finished with: delete it from the queue."""

    status: str
    code: str = ""


@dataclass(frozen=True)
class Retry:
    """Give the record back to SQS; it reappears after `delay` seconds."""

    delay: int
    reason: str


Result = Done | Retry
