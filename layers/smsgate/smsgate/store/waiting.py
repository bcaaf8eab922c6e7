"""Messages waiting for an outcome (sent, unknown), receipts, and the status history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..retries import with_retries
from ..status import Status
from ..timestamps import now_iso
from .expressions import Update, absent, put_request, to_item, waiting_in
from .tables import PENDING_INDEX, PROVIDER_ID_INDEX, Tables, from_item, paged, put_if, update_if


class Waiting(Tables):
    def pending_page(
        self,
        status: Status,
        before: str,
        limit: int,
        start: Mapping[str, Any] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page (at most `limit` items, oldest first) of the messages waiting in `status`
        since before `before`: a Query on the sparse reconciliation index, never a scan.
        Returns the items (the index's attributes) and the key to continue from, if any."""
        kwargs: dict[str, Any] = {
            "TableName": self.messages,
            "IndexName": PENDING_INDEX,
            "KeyConditionExpression": "#pending = :status AND #pending_at < :before",
            "ExpressionAttributeNames": {"#pending": "pending", "#pending_at": "pending_at"},
            "ExpressionAttributeValues": to_item({":status": status.value, ":before": before}),
            "ScanIndexForward": True,
            "Limit": limit,
        }
        if start:
            kwargs["ExclusiveStartKey"] = dict(start)
        page = with_retries(self.db.query, **kwargs)
        items = [from_item(i) for i in page.get("Items", [])]
        return items, page.get("LastEvaluatedKey")

    def recheck_later(self, message_id: str, status: Status, at: str) -> bool:
        """Keep a waiting message in the reconciliation index with its turn moved to `at`
        (it comes back once `at` is old enough). False when it no longer waits in `status`."""
        update = Update().set("pending_at", at).set("reconciled_at", at)
        return self._update_waiting(message_id, status, update)

    def stop_reconciling(self, message_id: str, status: Status, attrs: Mapping[str, Any]) -> bool:
        """Take a message that keeps its waiting `status` out of the reconciliation index,
        recording `attrs` (e.g. the reason). No status change, so no history item. False when
        it no longer waits in `status` (a receipt settled it meanwhile)."""
        update = Update().set_all(attrs).remove("pending", "pending_at")
        return self._update_waiting(message_id, status, update)

    def _update_waiting(self, message_id: str, status: Status, update: Update) -> bool:
        update.when(waiting_in(status.value))
        return update_if(self.db, **update.request(self.messages, {"id": message_id}))

    def find_by_provider_id(self, provider: str, provider_message_id: str) -> str | None:
        """Our id of the message the provider calls `provider_message_id` (receipt index)."""
        if not provider_message_id:
            return None
        page = with_retries(
            self.db.query,
            TableName=self.messages,
            IndexName=PROVIDER_ID_INDEX,
            KeyConditionExpression="provider_message_id = :pid AND provider = :p",
            ExpressionAttributeValues=to_item({":pid": provider_message_id, ":p": provider}),
            ProjectionExpression="id",
            Limit=1,
        )
        items = page.get("Items", [])
        return str(items[0]["id"]["S"]) if items else None

    def keep_unmatched_receipt(
        self, provider: str, provider_message_id: str, client_id: str, code: str
    ) -> bool:
        """A receipt for no message we know: kept in the history under its provider's id, so
        it can be matched later and nobody's message is touched. Keyed by the receipt itself
        (the message's id and the status code), so a resent receipt finds the item its first
        delivery wrote: True when this call kept it, False when it was already kept."""
        return self._keep_receipt(
            f"unmatched#{provider}#{provider_message_id or client_id}",
            code,
            {
                "provider": provider,
                "provider_message_id": provider_message_id or None,
                "client_id": client_id or None,
            },
        )

    def keep_receipt_note(self, message_id: str, provider: str, code: str) -> bool:
        """A receipt whose status code the provider does not document: kept in the message's
        history with its raw code (no status, so the message's status is untouched), once
        per code."""
        return self._keep_receipt(
            message_id, code, {"provider": provider, "note": "status code not documented"}
        )

    def keep_id_conflict(self, message_id: str, fields: Sequence[str], digest: str) -> bool:
        """Another body arrived under an existing id and was not sent: kept in the message's
        history with the names of the fields that differ (never their values), once per body
        (`digest`). True when this call kept it."""
        entry = {
            "message_id": message_id,
            "at": f"conflict#{digest}",
            "received_at": now_iso(),
            "source": "send",
            "note": "id reused with a different body: not sent",
            "fields": list(fields),
            "expires_at": self.expires_at(),
        }
        return put_if(self.db, **put_request(absent("message_id"), self.status, entry))

    def _keep_receipt(self, key: str, code: str, extra: Mapping[str, Any]) -> bool:
        entry = {
            "message_id": key,
            "at": f"receipt#{code}",
            "received_at": now_iso(),
            "source": "dlr",
            "raw": code,
            **extra,
            "expires_at": self.expires_at(),
        }
        return put_if(self.db, **put_request(absent("message_id"), self.status, entry))

    def history(self, message_id: str) -> list[dict[str, Any]]:
        return [
            from_item(item)
            for item in paged(
                self.db.query,
                TableName=self.status,
                KeyConditionExpression="message_id = :m",
                ExpressionAttributeValues={":m": {"S": message_id}},
                ConsistentRead=True,
            )
        ]
