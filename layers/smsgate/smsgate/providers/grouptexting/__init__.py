"""Group Texting: every rule smsgate keeps for it — `client` (send rules and codes, credits,
keywords, buying credits, its connection limit), `inbound` (its callbacks and the replies it
texts back), `routes` (their URLs, for the callbacks function)."""

from __future__ import annotations

from .client import Card, GroupTexting

__all__ = ["Card", "GroupTexting"]
