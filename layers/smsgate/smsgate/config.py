"""Settings: read from the environment once per cold start and validated (the functions'
environment: docs/contract.md)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from .providers import DEFAULT_PROVIDER, PROVIDERS
from .validation import summarise

DEFAULT_URLS = {name: cls.default_url for name, cls in PROVIDERS.items()}
DEFAULT_WINDOWS = "mon-fri 08:00-20:00; sat 10:00-15:00"
DEFAULT_HELP = "smsgate: reply STOP to stop receiving messages, START to receive them again."


class ConfigError(RuntimeError):
    """The function's environment is incomplete or wrong: fail the cold start loudly."""


class Settings(BaseModel):
    messages_table: str = Field(min_length=1)
    status_table: str = Field(min_length=1)
    optouts_table: str = Field(min_length=1)
    provider_secret: str = Field(min_length=1)
    default_provider: str = DEFAULT_PROVIDER
    provider_urls: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_URLS))
    commercial_windows: str = DEFAULT_WINDOWS
    send_queue_url: str | None = None
    send_queue_arn: str | None = None
    # The providers' lanes (template.yaml <Provider>LaneQueue): provider -> queue URL. Without
    # them the send function sends straight from the send queue.
    lane_urls: dict[str, str] = Field(default_factory=dict)
    send_parallelism: int = Field(default=5, ge=1, le=10)
    hold_schedule_group: str | None = None
    hold_scheduler_role_arn: str | None = None
    connect_timeout: float = Field(default=3.05, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    secret_max_age: int = Field(default=300, ge=0)
    keyword_replies_parameter: str | None = None
    help_text: str = DEFAULT_HELP
    # Routing and provider health: the rules document (SSM) and the shared health table
    routing_parameter: str | None = None
    health_table: str | None = None
    # Retention (template parameters MessageRetentionDays / InboundTextRetentionDays)
    message_retention_days: int = Field(default=90, ge=1)
    inbound_text_retention_days: int = Field(default=30, ge=1)
    # The application events bus (EventsFunction; template.yaml EventBus)
    event_bus_name: str | None = None

    @field_validator("default_provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"unknown provider {value!r}; one of {sorted(PROVIDERS)}")
        return value


def from_env(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {
        "messages_table": env.get("MESSAGES_TABLE", ""),
        "status_table": env.get("STATUS_TABLE", ""),
        "optouts_table": env.get("OPTOUTS_TABLE", ""),
        "provider_secret": env.get("PROVIDER_SECRET", ""),
        "provider_urls": {
            name: env.get(f"{name.upper()}_URL") or url for name, url in DEFAULT_URLS.items()
        },
        "lane_urls": {
            name: env[f"{name.upper()}_LANE_URL"]
            for name in PROVIDERS
            if env.get(f"{name.upper()}_LANE_URL")
        },
    }
    optional = {
        "default_provider": "DEFAULT_PROVIDER",
        "commercial_windows": "COMMERCIAL_WINDOWS",
        "send_queue_url": "SEND_QUEUE_URL",
        "send_queue_arn": "SEND_QUEUE_ARN",
        "hold_schedule_group": "HOLD_SCHEDULE_GROUP",
        "hold_scheduler_role_arn": "HOLD_SCHEDULER_ROLE_ARN",
        "connect_timeout": "PROVIDER_CONNECT_TIMEOUT",
        "read_timeout": "PROVIDER_READ_TIMEOUT",
        "secret_max_age": "SECRET_MAX_AGE",
        "keyword_replies_parameter": "KEYWORD_REPLIES_PARAMETER",
        "help_text": "HELP_TEXT",
        "routing_parameter": "ROUTING_PARAMETER",
        "health_table": "HEALTH_TABLE",
        "send_parallelism": "SEND_PARALLELISM",
        "message_retention_days": "MESSAGE_RETENTION_DAYS",
        "inbound_text_retention_days": "INBOUND_TEXT_RETENTION_DAYS",
        "event_bus_name": "EVENT_BUS_NAME",
    }
    values.update({field: env[var] for field, var in optional.items() if env.get(var)})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(f"invalid smsgate configuration: {summarise(exc, 'settings')}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The settings of this process, read on first use (at cold start, not at import)."""
    return from_env()
