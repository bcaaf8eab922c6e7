"""Club Texting per its API document: ``/apisendmessage.php``, keyword and inbox forwarding.

Answers: ``1`` sent, ``-1`` bad user/pass, ``-2`` credit limit, ``-5`` local opt-out,
``-7`` invalid message (> 130 characters, or ``'``/``"`` in message or subject),
``-10`` unknown error. Field names in any case (the document's table capitalises them, its
examples do not), as PHP reads them (``php_form``: a leading space dropped). Checks run in that
order: auth, missing fields / malformed number or express (-10), message (-7), opt-out (-5),
credit (-2).

Keyword callbacks: the app's answer is the SMS reply; its rules (130 characters, sub 60 s) are
checked and a breach recorded on the ``CallbackRecord``'s ``violations``.
"""

from __future__ import annotations

import re
import time

from .server import Answer, InboundSim, Request, SentMessage, not_found

SEND_PATH = "/apisendmessage.php"
MAX_MESSAGE = 130
_TEN_DIGITS = re.compile(r"[0-9]{10}")

OK = "1"
BAD_AUTH = "-1"
NO_CREDIT = "-2"
OPTED_OUT = "-5"
INVALID_MESSAGE = "-7"
UNKNOWN = "-10"


def message_problem(subject: str, message: str) -> str | None:
    """Why Club Texting answers -7, or None."""
    if not message.strip():
        return "empty message"
    if len(message) > MAX_MESSAGE:
        return f"message exceeds {MAX_MESSAGE} characters"
    if any(q in message for q in "'\"") or any(q in subject for q in "'\""):
        return "single or double quote"
    return None


class ClubTextingSim(InboundSim):
    name = "clubtexting"

    def _reply_violations(
        self, kind: str, status: int | None, body: str, elapsed: float
    ) -> tuple[str, ...]:
        # Club Texting API, Receiving SMS Messages Via API, "Response To The Server": the
        # keyword reply is plain text, max 130 characters, given sub 60 seconds or abandoned.
        # The quotes rule is written for the send API's Message parameter only (and its -7
        # answer), so a reply may hold quotes. Inbox forwarding documents no reply at all.
        if kind != "keyword":
            return ()
        problems = self._deadline_violations(status, body, elapsed)
        if status is not None and 200 <= status < 300 and len(body) > MAX_MESSAGE:
            problems.append(f"reply is {len(body)} characters, max {MAX_MESSAGE}")
        return tuple(problems)

    def _process(self, req: Request) -> Answer:
        if req.path.rstrip("/") != SEND_PATH:
            return not_found()
        return Answer(body=self._send(req))

    def _send(self, req: Request) -> str:
        f = req.lower_fields()
        with self._lock:
            account = self._auth(f.get("user"), f.get("pass"))
            if account is None:
                return BAD_AUTH
            phone, message = f.get("phonenumber"), f.get("message")
            if phone is None or message is None:
                return UNKNOWN
            phone = phone.strip()  # the document's own example sends "phonenumber= 2127846500"
            if not _TEN_DIGITS.fullmatch(phone):
                return UNKNOWN  # Club Texting has no code for a bad number
            express = f.get("express", "").strip()
            if express not in ("", "0", "1"):
                return UNKNOWN
            subject = f.get("subject", "")
            if message_problem(subject, message):
                return INVALID_MESSAGE
            if phone in account.opt_outs:
                return OPTED_OUT
            if account.credit < 1:
                return NO_CREDIT
            account.credit -= 1
            self._messages.append(
                SentMessage(account.user, phone, subject, message, express == "1", time.time())
            )
            return OK
