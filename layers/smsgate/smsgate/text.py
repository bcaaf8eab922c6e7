"""Message text: the GSM 03.38 alphabet and how many billed parts (segments) a text takes."""

from __future__ import annotations

import math
from dataclasses import dataclass

# GSM 03.38 basic character set (7-bit default alphabet).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
) - {"\x1b"}
# The extension table: each of these costs two septets (escape + character).
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153  # septets in one part / per part of a concatenated message
UCS2_SINGLE, UCS2_MULTI = 70, 67  # UTF-16 code units likewise


@dataclass(frozen=True)
class Segments:
    encoding: str  # "gsm7" or "ucs2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


def is_gsm(text: str) -> bool:
    return all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text)


def gsm_units(text: str) -> int:
    """Septets `text` takes in GSM-7: extension characters count 2."""
    return sum(2 if ch in GSM_EXTENSION else 1 for ch in text)


def segments(text: str) -> Segments:
    """How a handset network bills `text`: GSM-7 160/153 per part, else UCS-2 70/67."""
    if is_gsm(text):
        units, single, multi, encoding = gsm_units(text), GSM7_SINGLE, GSM7_MULTI, "gsm7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = UCS2_SINGLE, UCS2_MULTI, "ucs2"
    parts = 1 if units <= single else math.ceil(units / multi)
    return Segments(encoding, units, parts)
