"""Club Texting (Club Texting's API document) through the real client, over real HTTP, against the
simulator.

One table, run by the provider harness (tests/provider_harness.py): every send code of the
document appears with its outcome class; every rule at its boundary and one past it (a violation
raises RuleViolation and no request reaches the simulator); every transport fault.
"""

from __future__ import annotations

from typing import Any

import pytest
from provider_harness import Out, Provider, Row, Rule, Sim, cases, credit_to, opted_out, run

from smsgate.providers import Category, ClubTexting, OutboundSms, OutcomeKind

PATH = "/apisendmessage.php"
US, US10 = "+12125551234", "2125551234"

K, C = OutcomeKind, Category
CLUB_TEXTING = Provider("clubtexting", ClubTexting)


def sms(text: str = "hello world", to: str = US, **kw: Any) -> OutboundSms:
    return OutboundSms(id="m1", to=to, text=text, **kw)


def req(
    message: str = "hello world", subject: str = "", express: str = "0"
) -> tuple[str, dict[str, str]]:
    """The send request: its path and fields, credentials aside."""
    return PATH, {"phonenumber": US10, "subject": subject, "message": message, "express": express}


OK = Out(K.SENT, C.ACCEPTED, "1", credit=999)
DEFAULT = Sim()

TABLE: list[Row] = [
    # --- every code of the document ---------------------------------------------------
    ("1 sent", sms(), DEFAULT, req(), OK),
    ("1 sent express", sms(express=True), DEFAULT, req(express="1"), OK),
    ("1 sent with subject", sms(subject="News"), DEFAULT, req(subject="News"), OK),
    (
        "-1 wrong password",
        sms(),
        Sim(password="not-the-password"),
        req(),
        Out(K.RETRYABLE, C.AUTH, "-1", credit=1000),
    ),
    ("-2 no credit", sms(), Sim(prep=credit_to(0)), req(), Out(K.RETRYABLE, C.CREDIT, "-2")),
    (
        "-5 opted out",
        sms(),
        Sim(prep=opted_out(US10)),
        req(),
        Out(K.REJECTED, C.OPT_OUT, "-5", 1000),
    ),
    # The client checks every rule behind -7 first, so only a forced answer reaches it.
    (
        "-7 invalid message (forced)",
        sms(),
        Sim(force="-7"),
        req(),
        Out(K.REJECTED, C.INVALID, "-7"),
    ),
    (
        "-10 unknown error (forced: no natural trigger)",
        sms(),
        Sim(force="-10"),
        req(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-10"),
    ),
    (
        "HTTP 404 (wrong URL): refused before processing",
        sms(),
        Sim(force="Not Found", force_status=404),
        req(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "http_404"),
    ),
    # "Any negative codes represent unsuccessful attempts": an unlisted one is a refusal
    (
        "undocumented negative code: not sent, retried then failed",
        sms(),
        Sim(force="-3"),
        req(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-3", fail_when_spent=True),
    ),
    (
        "undocumented positive code is unreadable",
        sms(),
        Sim(force="2"),
        req(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    # --- rules at the boundary and one past ---------------------------------------------
    ("130 characters", sms("a" * 130), DEFAULT, req("a" * 130), OK),
    ("130 accented characters", sms("é" * 130), DEFAULT, req("é" * 130), OK),
    ("131 characters", sms("a" * 131), DEFAULT, None, Rule("length")),
    ("131 characters with a subject", sms("a" * 131, subject="S"), DEFAULT, None, Rule("length")),
    (
        "long subject is not counted",
        sms("a" * 130, subject="s" * 40),
        DEFAULT,
        req("a" * 130, "s" * 40),
        OK,
    ),
    ("single quote in message", sms("it's here"), DEFAULT, None, Rule("quotes")),
    ("double quote in message", sms('say "hi"'), DEFAULT, None, Rule("quotes")),
    ("single quote in subject", sms(subject="Bob's"), DEFAULT, None, Rule("quotes")),
    ("double quote in subject", sms(subject='"News"'), DEFAULT, None, Rule("quotes")),
    ("non-US number", sms(to="+33612345678"), DEFAULT, None, Rule("number")),
    ("UK number", sms(to="+447911123456"), DEFAULT, None, Rule("number")),
    ("empty message", sms(""), DEFAULT, None, Rule("empty")),
    ("blank message", sms("   "), DEFAULT, None, Rule("empty")),
    # `commercial` is smsgate's flag (quiet hours, kept by the sender): accepted, not sent
    ("commercial is accepted, not sent", sms(commercial=True), DEFAULT, req(), OK),
    ("sender is not an option", sms(sender="Acme"), DEFAULT, None, Rule("options")),
    # --- transport faults ---------------------------------------------------------------
    (
        "connection refused",
        sms(),
        Sim(closed=True),
        None,
        Out(K.RETRYABLE, C.NETWORK, "connect_failed"),
    ),
    (
        "hang past the read timeout",
        sms(),
        Sim(fault="hang"),
        req(),
        Out(K.UNKNOWN, C.NO_ANSWER, "no_answer"),
    ),
    (
        "connection dropped",
        sms(),
        Sim(fault="drop"),
        req(),
        Out(K.UNKNOWN, C.NO_ANSWER, "no_answer"),
    ),
    (
        "garbage answer",
        sms(),
        Sim(fault="garbage"),
        req(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    ("HTTP 500", sms(), Sim(fault="http_500"), req(), Out(K.UNKNOWN, C.NO_ANSWER, "http_500")),
    ("HTTP 503", sms(), Sim(fault="http_503"), req(), Out(K.RETRYABLE, C.RATE_LIMIT, "http_503")),
]


@pytest.mark.parametrize("row", cases(TABLE))
def test_club_texting(sims: Any, row: Row) -> None:
    run(CLUB_TEXTING, sims, row)
