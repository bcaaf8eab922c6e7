"""DynamoDB: messages, their status history and opt-outs (docs/contract.md, Tables).

Every status change goes through `advance`: one conditional update on the status rank plus the
history item, in one transaction — so status only moves forward, a duplicate or late receipt
writes nothing, and the history holds each accepted change exactly once.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import ClientError

from .retries import with_retries
from .status import FINAL, Status, ranks_below
from .timestamps import now_iso as now_iso  # re-exported: the store's timestamps

_ser = TypeSerializer()
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


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def update_if(db: Any, **request: Any) -> bool:
    """One conditional UpdateItem: False, having written nothing, when its condition does not
    hold; a transient failure is tried again (`retries`), any other error is raised. A replay
    of an update that was applied with its answer lost finds its condition gone: False."""
    try:
        with_retries(db.update_item, **request)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


@dataclass(frozen=True)
class Claim:
    """The result of claiming a message id for sending."""

    won: bool
    lease: str = ""
    item: dict[str, Any] | None = None  # the record as the claim left it (when won)
    existing: dict[str, Any] | None = None  # the record as it was (when lost)


class Store:
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
        # No client-side parameter validation: every request here is built by this module
        # (and its tests run against DynamoDB's own validation in moto); botocore's
        # validation of each transaction was a measurable share of a send's CPU.
        self.db = client or boto3.client(
            "dynamodb",
            config=Config(
                retries={"mode": "standard", "max_attempts": 5}, parameter_validation=False
            ),
        )

    # --- retention ------------------------------------------------------------------------

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

    def _personal(self, record: Mapping[str, Any]) -> dict[str, Any]:
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

    # --- messages -------------------------------------------------------------------------

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        item = with_retries(
            self.db.get_item,
            TableName=self.messages,
            Key={"id": {"S": message_id}},
            ConsistentRead=True,
        ).get("Item")
        return from_item(item) if item else None

    def claim(self, message_id: str, attrs: Mapping[str, Any], lease_seconds: float) -> Claim:
        """Take the right to send `message_id`, creating its record if it is new.

        Won only when the id is new, or waits (queued/scheduled) with no lease held: a sender
        that stopped mid-request keeps its lease, so nobody resends what may have gone out. A
        claim applied with its answer lost is replayed (`retries`) with the same lease token:
        the replay finds the record holding that token, and the claim is still ours.
        """
        lease = secrets.token_hex(8)
        now = datetime.now(UTC)
        attrs = {**attrs, **{k: v for k, v in self._personal(attrs).items() if k not in attrs}}
        values = {
            ":lease": lease,
            ":until": int(now.timestamp() + lease_seconds),
            ":queued": Status.QUEUED.value,
            ":now": now_iso(now),
            ":one": 1,
            ":free": "",
            **{f":c{i}": s for i, s in enumerate(CLAIMABLE)},
            **{f":{k}": v for k, v in attrs.items() if v is not None},
        }
        sets = ", ".join(f"#{k} = if_not_exists(#{k}, :{k})" for k in attrs if attrs[k] is not None)
        names = {"#s": "status", **{f"#{k}": k for k in attrs if attrs[k] is not None}}
        claimable = ", ".join(f":c{i}" for i in range(len(CLAIMABLE)))
        try:
            answer = with_retries(
                self.db.update_item,
                TableName=self.messages,
                Key={"id": {"S": message_id}},
                UpdateExpression=(
                    "SET #s = if_not_exists(#s, :queued), lease = :lease, lease_until = :until, "
                    "created_at = if_not_exists(created_at, :now), updated_at = :now"
                    + (f", {sets}" if sets else "")
                    + " ADD attempts :one"
                ),
                ConditionExpression=(
                    f"attribute_not_exists(id) OR (#s IN ({claimable}) AND lease = :free)"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            existing = from_item(old) if old else self.get_message(message_id)
            if existing and existing.get("lease") == lease:  # our own claim, its answer lost
                return Claim(True, lease=lease, item=existing)
            return Claim(False, existing=existing)
        return Claim(True, lease=lease, item=from_item(answer.get("Attributes", {})))

    def release(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        """Give the message back (nothing was sent): a redelivery may claim it again."""
        return self._update_if_leased(message_id, lease, {**attrs, "lease": ""})

    def set_attrs(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        """Record facts (provider id, parts) without touching the status; the lease goes
        with them (the message is settled)."""
        return self.release(message_id, lease, attrs)

    def note(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        """Record facts while keeping the lease (the provider a failover moves to, before its
        request goes out)."""
        return self._update_if_leased(message_id, lease, attrs)

    def _update_if_leased(self, message_id: str, lease: str, attrs: Mapping[str, Any]) -> bool:
        attrs = {**attrs, "updated_at": now_iso()}
        return update_if(
            self.db,
            TableName=self.messages,
            Key={"id": {"S": message_id}},
            UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in attrs),
            ConditionExpression="lease = :held",
            ExpressionAttributeNames={f"#{k}": k for k in attrs},
            ExpressionAttributeValues=to_item(
                {":held": lease, **{f":{k}": v for k, v in attrs.items()}}
            ),
        )

    def advance(
        self,
        message_id: str,
        new: Status,
        *,
        source: str,
        raw: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        lease: str | None = None,
        create: Mapping[str, Any] | None = None,
        extra_history: Iterable[tuple[Status, str, str]] = (),
        expect_provider: str | None = None,
        reconcile: bool = True,
        clear: Iterable[str] = (),
        also: Iterable[Mapping[str, Any]] = (),
    ) -> bool:
        """Move `message_id` to `new` if that is a step forward; append the change to history.

        `lease` also releases the sender's lease; `clear` removes attributes that no longer
        hold (a retry's error once the message is sent); `create` makes the record when the id
        is new (a message that fails before it was ever claimed). Returns False, writing
        nothing, when the change is not accepted (duplicate, late or regressing).

        A waiting status (sent, unknown) enters the reconciliation index (`pending`,
        `pending_at`); a final one leaves it, and so does a waiting one with `reconcile=False`
        (the reconciliation has given up on it; a late receipt still settles it).

        `also` adds writes that stand or fall with the change (`opt_out_write`,
        `opt_in_write`): an opt-out and the message that caused it are stored together or not
        at all, so no redelivery can find one without the other.
        """
        at = now_iso()
        attrs = {**(attrs or {}), "status": new.value, "status_at": at, "updated_at": at}
        if lease is not None:
            attrs["lease"] = ""
        removes: list[str] = []
        if new in WAITING and reconcile:
            attrs.update({"pending": new.value, "pending_at": at})
        elif new in WAITING or new in FINAL:
            removes = ["pending", "pending_at"]
        removes += [k for k in clear if k not in attrs]  # e.g. a retry's error, once sent
        allowed = ranks_below(new)
        values: dict[str, Any] = {f":a{i}": s for i, s in enumerate(allowed)}
        values.update({f":{k}": v for k, v in attrs.items() if v is not None})
        names = {f"#{k}": k for k in attrs if attrs[k] is not None}
        sets = [f"#{k} = :{k}" for k in attrs if attrs[k] is not None]
        if create is not None:
            create = {
                **create,
                **{k: v for k, v in self._personal(create).items() if k not in create},
            }
            condition = "attribute_not_exists(id)"
            values = {k: v for k, v in values.items() if not k.startswith(":a")}
            for k, v in create.items():
                if v is not None and k not in attrs:
                    names[f"#{k}"], values[f":{k}"] = k, v
                    sets.append(f"#{k} = :{k}")
        else:
            in_allowed = ", ".join(f":a{i}" for i in range(len(allowed)))
            condition = f"attribute_exists(id) AND #status IN ({in_allowed})"
            if expect_provider is not None:  # a receipt only ever moves its provider's message
                names["#provider"], values[":expect"] = "provider", expect_provider
                condition += " AND #provider = :expect"
        names.update({f"#{k}": k for k in removes})
        history = [
            *((s, when, src) for s, when, src in extra_history),
            (new, at, source),
        ]
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.messages,
                    "Key": {"id": {"S": message_id}},
                    "UpdateExpression": "SET "
                    + ", ".join(sets)
                    + (" REMOVE " + ", ".join(f"#{k}" for k in removes) if removes else ""),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": to_item(values),
                }
            }
        ]
        expires = self.expires_at()
        for status, when, src in history:
            entry = {
                "message_id": message_id,
                "at": f"{when}#{status.value}",
                "status": status.value,
                "source": src,
                "raw": raw if status is new else None,
                "expires_at": expires,
            }
            items.append({"Put": {"TableName": self.status, "Item": to_item(entry)}})
        items.extend(dict(write) for write in also)
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

    # --- reconciliation (messages waiting in sent / unknown) ------------------------------

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
        return self._update_waiting(
            message_id, status, "SET #pending_at = :at, #reconciled_at = :at", {":at": at}
        )

    def stop_reconciling(self, message_id: str, status: Status, attrs: Mapping[str, Any]) -> bool:
        """Take a message that keeps its waiting `status` out of the reconciliation index,
        recording `attrs` (e.g. the reason). No status change, so no history item. False when
        it no longer waits in `status` (a receipt settled it meanwhile)."""
        values = {f":{k}": v for k, v in attrs.items() if v is not None}
        sets = ", ".join(f"#{k} = :{k}" for k in attrs if attrs[k] is not None)
        return self._update_waiting(
            message_id,
            status,
            (f"SET {sets} " if sets else "") + "REMOVE #pending, #pending_at",
            values,
            {f"#{k}": k for k in attrs if attrs[k] is not None},
        )

    def _update_waiting(
        self,
        message_id: str,
        status: Status,
        expression: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> bool:
        all_names = {"#status": "status", "#pending": "pending", **(names or {})}
        if "#pending_at" in expression:
            all_names["#pending_at"] = "pending_at"
        if "#reconciled_at" in expression:
            all_names["#reconciled_at"] = "reconciled_at"
        return update_if(
            self.db,
            TableName=self.messages,
            Key={"id": {"S": message_id}},
            UpdateExpression=expression,
            ConditionExpression="#status = :waiting AND #pending = :waiting",
            ExpressionAttributeNames=all_names,
            ExpressionAttributeValues=to_item({":waiting": status.value, **values}),
        )

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
        try:
            with_retries(
                self.db.put_item,
                TableName=self.status,
                Item=to_item(entry),
                ConditionExpression="attribute_not_exists(message_id)",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def history(self, message_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.status,
            "KeyConditionExpression": "message_id = :m",
            "ExpressionAttributeValues": {":m": {"S": message_id}},
            "ConsistentRead": True,
        }
        while True:
            page = with_retries(self.db.query, **kwargs)
            items.extend(from_item(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- opt-outs -------------------------------------------------------------------------

    def opted_out(self, phones: Iterable[str]) -> set[str]:
        """Which of `phones` have opted out: one BatchGetItem per 100 numbers."""
        return self.opted_out_and(phones, {})[0]

    def opted_out_and(
        self, phones: Iterable[str], also: Mapping[str, Mapping[str, Any]]
    ) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
        """`opted_out`, with other tables' BatchGetItem requests (`also`, table -> request)
        sent in the same first call: a batch's opt-outs and its providers' health in one
        round trip. Returns the opted-out numbers and the other tables' items (raw)."""
        wanted = sorted(set(phones))
        extra_keys = sum(len(r["Keys"]) for r in also.values())
        size = BATCH_GET_LIMIT - extra_keys  # BatchGetItem reads 100 keys at most per call
        chunks = [wanted[i : i + size] for i in range(0, len(wanted), size)] or [[]]
        found: set[str] = set()
        other: dict[str, list[dict[str, Any]]] = {}
        for n, chunk in enumerate(chunks):
            request: dict[str, Any] = dict(also) if n == 0 else {}
            if chunk:
                request[self.optouts] = {
                    "Keys": [{"phone": {"S": p}} for p in chunk],
                    "ProjectionExpression": "phone",
                    "ConsistentRead": True,
                }
            while request:
                answer = with_retries(self.db.batch_get_item, RequestItems=request)
                for table, items in answer["Responses"].items():
                    if table == self.optouts:
                        found.update(i["phone"]["S"] for i in items)
                    else:
                        other.setdefault(table, []).extend(items)
                request = answer.get("UnprocessedKeys") or {}
        return found, other

    def add_opt_out(self, phone: str, how: str, provider: str | None = None) -> None:
        with_retries(self.db.update_item, **self.opt_out_write(phone, how, provider)["Update"])

    def opt_out_write(self, phone: str, how: str, provider: str | None = None) -> dict[str, Any]:
        """The write that opts `phone` out (keeping the first `since`), for `advance(also=)`
        or on its own."""
        at = now_iso()
        return {
            "Update": {
                "TableName": self.optouts,
                "Key": {"phone": {"S": phone}},
                "UpdateExpression": "SET since = if_not_exists(since, :at), how = :how, "
                "updated_at = :at" + (", provider = :p" if provider else ""),
                "ExpressionAttributeValues": to_item({":at": at, ":how": how, ":p": provider}),
            }
        }

    def opt_in_write(self, phone: str) -> dict[str, Any]:
        """The write that opts `phone` back in, for `advance(also=)`."""
        return {"Delete": {"TableName": self.optouts, "Key": {"phone": {"S": phone}}}}

    def remove_opt_out(self, phone: str) -> bool:
        answer = with_retries(
            self.db.delete_item,
            TableName=self.optouts,
            Key={"phone": {"S": phone}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in answer

    # --- dead letters ---------------------------------------------------------------------

    def note_dead_letter(
        self, message_id: str, code: str, reason: str, create: Mapping[str, Any] | None = None
    ) -> bool:
        """Say on a waiting record why its queue message is going to the dead-letter queue
        (its last receive failed): `error_code` (kept when the record already has one), the
        reason and when. A final record is left as it is; a missing one is made `queued` from
        `create` (the message never got as far as its claim), so every dead letter has one."""
        at = now_iso()
        values: dict[str, Any] = {
            ":code": code,
            ":reason": reason,
            ":at": at,
            ":q": Status.QUEUED.value,
            ":s": Status.SCHEDULED.value,
        }
        sets = [
            "error_code = if_not_exists(error_code, :code)",
            "dead_letter_reason = :reason",
            "dead_lettered_at = :at",
            "updated_at = :at",
        ]
        names = {"#s": "status"}
        condition = "attribute_exists(id) AND #s IN (:q, :s)"
        if create is not None:
            fresh = {**self._personal(create), **create, "created_at": at}
            fresh = {k: v for k, v in fresh.items() if v is not None}
            sets.append("#s = if_not_exists(#s, :q)")
            for i, (k, v) in enumerate(fresh.items()):
                names[f"#c{i}"], values[f":c{i}"] = k, v
                sets.append(f"#c{i} = if_not_exists(#c{i}, :c{i})")
            condition = "attribute_not_exists(id) OR #s IN (:q, :s)"
        return update_if(
            self.db,
            TableName=self.messages,
            Key={"id": {"S": message_id}},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_item(values),
        )
