"""Holds: a message with a `send_at` ahead, or a commercial message outside its country's quiet
hours (or outside the window of a provider that `holds_commercial`), waits in an EventBridge
Scheduler schedule (or, without one, in SQS); a message that has not gone out yet can be
cancelled."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

from .. import commercial
from ..observability import count, logger
from ..providers import PROVIDERS
from ..queues import MAX_VISIBILITY
from ..sending import (
    Done,
    Result,
    Retry,
    Sending,
)
from ..status import Status
from ..store import CLAIMABLE, Transition, now_iso
from .outcomes import Outcomes


class Holds(Outcomes):
    """Holds (`send_at`, quiet hours) and cancelling."""

    def _hold_if_closed(self, s: Sending) -> Result | None:
        item = s.job
        now = self.clock()
        # The country's quiet hours, and a provider that `holds_commercial` adds its window
        provider = PROVIDERS[item.provider]
        window = self.settings.commercial_windows if provider.holds_commercial else None
        quiet = self.router.config().quiet_hours
        opens = commercial.opens_at(now, item.to, quiet, window, provider.home_zone)
        if opens is None:
            return None
        return self._hold(s, opens, "commercial_window", "commercial message outside its window")

    def _hold(self, s: Sending, until: datetime, raw: str, why: str) -> Result:
        """Keep the message back until `until`: a one-off EventBridge Scheduler schedule puts
        its body back on the send queue then (without a scheduler, or within a minute, SQS
        holds it). Recorded `scheduled` with `not_before`; a hold that would outlast the
        message's validity ends it `expired` now instead."""
        item = s.job
        if s.deadline is not None and until >= s.deadline:
            return self._expire(s, f"its validity ends before it may go out ({why})")
        wait = int((until - self.clock()).total_seconds()) + 1
        group, role, arn = (
            self.settings.hold_schedule_group,
            self.settings.hold_scheduler_role_arn,
            self.settings.send_queue_arn,
        )
        if not (group and role and arn) or wait <= 60:
            self.store.release(item.id, s.lease, {**s.facts(), "not_before": now_iso(until)})
            return Retry(min(wait, MAX_VISIBILITY), why)
        # The name is the message's and the moment's: a schedule of that name is this hold,
        # made by an earlier attempt whose answer was lost (ConflictException).
        name = f"hold-{item.id}-{int(until.timestamp())}"
        target = {"Arn": arn, "RoleArn": role}
        if not self.schedules.create_once(name, group, until, target, item.body):
            logger.info("hold schedule already exists", extra={"message_id": item.id})
        if not self.store.advance(
            item.id,
            Transition(
                Status.SCHEDULED,
                source="send",
                raw=raw,
                attrs={**s.facts(), "not_before": now_iso(until), "schedule_name": name},
                lease=s.lease,
                extra_history=s.queued,
            ),
        ):  # a copy of a message already held: it stays held, the lease goes back
            self.store.release(item.id, s.lease, {})
        count("MessagesScheduled", item.provider, reason=raw)
        logger.info(
            "message held", extra={"message_id": item.id, "not_before": now_iso(until), "why": why}
        )
        return Done(Status.SCHEDULED.value, "held")

    def cancel(self, message_id: str) -> Result:
        """Take back a message that has not gone out (queued, scheduled or held, not being
        sent): it ends `failed` / `cancelled` and its schedule is deleted. An id not seen yet
        is recorded cancelled, so its body, when it comes, is never sent. A cancel after the
        send changes nothing and says so; a second cancel finds the first. While a sender
        holds the message the cancel comes back after its lease."""
        cancelled = Transition(
            Status.FAILED,
            source="cancel",
            raw="cancelled",
            attrs={"error_code": "cancelled", "error": "cancelled before sending"},
            only_from=CLAIMABLE,
            unleased=True,
        )
        message = self.store.get_message(message_id)
        if message is None:
            created = {"direction": "out", "created_at": now_iso()}
            if self.store.advance(message_id, replace(cancelled, create=created)):
                return self._cancelled(message_id, "", "before its message arrived")
            message = self.store.get_message(message_id) or {}
        status = str(message.get("status", ""))
        if status not in CLAIMABLE:
            already = message.get("error_code") == "cancelled"
            logger.info(
                "cancel changed nothing",
                extra={"message_id": message_id, "status": status, "already": already},
            )
            return Done(status, "already_cancelled" if already else "too_late")
        if message.get("lease"):  # a sender holds it (or died holding it): look again later
            until = int(message.get("lease_until", 0) or 0)
            return Retry(max(30, until - int(time.time()) + 1), "being sent: cancel later")
        if not self.store.advance(message_id, cancelled):  # it moved meanwhile
            return Retry(1, "the message changed meanwhile: cancel again")
        name = message.get("schedule_name")
        group = self.settings.hold_schedule_group
        if name and group and not self.schedules.delete(name, group):
            # already fired or deleted: the claim refuses it
            logger.info("hold schedule already gone", extra={"message_id": message_id})
        return self._cancelled(message_id, str(message.get("provider") or ""), status)

    def _cancelled(self, message_id: str, provider: str, was: str) -> Done:
        count("MessagesFailed", provider, reason="cancelled")
        logger.info("message cancelled", extra={"message_id": message_id, "was": was})
        return Done(Status.FAILED.value, "cancelled")
