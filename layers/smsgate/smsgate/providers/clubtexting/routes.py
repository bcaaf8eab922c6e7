"""Club Texting's callback routes, for the callbacks function (behind its token guard)."""

from __future__ import annotations

from ..web import text_reply_router
from .client import ClubTexting
from .inbound import fit_reply, read_sender

router = text_reply_router(ClubTexting, "Club Texting", read_sender, fit_reply)
