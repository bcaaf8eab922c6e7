"""The three tables the store writes (template.yaml's MessagesTable, StatusTable, OptOutsTable),
their indexes, and what every new item gets for retention and erasure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.config import Config
from botocore.exceptions import ClientError

from ..retries import with_retries
from ..status import Status
from ..timestamps import now_iso

_de = TypeDeserializer()
BATCH_GET_LIMIT = 100
PROVIDER_ID_INDEX = "ByProviderMessageId"  # template.yaml: MessagesTable's receipt index
PENDING_INDEX = "ByPendingStatus"  # template.yaml: MessagesTable's reconciliation index
PHONE_INDEX = "ByPhone"  # template.yaml: MessagesTable's erasure index (phone, created_at)
TEXT_EXPIRY_INDEX = "ByInboundTextExpiry"  # (direction, text_expires_at): inbound text sweep
DAY = 86_400
DEFAULT_MESSAGE_RETENTION_DAYS = 90
DEFAULT_INBOUND_TEXT_RETENTION_DAYS = 30
CLAIMABLE = (Status.QUEUED.value, Status.SCHEDULED.value)
# Statuses that wait for an outcome: while a message holds one, `pending` (= the status) and
# `pending_at` put it in the sparse reconciliation index; a final status takes it out.
WAITING = frozenset({Status.SENT, Status.UNKNOWN})


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed form -> plain values."""
    return {k: _de.deserialize(v) for k, v in item.items()}


def update_if(db: Any, **request: Any) -> bool:
    """One conditional UpdateItem: False, having written nothing, when its condition does not
    hold; a transient failure is tried again (`retries`), any other error is raised. A replay
    of an update that was applied with its answer lost finds its condition gone: False."""
    return _conditional(db.update_item, request)


def put_if(db: Any, **request: Any) -> bool:
    """`update_if` for a conditional PutItem."""
    return _conditional(db.put_item, request)


def _conditional(call: Any, request: Mapping[str, Any]) -> bool:
    try:
        with_retries(call, **request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def paged(call: Any, **request: Any) -> Any:
    """Every item of a Query or Scan, a page at a time (each page retried on its own)."""
    while True:
        page = with_retries(call, **request)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        request = {**request, "ExclusiveStartKey": page["LastEvaluatedKey"]}


class Tables:
    """The store's client and tables, and the retention every new item gets."""

    def __init__(
        self,
        messages_table: str,
        status_table: str,
        optouts_table: str,
        client: Any | None = None,
        *,
        message_retention_days: int = DEFAULT_MESSAGE_RETENTION_DAYS,
        inbound_text_retention_days: int = DEFAULT_INBOUND_TEXT_RETENTION_DAYS,
    ) -> None:
        self.messages, self.status, self.optouts = messages_table, status_table, optouts_table
        # Retention (DynamoDB TTL on `expires_at`, epoch seconds): every message and history
        # item the store writes expires this many days after it was written.
        self.message_retention_days = message_retention_days
        self.inbound_text_retention_days = inbound_text_retention_days
        # No client-side parameter validation: every request here is built by this package
        # (and its tests run against DynamoDB's own validation in moto); botocore's
        # validation of each transaction was a measurable share of a send's CPU.
        self.db = client or boto3.client(
            "dynamodb",
            config=Config(
                retries={"mode": "standard", "max_attempts": 5}, parameter_validation=False
            ),
        )

    def expires_at(self, now: float | None = None) -> int:
        """When an item written now expires (TTL attribute `expires_at`)."""
        moment = datetime.now(UTC).timestamp() if now is None else now
        return int(moment) + self.message_retention_days * DAY

    def text_expires_at(self, now: float | None = None) -> str:
        """When an inbound message's text is removed (`smsgate retention --apply`): a
        sortable timestamp (the ByInboundTextExpiry index's range key, a string)."""
        moment = datetime.now(UTC).timestamp() if now is None else now
        days = min(self.inbound_text_retention_days, self.message_retention_days)
        return now_iso(datetime.fromtimestamp(moment + days * DAY, UTC))

    def personal(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes a new message gets for retention and erasure: `phone` (the number
        of `to` or `from`, for the ByPhone index), `expires_at`, and for inbound text
        `text_expires_at`."""
        extra: dict[str, Any] = {"expires_at": self.expires_at()}
        phone = record.get("to") or record.get("from")
        if phone:
            extra["phone"] = phone
        if record.get("direction") == "in" and record.get("text"):
            extra["text_expires_at"] = self.text_expires_at()
        return extra

    def with_personal(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """`record` with `personal`'s attributes it does not set itself."""
        return {**record, **{k: v for k, v in self.personal(record).items() if k not in record}}
