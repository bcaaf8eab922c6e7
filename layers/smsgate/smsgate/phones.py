"""Phone numbers: E.164 in (via `phonenumbers`), each provider's format out, masked in logs."""

from __future__ import annotations

ASCII_DIGITS = frozenset("0123456789")


class InvalidNumber(ValueError):
    """The number cannot be read as a valid E.164 number (the message names no digits)."""


def to_e164(raw: str, default_region: str = "US") -> str:
    """E.164 for `raw` (`+12125551234`, `+33612345678`); a bare 10-digit number is US (+1)."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidNumber("phone number is empty")
    import phonenumbers  # 45 ms of imports that the callbacks and the credit check never need

    try:
        parsed = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"phone number is not a phone number ({exc.error_type!r})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("phone number is not a valid number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def us_ten_digits(e164: str) -> str | None:
    """The 10-digit national form of a NANP number (+1 and 10 digits), else None."""
    if e164.startswith("+1") and len(e164) == 12 and e164[1:].isdigit():
        return e164[2:]
    return None


def international_digits(e164: str) -> str:
    """`+33612345678` -> `33612345678`: international digits, no `+`."""
    return e164.lstrip("+")


def from_us_ten_digits(raw: str) -> str:
    """A sender named by 10 US digits (or 1 and 10 digits), as E.164. Only the shape is
    checked — it is the provider's word for who texted, and a strict validity check would
    drop real messages."""
    digits = _ascii_digits(raw)
    if len(digits) == 10:
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    raise InvalidNumber("expected 10 US digits")


def from_international_digits(raw: str) -> str:
    """A sender named by international digits (country code first, no `+`), as E.164; only
    the shape is checked."""
    digits = _ascii_digits(raw)
    if 8 <= len(digits) <= 15 and not digits.startswith("0"):
        return "+" + digits
    raise InvalidNumber("expected international digits")


def _ascii_digits(raw: str) -> str:
    return "".join(ch for ch in raw if ch in ASCII_DIGITS)  # never "²" or Arabic-Indic


def mask(number: str | None) -> str:
    """`+33612345678` -> `+3361****678`: enough to tell numbers apart in logs, not to dial one."""
    if not number:
        return ""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 8) + number[-3:]
