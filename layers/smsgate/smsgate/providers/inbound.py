"""What a provider's callbacks become: an inbound message or a receipt, as smsgate stores them.

Each provider package reads its own requests (`<name>/inbound.py`) into these values and serves
its routes (`<name>/routes.py`); `smsgate.callbacks.CallbackService` stores them, acts on STOP /
START / HELP and applies receipts without knowing which provider sent them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..phones import InvalidNumber
from ..status import Status


class BadCallback(ValueError):
    """The request is not what the provider sends: answered 400, nothing written."""


@dataclass(frozen=True)
class Inbound:
    """An inbound message. `dedupe_key`: what makes a resent copy the same message, when the
    provider's request carries it (else the same number and text within a short window are)."""

    provider: str
    kind: str  # the route's name: "keyword", "inbox", "mo"
    sender: str  # E.164
    text: str
    reply_to: str | None = None  # our outbound message id this answers
    reply_to_provider_id: str | None = None
    received_at: str | None = None  # the provider's own timestamp (ISO-8601 UTC), if given
    received_at_raw: str | None = None  # ... as the provider wrote it
    dedupe_key: str | None = None


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt. `status` None: a code the provider's document does not list
    (kept in the history, the status left as it is)."""

    provider: str
    code: str
    status: Status | None
    meaning: str
    client_id: str = ""  # our id, when the provider echoes it
    provider_id: str = ""  # the provider's id of the message


class CallbackSink(Protocol):
    """What a provider's routes hand their callbacks to (`smsgate.callbacks.CallbackService`)."""

    def receive(self, inbound: Inbound) -> bool:
        """Store it; False for a copy of one already stored."""

    def reply_for(self, inbound: Inbound) -> str:
        """What to text back ("" for nothing), before the provider's own limits."""

    def receipt(self, receipt: Receipt) -> str:
        """Apply it: `applied`, `ignored`, `noted` or `unmatched`."""


SinkSource = Callable[[], CallbackSink]


def lower_keys(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Query parameters by lower-case name: the providers vary the case (`from`/`From`)."""
    return {k.lower(): v for k, v in (params or {}).items() if isinstance(v, str)}


def sender_number(raw: str, read: Callable[[str], str]) -> str:
    """The sender as E.164, read by the provider's own number format; a BadCallback if not."""
    try:
        return read(raw)
    except InvalidNumber as exc:
        raise BadCallback(f"sender number is not valid: {exc}") from None


def keyword_or_inbox(
    provider: str, kind: str, params: Mapping[str, Any] | None, read: Callable[[str], str]
) -> Inbound:
    """A keyword submission (`PhoneNumber`, `Message`) or an inbox reply (`from`, `message`)
    as the GET-calling providers send them (names in any case)."""
    fields = lower_keys(params)
    number = fields.get("phonenumber") if kind == "keyword" else fields.get("from")
    number = number or fields.get("from") or fields.get("phonenumber")
    text = fields.get("message")
    if not number:
        raise BadCallback("missing sender number (PhoneNumber / from)")
    if text is None:
        raise BadCallback("missing message")
    return Inbound(provider, kind, sender_number(number, read), text)
