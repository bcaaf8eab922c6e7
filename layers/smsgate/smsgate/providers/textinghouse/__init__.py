"""TextingHouse: every rule smsgate keeps for it — `client` (send rules and codes, status
lookup, credit, the test number, commercial windows), `inbound` (receipts and inbound
messages), `routes` (their URLs, for the callbacks function)."""

from __future__ import annotations

from .client import TextingHouse

__all__ = ["TextingHouse"]
