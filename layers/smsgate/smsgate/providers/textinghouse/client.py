"""TextingHouse — API SMS PRO: `sendsms`, `getstatus`, `getcredit`, the test number 999.

Its rules live here: international digits without `+`, the GSM 03.38 character set of the
document (extension characters count 2, > 160 splits into billed parts of 153), an 11-character
alphanumeric sender, a 32-character client id, and the `STOP sms-s.top` mention that commercial
messages must end with. Parameter names are case sensitive.
"""

from __future__ import annotations

import math
import re

from ...phones import international_digits
from ...status import Status
from ...text import GSM_BASIC, GSM_EXTENSION
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
    StatusLookup,
)

NAME = "textinghouse"
PATH = "/http/v1/do"
TEST_NUMBER = "999"  # §4.8: free, not E.164; its content is not taken into account
STOP_MENTION = "STOP sms-s.top"
MAX_CLIENT_ID = 32
SINGLE, MULTI = 160, 153
# The document's JavaScript pattern, plus the GSM 03.38 tables it cites (docs/providers.md).
PATTERN_CHARS = frozenset(
    " 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZÄäàÅåÆæßÇèéÉìÖöòØøÑñÜüù"
    "#¤%&()*+,-./:;<>=§$!?£¿·@¡'\"\n[]{}~^|"
)
ALLOWED = PATTERN_CHARS | GSM_BASIC | GSM_EXTENSION
SENDER = re.compile(r"[A-Za-z0-9]{1,11}")
_ANSWER = re.compile(
    r"^\s*(?:ID:\s*(?P<id>\S+)|ERR:\s*(?P<code>\d+)\s*(?:\|\s*(?P<text>.*))?)\s*$", re.S
)
_NUMBER = re.compile(r"^\s*(?:[A-Za-z]+:\s*)?(?P<n>-?\d+(?:\.\d+)?)\s*$")

SEND_CODES: dict[str, Answer] = {
    "100": Answer(OutcomeKind.REJECTED, Category.INVALID, "missing parameter"),
    "101": Answer(
        OutcomeKind.RETRYABLE,
        Category.AUTH,
        "authentication failed (user, password or IP lock)",
        60,
    ),
    "104": Answer(OutcomeKind.RETRYABLE, Category.CREDIT, "insufficient credit", 300),
    # A processing error (transient): retried, then `failed` with 300 so the user sees why.
    "300": Answer(
        OutcomeKind.RETRYABLE,
        Category.PROVIDER_ERROR,
        "error processing request",
        30,
        fail_when_spent=True,
    ),
    "350": Answer(
        OutcomeKind.RETRYABLE, Category.FLOOD, "flood: same text to the same number within 10 s", 10
    ),
    "400": Answer(
        OutcomeKind.REJECTED,
        Category.INVALID,
        "commercial message without the STOP sms-s.top mention",
    ),
}
OTHER_ERROR = Answer(OutcomeKind.RETRYABLE, Category.PROVIDER_ERROR, "undocumented error code", 30)
LOOKUP_CODES = {
    "100": "missing parameter",
    "101": "authentication failed (user, password or IP lock)",
    "201": "api_id unknown",
    "202": "climsgid unknown",
    "300": "error processing request",
}
# Delivery status codes (§5.1) -> smsgate's status (docs/contract.md, Statuses).
STATUS_CODES: dict[str, tuple[Status, str]] = {
    "0": (Status.SENT, "processing in progress"),
    "1": (Status.SENT, "sent, awaiting final status"),
    "3": (Status.DELIVERED, "received"),
    "4": (Status.UNDELIVERED, "expired or out of reach"),
    "5": (Status.UNDELIVERED, "not subscribed"),
    "6": (Status.UNDELIVERED, "not received"),
    "7": (Status.FAILED, "prohibited sending"),
    "20": (Status.FAILED, "insufficient credit"),
}


Lookup = StatusLookup  # a `getstatus` answer


def map_status(code: str) -> tuple[Status, str] | None:
    return STATUS_CODES.get(code.strip())


def parts(text: str) -> int:
    units = sum(2 if ch in GSM_EXTENSION else 1 for ch in text)
    return 1 if units <= SINGLE else math.ceil(units / MULTI)


class TextingHouse(ProviderClient):
    name = NAME
    display_name = "TextingHouse"
    send_path = PATH
    default_url = "https://api.textinghouse.com"
    callbacks = (
        CallbackRoute("DLR callback", "POST", "/hooks/{token}/textinghouse/dlr"),
        CallbackRoute("MO callback", "POST", "/hooks/{token}/textinghouse/mo"),
    )
    has_balance = True
    has_status = True
    test_number = TEST_NUMBER
    holds_commercial = True  # §4.3: working days, in the day, recipient's local time
    home_zone = ("Europe/Paris", "FR")  # its home: the test number's windows
    same_text_interval = 10  # code 350: one text per number per 10 seconds

    def check(self, sms: OutboundSms) -> Prepared:
        to = TEST_NUMBER if sms.to == TEST_NUMBER else international_digits(sms.to)
        if not to.isdigit():
            raise RuleViolation(self.name, "number", "recipient must be international digits")
        if not sms.text.strip():
            raise RuleViolation(self.name, "empty", "message text is empty")
        bad = sorted({ch for ch in sms.text if ch not in ALLOWED})
        if bad:
            raise RuleViolation(
                self.name,
                "charset",
                f"{len(bad)} character(s) outside GSM 03.38, e.g. U+{ord(bad[0]):04X}",
            )
        if len(sms.id) > MAX_CLIENT_ID:
            raise RuleViolation(self.name, "climsgid", f"client id longer than {MAX_CLIENT_ID}")
        if sms.sender is not None and not SENDER.fullmatch(sms.sender):
            raise RuleViolation(self.name, "sender", "sender id must be 1-11 of [A-Za-z0-9]")
        if sms.commercial and not sms.text.rstrip().endswith(STOP_MENTION):
            raise RuleViolation(
                self.name, "stop_mention", f"a commercial message must end with '{STOP_MENTION}'"
            )
        if sms.subject or sms.express:
            raise RuleViolation(
                self.name, "options", "subject and express are not TextingHouse options"
            )
        fields = {
            "cmd": "sendsms",
            "to": to,
            "txt": sms.text,
            "climsgid": sms.id,
            "iscom": "Y" if sms.commercial else "N",
        }
        if sms.sender:
            fields["from"] = sms.sender
        return Prepared(fields, segments=0 if to == TEST_NUMBER else parts(sms.text))

    def parse_send(self, reply: Reply) -> Outcome:
        match = _ANSWER.match(reply.body)
        if match is None:
            return Outcome.from_answer("unreadable", UNREADABLE)
        if match["id"]:
            return Outcome(
                OutcomeKind.SENT, Category.ACCEPTED, "ID", "message accepted", match["id"]
            )
        code = match["code"]
        return Outcome.from_answer(code, SEND_CODES.get(code, OTHER_ERROR))

    def status(self, *, api_id: str | None = None, climsgid: str | None = None) -> Lookup:
        """`getstatus` by TextingHouse's id or ours (api_id wins when both are given)."""
        if not (api_id or climsgid):
            raise ValueError("getstatus needs api_id or climsgid")
        fields = {
            "cmd": "getstatus",
            **({"api_id": api_id} if api_id else {"climsgid": climsgid or ""}),
        }
        body = self.account_call("POST", PATH, fields).body
        match = _ANSWER.match(body)
        if match is not None and match["code"]:
            code = match["code"]
            if code in ("201", "202"):
                return Lookup(False, code, reason=LOOKUP_CODES[code])
            kind = OutcomeKind.RETRYABLE if code in ("101", "300") else OutcomeKind.REJECTED
            raise ProviderError(self.name, code, LOOKUP_CODES.get(code, OTHER_ERROR.reason), kind)
        number = _NUMBER.match(body)
        mapped = map_status(number["n"]) if number else None
        if number is None or mapped is None:
            raise ProviderError(self.name, "unreadable", UNREADABLE.reason, OutcomeKind.UNKNOWN)
        return Lookup(True, number["n"], mapped[0], mapped[1])

    def balance(self) -> float:
        body = self.account_call("POST", PATH, {"cmd": "getcredit"}).body
        match = _ANSWER.match(body)
        if match is not None and match["code"]:
            code = match["code"]
            raise ProviderError(
                self.name, code, LOOKUP_CODES.get(code, OTHER_ERROR.reason), OutcomeKind.RETRYABLE
            )
        number = _NUMBER.match(body)
        if number is None:
            raise ProviderError(self.name, "unreadable", UNREADABLE.reason, OutcomeKind.UNKNOWN)
        return float(number["n"])
