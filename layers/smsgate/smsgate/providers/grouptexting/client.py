"""Group Texting's HTTP SMS API: send, credits, keywords (check, rent, setup), buying credits.

Its rules live here: 10-digit numbers (-106), a 13-character subject, 160 characters for subject
and message together where `~ @ # % + = / \\` and a line break count two, and a small charset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...phones import us_ten_digits
from ..base import (
    UNREADABLE,
    Answer,
    CallbackRoute,
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    ProviderError,
    Reply,
    RuleViolation,
    bare_code_answer,
)

MAX_SUBJECT = 13
MAX_TOTAL = 160  # subject + message, weighted
CHARSET = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?()~=+-_\\/@$#&%\r\n"
)
DOUBLE = frozenset("~@#%+=/\\")
CARD_TYPES = frozenset({"MC", "Visa", "AX", "DS", "JCB"})
_NEWLINE = re.compile(r"\r\n|\r|\n")

SEND_CODES: dict[str, Answer] = {
    "1": Answer(OutcomeKind.SENT, Category.ACCEPTED, "message sent"),
    "-1": Answer(OutcomeKind.RETRYABLE, Category.AUTH, "invalid user or password", 60),
    "-2": Answer(OutcomeKind.RETRYABLE, Category.CREDIT, "credit limit reached", 300),
    "-5": Answer(
        OutcomeKind.REJECTED, Category.OPT_OUT, "recipient is on the account's opt-out list"
    ),
    "-7": Answer(OutcomeKind.REJECTED, Category.INVALID, "invalid message or subject"),
    "-104": Answer(OutcomeKind.REJECTED, Category.OPT_OUT, "number globally opted out"),
    "-106": Answer(OutcomeKind.REJECTED, Category.INVALID, "incorrectly formatted phone number"),
    "-10": Answer(
        OutcomeKind.RETRYABLE, Category.PROVIDER_ERROR, "unknown error at Group Texting", 30
    ),
}
# Account operations: code -> (ok, reason); anything not listed is an unreadable answer.
_AUTH = "invalid user or password"
_UNKNOWN = "unknown error at Group Texting"
KEYWORD_CHECK_CODES = {
    "1": (True, "keyword is available"),
    "0": (True, "keyword is not available"),
    "-1": (False, _AUTH),
    "-2": (False, "declined: less than the $5.00 minimum purchase"),
    "-10": (False, _UNKNOWN),
}
BUY_CODES = {
    "1": (True, "credits bought"),
    "0": (False, "purchase declined"),
    "-1": (False, _AUTH),
    "-10": (False, _UNKNOWN),
}
RENT_CODES = {
    "2": (True, "keyword rented"),
    "1": (False, "keyword is not available"),
    "0": (False, "rental declined"),
    "-1": (False, _AUTH),
    "-10": (False, _UNKNOWN),
}
SETUP_CODES = {
    "1": (True, "keyword updated"),
    "-1": (False, _AUTH),
    "-2": (False, "invalid keyword"),
    "-3": (False, "invalid group name"),
    "-4": (False, "invalid email"),
    "-5": (False, "invalid URL"),
    "-7": (False, "invalid autoreply message"),
    "-10": (False, _UNKNOWN),
}
CREDIT_CODES = {"-1": _AUTH, "-10": _UNKNOWN}


@dataclass(frozen=True)
class Card:
    """Payment card for purchases. Read from Secrets Manager or a prompt; never logged."""

    first_name: str
    last_name: str
    address: str
    city: str
    state: str
    zip: str
    country: str
    type: str
    number: str = field(repr=False)
    code: str = field(repr=False)
    exp_month: str
    exp_year: str

    def fields(self) -> dict[str, str]:
        if self.type not in CARD_TYPES:
            raise RuleViolation(
                "grouptexting", "card_type", f"card type must be one of {sorted(CARD_TYPES)}"
            )
        for name, value, size in (("exp_month", self.exp_month, 2), ("exp_year", self.exp_year, 2)):
            if not (len(value) == size and value.isdigit()):
                raise RuleViolation("grouptexting", "card_expiry", f"{name} must be two digits")
        return {
            "firstname": self.first_name,
            "lastname": self.last_name,
            "address": self.address,
            "city": self.city,
            "state": self.state,
            "zip": self.zip,
            "country": self.country,
            "type": self.type,
            "ccnumber": self.number,
            "cccode": self.code,
            "expm": self.exp_month,
            "expy": self.exp_year,
        }


def normalise(text: str) -> str:
    """Line breaks go out as CRLF, the form the document counts."""
    return _NEWLINE.sub("\r\n", text)


def weighted_length(text: str) -> int:
    """Characters as Group Texting counts them: `~ @ # % + = / \\` count 2, and so does a line
    break (sent as CRLF, two characters)."""
    return sum(2 if ch in DOUBLE else 1 for ch in normalise(text))


def check_text(parts: tuple[str, ...], what: str, limit: int) -> None:
    """Charset and weighted length of fields sent side by side (subject, message): each is
    counted on its own, so a line break is never split across two fields."""
    bad = sorted({ch for part in parts for ch in normalise(part) if ch not in CHARSET})
    if bad:
        raise RuleViolation(
            "grouptexting",
            "charset",
            f"{what} has {len(bad)} character(s) outside the allowed set, e.g. U+{ord(bad[0]):04X}",
        )
    size = sum(weighted_length(part) for part in parts)
    if size > limit:
        raise RuleViolation(
            "grouptexting", "length", f"{what} counts {size} characters, limit {limit}"
        )


class GroupTexting(ProviderClient):
    name = "grouptexting"
    display_name = "Group Texting"
    send_path = "/api/sending"
    default_url = "https://app.grouptexting.com"
    callbacks = (
        CallbackRoute("keyword URL", "GET", "/hooks/{token}/grouptexting/keyword"),
        CallbackRoute("forwarding URL", "GET", "/hooks/{token}/grouptexting/inbox"),
    )
    has_balance = True
    max_connections = 2  # "no more than 2 simultaneous HTTP connections per second"

    def check(self, sms: OutboundSms) -> Prepared:
        number = us_ten_digits(sms.to)
        if number is None:
            raise RuleViolation(
                self.name, "number", "Group Texting only reaches 10-digit US numbers"
            )
        if not sms.text.strip():
            raise RuleViolation(self.name, "empty", "message text is empty")
        if len(sms.subject) > MAX_SUBJECT:
            raise RuleViolation(
                self.name,
                "subject",
                f"subject is {len(sms.subject)} characters, limit {MAX_SUBJECT}",
            )
        check_text((sms.subject, sms.text), "subject and message", MAX_TOTAL)
        # `commercial` is smsgate's own flag (quiet hours, kept by the sender): not sent here
        if sms.sender or sms.express:
            raise RuleViolation(
                self.name, "options", "express and sender are not Group Texting options"
            )
        fields = {
            "phonenumber": number,
            "subject": normalise(sms.subject),
            "message": normalise(sms.text),
        }
        return Prepared(fields, segments=1)

    def parse_send(self, reply: Reply) -> Outcome:
        return bare_code_answer(reply.body, SEND_CODES)

    # --- account operations -------------------------------------------------------------

    def balance(self) -> float:
        code = self.account_call("POST", "/api/credits/check/", {}).body.strip()
        if code in CREDIT_CODES:
            kind = OutcomeKind.RETRYABLE if code == "-10" else OutcomeKind.REJECTED
            raise ProviderError(self.name, code, CREDIT_CODES[code], kind)
        try:
            value = float(code)
        except ValueError:
            raise ProviderError(
                self.name, "unreadable", UNREADABLE.reason, OutcomeKind.UNKNOWN
            ) from None
        if value < 0:
            raise ProviderError(self.name, code, "undocumented negative code", OutcomeKind.UNKNOWN)
        return value

    def check_keyword(self, keyword: str) -> bool:
        """True when the keyword is free to rent."""
        code = self._operation(
            "POST", "/api/keyword/check/", {"keyword": keyword}, KEYWORD_CHECK_CODES
        )
        return code == "1"

    def buy_credits(self, card: Card, credits: int) -> None:
        if credits <= 0:
            raise RuleViolation(self.name, "credits", "credits to buy must be a positive number")
        self._operation(
            "POST", "/api/credits/buy/", {**card.fields(), "credits": str(credits)}, BUY_CODES
        )

    def rent_keyword(self, card: Card, keyword: str) -> None:
        self._operation(
            "POST", "/api/keyword/rent/", {**card.fields(), "keyword": keyword}, RENT_CODES
        )

    def setup_keyword(
        self,
        keyword: str,
        *,
        group: str | None = None,
        autoreply: str | None = None,
        email: str | None = None,
        url: str | None = None,
    ) -> None:
        if autoreply is not None:
            if not autoreply.strip():
                raise RuleViolation(self.name, "autoreply", "autoreply is blank")
            check_text((autoreply,), "autoreply", MAX_TOTAL)
        optional = {"group": group, "autoreply": autoreply, "email": email, "url": url}
        fields = {"keyword": keyword, **{k: v for k, v in optional.items() if v is not None}}
        self._operation("POST", "/api/keyword/setup/", fields, SETUP_CODES)

    def _operation(
        self, method: str, path: str, fields: dict[str, str], codes: dict[str, tuple[bool, str]]
    ) -> str:
        code = self.account_call(method, path, fields).body.strip()
        if code not in codes:
            raise ProviderError(self.name, "unreadable", UNREADABLE.reason, OutcomeKind.UNKNOWN)
        ok, reason = codes[code]
        if not ok:
            kind = OutcomeKind.RETRYABLE if code == "-10" else OutcomeKind.REJECTED
            raise ProviderError(self.name, code, reason, kind)
        return code
