"""The send queue's message body: the contract producers keep (docs/contract.md, The send
queue body), and how one SQS body becomes a message to send or a bad body recorded `failed`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from .phones import InvalidNumber, to_e164
from .providers import PROVIDER_NAMES, PROVIDERS, TEST_NUMBERS, OutboundSms
from .validation import summarise

MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$", strict=True)]
Text = Annotated[str, StringConstraints(strict=True)]
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _known_provider(value: str) -> str:
    if value not in PROVIDERS:  # worded as pydantic words a Literal's refusal
        names = [repr(n) for n in PROVIDER_NAMES]
        expected = f"{', '.join(names[:-1])} or {names[-1]}"
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )
    return value


ProviderName = Annotated[
    StrictStr,
    AfterValidator(_known_provider),
    WithJsonSchema({"type": "string", "enum": list(PROVIDER_NAMES)}),
]


class QueueMessage(BaseModel):
    """The send queue's message body (docs/contract.md, The send queue body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: Text
    text: Text
    provider: ProviderName | None = None
    id: MessageId | None = None
    subject: Text = ""
    express: StrictBool = False
    commercial: StrictBool = False
    sender: Text | None = None
    failover: StrictBool | None = None  # None: allowed unless `provider` is named


@dataclass(frozen=True)
class BadBody:
    """A body that can never be sent: recorded `failed` under `id`, not retried."""

    id: str
    reason: str
    provider: str | None = None


@dataclass(frozen=True)
class Job:
    """One valid message of the batch, ready to claim."""

    id: str
    provider: str
    to: str
    message: QueueMessage = field(repr=False)
    body: dict[str, Any] = field(repr=False)

    def sms(self) -> OutboundSms:
        m = self.message
        return OutboundSms(self.id, self.to, m.text, m.subject, m.express, m.commercial, m.sender)


def parse(body: str, sqs_message_id: str, default_provider: str) -> Job | BadBody:
    """Read one SQS body; every way it can be wrong becomes a BadBody with a clear reason."""
    fallback_id = sqs_message_id.replace("-", "")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return BadBody(fallback_id, "body is not JSON")
    if not isinstance(data, dict):
        return BadBody(fallback_id, "body is not a JSON object")
    raw_id = data.get("id")
    usable_id = raw_id if isinstance(raw_id, str) and MESSAGE_ID.fullmatch(raw_id) else None
    message_id = usable_id or fallback_id
    provider_hint = data.get("provider") if data.get("provider") in PROVIDERS else None
    try:
        message = QueueMessage.model_validate(data)
    except ValidationError as exc:
        return BadBody(message_id, f"invalid message: {summarise(exc)}", provider_hint)
    provider = message.provider or default_provider
    try:
        own_test_number = TEST_NUMBERS.get(message.to) == provider
        to = message.to if own_test_number else to_e164(message.to)
    except InvalidNumber as exc:
        return BadBody(message_id, f"invalid message: to: {exc}", provider)
    return Job(message_id, provider, to, message, {**data, "id": message_id})
