"""GSM 03.38 character tables and TextingHouse's part counting.

The simulator's own copy: it must not share code with the ``smsgate`` package it tests.

TextingHouse API SMS PRO (§5.3) gives a JavaScript pattern of allowed characters and points at
GSM 03.38. The simulator accepts their union, as smsgate does (docs/providers.md, The gaps the
documents leave and how smsgate resolves them): the pattern's characters, the GSM 03.38 basic
table and its extension table. Extension characters take two septets (escape + char).
"""

from __future__ import annotations

import math

# GSM 03.38 basic table (0x1B, the escape to the extension table, is not a character).
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

# GSM 03.38 extension table: form feed ^ { } \ [ ~ ] | €  (each costs 2 septets).
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")

# TextingHouse API SMS PRO's JavaScript pattern (§5.3), character by character:
# /[ 0-9a-zA-ZÄäàÅåÆæßÇèéÉìÖöòØøÑñÜüù#¤%&()*+,\-./:;<>=§$!?£¿·@¡'"\n\[\]{}~^|]/
SEED_PATTERN = frozenset(
    " 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄäàÅåÆæßÇèéÉìÖöòØøÑñÜüù#¤%&()*+,-./:;<>=§$!?£¿·@¡'\"\n[]{}~^|"
)

ALLOWED = GSM_BASIC | GSM_EXTENSION | SEED_PATTERN

SINGLE_PART = 160
MULTI_PART = 153


def invalid_chars(text: str) -> list[str]:
    """Characters of ``text`` TextingHouse does not accept, in order of first appearance."""
    seen: dict[str, None] = {}
    for ch in text:
        if ch not in ALLOWED:
            seen.setdefault(ch, None)
    return list(seen)


def septets(text: str) -> int:
    """Length in GSM-7 units: extension characters count 2, everything else 1."""
    return sum(2 if ch in GSM_EXTENSION else 1 for ch in text)


def parts(text: str) -> int:
    """Billed parts: up to 160 units is one SMS, beyond that ceil(units / 153)."""
    n = septets(text)
    if n <= SINGLE_PART:
        return 1
    return math.ceil(n / MULTI_PART)
