"""The sender: one SQS batch in, each message sent at most once, none lost.

Per record: parse the body (docs/contract.md, The send queue body), claim its id in the
messages table, check the opt-out list (read once per batch), the provider's rules and the
commercial window, send, and record the outcome. Only outcomes that certainly did not reach the
provider are retried (through SQS, with a visibility timeout from the outcome's minimum delay);
an outcome that may have reached it is recorded, never raised, so nothing is ever sent twice.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from . import commercial
from .clients import ClientPool
from .config import Settings
from .health import HealthBoard, Verdict
from .observability import count, logger
from .providers import (
    PROVIDERS,
    OutboundSms,
    Outcome,
    OutcomeKind,
    ProviderClient,
    RuleViolation,
    StatusLookup,
    is_test_number,
)
from .providers.base import Category, ProviderError
from .queue_body import BadBody, Job, QueueMessage, parse
from .retries import describe, with_retries
from .routing import Plan, Router, RoutingConfig, estimated_cost
from .sending import (
    ROUTE_ATTRIBUTE,
    Done,
    Forward,
    LaneChoice,
    Option,
    Refusal,
    Result,
    Retry,
    Route,
    Sending,
)
from .status import FINAL, Status
from .store import Store, now_iso

__all__ = ["BadBody", "Job", "QueueMessage", "SendService", "backoff", "parse"]

MAX_VISIBILITY = 43_200  # SQS's ceiling for a visibility timeout (12 h)
DEADLINE_MARGIN_MS = 3_000  # kept free after the slowest provider call, for the final write
MAX_QUEUE_DELAY = 900  # SQS's ceiling for DelaySeconds (15 min)
# Refusals after which another provider may carry the message: each says the provider (not the
# message) is the problem, and each is definite — nothing was sent, so nothing can be sent twice.
FAILOVER_CATEGORIES = frozenset({Category.AUTH, Category.CREDIT, Category.RATE_LIMIT})


class SendService:
    """Everything the send function does, behind its thin handler."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        credentials: Callable[[], Mapping[str, Any]],
        *,
        sqs: Any = None,
        scheduler: Any = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_receive_count: int = 5,
        routing: Callable[[], RoutingConfig] = RoutingConfig,
        health: HealthBoard | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.store, self.credentials = settings, store, credentials
        self._sqs, self._scheduler = sqs, scheduler
        self.clock = clock
        self.max_receive_count = max_receive_count
        self.clients = ClientPool(settings, credentials, lambda: self.store.db)
        self.router = Router(routing, settings.default_provider, rng)
        self.health = health

    # --- collaborators, built once per warm process ------------------------------------

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs")
        return self._sqs

    @property
    def scheduler(self) -> Any:
        if self._scheduler is None:
            import boto3

            self._scheduler = boto3.client("scheduler")
        return self._scheduler

    def client(self, provider: str) -> ProviderClient | None:
        return self.clients.get(provider)

    @property
    def slowest_call_ms(self) -> int:
        return int((self.settings.connect_timeout + self.settings.read_timeout) * 1000)

    # --- one batch -------------------------------------------------------------------------

    def batch(self, records: list[Mapping[str, Any]], remaining_ms: Callable[[], int]) -> Any:
        from .batch import Batch

        return Batch(self, records, remaining_ms)

    # --- lanes -----------------------------------------------------------------------------

    @property
    def routes_to_lanes(self) -> bool:
        """True when the send queue's messages go on to the providers' lanes (the stack has
        them); without lanes the send function sends from the send queue itself."""
        return bool(self.settings.lane_urls)

    def lane_of(self, queue_arn: str) -> str | None:
        """The provider whose lane `queue_arn` is (None: the producers' send queue)."""
        name = queue_arn.rsplit(":", 1)[-1]
        for provider, url in self.settings.lane_urls.items():
            if name and url.rstrip("/").endswith("/" + name):
                return provider
        return None

    def parallelism(self, provider: str | None) -> int:
        """Messages of one batch sent at once: one per connection the provider allows."""
        if provider is not None and PROVIDERS[provider].max_connections:
            return 1
        return self.settings.send_parallelism

    def choose_lane(self, item: Job) -> LaneChoice:
        """Where the router sends `item`: the lane of the first provider that can carry it
        now (its rules accept it and it is not cooling down), with the candidates after it
        (for failover). A message no provider can take goes to its first choice's lane,
        which records why it cannot be sent."""
        route = self.route(item, item.sms())
        ready = [o.provider for o in route.ready]
        healthy = [p for p in ready if self.health is None or not self.health.cooling(p)]
        if healthy:
            first = healthy[0]
        elif ready:
            first = ready[0]
        else:
            first = route.refused[0].provider
        rest = [p for p in ready if p != first]
        return LaneChoice(first, (first, *rest), route.plan.rule)

    def forward(self, provider: str, entries: list[Forward], delay: int = 0) -> set[str]:
        """Put `entries` on `provider`'s lane (SendMessageBatch, 10 per call), visible after
        `delay` seconds. Returns the keys of the entries SQS did not take (their records come
        back and are routed again; a copy that did get through is one the claim lets send
        only once)."""
        url = self.settings.lane_urls[provider]
        failed: set[str] = set()
        for start in range(0, len(entries), 10):
            chunk = entries[start : start + 10]
            try:
                answer = with_retries(
                    self.sqs.send_message_batch,
                    QueueUrl=url,
                    Entries=[
                        {
                            "Id": str(n),
                            "MessageBody": json.dumps(e.body),
                            "DelaySeconds": delay,
                            "MessageAttributes": {
                                ROUTE_ATTRIBUTE: {
                                    "DataType": "String",
                                    "StringValue": json.dumps(
                                        {"providers": list(e.providers), "rule": e.rule}
                                    ),
                                }
                            },
                        }
                        for n, e in enumerate(chunk)
                    ],
                )
            except Exception as exc:
                logger.warning(
                    "could not route to the lane", extra={"lane": provider, "error": describe(exc)}
                )
                failed.update(e.key for e in chunk)
                continue
            failed.update(chunk[int(f["Id"])].key for f in answer.get("Failed", []))
        return failed

    # --- one message -----------------------------------------------------------------------

    def process(
        self,
        item: Job | BadBody,
        opted_out: bool,
        receive_count: int,
        lane: str | None = None,
        routed: tuple[tuple[str, ...], str] | None = None,
    ) -> Result:
        """Send one message. In a lane (`lane`), `routed` holds the router's providers and
        rule, and a failover goes on to the next provider's lane."""
        if isinstance(item, BadBody):
            return self._fail_unclaimed(item)
        sms = item.sms()
        route = self.route(item, sms, routed)
        first = route.ready[0] if route.ready else route.refused[0]
        item = replace(item, provider=first.provider)
        lease_seconds = (self.slowest_call_ms * 2 + DEADLINE_MARGIN_MS) / 1000
        claim = self.store.claim(item.id, self._record(item), lease_seconds)
        if not claim.won:
            return self._not_ours(item, claim.existing or {})
        record = claim.item or {}
        created_at = record.get("created_at") or now_iso()
        s = Sending(
            item,
            claim.lease,
            [(Status.QUEUED, created_at, "send")],
            receive_count,
            list(record.get("provider_attempts") or []),
            route.plan.rule if route.plan.rule not in ("default", "named") else "",
            lane=lane,
        )
        s.recorded = str(record.get("provider") or item.provider)
        try:
            return self._claimed(s, sms, route, opted_out)
        except Exception:
            # An AWS call failed after the claim. Before any provider request nothing went
            # out: give the lease back so a redelivery sends it (never `unknown` for that).
            # After one, the lease stays: a redelivery settles it from what the provider says.
            if not s.requested:
                self.store.release(s.id, s.lease, {"last_attempt_at": now_iso()})
            raise

    def _claimed(self, s: Sending, sms: OutboundSms, route: Route, opted_out: bool) -> Result:
        item = s.job
        if opted_out:
            return self._fail(s, "opted_out", "recipient has opted out")
        if not route.ready:
            refusal = route.refused[0]
            return self._fail(s, refusal.code, refusal.reason)
        usable, waiting = self._healthy(route.ready)
        if not usable:
            return self._wait(s, waiting)
        if item.message.commercial and PROVIDERS[usable[0].provider].holds_commercial:
            s.job = replace(s.job, provider=usable[0].provider)
            held = self._hold_if_closed(s)
            if held is not None:
                return held
        return self._send(s, sms, usable)

    def route(
        self,
        item: Job,
        sms: OutboundSms,
        routed: tuple[tuple[str, ...], str] | None = None,
    ) -> Route:
        """The providers that may carry `item`, in the router's order (or in `routed`'s, the
        order the router gave a lane's message), with the ones that cannot (not configured,
        or their rules refuse the message) and why. Only the plan's providers (and a
        `cheapest` rule's) are checked, each once."""
        checks: dict[str, Option | Refusal] = {}

        def check(provider: str) -> Option | Refusal:
            if provider not in checks:
                checks[provider] = self._check(provider, sms)
            return checks[provider]

        def segments(provider: str) -> int:
            found = check(provider)
            return found.prepared.segments if isinstance(found, Option) else 1

        m = item.message
        if routed is not None:
            providers, rule = routed
            plan = Plan(providers, len(providers) > 1, rule or "default")
        else:
            plan = self.router.plan(item.to, m.commercial, m.provider, m.failover, segments)
        ready = [c for p in plan.providers if isinstance(c := check(p), Option)]
        refused = [c for p in plan.providers if isinstance(c := check(p), Refusal)]
        return Route(plan, ready, refused)

    def _check(self, provider: str, sms: OutboundSms) -> Option | Refusal:
        client = self.client(provider)
        if client is None:
            return Refusal(
                provider,
                "provider_not_configured",
                f"provider {provider} has no credentials in the provider secret",
            )
        try:
            return Option(provider, client, client.check(sms))
        except RuleViolation as exc:
            return Refusal(provider, f"rule:{exc.rule}", str(exc))

    def _healthy(self, ready: list[Option]) -> tuple[list[Option], list[tuple[str, Verdict]]]:
        if self.health is None:
            return ready, []
        usable, waiting = [], []
        for option in ready:
            verdict = self.health.verdict(option.provider)
            if verdict.available:
                usable.append(option)
            else:
                waiting.append((option.provider, verdict))
        return usable, waiting

    def _send(self, s: Sending, sms: OutboundSms, usable: list[Option]) -> Result:
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

    @staticmethod
    def _record(item: Job) -> dict[str, Any]:
        m = item.message
        return {
            "direction": "out",
            "provider": item.provider,
            "to": item.to,
            "text": m.text,
            "subject": m.subject or None,
            "express": m.express or None,
            "commercial": m.commercial or None,
            "sender": m.sender,
        }

    def dead_letter_record(self, item: Job | BadBody) -> dict[str, Any] | None:
        """The record a message that dead-letters before its claim gets (None for a body that
        could not be parsed: it is recorded `failed`, never dead-lettered)."""
        return self._record(item) if isinstance(item, Job) else None

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
                Status.SENT,
                source="send",
                raw=outcome.code,
                attrs=facts,
                lease=s.lease,
                extra_history=s.queued,
                clear=("error_code", "error"),
            ):
                # A receipt got there first (status is already past `sent`): keep the facts.
                self.store.set_attrs(
                    s.id, s.lease, {k: v for k, v in facts.items() if v is not None}
                )
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
                )
                count("MessagesSent", s.provider)
                return Done(lookup.status.value, lookup.code)
        self.store.advance(
            s.id,
            Status.UNKNOWN,
            source="send",
            raw=outcome.code,
            attrs={
                **s.facts(),
                "error_code": outcome.code,
                "error": outcome.reason,
                "segments": segments,
            },
            lease=s.lease,
            extra_history=s.queued,
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
        delay = backoff(outcome.retry_after, s.receive_count)
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
        now = time.time()
        until = min(v.until for _, v in waiting)
        delay = max(30, min(MAX_QUEUE_DELAY, int(until - now) + 1))
        why = "; ".join(f"{p}: {v.reason}" for p, v in waiting)
        self.store.release(
            s.id,
            s.lease,
            {
                **s.facts(),
                "error_code": "provider_unavailable",
                "error": f"waiting for a provider ({why})",
                "last_attempt_at": now_iso(),
            },
        )
        for provider, verdict in waiting:
            count("MessagesWaiting", provider, reason=verdict.reason)
        logger.warning(
            "no healthy provider: the message waits",
            extra=s.log(waiting_for=why, retry_in=delay),
        )
        if self.settings.send_queue_url:
            with_retries(
                self.sqs.send_message,
                QueueUrl=self.settings.send_queue_url,
                MessageBody=json.dumps(s.job.body),
                DelaySeconds=delay,
            )
            return Done(Status.QUEUED.value, "waiting")
        return Retry(delay, f"waiting for a provider ({why})")

    def _fail(
        self, s: Sending, code: str, reason: str, also: list[dict[str, Any]] | None = None
    ) -> Done:
        self.store.advance(
            s.id,
            Status.FAILED,
            source="send",
            raw=code,
            attrs={**s.facts(), "error_code": code, "error": reason},
            lease=s.lease,
            extra_history=s.queued,
            also=also or (),
        )
        count("MessagesFailed", s.provider, reason=failure_reason(code))
        logger.info("message failed", extra=s.log(code=code, reason=reason))
        return Done(Status.FAILED.value, code)

    def _fail_unclaimed(self, bad: BadBody) -> Done:
        """A body that cannot be sent: record it failed, unless the id already has a record
        (then it is somebody else's message, and we must not overwrite it)."""
        created = self.store.advance(
            bad.id,
            Status.FAILED,
            source="send",
            raw="invalid_body",
            attrs={"error_code": "invalid_body", "error": bad.reason},
            create={"direction": "out", "provider": bad.provider, "created_at": now_iso()},
        )
        count("MessagesFailed", bad.provider or "", reason="invalid_body")
        logger.warning(
            "invalid message body",
            extra={"message_id": bad.id, "reason": bad.reason, "recorded": created},
        )
        return Done(Status.FAILED.value, "invalid_body")

    def _not_ours(self, item: Job, existing: Mapping[str, Any]) -> Result:
        """The id has a record we could not claim: a redelivery, a producer's retry, or a
        concurrent copy of this message."""
        status = existing.get("status")
        if status not in (Status.QUEUED.value, Status.SCHEDULED.value):
            count("DuplicatesDropped", item.provider)
            logger.info("duplicate dropped", extra={"message_id": item.id, "status": status})
            return Done(str(status), "duplicate")
        until = int(existing.get("lease_until", 0))
        now = int(time.time())
        if until > now:  # another sender is on it right now; look again after its lease
            return Retry(until - now + 1, "message is being sent by another invocation")
        return self._recover_stale(item, existing)

    def _recover_stale(self, item: Job, existing: Mapping[str, Any]) -> Result:
        """A sender stopped between its request and its record. What it sent is unknown;
        a provider with a status lookup can tell us, the others cannot. The record names the
        provider it was sending through (routing may have picked another than this delivery
        would)."""
        lease = str(existing.get("lease", ""))
        item = replace(item, provider=str(existing.get("provider") or item.provider))
        client = self.client(item.provider)
        lookup = self._lookup(client, item.id) if client is not None else None
        if lookup is not None and not lookup.found:
            self.store.release(
                item.id, lease, {"error": "previous attempt never reached the provider"}
            )
            return Retry(1, "previous attempt never reached the provider")
        if lookup is not None and lookup.status is not None:
            self.store.advance(item.id, lookup.status, source="poll", raw=lookup.code, lease=lease)
            return Done(lookup.status.value, lookup.code)
        self.store.advance(
            item.id,
            Status.UNKNOWN,
            source="send",
            raw="interrupted",
            attrs={
                "error_code": "interrupted",
                "error": "sender stopped before recording the provider's answer",
            },
            lease=lease,
        )
        count("SendUnknown", item.provider)
        return Done(Status.UNKNOWN.value, "interrupted")

    # --- commercial hours ------------------------------------------------------------------

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
        try:
            with_retries(
                self.scheduler.create_schedule,
                Name=name,
                GroupName=group,
                ScheduleExpression=f"at({opens.strftime('%Y-%m-%dT%H:%M:%S')})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={"Arn": arn, "RoleArn": role, "Input": json.dumps(item.body)},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            logger.info("hold schedule already exists", extra={"message_id": item.id})
        if not self.store.advance(
            item.id,
            Status.SCHEDULED,
            source="send",
            raw="commercial_window",
            attrs={**s.facts(), "not_before": now_iso(opens), "schedule_name": name},
            lease=s.lease,
            extra_history=s.queued,
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
            Status.FAILED,
            source="cancel",
            raw="cancelled",
            attrs={"error_code": "cancelled", "error": "cancelled before sending"},
        )
        name = message.get("schedule_name")
        if cancelled and name and self.settings.hold_schedule_group:
            try:
                self.scheduler.delete_schedule(
                    Name=name, GroupName=self.settings.hold_schedule_group
                )
            except Exception:  # already fired or deleted: the claim refuses it
                logger.info("hold schedule already gone", extra={"message_id": message_id})
        return cancelled

    def change_visibility(self, receipt_handle: str, delay: int, lane: str | None = None) -> None:
        url = self.settings.lane_urls.get(lane, "") if lane else self.settings.send_queue_url
        if url:
            self.sqs.change_message_visibility(
                QueueUrl=url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(delay, MAX_VISIBILITY)),
            )


def failure_reason(code: str) -> str:
    """The `Reason` dimension of MessagesFailed: a few fixed values, never the raw code."""
    if code.startswith("rule:"):
        return "rule"
    if code in ("opted_out", "provider_not_configured", "invalid_body", "cancelled"):
        return code
    return "provider_refused"


def backoff(minimum: int, receive_count: int) -> int:
    """Exponential backoff from 5 s, capped at 15 min, never under the outcome's minimum."""
    base = min(900, 5 * 2 ** max(0, receive_count - 1))
    return max(minimum, int(base * random.uniform(0.8, 1.2)))
