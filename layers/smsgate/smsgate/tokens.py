"""The callback token: the only authentication of the providers' callbacks (none of them signs
its requests), held in the provider secret. A rotation keeps the previous token valid for a
while, so the callbacks go on arriving while each provider's dashboard is updated.

Secret keys: `callback_token` (current), `previous_callback_token` and
`previous_callback_token_until` (ISO-8601 UTC; after it, the previous token is refused).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .providers import PROVIDERS

CURRENT, PREVIOUS = "current", "previous"
TOKEN_BYTES = 24  # 48 hex characters: path-safe, unguessable
# The URL each provider is given (README "Callbacks"): (provider, what for, method, path).
CALLBACK_ROUTES = tuple(
    (name, route.purpose, route.method, route.path)
    for name, cls in PROVIDERS.items()
    for route in cls.callbacks
)


def _parse_until(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None  # an unreadable expiry never extends a token's life
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _same(given: bytes, expected: str) -> bool:
    # constant time, and an empty expected token never matches
    return hmac.compare_digest(given, expected.encode()) and bool(expected)


@dataclass(frozen=True)
class CallbackTokens:
    current: str
    previous: str = ""
    previous_until: datetime | None = None

    @classmethod
    def from_secret(cls, secret: Mapping[str, Any]) -> CallbackTokens:
        return cls(
            str(secret.get("callback_token") or ""),
            str(secret.get("previous_callback_token") or ""),
            _parse_until(secret.get("previous_callback_token_until")),
        )

    def check(self, given: str, now: datetime | None = None) -> str | None:
        """`current`, `previous` (still within its time) or None. Both comparisons always
        run, so the answer's timing tells nothing about either token."""
        raw = given.encode()
        current = _same(raw, self.current)
        previous = _same(raw, self.previous)
        alive = self.previous_until is not None and (now or datetime.now(UTC)) < self.previous_until
        if current:
            return CURRENT
        return PREVIOUS if previous and alive else None


def rotated(
    secret: Mapping[str, Any], keep_previous: timedelta, now: datetime | None = None
) -> tuple[dict[str, Any], str]:
    """The secret with a new current token, the old one kept as previous for `keep_previous`
    (zero: refused at once — for a token that leaked). Every other key is kept as it is."""
    new = secrets.token_hex(TOKEN_BYTES)
    value = {
        k: v
        for k, v in secret.items()
        if k not in ("previous_callback_token", "previous_callback_token_until")
    }
    old = str(secret.get("callback_token") or "")
    if old and keep_previous > timedelta(0):
        until = (now or datetime.now(UTC)) + keep_previous
        value["previous_callback_token"] = old
        value["previous_callback_token_until"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    value["callback_token"] = new
    return value, new
