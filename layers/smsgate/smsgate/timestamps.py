"""smsgate's timestamps: sortable ISO-8601 UTC strings."""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso(moment: datetime | None = None) -> str:
    """Sortable UTC timestamp with microseconds: `2026-11-22T11:15:33.123456Z`."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
