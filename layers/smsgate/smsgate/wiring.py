"""Cold-start wiring: settings, store and services built once per process, on first use."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from .config import Settings, settings
from .store import Store


def provider_credentials(config: Settings, *, fresh: bool = False) -> dict[str, Any]:
    """The provider secret (JSON), cached by Powertools for `secret_max_age` seconds so a
    rotated password is picked up without a redeploy (`fresh`: read it now)."""
    from aws_lambda_powertools.utilities import parameters

    value = parameters.get_secret(
        config.provider_secret,
        transform="json",
        max_age=config.secret_max_age,
        force_fetch=fresh,
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


class RoutingSource:
    """The routing rules from their SSM parameter (cached by Powertools for a minute, so an
    edit takes effect without a redeploy). A document that fails validation is reported and
    the last good one kept — a typo must not stop sending."""

    def __init__(self, parameter: str | None) -> None:
        from .routing import RoutingConfig

        self.parameter = parameter
        self.good = RoutingConfig()
        self._raw: Any = None  # the document `good` was parsed from

    def __call__(self) -> Any:
        if not self.parameter:
            return self.good
        from aws_lambda_powertools.utilities import parameters

        from .observability import count, logger
        from .routing import RoutingConfig, RoutingError

        try:
            raw = parameters.get_parameter(self.parameter, transform="json", max_age=60)
            # Powertools' cache gives the same object for a minute: it is validated (and an
            # invalid one reported) once per fetch, not on every call
            if raw is not self._raw:
                self._raw = raw
                self.good = RoutingConfig.parse(raw)
        except (RoutingError, parameters.exceptions.TransformParameterError) as exc:
            count("RoutingRulesInvalid")
            logger.error(
                "routing rules rejected; keeping the last good ones", extra={"error": str(exc)}
            )
        return self.good


@lru_cache(maxsize=1)
def routing() -> Any:
    return RoutingSource(settings().routing_parameter)


@lru_cache(maxsize=1)
def health_board() -> Any:
    """Provider health shared through the health table (None when the stack has none)."""
    config = settings()
    if not config.health_table:
        return None
    from .health import HealthBoard

    source = routing()
    return HealthBoard(config.health_table, store().db, lambda: source().health)


@lru_cache(maxsize=1)
def send_service() -> Any:
    from .send import SendService

    config = settings()
    return SendService(
        config,
        store(),
        lambda: provider_credentials(config),
        routing=routing(),
        health=health_board(),
    )


def callback_tokens(config: Settings, *, fresh: bool = False) -> Any:
    """The callback tokens (`smsgate.tokens.CallbackTokens`) from the provider secret."""
    from .tokens import CallbackTokens

    return CallbackTokens.from_secret(provider_credentials(config, fresh=fresh))


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
    pool = ClientPool(config, lambda: provider_credentials(config), lambda: store().db)
    return CreditService(pool, health_board())


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


@lru_cache(maxsize=1)
def event_publisher() -> Any:
    import boto3
    from botocore.config import Config

    from .config import ConfigError
    from .events import Publisher

    config = settings()
    if not config.event_bus_name:
        raise ConfigError("invalid smsgate configuration: EVENT_BUS_NAME is not set")
    client = boto3.client("events", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    return Publisher(client, config.event_bus_name, config.messages_table, config.optouts_table)


BUILT_ONCE = (
    store,
    routing,
    health_board,
    send_service,
    callback_service,
    credit_service,
    reconcile_service,
    event_publisher,
)


def new_instance() -> None:
    """Forget everything built once per process, as a new Lambda instance would start: the
    settings, the services, the send pools, Powertools' cached secret and parameters. (The
    tests, the local stack and the benchmarks start each instance with it.)"""
    from aws_lambda_powertools.utilities import parameters

    from .config import settings as settings_of_this_process
    from .send.batch import close_executors

    close_executors()
    settings_of_this_process.cache_clear()
    for built in BUILT_ONCE:
        built.cache_clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]
