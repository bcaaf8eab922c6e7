"""Provider clients for this process: one per provider and credentials, built on first use.

Every function that talks to providers (send, credit check, reconciliation) goes through one
pool, so each keeps one kept-alive connection per provider across warm invocations, and a
rotated password in the secret takes effect without a redeploy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from .config import Settings
from .providers import PROVIDERS, ProviderClient, Transport


class ClientPool:
    def __init__(self, settings: Settings, credentials: Callable[[], Mapping[str, Any]]) -> None:
        self.settings, self.credentials = settings, credentials
        self._clients: dict[tuple[str, str, str], ProviderClient] = {}
        self._lock = threading.Lock()

    def configured(self) -> list[str]:
        """Providers with credentials in the secret."""
        return [name for name in PROVIDERS if self._entry(name) is not None]

    def get(self, provider: str) -> ProviderClient | None:
        """The provider's client, or None when the secret has no credentials for it."""
        entry = self._entry(provider)
        if entry is None:
            return None
        key = (provider, entry[0], entry[1])
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                for old in [k for k in self._clients if k[0] == provider]:
                    self._clients.pop(old).transport.close()  # credentials were rotated
                transport = Transport(
                    self.settings.provider_urls[provider],
                    connect_timeout=self.settings.connect_timeout,
                    read_timeout=self.settings.read_timeout,
                )
                client = PROVIDERS[provider](transport.base_url, key[1], key[2], transport)
                self._clients[key] = client
        return client

    def _entry(self, provider: str) -> tuple[str, str] | None:
        entry = self.credentials().get(provider)
        if not isinstance(entry, Mapping) or not entry.get("user") or not entry.get("pass"):
            return None
        return str(entry["user"]), str(entry["pass"])
