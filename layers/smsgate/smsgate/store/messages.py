"""The messages table's writes: claiming an id, leases, status changes, dead letters.

Every status change goes through `advance`: one conditional update on the status rank plus the
history item, in one transaction — so status only moves forward, a duplicate or late receipt
writes nothing, and the history holds each accepted change exactly once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from botocore.exceptions import ClientError

from ..retries import with_retries
from ..status import FINAL, Status, ranks_below
from ..timestamps import now_iso
from .expressions import (
    Update,
    lease_free,
    lease_is,
    provider_is,
    record_absent,
    record_exists,
    status_in,
    to_item,
)
from .records import Claim, MessageRecord, Transition
from .tables import CLAIMABLE, WAITING, Tables, from_item, update_if


class MessageWrites(Tables):
    def get_message(self, message_id: str) -> MessageRecord | None:
        item = with_retries(
            self.db.get_item,
            TableName=self.messages,
            Key={"id": {"S": message_id}},
            ConsistentRead=True,
        ).get("Item")
        return cast(MessageRecord, from_item(item)) if item else None

    def claim(self, message_id: str, attrs: Mapping[str, Any], lease_seconds: float) -> Claim:
        """Take the right to send `message_id`, creating its record if it is new.

        Won only when the id is new, or waits (queued/scheduled) with no lease held: a sender
        that stopped mid-request keeps its lease, so nobody resends what may have gone out. A
        claim applied with its answer lost is replayed (`retries`) with the same lease token:
        the replay finds the record holding that token, and the claim is still ours.
        """
        lease = secrets.token_hex(8)
        now = datetime.now(UTC)
        update = (
            Update()
            .set_if_absent("status", Status.QUEUED.value)
            .set("lease", lease)
            .set("lease_until", int(now.timestamp() + lease_seconds))
            .set_if_absent("created_at", now_iso(now))
            .set("updated_at", now_iso(now))
        )
        for key, value in self.with_personal(attrs).items():
            if value is not None:
                update.set_if_absent(key, value)
        update.add("attempts", 1).when(record_absent | (status_in(CLAIMABLE) & lease_free))
        request = update.request(
            self.messages,
            {"id": message_id},
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        try:
            answer = with_retries(self.db.update_item, **request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            existing = cast(MessageRecord, from_item(old)) if old else self.get_message(message_id)
            if existing and existing.get("lease") == lease:  # our own claim, its answer lost
                return Claim(True, lease=lease, item=existing)
            return Claim(False, existing=existing)
        item = cast(MessageRecord, from_item(answer.get("Attributes", {})))
        return Claim(True, lease=lease, item=item)

    def release(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        """Give the message back with `attrs` recorded: nothing was sent and a redelivery may
        claim it again, or the message is settled (its provider id, parts) and the lease goes
        with it."""
        return self._update_if_leased(message_id, lease, {**attrs, "lease": ""})

    def note(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        """Record facts while keeping the lease (the provider a failover moves to, before its
        request goes out)."""
        return self._update_if_leased(message_id, lease, attrs)

    def _update_if_leased(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        update = Update().set_all({**attrs, "updated_at": now_iso()}).when(lease_is(lease))
        return update_if(self.db, **update.request(self.messages, {"id": message_id}))

    def advance(self, message_id: str, change: Transition) -> bool:
        """Move `message_id` to `change.status` if that is a step forward, and append the
        change to its history (`Transition` says what else the change carries). Returns
        False, writing nothing, when it is not accepted (duplicate, late or regressing).

        A waiting status (sent, unknown) enters the reconciliation index (`pending`,
        `pending_at`); a final one leaves it, and so does a waiting one that is no longer
        reconciled."""
        at = now_iso()
        items: list[dict[str, Any]] = [
            {"Update": self._status_update(message_id, change, at)},
            *self._history_puts(message_id, change, at),
            *(dict(write) for write in change.also),
        ]
        try:
            # One token for every attempt: DynamoDB answers a replay of an applied transaction
            # with success instead of applying it again (within ten minutes).
            with_retries(
                self.db.transact_write_items,
                TransactItems=items,
                ClientRequestToken=secrets.token_hex(16),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons:
                    return False
            raise
        return True

    def _status_update(self, message_id: str, change: Transition, at: str) -> dict[str, Any]:
        new = change.status
        attrs = {**change.attrs, "status": new.value, "status_at": at, "updated_at": at}
        if change.lease is not None:
            attrs["lease"] = ""
        removes: list[str] = []
        if new in WAITING and change.reconcile:
            attrs.update({"pending": new.value, "pending_at": at})
        elif new in WAITING or new in FINAL:
            removes = ["pending", "pending_at"]
        removes += [k for k in change.clear if k not in attrs]
        update = Update().set_all(attrs).remove(*removes)
        if change.create is not None:
            for key, value in self.with_personal(change.create).items():
                if value is not None and key not in attrs:
                    update.set(key, value)
            update.when(record_absent)
        else:
            allowed = record_exists & status_in(change.only_from or ranks_below(new))
            if change.expect_provider is not None:
                allowed = allowed & provider_is(change.expect_provider)
            if change.unleased:
                allowed = allowed & lease_free
            update.when(allowed)
        return update.request(self.messages, {"id": message_id})

    def _history_puts(self, message_id: str, change: Transition, at: str) -> list[dict[str, Any]]:
        expires = self.expires_at()
        steps = [*change.extra_history, (change.status, at, change.source)]
        return [
            {
                "Put": {
                    "TableName": self.status,
                    "Item": to_item(
                        {
                            "message_id": message_id,
                            "at": f"{when}#{status.value}",
                            "status": status.value,
                            "source": source,
                            "raw": change.raw if status is change.status else None,
                            "expires_at": expires,
                        }
                    ),
                }
            }
            for status, when, source in steps
        ]

    def note_dead_letter(
        self, message_id: str, code: str, reason: str, create: Mapping[str, Any] | None = None
    ) -> bool:
        """Say on a waiting record why its queue message is going to the dead-letter queue
        (its last receive failed): `error_code` (kept when the record already has one), the
        reason and when. A final record is left as it is; a missing one is made `queued` from
        `create` (the message never got as far as its claim), so every dead letter has one."""
        at = now_iso()
        update = (
            Update()
            .set_if_absent("error_code", code)
            .set("dead_letter_reason", reason)
            .set("dead_lettered_at", at)
            .set("updated_at", at)
        )
        if create is None:
            update.when(record_exists & status_in(CLAIMABLE))
        else:
            update.set_if_absent("status", Status.QUEUED.value)
            fresh = {**self.personal(create), **create, "created_at": at}
            for key, value in fresh.items():
                if value is not None:
                    update.set_if_absent(key, value)
            update.when(record_absent | status_in(CLAIMABLE))
        return update_if(self.db, **update.request(self.messages, {"id": message_id}))
