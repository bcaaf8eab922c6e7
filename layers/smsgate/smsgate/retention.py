"""Inbound text retention (InboundTextRetentionDays): one implementation for the scheduled
retention function and `smsgate retention`.

Every inbound message that holds text gets `text_expires_at` (Store.personal). A run queries
MessagesTable's sparse `ByInboundTextExpiry` index (`direction = "in"`, `text_expires_at <=
now`; never a scan) and removes `text` and `text_expires_at` from each message it finds,
setting `text_removed_at`; the rest of the message stays until its TTL (`expires_at`).

- Bounded: a run reads pages of PAGE_SIZE keys and stops after `max_items`, or when less than
  `margin_ms` of the invocation is left, and says whether it stopped with work left (`more`).
  No cursor is kept: a stripped message leaves the sparse index, so the next run starts from
  the oldest still due and a backlog is worked through over several runs.
- Idempotent and safe against concurrent runs: each update is conditional on
  `text_expires_at` still being due, so a message another run (or `smsgate erase`) got to
  first is counted `already_done` and left alone, and a second run finds nothing.

`backfill` is the one-off upgrade path for items written before `phone` / `expires_at`
existed (README "Personal data"): a bounded, conditional pass run by the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from .observability import count, logger
from .store import DAY, Store, now_iso

PAGE_SIZE = 100  # keys per Query page
MAX_ITEMS = 2_000  # messages stripped per scheduled run, at most
MARGIN_MS = 5_000  # invocation time kept free: a run never times out mid-way
AUDIT_PREFIX = "audit#"  # status-table records that are never expired (erasure audit)


@dataclass
class RetentionReport:
    due: int = 0  # due messages read from the index
    stripped: int = 0  # texts removed by this run
    already_done: int = 0  # stripped (or erased) meanwhile by someone else
    more: bool = False  # stopped by max_items or the deadline: the next run goes on

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _unlimited() -> int:
    return 2**31


def _moment(now: float | None) -> str:
    return now_iso(
        datetime.fromtimestamp(datetime.now(UTC).timestamp() if now is None else now, UTC)
    )


def strip_inbound_text(
    store: Store,
    *,
    apply: bool = True,
    now: float | None = None,
    max_items: int | None = MAX_ITEMS,
    remaining_ms: Callable[[], int] = _unlimited,
    margin_ms: int = MARGIN_MS,
    page_size: int = PAGE_SIZE,
) -> RetentionReport:
    """Remove the text of inbound messages past `text_expires_at` (a dry run only counts
    them). Stops after `max_items` (None: no limit) or when `remaining_ms()` falls below
    `margin_ms`; `more` then says the index still holds due messages."""
    moment = _moment(now)
    report = RetentionReport()
    for key in store.texts_due(moment, page_size):
        if (max_items is not None and report.due >= max_items) or remaining_ms() < margin_ms:
            report.more = True
            break
        report.due += 1
        if not apply:
            continue
        if store.strip_text(key["id"], moment):
            report.stripped += 1
        else:
            report.already_done += 1
    return report


def scheduled_run(store: Store, remaining_ms: Callable[[], int]) -> RetentionReport:
    """One run of the retention function: bounded by MAX_ITEMS and the invocation's time;
    counts only in the log and metrics (never an id: an inbound id derives from the number)."""
    report = strip_inbound_text(store, remaining_ms=remaining_ms)
    count("InboundTextRemoved", value=report.stripped)
    # 1 while a backlog is being worked through over several runs, else 0.
    count("InboundTextRetentionBacklog", value=int(report.more))
    logger.info("inbound text retention", extra=report.as_dict())
    return report


# --------------------------------------------------------------------------- backfill


@dataclass
class BackfillReport:
    messages: int = 0  # messages given expires_at (and phone / text_expires_at)
    history: int = 0  # status items given expires_at
    more: bool = False  # stopped at max_items: run it again

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch(timestamp: Any) -> float | None:
    """`2026-11-22T11:15:33.123456Z` (or its `#status` suffixed history form) -> seconds."""
    text = str(timestamp or "").split("#", 1)[0]
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def backfill(
    store: Store, *, apply: bool = True, max_items: int = 10_000, now: float | None = None
) -> BackfillReport:
    """Give items written before retention existed what new items get: `expires_at` counted
    from when they were written (`created_at`, a history item's `at`; now when unreadable),
    and on messages `phone` (unless erased) and, for inbound text, `text_expires_at`. A Scan
    (operator credentials only), at most `max_items` items per run; audit records are kept."""
    moment = datetime.now(UTC).timestamp() if now is None else now
    keep = store.message_retention_days * DAY
    keep_text = min(store.inbound_text_retention_days, store.message_retention_days) * DAY
    report = BackfillReport()

    def budget_left() -> bool:
        if report.messages + report.history < max_items:
            return True
        report.more = True
        return False

    for item in store.without_expiry(store.messages):
        if not budget_left():
            return report
        written = _epoch(item.get("created_at")) or moment
        attrs: dict[str, Any] = {"expires_at": int(written + keep)}
        phone = item.get("to") or item.get("from")
        if phone and "phone" not in item and "erased_at" not in item:
            attrs["phone"] = phone
        if item.get("direction") == "in" and item.get("text") and "text_removed_at" not in item:
            attrs["text_expires_at"] = now_iso(datetime.fromtimestamp(written + keep_text, UTC))
        if not apply or store.set_unless_expiring(store.messages, {"id": item["id"]}, attrs):
            report.messages += 1
    for item in store.without_expiry(store.status):
        if str(item.get("message_id", "")).startswith(AUDIT_PREFIX):
            continue  # the erasure audit is kept (README "Personal data")
        if not budget_left():
            return report
        written = _epoch(item.get("at")) or moment
        key = {"message_id": item["message_id"], "at": item["at"]}
        if not apply or store.set_unless_expiring(
            store.status, key, {"expires_at": int(written + keep)}
        ):
            report.history += 1
    return report
