"""The record's transitions: what each provider answer makes of a claimed message.

Sent and unknown outcomes are recorded (never raised: they may have reached the provider, so
nothing is ever sent twice); a definite refusal fails the message; a retryable one gives the
lease back and the record to SQS with a backoff; no healthy provider makes it wait."""

from __future__ import annotations

import random
import time
from decimal import Decimal
from typing import Any

from ..health import Verdict
from ..observability import count, logger
from ..protection import DESTINATION_BLOCKED, VELOCITY_EXCEEDED
from ..providers import (
    Outcome,
    OutcomeKind,
    ProviderClient,
    StatusLookup,
    is_test_number,
)
from ..providers.base import Category, ProviderError
from ..queue_body import BadBody
from ..routing import estimated_cost
from ..sending import (
    Done,
    Option,
    Result,
    Retry,
    Sending,
)
from ..status import Status
from ..store import Transition, now_iso
from .base import MAX_QUEUE_DELAY, SendBase


class Outcomes(SendBase):
    """Recording a claimed message's outcome."""

    def _cost(self, provider: str, segments: int) -> Decimal | None:
        cost = estimated_cost(self.router.config(), provider, segments)
        return None if cost is None else Decimal(str(cost))

    def _settle(self, s: Sending, option: Option, outcome: Outcome) -> Result:
        segments = option.prepared.segments
        if outcome.kind is OutcomeKind.SENT:
            facts = {
                **s.facts(),
                "provider_message_id": outcome.provider_message_id,
                "segments": segments,
                "cost_estimate": self._cost(s.provider, segments),
                "sent_at": now_iso(),
            }
            if not self.store.advance(
                s.id,
                Transition(
                    Status.SENT,
                    source="send",
                    raw=outcome.code,
                    attrs=facts,
                    lease=s.lease,
                    extra_history=s.queued,
                    clear=("error_code", "error"),
                    also=self._counted(s),
                ),
            ):
                # A receipt got there first (status is already past `sent`): keep the facts.
                self.store.release(s.id, s.lease, {k: v for k, v in facts.items() if v is not None})
            count("MessagesSent", s.provider)
            logger.info("message sent", extra=s.log(outcome=outcome.kind.value, code=outcome.code))
            return Done(Status.SENT.value, outcome.code)
        if outcome.kind is OutcomeKind.REJECTED:
            # The provider's opt-out is stored with the failure, in one transaction: neither
            # is ever recorded without the other.
            also = []
            if outcome.opt_out and not is_test_number(s.job.to):
                how = f"provider code {outcome.code}"
                also = [self.store.opt_out_write(s.job.to, how=how, provider=s.provider)]
            return self._fail(s, outcome.code, outcome.reason, also)
        if outcome.kind is OutcomeKind.RETRYABLE:
            return self._retry(s, outcome)
        return self._settle_unknown(s, option.client, outcome, segments)

    def _settle_unknown(
        self, s: Sending, client: ProviderClient, outcome: Outcome, segments: int
    ) -> Result:
        """The request may have reached the provider. Ask it (a provider with a status
        lookup can say, by our id) before anything else; never resend on a guess."""
        if client.has_status:
            lookup = self._lookup(client, s.id)
            if lookup is not None and not lookup.found:
                # the provider has no message with our id: the request never arrived
                no_send = Outcome(
                    OutcomeKind.RETRYABLE,
                    Category.NO_ANSWER,
                    outcome.code,
                    f"{outcome.reason}; provider has no record of it, resending",
                    retry_after=5,
                )
                return self._retry(s, no_send)
            if lookup is not None and lookup.status is not None:
                history = [*s.queued]
                if lookup.status is not Status.SENT:
                    history.append((Status.SENT, now_iso(), "poll"))
                self.store.advance(
                    s.id,
                    Transition(
                        lookup.status,
                        source="poll",
                        raw=lookup.code,
                        attrs={
                            **s.facts(),
                            "segments": segments,
                            "cost_estimate": self._cost(s.provider, segments),
                            "sent_at": now_iso(),
                        },
                        lease=s.lease,
                        extra_history=history,
                        clear=("error_code", "error"),
                        also=self._counted(s),
                    ),
                )
                count("MessagesSent", s.provider)
                return Done(lookup.status.value, lookup.code)
        self.store.advance(
            s.id,
            Transition(
                Status.UNKNOWN,
                source="send",
                raw=outcome.code,
                attrs={
                    **s.facts(),
                    "error_code": outcome.code,
                    "error": outcome.reason,
                    "segments": segments,
                    # it may have been billed: protection counts it against the budget too
                    "cost_estimate": self._cost(s.provider, segments),
                },
                lease=s.lease,
                extra_history=s.queued,
                also=self._counted(s),
            ),
        )
        count("SendUnknown", s.provider)
        logger.warning("no usable answer: outcome unknown", extra=s.log(code=outcome.code))
        return Done(Status.UNKNOWN.value, outcome.code)

    def _lookup(self, client: ProviderClient, message_id: str) -> StatusLookup | None:
        if not client.has_status:
            return None
        try:
            return client.status(climsgid=message_id)
        except ProviderError as exc:
            logger.warning(
                "status lookup failed", extra={"message_id": message_id, "code": exc.code}
            )
            return None

    def _retry(self, s: Sending, outcome: Outcome) -> Result:
        if outcome.fail_when_spent and s.receive_count >= self.max_receive_count:
            # the provider said "not sent" on every try: the user sees its code and reason
            return self._fail(s, outcome.code, f"{outcome.reason}, on every try")
        self.store.release(
            s.id,
            s.lease,
            {
                **s.facts(),
                "error_code": outcome.code,
                "error": outcome.reason,
                "last_attempt_at": now_iso(),
            },
        )
        count("SendRetried", s.provider)
        if outcome.category is Category.AUTH:
            count("ProviderAuthFailed", s.provider)
        elif outcome.category is Category.CREDIT:
            count("ProviderCreditExhausted", s.provider)
        delay = self._before_deadline(s, backoff(outcome.retry_after, s.receive_count))
        extra = s.log(
            code=outcome.code,
            reason=outcome.reason,
            retry_in=delay,
            receive_count=s.receive_count,
        )
        # On the last receive the batch logs the dead letter at ERROR (Batch._failed).
        logger.warning("retryable outcome: the message comes back later", extra=extra)
        return Retry(delay, f"{outcome.code}: {outcome.reason}")

    def _wait(self, s: Sending, waiting: list[tuple[str, Verdict]]) -> Result:
        """Every provider that could carry the message is cooling down (unhealthy, out of
        credit): the message waits — re-queued with a delay, so a long outage never walks it
        to the dead-letter queue — and `MessagesWaiting` (alarmed) says which provider and why."""
        until = min(v.until for _, v in waiting)
        why = "; ".join(f"{p}: {v.reason}" for p, v in waiting)
        for provider, verdict in waiting:
            count("MessagesWaiting", provider, reason=verdict.reason)
        return self._wait_until(s, until, "provider_unavailable", f"waiting for a provider ({why})")

    def _wait_until(
        self, s: Sending, until: float, code: str, why: str, reason: str = ""
    ) -> Result:
        """Re-queue the message (recorded `queued` with `code` and `why`) to be seen again at
        `until` (epoch seconds; 30 s to 15 min from now)."""
        if reason:
            count("MessagesWaiting", s.provider, reason=reason)
        delay = self._before_deadline(
            s, max(30, min(MAX_QUEUE_DELAY, int(until - time.time()) + 1))
        )
        self.store.release(
            s.id,
            s.lease,
            {**s.facts(), "error_code": code, "error": why, "last_attempt_at": now_iso()},
        )
        logger.warning("the message waits", extra=s.log(code=code, why=why, retry_in=delay))
        if self.settings.send_queue_url:
            self.queues.send(self.settings.send_queue_url, s.job.body, delay)
            return Done(Status.QUEUED.value, "waiting")
        return Retry(delay, why)

    def _counted(self, s: Sending) -> list[dict[str, Any]]:
        """Counter writes a sent (or unknown) record carries in its transaction (protection
        adds the recipient's)."""
        return []

    def _fail(
        self, s: Sending, code: str, reason: str, also: list[dict[str, Any]] | None = None
    ) -> Done:
        self.store.advance(
            s.id,
            Transition(
                Status.FAILED,
                source="send",
                raw=code,
                attrs={**s.facts(), "error_code": code, "error": reason},
                lease=s.lease,
                extra_history=s.queued,
                also=also or (),
            ),
        )
        count("MessagesFailed", s.provider, reason=failure_reason(code))
        logger.info("message failed", extra=s.log(code=code, reason=reason))
        return Done(Status.FAILED.value, code)

    def _expired(self, s: Sending) -> bool:
        return s.deadline is not None and self.clock() >= s.deadline

    def _expire(self, s: Sending, why: str = "its validity ended before it could be sent") -> Done:
        return self._fail(s, "expired", why)

    def _before_deadline(self, s: Sending, delay: int) -> int:
        """`delay`, shortened so that a message waiting to come back is seen again when its
        validity ends (and ends `expired` then, not at its next try)."""
        if s.deadline is None:
            return delay
        left = int((s.deadline - self.clock()).total_seconds()) + 1
        return max(1, min(delay, left))

    def _fail_unclaimed(self, bad: BadBody) -> Done:
        """A body that cannot be sent: record it failed, unless the id already has a record
        (then it is somebody else's message, and we must not overwrite it)."""
        created = self.store.advance(
            bad.id,
            Transition(
                Status.FAILED,
                source="send",
                raw="invalid_body",
                attrs={"error_code": "invalid_body", "error": bad.reason},
                create={"direction": "out", "provider": bad.provider, "created_at": now_iso()},
            ),
        )
        count("MessagesFailed", bad.provider or "", reason="invalid_body")
        logger.warning(
            "invalid message body",
            extra={"message_id": bad.id, "reason": bad.reason, "recorded": created},
        )
        return Done(Status.FAILED.value, "invalid_body")


KNOWN_FAILURES = frozenset(
    {"opted_out", "provider_not_configured", "invalid_body", "cancelled", "expired"}
    | {DESTINATION_BLOCKED, VELOCITY_EXCEEDED}
)


def failure_reason(code: str) -> str:
    """The `Reason` dimension of MessagesFailed: a few fixed values, never the raw code."""
    if code.startswith("rule:"):
        return "rule"
    if code in KNOWN_FAILURES:
        return code
    return "provider_refused"


def backoff(minimum: int, receive_count: int) -> int:
    """Exponential backoff from 5 s, capped at 15 min, never under the outcome's minimum."""
    base = min(900, 5 * 2 ** max(0, receive_count - 1))
    return max(minimum, int(base * random.uniform(0.8, 1.2)))
