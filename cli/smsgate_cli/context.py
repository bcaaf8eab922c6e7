"""The stack's collaborators for one CLI run: AWS clients, the store, the secret, providers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar

from smsgate.producer import Producer
from smsgate.providers import DEFAULT_PROVIDER, PROVIDERS, ProviderClient, ProviderError, Transport
from smsgate.routing import RoutingConfig
from smsgate.store import Store

from .config import Target

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
T = TypeVar("T")
LOCAL_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
}


RATE_LIMIT_CODES = frozenset({"http_429", "http_503"})  # not processed: safe to ask again
RATE_LIMIT_TRIES = 4
RATE_LIMIT_WAIT = 1.0
SLOT_WAIT = 30.0  # seconds an account call waits for a connection slot of a limited provider


def patiently(call: Callable[[], T]) -> T:
    """Run a provider account call, asking again while the provider rate-limits (HTTP 429/503
    mean the request was not processed, so even a purchase is safe to repeat)."""
    for attempt in range(RATE_LIMIT_TRIES):
        try:
            return call()
        except ProviderError as exc:
            if exc.code not in RATE_LIMIT_CODES or attempt == RATE_LIMIT_TRIES - 1:
                raise
            time.sleep(RATE_LIMIT_WAIT * (attempt + 1))
    raise AssertionError("unreachable")


class Failure(Exception):
    """The command could not do what was asked, or refused it (exit 1). `details` go into the
    JSON error document with `--json`."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class Usage(Exception):
    """The command was given something it cannot use (exit 2, as argparse's errors)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class Context:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._clients: dict[str, Any] = {}

    @cached_property
    def session(self) -> Any:
        import boto3

        kwargs: dict[str, Any] = {"region_name": self.target.region}
        if self.target.profile:
            kwargs["profile_name"] = self.target.profile
        elif self.target.endpoint_url:
            kwargs.update(LOCAL_CREDENTIALS)  # moto server takes any; AWS is never reached
        return boto3.Session(**kwargs)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            self._clients[service] = self.session.client(
                service,
                endpoint_url=self.target.endpoint_url,
                config=Config(
                    retries={"mode": "standard", "max_attempts": 3},
                    connect_timeout=5,
                    read_timeout=20,
                ),
            )
        return self._clients[service]

    @cached_property
    def store(self) -> Store:
        t = self.target
        return Store(t.messages_table, t.status_table, t.optouts_table, self.client("dynamodb"))

    @cached_property
    def routing(self) -> RoutingConfig:
        """The routing rules in force (the stack's SSM parameter; none without one)."""
        name = self.target.routing_parameter
        if not name:
            return RoutingConfig()
        return Producer.rules_from_parameter(name, self.client("ssm"))

    @cached_property
    def producer(self) -> Producer:
        """The send queue's producer: checks each message by the sender's rules (the routing
        rules' destinations and candidates, and each candidate provider's own rules)."""
        return Producer(
            self.target.send_queue_url,
            sqs=self.client("sqs"),
            routing=lambda: self.routing,
            default_provider=self.target.default_provider or DEFAULT_PROVIDER,
        )

    @cached_property
    def secret(self) -> dict[str, Any]:
        """The provider secret's JSON value. Never printed."""
        answer = self.client("secretsmanager").get_secret_value(SecretId=self.target.secret_arn)
        try:
            value = json.loads(answer.get("SecretString") or "")
        except json.JSONDecodeError:
            raise Failure("the provider secret is not JSON") from None
        if not isinstance(value, dict):
            raise Failure("the provider secret is not a JSON object")
        return value

    def configured_providers(self) -> list[str]:
        return [name for name in PROVIDERS if isinstance(self.secret.get(name), dict)]

    def patiently(self, client: ProviderClient, call: Callable[[], T]) -> T:
        """A provider account call (`patiently`). A provider that limits the account's
        simultaneous connections is called through one of the deployment's slots for it,
        shared with the senders and the credit check (`smsgate/budget.py`), and the
        connection is closed after, as that provider asks."""
        limit = client.max_connections
        if not limit or not self.target.health_table:
            return patiently(call)
        from smsgate.budget import ConnectionBudget

        budget = ConnectionBudget(
            self.client("dynamodb"), self.target.health_table, client.name, limit
        )
        slot = budget.acquire(f"cli-{uuid.uuid4().hex[:12]}", 120, priority=True, wait=SLOT_WAIT)
        if slot is None:
            raise Failure(
                f"every {client.name} connection is in use (its document allows {limit} at "
                f"once for the account): try again in a minute"
            )
        try:
            return patiently(call)
        finally:
            client.transport.close()
            budget.release(slot)

    def provider(self, name: str) -> ProviderClient:
        creds = self.secret.get(name)
        if not isinstance(creds, dict) or not creds.get("user"):
            raise Failure(f"{name} is not configured (no credentials in the provider secret)")
        url = self.target.provider_urls[name]
        transport = Transport(url, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        return PROVIDERS[name](url, str(creds["user"]), str(creds.get("pass", "")), transport)
