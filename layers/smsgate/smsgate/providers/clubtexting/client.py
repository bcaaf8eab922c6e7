"""Club Texting's API document: send only — `apisendmessage.php`, 10-digit US numbers, 130
characters. This module holds its send rules, its request and its codes; `inbound.py` its
callbacks, `routes.py` their routes."""

from __future__ import annotations

from ...phones import us_ten_digits
from ..base import (
    Answer,
    CallbackRoute,
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    Reply,
    RuleViolation,
    bare_code_answer,
)

MAX_MESSAGE = 130  # characters of the message; the subject is not counted (docs/providers.md)
FORBIDDEN = frozenset("'\"")  # "cannot ... contain single or double quotes"

SEND_CODES: dict[str, Answer] = {
    "1": Answer(OutcomeKind.SENT, Category.ACCEPTED, "message sent"),
    "-1": Answer(OutcomeKind.RETRYABLE, Category.AUTH, "invalid user or password", 60),
    "-2": Answer(OutcomeKind.RETRYABLE, Category.CREDIT, "credit limit reached", 300),
    "-5": Answer(
        OutcomeKind.REJECTED, Category.OPT_OUT, "recipient is on the account's opt-out list"
    ),
    "-7": Answer(OutcomeKind.REJECTED, Category.INVALID, "invalid message (length or quotes)"),
    "-10": Answer(
        OutcomeKind.RETRYABLE, Category.PROVIDER_ERROR, "unknown error at Club Texting", 30
    ),
}


class ClubTexting(ProviderClient):
    name = "clubtexting"
    display_name = "Club Texting"
    send_path = "/apisendmessage.php"
    default_url = "https://app.clubtexting.com"
    callbacks = (
        CallbackRoute("keyword URL", "GET", "/hooks/{token}/clubtexting/keyword"),
        CallbackRoute("inbox forwarding", "GET", "/hooks/{token}/clubtexting/inbox"),
    )

    def check(self, sms: OutboundSms) -> Prepared:
        number = us_ten_digits(sms.to)
        if number is None:
            raise RuleViolation(
                self.name, "number", "Club Texting only reaches 10-digit US numbers"
            )
        if not sms.text.strip():
            raise RuleViolation(self.name, "empty", "message text is empty")
        if len(sms.text) > MAX_MESSAGE:
            raise RuleViolation(
                self.name, "length", f"message is {len(sms.text)} characters, limit {MAX_MESSAGE}"
            )
        if any(ch in FORBIDDEN for ch in sms.text + sms.subject):
            raise RuleViolation(self.name, "quotes", "message or subject contains ' or \"")
        # `commercial` is smsgate's own flag (quiet hours, kept by the sender): not sent here
        if sms.sender:
            raise RuleViolation(self.name, "options", "sender is a TextingHouse option")
        fields = {
            "phonenumber": number,
            "subject": sms.subject,
            "message": sms.text,
            "express": "1" if sms.express else "0",
        }
        return Prepared(fields, segments=1)

    def parse_send(self, reply: Reply) -> Outcome:
        return bare_code_answer(reply.body, SEND_CODES)
