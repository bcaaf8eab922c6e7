"""Reconciliation: settle the messages left `sent` or `unknown`.

A scheduled run reads at most `page_limit` messages that have waited longer than
RECONCILE_AFTER_MINUTES, oldest first, from MessagesTable's sparse `ByPendingStatus` index (a
Query per waiting status, shared fairly between the two; never a scan), and for each one:

- A provider with a status lookup (`has_status`): its status of the message, by our id.
  - A final status settles the message through the store's monotonic `advance` (history
    source `poll`), as a receipt would.
  - Still in progress (0, 1): left waiting, its turn moved to now, so it is looked at again
    RECONCILE_AFTER_MINUTES later and the messages in progress never hold up the others.
  - The provider knows no message with our id: `unknown` with that reason, no longer looked
    at. It most likely never reached the provider, but that cannot be proven and smsgate
    never resends on a guess: whoever owns the message decides.
  - The lookup failed (provider down, credentials refused or missing): counted
    (`ReconcileLookupFailed`) and left as it is, so the next run asks again. After
    MAX_LOOKUP_FAILURES failures a provider is not asked again in the same run; its other
    messages are left too (`ReconcileDeferred`).
- A provider without a status lookup: `unknown` with that reason at once, no longer looked
  at.
- Past RECONCILE_DEADLINE_HOURS after sending (`sent_at`, else when it took its status) and
  not final after the last lookup (or none was possible): `unknown` with that reason, no
  longer looked at.

"`unknown` with the reason" moves a `sent` message to `unknown` (history source `poll`); an
`unknown` one keeps its status (no history item) and gets the reason, the send's reason kept
in the text. A late receipt still settles either. Every message a run reads gets one outcome,
counted as a metric (`Reconcile*`, per provider and in total); a run also stops taking
messages when too little of the invocation is left for one more lookup.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from .clients import ClientPool
from .config import ConfigError
from .observability import count, logger
from .providers import PROVIDERS, OutcomeKind, ProviderError
from .providers import StatusLookup as Lookup
from .status import FINAL, Status
from .store import Store, Transition, now_iso
from .validation import summarise

PAGE_LIMIT = 200  # messages read per run, at most
MAX_LOOKUP_FAILURES = 3  # per provider and run; then the provider counts as down
DEADLINE_MARGIN_MS = 3_000  # kept free after the slowest lookup, for the last write


class Result(StrEnum):
    """What a run did with one message."""

    SETTLED = "settled"  # a final status from the provider
    STILL_PENDING = "still_pending"  # in progress at the provider: looked at again later
    NOT_FOUND = "not_found"  # the provider knows no such message: unknown
    NO_STATUS_API = "no_status_api"  # the provider cannot say: unknown
    DEADLINE = "deadline"  # no final status in time: unknown
    LOOKUP_FAILED = "lookup_failed"  # left for the next run
    DEFERRED = "deferred"  # not looked at in this run (provider down, no time left)
    ALREADY_SETTLED = "already_settled"  # a receipt got there first: nothing to do


METRICS: dict[Result, str] = {
    Result.SETTLED: "ReconcileSettled",
    Result.STILL_PENDING: "ReconcileStillPending",
    Result.NOT_FOUND: "ReconcileNotFound",
    Result.NO_STATUS_API: "ReconcileNoStatusApi",
    Result.DEADLINE: "ReconcileDeadline",
    Result.LOOKUP_FAILED: "ReconcileLookupFailed",
    Result.DEFERRED: "ReconcileDeferred",
    Result.ALREADY_SETTLED: "ReconcileAlreadySettled",
}


class ReconcileSettings(BaseModel):
    after_minutes: int = Field(default=30, ge=1)
    deadline_hours: float = Field(default=72, gt=0)
    page_limit: int = Field(default=PAGE_LIMIT, ge=1, le=1000)

    @model_validator(mode="after")
    def _deadline_after_first_look(self) -> ReconcileSettings:
        if self.deadline_hours * 60 <= self.after_minutes:
            raise ValueError("the deadline must be later than the first look")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcileSettings:
        source = os.environ if env is None else env
        names = {
            "after_minutes": "RECONCILE_AFTER_MINUTES",
            "deadline_hours": "RECONCILE_DEADLINE_HOURS",
        }
        values = {field: source[var] for field, var in names.items() if source.get(var)}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = summarise(exc, "settings")
            raise ConfigError(f"invalid reconciliation settings: {problems}") from None


def _unlimited() -> int:
    return 2**31


class ReconcileService:
    """Everything the reconcile function does, behind its thin handler."""

    def __init__(
        self,
        store: Store,
        clients: ClientPool,
        settings: ReconcileSettings | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.clients = store, clients
        self.settings = settings or ReconcileSettings()
        self.clock = clock
        provider_settings = clients.settings
        self.slowest_call_ms = int(
            (provider_settings.connect_timeout + provider_settings.read_timeout) * 1000
        )

    # --- one run ---------------------------------------------------------------------------

    def run(self, remaining_ms: Callable[[], int] = _unlimited) -> dict[str, int]:
        """Reconcile what waited too long; returns the count per outcome (and `examined`)."""
        now = self.clock()
        run = _Run(
            at=now_iso(now),
            before=now_iso(now - timedelta(minutes=self.settings.after_minutes)),
            deadline=now_iso(now - timedelta(hours=self.settings.deadline_hours)),
        )
        tally: Counter[str] = Counter()

        def time_left() -> bool:
            return remaining_ms() >= self.slowest_call_ms + DEADLINE_MARGIN_MS

        for item in self._stale(run.before, time_left):
            tally["examined"] += 1
            result = self._one(item, run) if time_left() else Result.DEFERRED
            tally[result.value] += 1
            count(METRICS[result], str(item.get("provider") or ""))
        logger.info("reconciliation run", extra={"counts": dict(tally)})
        return dict(tally)

    def _stale(self, before: str, time_left: Callable[[], bool]) -> Iterator[dict[str, Any]]:
        """Messages waiting since before `before`, oldest first, at most `page_limit` in all,
        the budget shared between the waiting statuses (one cannot starve the other)."""
        budget = self.settings.page_limit
        starts: dict[Status, Mapping[str, Any] | None] = {Status.UNKNOWN: None, Status.SENT: None}
        open_ = list(starts)
        while budget > 0 and open_ and time_left():
            share = max(1, budget // len(open_))
            for status in list(open_):
                if budget <= 0 or not time_left():
                    return
                items, start = self.store.pending_page(
                    status, before, min(share, budget), starts[status]
                )
                budget -= len(items)
                if start is None or not items:
                    open_.remove(status)
                else:
                    starts[status] = start
                yield from items

    # --- one message -----------------------------------------------------------------------

    def _one(self, item: Mapping[str, Any], run: _Run) -> Result:
        message_id = str(item["id"])
        provider = str(item.get("provider") or "")
        waiting = Status(str(item.get("pending") or item["status"]))
        since = str(item.get("sent_at") or item.get("status_at") or item.get("pending_at") or "")
        overdue = since <= run.deadline
        kind = PROVIDERS.get(provider)
        if kind is None or not kind.has_status:
            reason = (
                f"{provider or 'its provider'} has no status API and sends no delivery "
                "receipts: the outcome cannot be known"
            )
            return self._give_up(item, waiting, "no_status_api", reason, Result.NO_STATUS_API, run)
        if run.failures[provider] >= MAX_LOOKUP_FAILURES:
            return self._past_deadline(item, waiting, run) if overdue else Result.DEFERRED
        try:
            lookup = self._lookup(provider, message_id)
        except ProviderError as exc:
            run.failures[provider] += 1
            logger.warning(
                "status lookup failed",
                extra={
                    "message_id": message_id,
                    "provider": provider,
                    "code": exc.code,
                    "reason": exc.reason,
                },
            )
            return self._past_deadline(item, waiting, run) if overdue else Result.LOOKUP_FAILED
        if lookup.found and lookup.status in FINAL:
            return self._settle(message_id, provider, lookup, run)
        if not lookup.found:
            reason = (
                f"{provider} has no message with this id (getstatus {lookup.code}): it most "
                "likely never arrived; smsgate does not resend on a guess"
            )
            return self._give_up(item, waiting, lookup.code, reason, Result.NOT_FOUND, run)
        if overdue:
            return self._past_deadline(item, waiting, run)
        if self.store.recheck_later(message_id, waiting, run.at):
            return Result.STILL_PENDING
        return Result.ALREADY_SETTLED

    def _lookup(self, provider: str, message_id: str) -> Lookup:
        client = self.clients.get(provider)
        if client is None:
            raise ProviderError(
                provider,
                "not_configured",
                "no credentials in the provider secret",
                OutcomeKind.RETRYABLE,
            )
        return client.status(climsgid=message_id)

    def _settle(self, message_id: str, provider: str, lookup: Lookup, run: _Run) -> Result:
        assert lookup.status is not None
        attrs: dict[str, Any] = {"reconciled_at": run.at}
        if lookup.status is not Status.DELIVERED:
            attrs.update({"error_code": lookup.code, "error": lookup.reason})
        if not self.store.advance(
            message_id,
            Transition(
                lookup.status, source="poll", raw=lookup.code, attrs=attrs, expect_provider=provider
            ),
        ):
            return Result.ALREADY_SETTLED
        count(f"Messages{lookup.status.value.capitalize()}", provider)
        logger.info(
            "status settled by lookup",
            extra={"message_id": message_id, "provider": provider, "status": lookup.status.value},
        )
        return Result.SETTLED

    def _past_deadline(self, item: Mapping[str, Any], waiting: Status, run: _Run) -> Result:
        hours = f"{self.settings.deadline_hours:g}"
        reason = f"no final status within {hours} h of sending"
        return self._give_up(item, waiting, "deadline", reason, Result.DEADLINE, run)

    def _give_up(
        self,
        item: Mapping[str, Any],
        waiting: Status,
        code: str,
        reason: str,
        result: Result,
        run: _Run,
    ) -> Result:
        """`unknown` with `reason`, out of the reconciliation index (a receipt still settles
        it): a `sent` message moves to `unknown`, an `unknown` one keeps it."""
        message_id = str(item["id"])
        provider = str(item.get("provider") or "")
        if waiting is Status.SENT:
            done = self.store.advance(
                message_id,
                Transition(
                    Status.UNKNOWN,
                    source="poll",
                    raw=code,
                    attrs={"error_code": code, "error": reason, "reconciled_at": run.at},
                    expect_provider=provider or None,
                    reconcile=False,
                ),
            )
        else:
            before = item.get("error")
            text = f"{reason} (when sent: {before})" if before else reason
            done = self.store.stop_reconciling(
                message_id,
                waiting,
                {"error_code": code, "error": text, "reconciled_at": run.at, "updated_at": run.at},
            )
        if not done:
            return Result.ALREADY_SETTLED
        logger.info(
            "message left unknown",
            extra={"message_id": message_id, "provider": provider, "code": code},
        )
        return result


class _Run:
    """One run's clock readings and the lookup failures per provider so far."""

    def __init__(self, at: str, before: str, deadline: str) -> None:
        self.at, self.before, self.deadline = at, before, deadline
        self.failures: Counter[str] = Counter()
