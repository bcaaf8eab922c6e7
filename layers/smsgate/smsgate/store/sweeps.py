"""The store's reads and writes for retention and erasure: indexed sweeps, never a hot path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..retries import with_retries
from ..timestamps import now_iso
from .expressions import Update, absent, at_most, record_exists, to_item
from .tables import PHONE_INDEX, TEXT_EXPIRY_INDEX, Tables, from_item, paged, update_if


class Sweeps(Tables):
    # --- erasure ------------------------------------------------------------------------------

    def ids_of_phone(self, phone: str) -> list[str]:
        """The id of every message of `phone` (E.164): a Query on the ByPhone index."""
        return [
            str(item["id"]["S"])
            for item in paged(
                self.db.query,
                TableName=self.messages,
                IndexName=PHONE_INDEX,
                KeyConditionExpression="#phone = :phone",
                ExpressionAttributeNames={"#phone": "phone"},
                ExpressionAttributeValues=to_item({":phone": phone}),
            )
        ]

    def delete_message(self, message_id: str) -> int:
        """Delete a message and its status history; returns how many history items went."""
        history = self.db.query  # the history's keys only
        keys = [
            from_item(item)
            for item in paged(
                history,
                TableName=self.status,
                KeyConditionExpression="message_id = :m",
                ExpressionAttributeValues={":m": {"S": message_id}},
                ProjectionExpression="message_id, #at",
                ExpressionAttributeNames={"#at": "at"},
                ConsistentRead=True,
            )
        ]
        for key in keys:
            with_retries(self.db.delete_item, TableName=self.status, Key=to_item(key))
        with_retries(self.db.delete_item, TableName=self.messages, Key={"id": {"S": message_id}})
        return len(keys)

    def anonymise(self, message_id: str, attributes: Iterable[str], at: str) -> bool:
        """Remove `attributes` from a message and set `erased_at`; False when it is gone."""
        update = Update().set("erased_at", at).remove(*attributes).when(record_exists)
        return update_if(self.db, **update.request(self.messages, {"id": message_id}))

    def put_audit(self, entry: Mapping[str, Any]) -> None:
        """An audit record in the status table (it carries no number)."""
        with_retries(self.db.put_item, TableName=self.status, Item=to_item(entry))

    # --- inbound text retention ---------------------------------------------------------------

    def texts_due(self, moment: str, page_size: int) -> Iterator[dict[str, Any]]:
        """The key of every inbound message whose text is due at `moment`, oldest first: a
        Query on the ByInboundTextExpiry index, a page at a time."""
        for item in paged(
            self.db.query,
            TableName=self.messages,
            IndexName=TEXT_EXPIRY_INDEX,
            KeyConditionExpression="#d = :in AND #t <= :now",
            ExpressionAttributeNames={"#d": "direction", "#t": "text_expires_at"},
            ExpressionAttributeValues=to_item({":in": "in", ":now": moment}),
            Limit=page_size,
        ):
            yield {"id": from_item(item)["id"]}

    def strip_text(self, message_id: str, moment: str) -> bool:
        """Remove one message's text if it is still due; False when someone got there first
        (a concurrent run, or an erasure)."""
        update = (
            Update()
            .set("text_removed_at", now_iso())
            .remove("text", "text_expires_at")
            .when(at_most("text_expires_at", moment))
        )
        return update_if(self.db, **update.request(self.messages, {"id": message_id}))

    # --- backfill -----------------------------------------------------------------------------

    def without_expiry(self, table: str) -> Iterator[dict[str, Any]]:
        """Every item of `table` that has no `expires_at` (a Scan: operator credentials)."""
        for item in paged(
            self.db.scan, TableName=table, FilterExpression="attribute_not_exists(expires_at)"
        ):
            yield from_item(item)

    def set_unless_expiring(
        self, table: str, key: Mapping[str, Any], attrs: Mapping[str, Any]
    ) -> bool:
        """Set `attrs` unless the item has `expires_at` by now (a later write, or a second
        backfill, got there first)."""
        update = Update().set_all(attrs).when(absent("expires_at"))
        return update_if(self.db, **update.request(table, key))
