"""The scheduled credit check (issue 5): every configured provider's balance as a metric.

`CreditBalance` (dimension `Provider`) feeds the low-credit alarms, which treat missing data
as breaching: a check that stops running alarms too. Club Texting's document has no balance
API, so it is skipped — said once per cold start, not as an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .clients import ClientPool
from .observability import count, gauge, logger
from .providers import ProviderError

if TYPE_CHECKING:
    from .health import HealthBoard

_said_no_api: set[str] = set()


class CreditService:
    def __init__(self, clients: ClientPool, health: HealthBoard | None = None) -> None:
        self.clients, self.health = clients, health

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
                balance = client.balance()
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
