"""Holds: a commercial message outside its provider's window waits in an EventBridge
Scheduler schedule (or, without one, in SQS), and a message that has not gone out yet can be
cancelled."""

from __future__ import annotations

from .. import commercial
from ..observability import count, logger
from ..providers import (
    PROVIDERS,
)
from ..queues import MAX_VISIBILITY
from ..sending import (
    Done,
    Result,
    Retry,
    Sending,
)
from ..status import FINAL, Status
from ..store import Transition, now_iso
from .base import SendBase


class Holds(SendBase):
    """Commercial holds and cancelling."""

    def _hold_if_closed(self, s: Sending) -> Result | None:
        item = s.job
        now = self.clock()
        spec, home = self.settings.commercial_windows, PROVIDERS[item.provider].home_zone
        if commercial.is_open(now, item.to, spec, home):
            return None
        opens = commercial.next_open(now, item.to, spec, home)
        wait = int((opens - now).total_seconds()) + 1
        group, role, arn = (
            self.settings.hold_schedule_group,
            self.settings.hold_scheduler_role_arn,
            self.settings.send_queue_arn,
        )
        if not (group and role and arn) or wait <= 60:
            # No scheduler configured (or the window opens within a minute): SQS holds it.
            self.store.release(item.id, s.lease, {**s.facts(), "not_before": now_iso(opens)})
            return Retry(min(wait, MAX_VISIBILITY), "commercial message outside its window")
        # The name is the message's and the window's: a schedule of that name is this hold,
        # made by an earlier attempt whose answer was lost (ConflictException).
        name = f"hold-{item.id}-{int(opens.timestamp())}"
        target = {"Arn": arn, "RoleArn": role}
        if not self.schedules.create_once(name, group, opens, target, item.body):
            logger.info("hold schedule already exists", extra={"message_id": item.id})
        if not self.store.advance(
            item.id,
            Transition(
                Status.SCHEDULED,
                source="send",
                raw="commercial_window",
                attrs={**s.facts(), "not_before": now_iso(opens), "schedule_name": name},
                lease=s.lease,
                extra_history=s.queued,
            ),
        ):  # a copy of a message already held: it stays held, the lease goes back
            self.store.release(item.id, s.lease, {})
        count("MessagesScheduled", item.provider)
        logger.info(
            "commercial message held until its window opens",
            extra={"message_id": item.id, "not_before": now_iso(opens)},
        )
        return Done(Status.SCHEDULED.value, "held")

    def cancel(self, message_id: str) -> bool:
        """Cancel a message that has not gone out yet (queued or held): it becomes `failed`."""
        message = self.store.get_message(message_id)
        if message is None or message.get("status") in {s.value for s in FINAL}:
            return False
        if message.get("lease"):
            return False  # being sent right now
        cancelled = self.store.advance(
            message_id,
            Transition(
                Status.FAILED,
                source="cancel",
                raw="cancelled",
                attrs={"error_code": "cancelled", "error": "cancelled before sending"},
            ),
        )
        name = message.get("schedule_name")
        group = self.settings.hold_schedule_group
        if cancelled and name and group and not self.schedules.delete(name, group):
            # already fired or deleted: the claim refuses it
            logger.info("hold schedule already gone", extra={"message_id": message_id})
        return cancelled
