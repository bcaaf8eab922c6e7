"""Provider clients for this process: one per provider, credentials and thread, built on first
use.

Every function that talks to providers (send, credit check, reconciliation) goes through one
pool, so each thread keeps one kept-alive connection per provider across warm invocations
(the send function's workers each have their own), and a rotated password in the secret takes
effect without a redeploy. A provider that limits the account's simultaneous connections
(`max_connections`) is reached through `connection()`, which holds one of the deployment's
slots for it (`budget.py`) and closes the connection when done, as that provider asks.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .config import Settings
from .providers import PROVIDERS, ProviderClient, Transport


class NoConnectionSlot(Exception):
    """Every connection slot of a limited provider is taken: come back later."""


class ClientPool:
    def __init__(
        self,
        settings: Settings,
        credentials: Callable[[], Mapping[str, Any]],
        budget_db: Callable[[], Any] | None = None,
    ) -> None:
        self.settings, self.credentials = settings, credentials
        self._clients: dict[tuple[str, str, str, int], ProviderClient] = {}
        self._lock = threading.Lock()
        self._budget_db = budget_db
        self.holder = f"{uuid.uuid4().hex[:12]}"  # this process, in the slots it holds

    def configured(self) -> list[str]:
        """Providers with credentials in the secret."""
        return [name for name in PROVIDERS if self._entry(name) is not None]

    def get(self, provider: str) -> ProviderClient | None:
        """This thread's client of the provider, or None when the secret has no credentials
        for it."""
        entry = self._entry(provider)
        if entry is None:
            return None
        key = (provider, entry[0], entry[1], threading.get_ident())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                stale = [k for k in self._clients if k[0] == provider and k[3] == key[3]]
                for old in stale:
                    self._clients.pop(old).transport.close()  # credentials were rotated
                transport = Transport(
                    self.settings.provider_urls[provider],
                    connect_timeout=self.settings.connect_timeout,
                    read_timeout=self.settings.read_timeout,
                )
                client = PROVIDERS[provider](transport.base_url, key[1], key[2], transport)
                self._clients[key] = client
        return client

    def limited(self, provider: str) -> bool:
        """True when the provider's calls must hold one of its connection slots."""
        limit = PROVIDERS[provider].max_connections
        return bool(limit) and self.budget(provider) is not None

    def budget(self, provider: str) -> Any:
        limit = PROVIDERS[provider].max_connections
        if not limit or self._budget_db is None or not self.settings.health_table:
            return None
        from .budget import ConnectionBudget

        return ConnectionBudget(self._budget_db(), self.settings.health_table, provider, limit)

    @contextmanager
    def connection(
        self, provider: str, hold_seconds: float, *, priority: bool = False, wait: float = 0.0
    ) -> Iterator[ProviderClient | None]:
        """This thread's client, for the duration of the block. For a provider with a
        connection limit: a slot is held meanwhile and the connection closed at the end;
        NoConnectionSlot when none came free within `wait` seconds."""
        client = self.get(provider)
        budget = self.budget(provider) if client is not None else None
        if budget is None:
            yield client
            return
        slot = budget.acquire(
            f"{self.holder}:{threading.get_ident()}", hold_seconds, priority=priority, wait=wait
        )
        if slot is None:
            raise NoConnectionSlot(f"every {provider} connection slot is in use")
        try:
            yield client
        finally:
            assert client is not None
            client.transport.close()
            budget.release(slot)

    def _entry(self, provider: str) -> tuple[str, str] | None:
        entry = self.credentials().get(provider)
        if not isinstance(entry, Mapping) or not entry.get("user") or not entry.get("pass"):
            return None
        return str(entry["user"]), str(entry["pass"])
