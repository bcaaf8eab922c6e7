"""What the store reads and writes: the message record, a claim's result, a status change."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from ..status import Status


class MessageRecord(TypedDict, total=False):
    """One item of the messages table, as docs/contract.md (The message record) lists it.
    Every attribute is optional to the type: attributes are absent when they do not apply."""

    # identity and current status
    id: str
    direction: str  # "out" or "in"
    status: str
    status_at: str
    created_at: str
    updated_at: str
    # outbound: the message as queued
    to: str
    phone: str
    text: str
    subject: str
    express: bool
    commercial: bool
    sender: str
    # outbound: its way out
    provider: str
    provider_attempts: list[dict[str, Any]]
    route: str
    provider_message_id: str
    segments: int
    cost_estimate: Any  # Decimal
    sent_at: str
    error_code: str
    error: str
    last_attempt_at: str
    not_before: str
    schedule_name: str
    dead_letter_reason: str
    dead_lettered_at: str
    reconciled_at: str
    attempts: int
    erased_at: str
    expires_at: int
    # inbound (and `from`, the sender: a Python keyword, so not declared here)
    kind: str
    keyword: str
    reply_to: str
    reply_to_provider_id: str
    received_at: str
    received_at_raw: str
    text_expires_at: str
    text_removed_at: str
    # internal: the sender's claim and the reconciliation index's keys
    lease: str
    lease_until: int
    pending: str
    pending_at: str


@dataclass(frozen=True)
class Claim:
    """The result of claiming a message id for sending."""

    won: bool
    lease: str = ""
    item: MessageRecord | None = None  # the record as the claim left it (when won)
    existing: MessageRecord | None = None  # the record as it was (when lost)


@dataclass(frozen=True)
class Transition:
    """One status change for `Store.advance`.

    - `status`, `source` (who says so: "send", "dlr", "reconcile", ...) and `raw` (the
      provider's own code) make the history item;
    - `attrs` are recorded with it; `clear` names attributes that no longer hold (a retry's
      error, once the message is sent);
    - `lease`: the sender's lease, released by the change;
    - `create`: the record to make when the id is new (a message that fails before it was
      ever claimed); without it the record must exist and hold a lower status;
    - `extra_history`: earlier steps (status, when, source) written with it (a receipt that
      says delivered before its `sent` was recorded);
    - `expect_provider`: only a message of that provider moves (receipts);
    - `reconcile=False`: a waiting status that leaves the reconciliation index (it has given
      up on the message; a late receipt still settles it);
    - `also`: other writes that stand or fall with the change (`opt_out_write`,
      `opt_in_write`), so an opt-out and the message that caused it are stored together;
    - `only_from`, `unleased`: the change applies only from these statuses, and only while no
      sender holds the lease (a cancel never races a send).
    """

    status: Status
    source: str
    raw: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)
    lease: str | None = None
    create: Mapping[str, Any] | None = None
    extra_history: Sequence[tuple[Status, str, str]] = ()
    expect_provider: str | None = None
    reconcile: bool = True
    clear: Sequence[str] = ()
    also: Sequence[Mapping[str, Any]] = ()
    # Only from these statuses, and only while no sender holds the message (a cancel).
    only_from: Sequence[str] = ()
    unleased: bool = False
