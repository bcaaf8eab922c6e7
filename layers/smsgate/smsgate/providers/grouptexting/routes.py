"""Group Texting's callback routes, for the callbacks function (behind its token guard)."""

from __future__ import annotations

from ..web import text_reply_router
from .client import GroupTexting
from .inbound import fit_reply, read_sender

router = text_reply_router(GroupTexting, "Group Texting", read_sender, fit_reply)
