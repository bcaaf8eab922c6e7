"""Phone numbers: E.164 in (via `phonenumbers`), each provider's format out, masked in logs."""

from __future__ import annotations

ASCII_DIGITS = frozenset("0123456789")
TEST_NUMBER = "999"  # TextingHouse's free test number: not E.164, accepted for TextingHouse only


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
    """`+33612345678` -> `33612345678` (TextingHouse's format)."""
    return e164.lstrip("+")


def from_provider(raw: str, kind: str) -> str:
    """A number a provider sent us, as E.164: `us10` (Club/Group Texting: 10 US digits) or
    `intl` (TextingHouse: international digits). Only the shape is checked — it is the
    provider's word for who texted, and a strict validity check would drop real messages."""
    digits = "".join(ch for ch in raw if ch in ASCII_DIGITS)  # never "²" or Arabic-Indic
    if kind == "us10" and len(digits) == 10:
        return "+1" + digits
    if kind == "us10" and len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    if kind == "intl" and 8 <= len(digits) <= 15 and not digits.startswith("0"):
        return "+" + digits
    raise InvalidNumber(f"expected {'10 US digits' if kind == 'us10' else 'international digits'}")


def mask(number: str | None) -> str:
    """`+33612345678` -> `+3361****678`: enough to tell numbers apart in logs, not to dial one."""
    if not number:
        return ""
    if len(number) <= 8:
        return "*" * len(number)
    return number[:5] + "*" * (len(number) - 8) + number[-3:]
