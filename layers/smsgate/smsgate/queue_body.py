"""The send queue's message body: the contract producers keep (docs/contract.md, The send
queue body), and how one SQS body becomes a message to send or a bad body recorded `failed`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .phones import InvalidNumber, to_e164
from .providers import PROVIDER_NAMES, PROVIDERS, TEST_NUMBERS, OutboundSms
from .validation import summarise

MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$", strict=True)]
Text = Annotated[str, StringConstraints(strict=True)]
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# `send_at`: from one minute to one year ahead of when smsgate first sees the message.
SEND_AT_MIN_SECONDS = 60
SEND_AT_MAX_DAYS = 365
MAX_VALIDITY_SECONDS = SEND_AT_MAX_DAYS * 86_400


def _iso_text(value: Any) -> Any:
    # A JSON string: pydantic would also read a number as epoch seconds.
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", "Input should be an ISO 8601 date and time with an offset"
        )
    return value


When = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


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
    send_at: When | None = None  # not before; held outside the queue until then
    valid_until: When | None = None  # never sent after
    validity_seconds: Annotated[StrictInt, Field(gt=0, le=MAX_VALIDITY_SECONDS)] | None = None

    @model_validator(mode="after")
    def _one_validity(self) -> QueueMessage:
        if self.valid_until is not None and self.validity_seconds is not None:
            raise ValueError("give valid_until or validity_seconds, not both")
        if self.send_at and self.valid_until and self.valid_until <= self.send_at:
            raise ValueError("valid_until is not after send_at")
        return self

    def deadline(self, created_at: datetime) -> datetime | None:
        """When the message stops being worth sending: `valid_until`, or `validity_seconds`
        counted from `send_at` (else from `created_at`, when smsgate first saw it)."""
        if self.valid_until is not None:
            return self.valid_until
        if self.validity_seconds is not None:
            return (self.send_at or created_at) + timedelta(seconds=self.validity_seconds)
        return None

    def timing_problem(self, now: datetime) -> str | None:
        """What is wrong with the message's times when smsgate first sees it at `now`
        (None: nothing). Checked once: a held message that comes back later is on time."""
        if self.send_at is not None:
            ahead = (self.send_at - now).total_seconds()
            if ahead < 0:
                return "send_at: is in the past"
            if ahead < SEND_AT_MIN_SECONDS:
                return "send_at: is less than a minute ahead (send it without send_at)"
            if ahead > SEND_AT_MAX_DAYS * 86_400:
                return f"send_at: is more than {SEND_AT_MAX_DAYS} days ahead"
        if self.valid_until is not None and self.valid_until <= now:
            return "valid_until: is in the past"
        return None


@dataclass(frozen=True)
class BadBody:
    """A body that can never be sent: recorded `failed` under `id`, not retried."""

    id: str
    reason: str
    provider: str | None = None


@dataclass(frozen=True)
class Cancel:
    """A cancel body (`{"cancel": "<id>"}`): take back a message that has not gone out."""

    id: str


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


def parse(body: str, sqs_message_id: str, default_provider: str) -> Job | BadBody | Cancel:
    """Read one SQS body; every way it can be wrong becomes a BadBody with a clear reason."""
    fallback_id = sqs_message_id.replace("-", "")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return BadBody(fallback_id, "body is not JSON")
    if not isinstance(data, dict):
        return BadBody(fallback_id, "body is not a JSON object")
    if "cancel" in data:
        target = data["cancel"]
        if set(data) != {"cancel"} or not isinstance(target, str):
            return BadBody(fallback_id, 'invalid cancel: a cancel body is {"cancel": "<id>"}')
        if not MESSAGE_ID.fullmatch(target):
            return BadBody(fallback_id, "invalid cancel: cancel is not a message id")
        return Cancel(target)
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
