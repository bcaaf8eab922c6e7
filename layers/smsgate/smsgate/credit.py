"""The scheduled credit check: every configured provider's balance as a metric.

`CreditBalance` (dimension `Provider`) feeds the low-credit alarms, which treat missing data
as breaching: a check that stops running alarms too. A provider whose document has no balance
API (its capabilities say so) is skipped — said once per cold start, not as an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .clients import ClientPool, NoConnectionSlot
from .observability import count, gauge, logger
from .providers import ProviderError

if TYPE_CHECKING:
    from .health import HealthBoard

_said_no_api: set[str] = set()


RATE_LIMIT_PAUSES = (1.0, 2.0, 4.0)  # seconds before each retry of a rate-limited balance read
SLOT_WAIT_SECONDS = 20.0  # how long the check waits for a slot of a connection-limited provider


class CreditService:
    def __init__(
        self,
        clients: ClientPool,
        health: HealthBoard | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients, self.health, self.sleep = clients, health, sleep

    def _balance(self, provider: str) -> float:
        """The balance, through one of the provider's connection slots when it limits them;
        a rate limit (HTTP 503) is retried with backoff before it counts as a failure."""
        for pause in (*RATE_LIMIT_PAUSES, None):
            with self.clients.connection(
                provider, SLOT_WAIT_SECONDS + 30, priority=True, wait=SLOT_WAIT_SECONDS
            ) as client:
                assert client is not None
                try:
                    return client.balance()
                except ProviderError as exc:
                    if exc.code not in ("http_503", "http_429") or pause is None:
                        raise
                    logger.info(
                        "credit check rate limited: trying again", extra={"provider": provider}
                    )
            self.sleep(pause)
        raise AssertionError("unreachable")

    def check_all(self) -> dict[str, Any]:
        """Balance per configured provider: a number, or the reason there is none."""
        results: dict[str, Any] = {}
        for provider in self.clients.configured():
            client = self.clients.get(provider)
            if client is None:
                continue
            if not client.has_balance:
                if provider not in _said_no_api:
                    _said_no_api.add(provider)
                    logger.info(
                        "provider has no balance API; credit not checked",
                        extra={"provider": provider},
                    )
                results[provider] = "no balance API"
                continue
            try:
                balance = self._balance(provider)
            except NoConnectionSlot as exc:
                count("CreditCheckFailed", provider)
                logger.warning(
                    "credit check found no connection slot", extra={"provider": provider}
                )
                results[provider] = f"failed: {exc}"
                continue
            except ProviderError as exc:
                count("CreditCheckFailed", provider)
                logger.warning(
                    "credit check failed",
                    extra={"provider": provider, "code": exc.code, "reason": exc.reason},
                )
                results[provider] = f"failed: {exc.reason}"
                continue
            gauge("CreditBalance", balance, provider)
            if self.health is not None:  # senders skip a provider with no credit left
                self.health.set_credit(provider, balance)
            logger.info("credit balance", extra={"provider": provider, "balance": balance})
            results[provider] = balance
        return results
