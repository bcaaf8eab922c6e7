"""Group Texting's callbacks: keyword submissions and inbox replies on its long code, each a
GET whose plain-text answer Group Texting texts back (160 weighted characters of its charset).
It may call both URLs for one message; the store recognises the copy."""

from __future__ import annotations

from ...phones import from_us_ten_digits
from .client import CHARSET, MAX_TOTAL, normalise, weighted_length


def read_sender(raw: str) -> str:
    """Group Texting names the sender by 10 US digits."""
    return from_us_ten_digits(raw)


def fit_reply(text: str) -> str:
    """The longest prefix of `text` Group Texting can send back: its charset only, 160
    characters where `~ @ # % + = / \\` and a line break count two."""
    kept = "".join(ch for ch in normalise(text) if ch in CHARSET)
    while weighted_length(kept) > MAX_TOTAL:
        kept = kept[:-1]
    return kept
