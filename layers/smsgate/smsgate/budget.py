"""A provider's connection limit, held by the whole deployment at once.

Group Texting allows "no more than 2 simultaneous HTTP connections per second" for an account,
and asks that each connection be closed after use. The senders of its lane, the credit check
and the CLI's account calls all connect to it, from different processes. So each of them first
takes one of the provider's slots in the health table (`provider` + `conn#<n>`) with a
conditional write, uses one connection while it holds the slot, closes it, and gives the slot
back. A slot holds:

- `holder` and `until` (epoch seconds) while taken; a holder that died loses it at `until`;
- `released_at` once given back: nobody takes it again within the provider's per-second window,
  so no more than `slots` distinct connections are ever seen in one window;
- `wanted_until` while an account call (credit check, CLI) waits for it: senders leave it to
  them, so a busy lane cannot starve a credit check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .observability import logger
from .store import from_item, to_item, update_if

WINDOW_SECONDS = 1.0  # Group Texting's "per second"
POLL_SECONDS = 0.1


def _number(value: float) -> Decimal:
    return Decimal(str(round(value, 3)))


@dataclass(frozen=True)
class Slot:
    provider: str
    index: int
    holder: str


class ConnectionBudget:
    def __init__(
        self,
        db: Any,
        table: str,
        provider: str,
        slots: int,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.db, self.table, self.provider, self.slots = db, table, provider, slots
        self.clock, self.sleep = clock, sleep

    def _key(self, index: int) -> dict[str, Any]:
        return {"provider": {"S": self.provider}, "slot": {"S": f"conn#{index}"}}

    def acquire(
        self, holder: str, hold_seconds: float, *, priority: bool = False, wait: float = 0.0
    ) -> Slot | None:
        """Take a free slot for `hold_seconds` (at most), waiting up to `wait` seconds for
        one. `priority` (account calls) marks the slots wanted while it waits, so senders
        leave the next free one to it. None when no slot came free in time."""
        deadline = self.clock() + wait
        marked = False
        while True:
            for index in range(self.slots):
                if self._take(index, holder, hold_seconds, priority):
                    return Slot(self.provider, index, holder)
            now = self.clock()
            if now >= deadline:
                return None
            if priority and not marked:
                self._want(deadline)
                marked = True
            self.sleep(min(POLL_SECONDS, max(0.0, deadline - now)))

    def _take(self, index: int, holder: str, hold_seconds: float, priority: bool) -> bool:
        now = self.clock()
        # `holder = :me`: a retried take whose first answer was lost finds the slot its own
        # (else that slot would sit taken until `until`, and the fleet would be one short)
        free = (
            "(attribute_not_exists(holder) AND "
            "(attribute_not_exists(released_at) OR released_at <= :settled)) "
            "OR #until < :now OR holder = :me"
        )
        condition = (
            free
            if priority
            else f"({free}) AND (attribute_not_exists(wanted_until) OR wanted_until < :now)"
        )
        return update_if(
            self.db,
            TableName=self.table,
            Key=self._key(index),
            UpdateExpression="SET holder = :me, #until = :until REMOVE released_at"
            + (", wanted_until" if priority else ""),
            ConditionExpression=condition,
            ExpressionAttributeNames={"#until": "until"},
            ExpressionAttributeValues=to_item(
                {
                    ":me": holder,
                    ":until": _number(now + hold_seconds),
                    ":now": _number(now),
                    ":settled": _number(now - WINDOW_SECONDS),
                }
            ),
        )

    def _want(self, until: float) -> None:
        for index in range(self.slots):
            self.db.update_item(
                TableName=self.table,
                Key=self._key(index),
                UpdateExpression="SET wanted_until = :w",
                ExpressionAttributeValues=to_item({":w": _number(until)}),
            )

    def release(self, slot: Slot) -> None:
        """Give `slot` back (its connection closed first, by the caller). A slot already lost
        (held past `until` and taken by another) is left alone."""
        try:
            update_if(
                self.db,
                TableName=self.table,
                Key=self._key(slot.index),
                UpdateExpression="SET released_at = :now REMOVE holder, #until",
                ConditionExpression="holder = :me",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues=to_item(
                    {":me": slot.holder, ":now": _number(self.clock())}
                ),
            )
        except Exception:  # it frees itself at `until`
            logger.exception("could not give a connection slot back", extra={"slot": slot.index})

    def holders(self) -> list[dict[str, Any]]:
        """Each slot as stored (for the operators' view)."""
        keys = [self._key(i) for i in range(self.slots)]
        answer = self.db.batch_get_item(
            RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
        )
        return [from_item(i) for i in answer.get("Responses", {}).get(self.table, [])]
