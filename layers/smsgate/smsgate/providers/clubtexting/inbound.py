"""Club Texting's callbacks: keyword submissions on its short code and inbox forwarding, each
a GET whose plain-text answer Club Texting texts back (130 characters, no quotes)."""

from __future__ import annotations

from ...phones import from_us_ten_digits
from .client import FORBIDDEN, MAX_MESSAGE


def read_sender(raw: str) -> str:
    """Club Texting names the sender by 10 US digits."""
    return from_us_ten_digits(raw)


def fit_reply(text: str) -> str:
    """The longest prefix of `text` Club Texting can send back: 130 characters, no quotes."""
    return "".join(ch for ch in text if ch not in FORBIDDEN)[:MAX_MESSAGE]
