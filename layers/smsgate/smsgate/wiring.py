"""Cold-start wiring: settings, store and services built once per process, on first use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .config import Settings, settings
from .store import Store


def provider_credentials(config: Settings) -> dict[str, Any]:
    """The provider secret (JSON), cached by Powertools for `secret_max_age` seconds so a
    rotated password is picked up without a redeploy."""
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(
        config.provider_secret, transform="json", max_age=config.secret_max_age
    )
    return value if isinstance(value, dict) else {}


@lru_cache(maxsize=1)
def store() -> Store:
    config = settings()
    return Store(
        config.messages_table,
        config.status_table,
        config.optouts_table,
        message_retention_days=config.message_retention_days,
        inbound_text_retention_days=config.inbound_text_retention_days,
    )


@lru_cache(maxsize=1)
def send_service() -> Any:
    from .sender import SendService

    config = settings()
    return SendService(config, store(), lambda: provider_credentials(config))


def callback_token(config: Settings) -> str:
    return str(provider_credentials(config).get("callback_token") or "")


@lru_cache(maxsize=1)
def callback_service() -> Any:
    from .callbacks import CallbackService

    config = settings()

    def keyword_replies() -> dict[str, str]:
        """keyword -> reply, from an SSM parameter the user edits without a redeploy."""
        if not config.keyword_replies_parameter:
            return {}
        from aws_lambda_powertools.utilities import parameters

        value = parameters.get_parameter(
            config.keyword_replies_parameter, transform="json", max_age=60
        )
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    return CallbackService(store(), keyword_replies, config.help_text)


@lru_cache(maxsize=1)
def credit_service() -> Any:
    from .clients import ClientPool
    from .credit import CreditService

    config = settings()
    return CreditService(ClientPool(config, lambda: provider_credentials(config)))


@lru_cache(maxsize=1)
def reconcile_service() -> Any:
    from .clients import ClientPool
    from .reconcile import ReconcileService, ReconcileSettings

    config = settings()
    return ReconcileService(
        store(),
        ClientPool(config, lambda: provider_credentials(config)),
        ReconcileSettings.from_env(),
    )
