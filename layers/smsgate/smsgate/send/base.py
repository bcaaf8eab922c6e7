"""What every part of the send path shares: the settings, the store, the provider clients,
the router and health board, and the AWS clients it needs (built once per warm process)."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..clients import ClientPool
from ..config import Settings
from ..health import HealthBoard
from ..providers import (
    ProviderClient,
)
from ..providers.base import Category
from ..queue_body import Job
from ..queues import Queues, Schedules
from ..routing import Router, RoutingConfig
from ..store import Store
from ..store.counters import Counters

DEADLINE_MARGIN_MS = 3_000  # kept free after the slowest provider call, for the final write
MAX_QUEUE_DELAY = 900  # SQS's ceiling for DelaySeconds (15 min)
# Refusals after which another provider may carry the message: each says the provider (not the
# message) is the problem, and each is definite — nothing was sent, so nothing can be sent twice.
FAILOVER_CATEGORIES = frozenset({Category.AUTH, Category.CREDIT, Category.RATE_LIMIT})


class SendBase:
    """The send service's collaborators."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        credentials: Callable[[], Mapping[str, Any]],
        *,
        sqs: Any = None,
        scheduler: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_receive_count: int = 5,
        routing: Callable[[], RoutingConfig] = RoutingConfig,
        health: HealthBoard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.store, self.credentials = settings, store, credentials
        self.queues, self.schedules = Queues(sqs), Schedules(scheduler)
        self.clock = clock
        self.max_receive_count = max_receive_count
        self.clients = ClientPool(settings, credentials, lambda: self.store.db)
        self.router = Router(routing, settings.default_provider, rng)
        self.health = health

    @property
    def counters(self) -> Counters | None:
        """Protection's counters (in the health table, through the store's client)."""
        table = self.settings.health_table
        return Counters(table, self.store.db) if table else None

    @property
    def sqs(self) -> Any:
        """The SQS client (the benchmarks count its requests)."""
        return self.queues.client

    def client(self, provider: str) -> ProviderClient | None:
        return self.clients.get(provider)

    @property
    def slowest_call_ms(self) -> int:
        return int((self.settings.connect_timeout + self.settings.read_timeout) * 1000)

    @staticmethod
    def _record(item: Job) -> dict[str, Any]:
        m = item.message
        return {
            "direction": "out",
            "provider": item.provider,
            "to": item.to,
            "text": m.text,
            "subject": m.subject or None,
            "express": m.express or None,
            "commercial": m.commercial or None,
            "sender": m.sender,
        }
