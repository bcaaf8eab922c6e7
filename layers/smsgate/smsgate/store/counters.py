"""Protection's counters, in the health table (key `provider` + `slot`), shared by every sender:

- `to#<hash of the number>` + `day#<UTC date>`: `day` and `h<HH>` (each clock hour's) messages
  sent to one recipient. Written in the same transaction as the message's `sent` (or `unknown`)
  record, so each message counts once — a replay of that transaction is refused with it — and
  costs no request of its own. The number itself is never stored here; the item expires the
  next day.
- `country#<ISO>` + `hour#<UTC date and hour>`: `sent`, per country per hour (only when the
  routing document sets `velocity.per_country_hour`), added once per batch.
- `<provider>` + `spend#<UTC month>`: `spend` (the sum of `cost_estimate`) and `messages`,
  added once per batch (or every few seconds with no budget set), kept for a year and a bit.

A sender reads the items its batch needs in the batch's one BatchGetItem (with its opt-outs and
its providers' health)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from ..retries import with_retries
from .expressions import Update, absent, below, differs
from .tables import DAY, from_item, update_if

SPEND_RETENTION_DAYS = 400


def recipient_key(phone: str) -> str:
    return "to#" + hashlib.sha256(phone.encode()).hexdigest()[:32]


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def _hour(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _hour_attribute(moment: datetime) -> str:
    return "h" + moment.astimezone(UTC).strftime("%H")


def _end_of_day(moment: datetime) -> int:
    start = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((start + timedelta(days=1)).timestamp())


class Counters:
    def __init__(self, table: str, db: Any) -> None:
        self.table, self.db = table, db

    @staticmethod
    def _key(partition: str, slot: str) -> dict[str, Any]:
        return {"provider": {"S": partition}, "slot": {"S": slot}}

    # --- keys a batch reads ------------------------------------------------------------------

    def keys(
        self,
        phones: Iterable[str],
        countries: Iterable[str],
        providers: Iterable[str],
        now: datetime,
    ) -> list[dict[str, Any]]:
        """The BatchGetItem keys of the recipients' day items, the countries' hour items and
        the providers' month spend items."""
        keys = [self._key(recipient_key(p), f"day#{_day(now)}") for p in sorted(set(phones))]
        keys += [self._key(f"country#{c}", f"hour#{_hour(now)}") for c in sorted(set(countries))]
        month = now.astimezone(UTC).strftime("%Y-%m")
        keys += [self._key(p, f"spend#{month}") for p in sorted(set(providers))]
        return keys

    def is_counter(self, item: Mapping[str, Any]) -> bool:
        """True for an item of `keys` (the health table's other items are provider state)."""
        slot = str(item.get("slot", {}).get("S", ""))
        return slot.startswith(("day#", "hour#", "spend#"))

    @staticmethod
    def read(items: Iterable[Mapping[str, Any]], now: datetime) -> CounterItems:
        """The read items, by what they count."""
        hour = _hour_attribute(now)
        recipients: dict[str, tuple[int, int]] = {}
        countries: dict[str, int] = {}
        spend: dict[str, float] = {}
        for item in map(from_item, items):
            partition, slot = str(item["provider"]), str(item["slot"])
            if slot.startswith("day#"):
                recipients[partition] = (int(item.get(hour, 0)), int(item.get("day", 0)))
            elif slot.startswith("hour#"):
                countries[partition.removeprefix("country#")] = int(item.get("sent", 0))
            elif slot.startswith("spend#"):
                spend[partition] = float(item.get("spend", 0))
        return CounterItems(recipients, countries, spend)

    def load(
        self,
        phones: Iterable[str],
        countries: Iterable[str],
        providers: Iterable[str],
        now: datetime,
    ) -> CounterItems:
        """`keys`' items read on their own (the quote, the CLI, a message sent outside a
        batch)."""
        keys = self.keys(phones, countries, providers, now)
        found: list[Mapping[str, Any]] = []
        while keys:
            request = {self.table: {"Keys": keys, "ConsistentRead": True}}
            answer = with_retries(self.db.batch_get_item, RequestItems=request)
            found += answer.get("Responses", {}).get(self.table, [])
            keys = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        return self.read(found, now)

    # --- writes ------------------------------------------------------------------------------

    def recipient_write(self, phone: str, at: datetime) -> dict[str, Any]:
        """One more message to `phone` this hour and day, for a Transition's `also`."""
        update = (
            Update()
            .add("day", 1)
            .add(_hour_attribute(at), 1)
            .set("expires_at", _end_of_day(at) + DAY)
        )
        key = {"provider": recipient_key(phone), "slot": f"day#{_day(at)}"}
        return {"Update": update.request(self.table, key)}

    def reserve_recipient(
        self, phone: str, at: datetime, hour_limit: int | None, day_limit: int | None
    ) -> tuple[int, int] | None:
        """One more message to `phone` this hour and day, only while the hour's count is below
        `hour_limit` and the day's below `day_limit` (None: no such limit). None when it is
        taken; else the (hour, day) counts that refused it. The take carries a fresh token: a
        replay of one applied with its answer lost finds its own token and is the take."""
        hour = _hour_attribute(at)
        token = secrets.token_hex(8)
        condition = absent("last_add") | differs("last_add", token)
        for attribute, limit in ((hour, hour_limit), ("day", day_limit)):
            if limit is not None:
                condition = condition & (absent(attribute) | below(attribute, limit))
        update = (
            Update()
            .add("day", 1)
            .add(hour, 1)
            .set("expires_at", _end_of_day(at) + DAY)
            .set("last_add", token)
            .when(condition)
        )
        key = {"provider": recipient_key(phone), "slot": f"day#{_day(at)}"}
        request = update.request(self.table, key, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        try:
            with_retries(self.db.update_item, **request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old = exc.response.get("Item")
            item = from_item(old) if old else self._item(phone, at)
            if item.get("last_add") == token:  # our own take, its answer lost
                return None
            return int(item.get(hour, 0)), int(item.get("day", 0))
        return None

    def release_recipient(self, phone: str, at: datetime) -> None:
        """Give back a place `reserve_recipient` took (the message did not go)."""
        update = Update().add("day", -1).add(_hour_attribute(at), -1)
        self._add_once(update, {"provider": recipient_key(phone), "slot": f"day#{_day(at)}"})

    def _item(self, phone: str, at: datetime) -> dict[str, Any]:
        key = self._key(recipient_key(phone), f"day#{_day(at)}")
        answer = with_retries(self.db.get_item, TableName=self.table, Key=key, ConsistentRead=True)
        return from_item(answer.get("Item", {}))

    def add_country(self, country: str, sent: int, at: datetime) -> None:
        update = Update().add("sent", sent).set("expires_at", int(at.timestamp()) + 2 * 3600)
        key = {"provider": f"country#{country}", "slot": f"hour#{_hour(at)}"}
        self._add_once(update, key)

    def add_spend(self, provider: str, amount: Decimal, messages: int, at: datetime) -> None:
        """Add a batch's spend to `provider`'s month (one ADD: concurrent senders never lose
        each other's)."""
        update = (
            Update()
            .add("spend", amount)
            .add("messages", messages)
            .set("expires_at", int(at.timestamp()) + SPEND_RETENTION_DAYS * DAY)
        )
        key = {"provider": provider, "slot": f"spend#{at.astimezone(UTC).strftime('%Y-%m')}"}
        self._add_once(update, key)

    def _add_once(self, update: Update, key: Mapping[str, str]) -> None:
        """Apply an ADD at most once: it carries a fresh token and applies only where the item's
        last token is another, so a retry of an ADD applied with its answer lost is refused
        (unless another sender's ADD came in between: then it counts twice, never less)."""
        token = secrets.token_hex(8)
        update.set("last_add", token).when(absent("last_add") | differs("last_add", token))
        update_if(self.db, **update.request(self.table, key))

    def month(self, providers: Iterable[str], month: str) -> dict[str, tuple[float, int]]:
        """Each provider's spend and messages in `month` (YYYY-MM), for `smsgate spend`."""
        keys = [self._key(p, f"spend#{month}") for p in sorted(set(providers))]
        if not keys:
            return {}
        answer = with_retries(
            self.db.batch_get_item,
            RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}},
        )
        found = {}
        for item in map(from_item, answer.get("Responses", {}).get(self.table, [])):
            found[str(item["provider"])] = (
                float(item.get("spend", 0)),
                int(item.get("messages", 0)),
            )
        return found


class CounterItems:
    """A batch's read counters."""

    def __init__(
        self,
        recipients: Mapping[str, tuple[int, int]],
        countries: Mapping[str, int],
        spend: Mapping[str, float],
    ) -> None:
        self.recipients, self.countries, self.spend = recipients, countries, spend

    def recipient(self, phone: str) -> tuple[int, int]:
        """(this hour, today) for `phone`."""
        return self.recipients.get(recipient_key(phone), (0, 0))

    def country(self, country: str | None) -> int:
        return self.countries.get(country or "", 0)
