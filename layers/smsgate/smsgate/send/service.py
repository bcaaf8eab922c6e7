"""The sender: one SQS batch in, each message sent at most once, none lost.

Per record (`SendService.process`): parse the body (docs/contract.md, The send queue body),
claim its id in the messages table, check the opt-out list (read once per batch), the
candidates' rules and health and the commercial window, send, and record the outcome
(`outcomes`). Only outcomes that certainly did not reach the provider are retried (through SQS,
with a visibility timeout from the outcome's minimum delay); an outcome that may have reached
it is recorded, never raised, so nothing is ever sent twice."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..observability import count, logger
from ..providers import (
    OutboundSms,
    Outcome,
    OutcomeKind,
)
from ..queue_body import BadBody, Cancel, Job
from ..retries import describe
from ..sending import (
    Done,
    Forward,
    Option,
    Result,
    Route,
    Sending,
)
from ..status import Status
from ..store import now_iso
from .base import DEADLINE_MARGIN_MS, FAILOVER_CATEGORIES
from .lanes import Lanes
from .protect import Guard, Protect
from .recovery import Recovery


class SendService(Lanes, Recovery, Protect):
    """Everything the send function does, behind its thin handler."""

    def batch(self, records: list[Mapping[str, Any]], remaining_ms: Callable[[], int]) -> Any:
        from .batch import Batch

        return Batch(self, records, remaining_ms)

    def process(
        self,
        item: Job | BadBody | Cancel,
        opted_out: bool,
        receive_count: int,
        lane: str | None = None,
        routed: tuple[tuple[str, ...], str] | None = None,
        guard: Guard | None = None,
    ) -> Result:
        """Send one message. In a lane (`lane`), `routed` holds the router's providers and
        rule, and a failover goes on to the next provider's lane. `guard` is the batch's view
        of the protection counters (read here when the message comes alone)."""
        if isinstance(item, BadBody):
            return self._fail_unclaimed(item)
        if isinstance(item, Cancel):
            return self.cancel(item.id)
        sms = item.sms()
        route = self.route(item, sms, routed)
        first = route.ready[0] if route.ready else route.refused[0]
        item = replace(item, provider=first.provider)
        lease_seconds = (self.slowest_call_ms * 2 + DEADLINE_MARGIN_MS) / 1000
        claim = self.store.claim(item.id, self._record(item), lease_seconds)
        if not claim.won:
            return self._not_ours(item, claim.existing or {})
        record = claim.item or {}
        if int(record.get("attempts") or 0) > 1 and (
            conflict := self._refuse_conflict(item, record)
        ):
            # the id's own message waits to be retried: this other body gives the lease back
            self.store.release(item.id, claim.lease, {})
            return conflict
        created_at = record.get("created_at") or now_iso()
        s = Sending(
            item,
            claim.lease,
            [(Status.QUEUED, created_at, "send")],
            receive_count,
            list(record.get("provider_attempts") or []),
            route.plan.rule if route.plan.rule not in ("default", "named") else "",
            lane=lane,
            first_claim=int(record.get("attempts") or 0) <= 1,
            deadline=item.message.deadline(datetime.fromisoformat(created_at)),
        )
        s.recorded = str(record.get("provider") or item.provider)
        guard = guard or self.guard_for(item.to)
        try:
            return self._claimed(s, sms, route, opted_out, guard)
        except Exception:
            # An AWS call failed after the claim. Before any provider request nothing went
            # out: give the lease back so a redelivery sends it (never `unknown` for that).
            # After one, the lease stays: a redelivery settles it from what the provider says.
            if not s.requested:
                self.store.release(s.id, s.lease, {"last_attempt_at": now_iso()})
            raise

    def _claimed(
        self, s: Sending, sms: OutboundSms, route: Route, opted_out: bool, guard: Guard
    ) -> Result:
        item = s.job
        now = self.clock()
        problem = item.message.timing_problem(now) if s.first_claim else None
        if problem:  # checked once: when the message comes back from a hold it is on time
            return self._fail(s, "invalid_body", f"invalid message: {problem}")
        if self._expired(s):
            return self._expire(s)
        if opted_out:
            return self._fail(s, "opted_out", "recipient has opted out")
        if not route.ready:
            refusal = route.refused[0]
            return self._fail(s, refusal.code, refusal.reason)
        send_at = item.message.send_at
        if send_at is not None and send_at > now:
            return self._hold(s, send_at, "send_at", "scheduled")
        usable, waiting = self._healthy(route.ready)
        if not usable:
            return self._wait(s, waiting)
        if item.message.commercial:  # quiet hours, on every provider (and its own window)
            s.job = replace(s.job, provider=usable[0].provider)
            held = self._hold_if_closed(s)
            if held is not None:
                return held
        try:
            # Protection last, when the message would otherwise go now: the velocity and
            # budget it takes are given back if it does not go.
            exceeded = self._take_velocity(s, guard)
            if exceeded is not None:
                return self._refuse_velocity(s, exceeded)
            within, over = self._within_budget(usable, guard, s.job.to)
            if not within:
                return self._wait_for_budget(s, over)
            return self._send(s, sms, within, guard)
        finally:
            self._protection_done(s, guard)

    def _send(self, s: Sending, sms: OutboundSms, usable: list[Option], guard: Guard) -> Result:
        """Send through the first usable provider; move to the next only after a definite
        refusal that says the provider is the problem (FAILOVER_CATEGORIES). A lane sends
        through its own provider only: another one's message moves to that one's lane."""
        if s.lane is not None and usable[0].provider != s.lane:
            return self._hand_over(s, usable, {})
        for index, option in enumerate(usable):
            s.job = replace(s.job, provider=option.provider)
            if option.provider != s.recorded:
                # The record names the provider being tried before the request goes out, so a
                # sender that dies mid-request is settled with the right provider.
                self.store.note(s.id, s.lease, s.facts())
                s.recorded = option.provider
            if self._expired(s):  # checked right before the request: never sent late
                return self._expire(s)
            self._give_back_spend(s, guard)  # a failover's earlier provider was not paid
            over = self._take_spend(s, option, guard)
            if over is not None:  # another sender of this batch took the rest meanwhile
                if index + 1 < len(usable):
                    continue
                return self._wait_for_budget(s, over)
            started = time.monotonic()
            s.requested = True
            outcome = option.client.send(sms, option.prepared)
            # Only a sent or unknown outcome may have reached the provider; after a definite
            # refusal the lease may still be given back if recording it fails.
            s.requested = outcome.kind in (OutcomeKind.SENT, OutcomeKind.UNKNOWN)
            latency_ms = int((time.monotonic() - started) * 1000)
            self._observe(option.provider, outcome, latency_ms)
            s.attempts.append(
                {
                    "provider": option.provider,
                    "code": outcome.code,
                    "outcome": outcome.kind.value,
                    "at": now_iso(),
                }
            )
            more = index + 1 < len(usable)
            if (
                more
                and outcome.kind is OutcomeKind.RETRYABLE
                and outcome.category in FAILOVER_CATEGORIES
            ):
                count("SendFailedOver", option.provider, reason=outcome.category.value)
                logger.warning(
                    "provider refused: failing over to the next provider",
                    extra=s.log(code=outcome.code, next=usable[index + 1].provider),
                )
                if s.lane is not None:
                    failed_over = {"error_code": outcome.code, "error": outcome.reason}
                    return self._hand_over(s, usable[index + 1 :], failed_over)
                continue
            return self._settle(s, option, outcome)
        raise AssertionError("unreachable: the last option always settles")

    def _hand_over(self, s: Sending, rest: list[Option], attrs: Mapping[str, Any]) -> Result:
        """Move the message to the lane of `rest[0]` (a failover, or its lane's provider is
        cooling down): the lease is given back (nothing was sent here), then the message goes
        on with `rest`; the claim in that lane keeps it from being sent twice."""
        self.store.release(s.id, s.lease, {**s.facts(), **attrs, "last_attempt_at": now_iso()})
        providers = tuple(o.provider for o in rest)
        forward = Forward(s.id, s.job.body, providers, s.rule)
        if self.forward(providers[0], [forward]):
            raise RuntimeError(f"could not hand the message to the {providers[0]} lane")
        return Done(Status.QUEUED.value, "failed_over")

    def _observe(self, provider: str, outcome: Outcome, latency_ms: int) -> None:
        """Tell the health board; its writes are advice, so a failed one costs a health sample,
        never the message's own record."""
        if self.health is None:
            return
        try:
            self.health.observe(provider, outcome, latency_ms)
        except Exception as exc:
            logger.warning(
                "could not record provider health",
                extra={"provider": provider, "error": describe(exc)},
            )

    def dead_letter_record(self, item: Job | BadBody) -> dict[str, Any] | None:
        """The record a message that dead-letters before its claim gets (None for a body that
        could not be parsed: it is recorded `failed`, never dead-lettered)."""
        return self._record(item) if isinstance(item, Job) else None
