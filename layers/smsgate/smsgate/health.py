"""Provider health, shared by every concurrent sender through DynamoDB.

The health table (`HEALTH_TABLE`, key `provider` + `slot`) holds, per provider:
- `w#<epoch minute>` items: answers, errors and summed latency of that minute (TTL'd), so the
  error rate and mean latency over the sliding window are one Query away;
- one `state` item: `unhealthy_until` (epoch seconds) and `reason` while the provider is skipped,
  `probe_until` while one sender probes it after the cool-down, and the last `credit` balance the
  credit check saw.

A definite refusal (authentication, credit) marks the provider unhealthy at once; errors and
slowness mark it when the window's figures cross the policy's limits. After the cool-down one
sender wins a conditional write and probes the provider with a real message: an answer clears
the state, a failure starts another cool-down. A send answers first and writes its counters once
per batch (`flush`), so health costs the happy path one read and one write per batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .observability import count, gauge, logger
from .providers import Category, Outcome, OutcomeKind
from .routing import HealthPolicy
from .store import from_item, to_item, update_if
from .store.expressions import Update, absent, below, equals, exists

STATE = "state"
PROBE_SECONDS = 60  # how long a probe is reserved for the sender that won it
BUCKET_SECONDS = 60
BUCKET_TTL_SECONDS = 3600 + 600  # beyond the longest window the policy allows
# A warm sender writes its answers at most this often while they are all good (errors and slow
# answers are written with the batch that saw them): ~0 extra writes per message in steady
# state, and at most this many seconds of good answers lost if the process dies.
WRITE_EVERY_SECONDS = 10
# Refusals that say the provider (not the message) is the problem: skip it now.
IMMEDIATE = {Category.AUTH: "auth", Category.CREDIT: "credit"}
# Outcomes that count as the provider failing in the window. A refused message (invalid
# number, opt-out) or a flood refusal (one text to one number per 10 s) is the provider
# working as documented, so it counts as an answer, not an error.
ERROR_CATEGORIES = {
    Category.AUTH,
    Category.CREDIT,
    Category.RATE_LIMIT,
    Category.PROVIDER_ERROR,
    Category.NETWORK,
    Category.NO_ANSWER,
}


@dataclass(frozen=True)
class Verdict:
    available: bool
    reason: str = ""
    until: float = 0.0  # when the provider may be tried again (epoch seconds)
    probe: bool = False  # this sender won the probe after a cool-down


@dataclass
class Tally:
    answers: int = 0
    errors: int = 0
    latency_ms: int = 0
    timed: int = 0


@dataclass
class WindowFigures:
    samples: int
    errors: int
    mean_latency_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.samples if self.samples else 0.0


@dataclass
class HealthBoard:
    table: str
    db: Any
    policy: Callable[[], HealthPolicy]
    clock: Callable[[], float] = time.time
    _states: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tallies: dict[str, Tally] = field(default_factory=dict)
    _probing: set[str] = field(default_factory=set)
    _written_at: float = 0.0
    # A sender's workers share the board: its tallies and states change under this lock.
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # --- reading ---------------------------------------------------------------------------

    def request(self, providers: Iterable[str]) -> dict[str, Any]:
        """The BatchGetItem request (table -> keys) for the state of `providers`, so the
        sender can read it together with the batch's opt-outs."""
        keys = [{"provider": {"S": p}, "slot": {"S": STATE}} for p in sorted(set(providers))]
        return {self.table: {"Keys": keys, "ConsistentRead": True}} if keys else {}

    def accept(self, providers: Iterable[str], items: Iterable[Mapping[str, Any]]) -> None:
        """Take the read state items as the batch's view of health. A probe won in an earlier
        batch but never sent is let go (it expires on its own)."""
        self._probing.clear()
        found = {str(item["provider"]): item for item in map(from_item, items)}
        for provider in set(providers):
            self._states[provider] = found.get(provider, {})

    def load(self, providers: Iterable[str]) -> None:
        """Read the state of `providers` on its own (one BatchGetItem)."""
        request = self.request(providers)
        if not request:
            return
        answer = self.db.batch_get_item(RequestItems=request)
        unread = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
        skipped = {k["provider"]["S"] for k in unread}  # throttled: keep what we knew
        wanted = [p for p in providers if p not in skipped]
        self.accept(wanted, answer.get("Responses", {}).get(self.table, []))

    def cooling(self, provider: str) -> bool:
        """True while `provider` is inside its cool-down, as this batch read it (no request:
        the router's choice of lane; the lane's sender decides with `verdict`)."""
        state = self._states.get(provider) or {}
        return self.clock() < float(state.get("unhealthy_until", 0) or 0)

    def verdict(self, provider: str) -> Verdict:
        """May `provider` be tried now? After a cool-down, only by the sender that wins the
        probe; the others keep skipping it until the probe has answered."""
        with self._lock:
            return self._verdict(provider)

    def _verdict(self, provider: str) -> Verdict:
        if provider in self._probing:
            return Verdict(True, probe=True)
        state = self._states.get(provider)
        if state is None:
            self.load([provider])
            state = self._states.get(provider, {})
        until = float(state.get("unhealthy_until", 0) or 0)
        if not until:
            return Verdict(True)
        reason = str(state.get("reason", "unhealthy"))
        now = self.clock()
        if now < until:
            return Verdict(False, reason, until)
        if self._win_probe(provider, until, now):
            self._probing.add(provider)
            logger.info("probing provider after its cool-down", extra={"provider": provider})
            return Verdict(True, reason, until, probe=True)
        return Verdict(False, reason, now + PROBE_SECONDS)

    def _win_probe(self, provider: str, until: float, now: float) -> bool:
        update = (
            Update()
            .set("probe_until", int(now) + PROBE_SECONDS)
            .when(
                equals("unhealthy_until", _number(until))
                & (absent("probe_until") | below("probe_until", int(now)))
            )
        )
        won = update_if(self.db, **update.request(self.table, self._state_key(provider)))
        if not won:
            self._states.pop(provider, None)  # somebody changed it: read again next time
        return won

    # --- observing -------------------------------------------------------------------------

    def observe(self, provider: str, outcome: Outcome, latency_ms: int | None) -> None:
        """Count one send's answer; a definite refusal marks the provider at once, and the
        probe's answer decides whether it is healthy again."""
        with self._lock:
            self._observe(provider, outcome, latency_ms)

    def _observe(self, provider: str, outcome: Outcome, latency_ms: int | None) -> None:
        tally = self._tallies.setdefault(provider, Tally())
        failed = outcome.kind is OutcomeKind.UNKNOWN or (
            outcome.kind is OutcomeKind.RETRYABLE and outcome.category in ERROR_CATEGORIES
        )
        tally.answers += 1
        tally.errors += int(failed)
        if latency_ms is not None and outcome.category is not Category.NETWORK:
            tally.latency_ms += latency_ms
            tally.timed += 1
        immediate = IMMEDIATE.get(outcome.category)
        if immediate and outcome.kind is OutcomeKind.RETRYABLE:
            self.mark_unhealthy(provider, immediate)
        elif provider in self._probing:
            if failed:
                self.mark_unhealthy(provider, "probe_failed")
            else:
                self.clear(provider)

    def mark_unhealthy(self, provider: str, reason: str) -> None:
        now = self.clock()
        until = now + self.policy().cooldown_seconds
        update = (
            Update()
            .set("unhealthy_until", _number(until))
            .set("reason", reason)
            .set("since", int(now))
            .remove("probe_until")
        )
        answer = self.db.update_item(
            **update.request(self.table, self._state_key(provider), ReturnValues="UPDATED_OLD")
        )
        self._probing.discard(provider)
        was = from_item(answer.get("Attributes", {}))
        self._states[provider] = {
            **self._states.get(provider, {}),
            "unhealthy_until": until,
            "reason": reason,
        }
        if float(was.get("unhealthy_until", 0) or 0) <= now:  # a change, not a repeat
            count("ProviderMarkedUnhealthy", provider, reason=reason)
            logger.warning(
                "provider marked unhealthy: skipped until its cool-down ends",
                extra={"provider": provider, "reason": reason, "cooldown_until": int(until)},
            )

    def clear(self, provider: str, only_reason: str | None = None) -> bool:
        """The provider is healthy again (a probe answered, or credit came back)."""
        condition = exists("unhealthy_until")
        if only_reason:
            condition = condition & equals("reason", only_reason)
        self._probing.discard(provider)
        update = Update().remove("unhealthy_until", "reason", "probe_until", "since")
        if not update_if(
            self.db, **update.when(condition).request(self.table, self._state_key(provider))
        ):
            return False
        state = self._states.get(provider, {})
        for key in ("unhealthy_until", "reason", "probe_until", "since"):
            state.pop(key, None)
        count("ProviderRecovered", provider)
        logger.info("provider healthy again", extra={"provider": provider})
        return True

    def set_credit(self, provider: str, balance: float) -> None:
        """The credit check's balance: none left marks the provider (reason `credit`); credit
        back clears a credit mark (and only that)."""
        update = Update().set("credit", Decimal(str(balance))).set("credit_at", int(self.clock()))
        self.db.update_item(**update.request(self.table, self._state_key(provider)))
        if balance <= 0:
            self.mark_unhealthy(provider, "credit")
        else:
            self.clear(provider, only_reason="credit")

    # --- writing the window ----------------------------------------------------------------

    def flush(self) -> None:
        """Add the counts to the current minute (at once after an error or a slow answer, else
        at most every WRITE_EVERY_SECONDS); judge the window when they hold an error or a slow
        answer; publish each known provider's health as a metric (for its alarm)."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        policy = self.policy()
        now = self.clock()
        urgent = any(
            t.errors or (t.timed and t.latency_ms / t.timed >= policy.max_latency_ms)
            for t in self._tallies.values()
        )
        if not urgent and now - self._written_at < WRITE_EVERY_SECONDS:
            self._publish()
            return  # good answers wait for the next write
        tallies, self._tallies = self._tallies, {}
        self._written_at = now
        bucket = int(now) // BUCKET_SECONDS * BUCKET_SECONDS
        for provider, tally in tallies.items():
            update = (
                Update()
                .add("answers", tally.answers)
                .add("errors", tally.errors)
                .add("latency_ms", tally.latency_ms)
                .add("timed", tally.timed)
                .set("expires_at", bucket + BUCKET_TTL_SECONDS)
            )
            key = {"provider": provider, "slot": f"w#{bucket:011d}"}
            self.db.update_item(**update.request(self.table, key))
            slow = tally.timed and tally.latency_ms / tally.timed >= policy.max_latency_ms
            if not (tally.errors or slow) or not self.verdict_cached(provider):
                continue
            figures = self.window(provider, now)
            if figures.samples < policy.min_samples:
                continue
            if figures.error_rate >= policy.max_error_rate:
                self.mark_unhealthy(provider, "errors")
            elif figures.mean_latency_ms >= policy.max_latency_ms:
                self.mark_unhealthy(provider, "latency")
        self._publish()

    def _publish(self) -> None:
        """Each known provider's health as a metric (for its alarm), every batch."""
        for provider in sorted(self._states):
            gauge("ProviderHealthy", 1.0 if self.verdict_cached(provider) else 0.0, provider)

    def verdict_cached(self, provider: str) -> bool:
        """Healthy as this sender last saw it (no reads, no probe)."""
        until = float(self._states.get(provider, {}).get("unhealthy_until", 0) or 0)
        return not until or self.clock() >= until

    def window(self, provider: str, now: float | None = None) -> WindowFigures:
        """Answers, errors and mean latency over the policy's sliding window."""
        now = self.clock() if now is None else now
        start = int(now - self.policy().window_seconds) // BUCKET_SECONDS * BUCKET_SECONDS
        items = self.db.query(
            TableName=self.table,
            KeyConditionExpression="provider = :p AND slot BETWEEN :from AND :to",
            ExpressionAttributeValues=to_item(
                {":p": provider, ":from": f"w#{start:011d}", ":to": f"w#{int(now):011d}"}
            ),
            ConsistentRead=True,
        )["Items"]
        rows = [from_item(i) for i in items]
        timed = sum(int(r.get("timed", 0)) for r in rows)
        return WindowFigures(
            samples=sum(int(r.get("answers", 0)) for r in rows),
            errors=sum(int(r.get("errors", 0)) for r in rows),
            mean_latency_ms=sum(int(r.get("latency_ms", 0)) for r in rows) / timed if timed else 0,
        )

    def state(self, provider: str) -> dict[str, Any]:
        """The stored state of `provider` without its key (for the CLI and tests)."""
        item = self.db.get_item(
            TableName=self.table, Key=self._key(provider, STATE), ConsistentRead=True
        ).get("Item")
        state = from_item(item) if item else {}
        return {k: v for k, v in state.items() if k not in ("provider", "slot")}

    @staticmethod
    def _key(provider: str, slot: str) -> dict[str, Any]:
        return {"provider": {"S": provider}, "slot": {"S": slot}}

    @staticmethod
    def _state_key(provider: str) -> dict[str, str]:
        return {"provider": provider, "slot": STATE}


def _number(value: float) -> Any:
    """DynamoDB numbers via the serializer need Decimal-safe values: whole seconds suffice."""
    return int(value)
