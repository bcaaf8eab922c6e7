"""A provider's connection limit, held by the whole deployment at once.

A provider may allow only a few simultaneous HTTP connections per second for an account (its
declared `max_connections`, docs/providers.md) and ask that each be closed after use. The
senders of its lane, the credit check and the CLI's account calls all connect to it, from
different processes. So each of them first
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
from .store import from_item, update_if
from .store.expressions import Update, absent, at_most, below, equals

WINDOW_SECONDS = 1.0  # the documented "per second"
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

    def _plain_key(self, index: int) -> dict[str, str]:
        return {"provider": self.provider, "slot": f"conn#{index}"}

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
        unheld = absent("holder") & (
            absent("released_at") | at_most("released_at", _number(now - WINDOW_SECONDS))
        )
        free = unheld | below("until", _number(now)) | equals("holder", holder)
        update = Update().set("holder", holder).set("until", _number(now + hold_seconds))
        update.remove("released_at")
        if priority:
            update.remove("wanted_until")
            update.when(free)
        else:
            update.when(free & (absent("wanted_until") | below("wanted_until", _number(now))))
        return update_if(self.db, **update.request(self.table, self._plain_key(index)))

    def _want(self, until: float) -> None:
        for index in range(self.slots):
            update = Update().set("wanted_until", _number(until))
            self.db.update_item(**update.request(self.table, self._plain_key(index)))

    def release(self, slot: Slot) -> None:
        """Give `slot` back (its connection closed first, by the caller). A slot already lost
        (held past `until` and taken by another) is left alone."""
        try:
            update = (
                Update()
                .set("released_at", _number(self.clock()))
                .remove("holder", "until")
                .when(equals("holder", slot.holder))
            )
            update_if(self.db, **update.request(self.table, self._plain_key(slot.index)))
        except Exception:  # it frees itself at `until`
            logger.exception("could not give a connection slot back", extra={"slot": slot.index})

    def holders(self) -> list[dict[str, Any]]:
        """Each slot as stored (for the operators' view)."""
        keys = [self._key(i) for i in range(self.slots)]
        answer = self.db.batch_get_item(
            RequestItems={self.table: {"Keys": keys, "ConsistentRead": True}}
        )
        return [from_item(i) for i in answer.get("Responses", {}).get(self.table, [])]
