"""Club Texting: every rule smsgate keeps for it — `client` (send rules and codes), `inbound`
(its callbacks and the replies it texts back), `routes` (their URLs, for the callbacks
function)."""

from __future__ import annotations

from .client import ClubTexting

__all__ = ["ClubTexting"]
