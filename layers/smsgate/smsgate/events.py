"""Application events: the tables' changes, read from their DynamoDB streams, put on
the stack's EventBridge bus with `source` `smsgate`.

The events come from the tables, never from extra calls on the send or callback paths, so a
message is never recorded without its event nor evented without its record:

- `Message Status Changed`: an outbound message whose `status` differs between the stream
  record's old and new image. A message's first status (`queued`, written by the claim) is its
  starting point, not a change: its first event is `queued -> <next>`. A record created in
  another status (a body that could never be sent is created `failed`) has `old_status` null.
  A duplicate, late or regressing receipt writes nothing (`Store.advance`'s condition), so it
  has no stream record and no event; neither has a write that leaves the status as it was
  (a lease, a retry's error, an erasure).
- `Inbound Message Received`: an inbound message (`direction` `in`) appearing in the table.
- `Opt-Out Changed`: a number appearing in the opt-outs table (`opted_out` true) or leaving it
  (false). Rewriting an existing opt-out (a second STOP) changes nothing and has no event. The
  table's REMOVE record does not say how the number came back (START or `smsgate optouts
  remove`), so `how` and `provider` are null then.

`event_id` is derived from the change itself (a hash of the message id and creation time with
the old and new status; of the number and its opt-out's `since` for opt-outs), not from the
stream record: a redelivered batch, or a second stream record of the same change, gives the
same id, and consumers drop duplicates by it. The details are versioned (`version`) pydantic
models whose JSON schemas are kept in `events/schemas/` (`python -m smsgate.events` rewrites
them).

Personal data: the bus is the application's interface, so inbound texts and numbers go on it;
status events carry neither. Nothing here logs a number or a text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from .observability import count, logger
from .providers import PROVIDER_NAMES
from .status import FINAL, Status
from .store import from_item, now_iso

PROVIDERS_IN_WORDS = f"{', '.join(PROVIDER_NAMES[:-1])} or {PROVIDER_NAMES[-1]}."


SOURCE = "smsgate"
VERSION = "1"
STATUS_CHANGED = "Message Status Changed"
INBOUND_RECEIVED = "Inbound Message Received"
OPT_OUT_CHANGED = "Opt-Out Changed"
PUT_EVENTS_LIMIT = 10  # entries per PutEvents call (EventBridge's limit)
# The error fields only mean something for these; a later receipt leaves a stale one behind.
ERROR_STATUSES = (FINAL - {Status.DELIVERED}) | {Status.UNKNOWN}


# --------------------------------------------------------------------------- details


class _Detail(BaseModel):
    # The schemas describe what is sent, where every field is present (defaults included).
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )

    version: Literal["1"] = Field(
        default="1", description="Version of this detail's schema; a breaking change adds one."
    )
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="The same for every delivery of the same change: drop duplicates by it.",
    )


class MessageStatusChanged(_Detail):
    """An outbound message's status moved forward (`detail-type` `Message Status Changed`)."""

    model_config = ConfigDict(title="MessageStatusChanged")

    message_id: str = Field(description="The message's id (the queue body's `id`).")
    provider: str | None = Field(description=PROVIDERS_IN_WORDS)
    old_status: Status | None = Field(
        description="The status before; null when the message was created in `new_status`."
    )
    new_status: Status
    error_code: str | None = Field(
        description="Provider's or smsgate's code, for failed, undelivered and unknown only."
    )
    error: str | None = Field(description="Readable reason, with `error_code`.")
    at: str | None = Field(description="When the status changed (UTC, ISO 8601).")


class InboundMessageReceived(_Detail):
    """A message from a phone reached smsgate (`detail-type` `Inbound Message Received`)."""

    model_config = ConfigDict(title="InboundMessageReceived")

    message_id: str = Field(description="smsgate's id of the inbound message.")
    provider: str | None
    kind: str | None = Field(description="keyword, inbox or mo: the callback it came through.")
    # `from` on the wire; `sender` in Python, where `from` is a keyword
    sender: str = Field(
        serialization_alias="from",
        validation_alias=AliasChoices("from", "sender"),
        description="The sender's number, E.164.",
    )
    keyword: str | None = Field(description="The first word, upper case.")
    text: str
    in_reply_to: str | None = Field(
        description="Our id of the outbound message this answers, when the provider says."
    )
    in_reply_to_provider_id: str | None = Field(
        description="The provider's id of the outbound message this answers, when it says."
    )
    at: str | None = Field(description="When smsgate stored it (UTC, ISO 8601).")


class OptOutChanged(_Detail):
    """A number opted out, or back in (`detail-type` `Opt-Out Changed`)."""

    model_config = ConfigDict(title="OptOutChanged")

    phone: str = Field(description="The number, E.164.")
    opted_out: bool = Field(description="true: opted out; false: opted back in.")
    how: str | None = Field(
        description="`STOP keyword`, `provider code <n>` or `manual`; null when opted back in."
    )
    provider: str | None = Field(description="Through which provider; null when opted back in.")
    at: str | None = Field(description="When it changed (UTC, ISO 8601).")


DETAILS: dict[str, type[_Detail]] = {
    STATUS_CHANGED: MessageStatusChanged,
    INBOUND_RECEIVED: InboundMessageReceived,
    OPT_OUT_CHANGED: OptOutChanged,
}
SCHEMA_FILES = {
    STATUS_CHANGED: f"message-status-changed.v{VERSION}.json",
    INBOUND_RECEIVED: f"inbound-message-received.v{VERSION}.json",
    OPT_OUT_CHANGED: f"opt-out-changed.v{VERSION}.json",
}


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON schema of each detail, as written to `events/schemas/`."""
    return {
        SCHEMA_FILES[kind]: model.model_json_schema(mode="serialization", by_alias=True)
        for kind, model in DETAILS.items()
    }


@dataclass(frozen=True)
class Event:
    detail_type: str
    detail: _Detail

    def entry(self, bus: str) -> dict[str, Any]:
        """The PutEvents entry."""
        return {
            "Source": SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail.model_dump(mode="json", by_alias=True)),
            "EventBusName": bus,
        }


# --------------------------------------------------------------------------- stream records


def _event_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _image(record: Mapping[str, Any], which: str) -> dict[str, Any] | None:
    raw = (record.get("dynamodb") or {}).get(which)
    return from_item(raw) if raw else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def table_name(record: Mapping[str, Any]) -> str:
    """`arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>` -> `<name>`."""
    arn = str(record.get("eventSourceARN") or "")
    _, _, rest = arn.partition(":table/")
    return rest.split("/", 1)[0]


def _record_time(record: Mapping[str, Any]) -> str:
    moment = (record.get("dynamodb") or {}).get("ApproximateCreationDateTime")
    if isinstance(moment, int | float):
        return now_iso(datetime.fromtimestamp(moment, UTC))
    return now_iso()


def message_event(record: Mapping[str, Any]) -> Event | None:
    """The event a messages-table stream record means, if any."""
    new = _image(record, "NewImage")
    if record.get("eventName") == "REMOVE" or not new or "status" not in new:
        return None  # expiry, erasure, or (moto) the bare key before an upsert's attributes
    old = _image(record, "OldImage") or {}
    message_id = str(new.get("id", ""))
    created = str(new.get("created_at", ""))
    if new.get("direction") == "in":
        if old.get("direction") == "in":
            return None  # a later write to a stored inbound message (text retention)
        return Event(
            INBOUND_RECEIVED,
            InboundMessageReceived(
                event_id=_event_id("inbound", message_id, created),
                message_id=message_id,
                provider=_text(new.get("provider")),
                kind=_text(new.get("kind")),
                sender=str(new.get("from", "")),
                keyword=_text(new.get("keyword")),
                text=str(new.get("text", "")),
                in_reply_to=_text(new.get("reply_to")),
                in_reply_to_provider_id=_text(new.get("reply_to_provider_id")),
                at=_text(new.get("created_at")),
            ),
        )
    old_status, new_status = _text(old.get("status")), str(new["status"])
    if old_status == new_status:
        return None
    if old_status is None and new_status == Status.QUEUED:
        return None  # where every message starts: its first change is the first event
    status = Status(new_status)
    with_error = status in ERROR_STATUSES
    return Event(
        STATUS_CHANGED,
        MessageStatusChanged(
            event_id=_event_id("status", message_id, created, old_status or "", new_status),
            message_id=message_id,
            provider=_text(new.get("provider")),
            old_status=Status(old_status) if old_status else None,
            new_status=status,
            error_code=_text(new.get("error_code")) if with_error else None,
            error=_text(new.get("error")) if with_error else None,
            at=_text(new.get("status_at")),
        ),
    )


def opt_out_event(record: Mapping[str, Any]) -> Event | None:
    """The event an opt-outs-table stream record means, if any."""
    new, old = _image(record, "NewImage"), _image(record, "OldImage")
    if new and "since" in new and not (old and "since" in old):
        phone, since = str(new["phone"]), str(new["since"])
        return Event(
            OPT_OUT_CHANGED,
            OptOutChanged(
                event_id=_event_id("optout", phone, since, "out"),
                phone=phone,
                opted_out=True,
                how=_text(new.get("how")),
                provider=_text(new.get("provider")),
                at=_text(new.get("updated_at") or since),
            ),
        )
    if record.get("eventName") == "REMOVE" and old and "since" in old:
        phone, since = str(old["phone"]), str(old["since"])
        return Event(
            OPT_OUT_CHANGED,
            OptOutChanged(
                event_id=_event_id("optout", phone, since, "in"),
                phone=phone,
                opted_out=False,
                how=None,
                provider=None,
                at=_record_time(record),
            ),
        )
    return None  # an opt-out rewritten (a second STOP), or (moto) the bare key of an upsert


# --------------------------------------------------------------------------- publishing


class NotPublished(Exception):
    """This record's event (or an earlier one's in the batch) did not reach the bus."""


@dataclass(frozen=True)
class Published:
    """The outcome of one batch: the stream sequence numbers that must come back."""

    failed: frozenset[str]
    events: int

    def check(self, record: Any) -> None:
        """Powertools' record handler: raise for a record that must be retried."""
        sequence = str(record.dynamodb.sequence_number)
        if sequence in self.failed:
            raise NotPublished(f"stream record {sequence}: not published, retried in order")


def _sequence(record: Mapping[str, Any]) -> str:
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))


class Publisher:
    """Stream records -> events -> PutEvents, in the records' order, at most 10 per call.

    Lambda retries a stream batch from its lowest failed sequence number, so the first record
    whose event could not be put fails together with every record after it (none of them is
    put); within the chunk that failed, the entries EventBridge took before it are put again on
    the retry, with the same `event_id`s.
    """

    def __init__(
        self,
        events_client: Any,
        bus: str,
        messages_table: str,
        optouts_table: str,
    ) -> None:
        self.client, self.bus = events_client, bus
        self.readers: dict[str, Callable[[Mapping[str, Any]], Event | None]] = {
            messages_table: message_event,
            optouts_table: opt_out_event,
        }

    def event_for(self, record: Mapping[str, Any]) -> Event | None:
        reader = self.readers.get(table_name(record))
        return reader(record) if reader else None

    def publish(self, records: Sequence[Mapping[str, Any]]) -> Published:
        stop = len(records)  # index of the first record that must come back
        planned: list[tuple[int, Event]] = []
        for index, record in enumerate(records):
            try:
                event = self.event_for(record)
            except Exception as exc:  # a record we cannot read: it and the rest come back
                logger.error(
                    "stream record not readable",
                    extra={"sequence": _sequence(record), "error": type(exc).__name__},
                )
                stop = index
                break
            if event is not None:
                planned.append((index, event))
        put = 0
        for start in range(0, len(planned), PUT_EVENTS_LIMIT):
            chunk = planned[start : start + PUT_EVENTS_LIMIT]
            failed_at = self._put(chunk)
            put += failed_at
            if failed_at < len(chunk):
                stop = min(stop, chunk[failed_at][0])
                break
        count("EventsPublished", value=put)
        failed = frozenset(_sequence(r) for r in records[stop:])
        if failed:
            count("EventsNotPublished", value=len(failed))
            logger.warning(
                "events not published: the records come back",
                extra={
                    "records": len(records),
                    "failed": len(failed),
                    "from": _sequence(records[stop]),
                },
            )
        return Published(failed, put)

    def _put(self, chunk: Sequence[tuple[int, Event]]) -> int:
        """Put one chunk; return how many of its entries went in before the first failure."""
        try:
            answer = self.client.put_events(Entries=[event.entry(self.bus) for _, event in chunk])
        except Exception as exc:  # throttled after the client's retries, network, permissions
            logger.warning("PutEvents failed", extra={"error": type(exc).__name__})
            return 0
        for position, result in enumerate(answer.get("Entries", [])):
            if result.get("ErrorCode"):
                logger.warning(
                    "event refused by EventBridge",
                    extra={"code": result.get("ErrorCode"), "reason": result.get("ErrorMessage")},
                )
                return position
        if int(answer.get("FailedEntryCount", 0) or 0) or len(answer.get("Entries", [])) < len(
            chunk
        ):
            return 0  # an answer that does not account for every entry: put them again
        return len(chunk)


def main() -> None:
    """`python -m smsgate.events [DIR]`: write the detail schemas (default events/schemas)."""
    import sys
    from pathlib import Path

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "events/schemas")
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        print(folder / name)


if __name__ == "__main__":
    main()
