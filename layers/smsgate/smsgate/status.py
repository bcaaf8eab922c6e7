"""One status vocabulary for every provider; status only moves forward.

The statuses and their order: docs/contract.md, Statuses.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    SENT = "sent"
    UNKNOWN = "unknown"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    RECEIVED = "received"  # inbound messages only


# queued < scheduled < sent < unknown < delivered | undelivered | failed
RANK: dict[Status, int] = {
    Status.QUEUED: 0,
    Status.SCHEDULED: 1,
    Status.SENT: 2,
    Status.UNKNOWN: 3,
    Status.DELIVERED: 4,
    Status.UNDELIVERED: 4,
    Status.FAILED: 4,
    Status.RECEIVED: 4,
}
FINAL: frozenset[Status] = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED})


def rank(status: str) -> int:
    return RANK[Status(status)]


def can_move(old: str | None, new: str) -> bool:
    """True when `new` is a step forward from `old` (no downgrade, nothing after a final status)."""
    if old is None:
        return True
    if Status(old) in FINAL or Status(old) is Status.RECEIVED:
        return False
    return rank(new) > rank(old)


def ranks_below(new: str) -> list[str]:
    """Statuses a message may hold for `new` to be accepted: the condition of the store's update."""
    return [
        s.value for s in Status if s not in FINAL and s is not Status.RECEIVED and can_move(s, new)
    ]
