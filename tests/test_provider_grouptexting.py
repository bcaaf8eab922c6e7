"""Group Texting (Group Texting's HTTP SMS API) through the real client, over real HTTP, against
the simulator.

One table, run by the provider harness (tests/provider_harness.py): every code of the document's
send, credit check, keyword check, credit purchase, keyword rental and keyword setup appears
with its outcome; every rule at its boundary and one past it (a violation raises
RuleViolation and no request reaches the simulator); every transport fault.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

import pytest
import requests
from provider_harness import (
    PASS,
    USER,
    Call,
    Fails,
    Out,
    Provider,
    Returns,
    Row,
    Rule,
    Sim,
    cases,
    credit_to,
    opted_out,
    run,
)

from smsgate.providers import Card, Category, GroupTexting, OutboundSms, OutcomeKind, ProviderClient
from smsgate_sim import KeywordConfig

US, US10 = "+12125551234", "2125551234"
SEND, CHECK, BUY = "/api/sending", "/api/credits/check/", "/api/credits/buy/"
KW_CHECK, KW_RENT, KW_SETUP = "/api/keyword/check/", "/api/keyword/rent/", "/api/keyword/setup/"
NEXT_YEAR = f"{(dt.date.today().year + 1) % 100:02d}"
DOUBLES = "~@#%+=/\\"  # 8 characters that count 16

K, C = OutcomeKind, Category
GROUP_TEXTING = Provider("grouptexting", GroupTexting)

CARD = Card(
    first_name="Ada",
    last_name="Lovelace",
    address="1 Main St",
    city="New York",
    state="NY",
    zip="10001",
    country="US",
    type="AX",
    number="378282246310005",
    code="7391",
    exp_month="12",
    exp_year=NEXT_YEAR,
)
DECLINED_CARD = replace(CARD, type="Visa", number="4000000000000002", code="123")
CARD_FIELDS = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "address": "1 Main St",
    "city": "New York",
    "state": "NY",
    "zip": "10001",
    "country": "US",
    "type": "AX",
    "ccnumber": "378282246310005",
    "cccode": "7391",
    "expm": "12",
    "expy": NEXT_YEAR,
}
DECLINED_FIELDS = {**CARD_FIELDS, "type": "Visa", "ccnumber": "4000000000000002", "cccode": "123"}


def sms(text: str = "hello world", subject: str = "", to: str = US, **kw: Any) -> OutboundSms:
    return OutboundSms(id="m1", to=to, text=text, subject=subject, **kw)


def sent(message: str = "hello world", subject: str = "") -> tuple[str, dict[str, str]]:
    return SEND, {"phonenumber": US10, "subject": subject, "message": message}


def globally_opted_out(sim: Any, client: ProviderClient) -> None:
    sim.global_opt_out(US10)


def below_minimum_purchase(sim: Any, client: ProviderClient) -> None:
    sim.account().min_purchase_declined = True


def rented_mykw(sim: Any, client: ProviderClient) -> None:
    sim.account().keywords["MYKW"] = KeywordConfig("MYKW")


def two_other_connections(sim: Any, client: ProviderClient) -> None:
    """Two other clients' connections within the second: a third one gets HTTP 503."""
    for _ in range(2):
        with requests.Session() as other:  # a new TCP connection each
            other.trust_env = False
            answer = other.post(sim.url + CHECK, data={"user": USER, "pass": PASS}, timeout=2)
            assert answer.status_code == 200


OK = Out(K.SENT, C.ACCEPTED, "1", credit=999)
DEFAULT = Sim()
WRONG = Sim(password="not-the-password")
RENTED = Sim(prep=rented_mykw)
BALANCE = Call("balance")
NO_ANSWER = Out(K.UNKNOWN, C.NO_ANSWER, "no_answer")
SETUP_ALL = {
    "group": "Fans",
    "autoreply": "Thanks for joining! Reply STOP to end.",
    "email": "ops@example.com",
    "url": "https://example.com/hook",
}

TABLE: list[Row] = [
    # --- send: every code of the document -----------------------------------------------
    ("send 1 sent", sms(), DEFAULT, sent(), OK),
    ("send 1 with subject", sms(subject="News"), DEFAULT, sent(subject="News"), OK),
    ("send -1 wrong password", sms(), WRONG, sent(), Out(K.RETRYABLE, C.AUTH, "-1", 1000)),
    ("send -2 no credit", sms(), Sim(prep=credit_to(0)), sent(), Out(K.RETRYABLE, C.CREDIT, "-2")),
    (
        "send -5 local opt-out",
        sms(),
        Sim(prep=opted_out(US10)),
        sent(),
        Out(K.REJECTED, C.OPT_OUT, "-5", 1000),
    ),
    # The client checks every rule behind -7 first, so only a forced answer reaches it.
    (
        "send -7 invalid message (forced)",
        sms(),
        Sim(force="-7"),
        sent(),
        Out(K.REJECTED, C.INVALID, "-7"),
    ),
    ("send blank message", sms("   "), DEFAULT, None, Rule("empty")),
    (
        "send -104 global opt-out",
        sms(),
        Sim(prep=globally_opted_out),
        sent(),
        Out(K.REJECTED, C.OPT_OUT, "-104", 1000),
    ),
    (
        "send -106 (forced: the client only sends 10 digits)",
        sms(),
        Sim(force="-106"),
        sent(),
        Out(K.REJECTED, C.INVALID, "-106"),
    ),
    (
        "send -10 (forced: no natural trigger)",
        sms(),
        Sim(force="-10"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-10"),
    ),
    (
        "send HTTP 503 rate limit (third connection within a second)",
        sms(),
        Sim(prep=two_other_connections),
        sent(),
        Out(K.RETRYABLE, C.RATE_LIMIT, "http_503", 1000),
    ),
    # "Any negative codes represent unsuccessful attempts": an unlisted one is a refusal
    (
        "send undocumented negative code: not sent, retried then failed",
        sms(),
        Sim(force="-3"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-3", fail_when_spent=True),
    ),
    (
        "send undocumented positive code is unreadable",
        sms(),
        Sim(force="3"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    # --- send: rules at the boundary and one past -----------------------------------------
    ("subject 13", sms("hi", "S" * 13), DEFAULT, sent("hi", "S" * 13), OK),
    ("subject 14", sms("hi", "S" * 14), DEFAULT, None, Rule("subject")),
    ("message 160", sms("a" * 160), DEFAULT, sent("a" * 160), OK),
    ("message 161", sms("a" * 161), DEFAULT, None, Rule("length")),
    ("subject+message 160", sms("a" * 156, "Sale"), DEFAULT, sent("a" * 156, "Sale"), OK),
    ("subject+message 161", sms("a" * 157, "Sale"), DEFAULT, None, Rule("length")),
    (
        "double-count characters 160",
        sms(DOUBLES + "a" * 144),
        DEFAULT,
        sent(DOUBLES + "a" * 144),
        OK,
    ),
    ("double-count characters 161", sms(DOUBLES + "a" * 145), DEFAULT, None, Rule("length")),
    (
        "double-count subject 160",
        sms("a" * 151, "50%+off"),
        DEFAULT,
        sent("a" * 151, "50%+off"),
        OK,
    ),
    ("double-count subject 161", sms("a" * 152, "50%+off"), DEFAULT, None, Rule("length")),
    (
        "LF counts 2 and goes out as CRLF (160)",
        sms("a" * 79 + "\n" + "a" * 79),
        DEFAULT,
        sent("a" * 79 + "\r\n" + "a" * 79),
        OK,
    ),
    ("LF 161", sms("a" * 80 + "\n" + "a" * 79), DEFAULT, None, Rule("length")),
    (
        "CRLF counts 2, not 4 (160)",
        sms("a" * 79 + "\r\n" + "a" * 79),
        DEFAULT,
        sent("a" * 79 + "\r\n" + "a" * 79),
        OK,
    ),
    ("CRLF 161", sms("a" * 80 + "\r\n" + "a" * 79), DEFAULT, None, Rule("length")),
    ("lone CR goes out as CRLF", sms("a\rb"), DEFAULT, sent("a\r\nb"), OK),
    (
        # Subject and message are separate fields: a CR ending the subject and an LF starting
        # the message are two line breaks to Group Texting (2 + 2), not one CRLF (2).
        "CR ending the subject + LF starting the message count 4 (162)",
        sms("\n" + "a" * 156, "Hi\r"),
        DEFAULT,
        None,
        Rule("length"),
    ),
    (
        "every allowed special character",
        sms(".,:;!?()~=+-_\\/@$#&% ok"),
        DEFAULT,
        sent(".,:;!?()~=+-_\\/@$#&% ok"),
        OK,
    ),
    ("charset: é", sms("café"), DEFAULT, None, Rule("charset")),
    ("charset: *", sms("5 * 3"), DEFAULT, None, Rule("charset")),
    ("charset: '", sms("it's"), DEFAULT, None, Rule("charset")),
    ('charset: "', sms('say "hi"'), DEFAULT, None, Rule("charset")),
    ("charset: tab", sms("a\tb"), DEFAULT, None, Rule("charset")),
    ("charset in subject", sms("hi", "Café"), DEFAULT, None, Rule("charset")),
    ("non-US number", sms(to="+33612345678"), DEFAULT, None, Rule("number")),
    ("empty message", sms(""), DEFAULT, None, Rule("empty")),
    ("express is not an option", sms(express=True), DEFAULT, None, Rule("options")),
    ("sender is not an option", sms(sender="Acme"), DEFAULT, None, Rule("options")),
    # `commercial` is smsgate's flag (quiet hours, kept by the sender): accepted, not sent
    ("commercial is accepted, not sent", sms(commercial=True), DEFAULT, sent(), OK),
    # --- send: transport faults ---------------------------------------------------------
    (
        "send connection refused",
        sms(),
        Sim(closed=True),
        None,
        Out(K.RETRYABLE, C.NETWORK, "connect_failed"),
    ),
    ("send hang past the read timeout", sms(), Sim(fault="hang"), sent(), NO_ANSWER),
    ("send connection dropped", sms(), Sim(fault="drop"), sent(), NO_ANSWER),
    (
        "send garbage answer",
        sms(),
        Sim(fault="garbage"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    (
        "send HTTP 500",
        sms(),
        Sim(fault="http_500"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "http_500"),
    ),
    (
        "send HTTP 503",
        sms(),
        Sim(fault="http_503"),
        sent(),
        Out(K.RETRYABLE, C.RATE_LIMIT, "http_503"),
    ),
    # --- credits check --------------------------------------------------------------------
    ("credits 1000", BALANCE, DEFAULT, (CHECK, {}), Returns(1000.0)),
    ("credits 0 (non-negative)", BALANCE, Sim(prep=credit_to(0)), (CHECK, {}), Returns(0.0)),
    ("credits 12.5", BALANCE, Sim(prep=credit_to(12.5)), (CHECK, {}), Returns(12.5)),
    ("credits -1 wrong password", BALANCE, WRONG, (CHECK, {}), Fails("-1", K.REJECTED)),
    ("credits -10 (forced)", BALANCE, Sim(force="-10"), (CHECK, {}), Fails("-10", K.RETRYABLE)),
    ("credits undocumented -3", BALANCE, Sim(force="-3"), (CHECK, {}), Fails("-3", K.UNKNOWN)),
    ("credits garbage", BALANCE, Sim(fault="garbage"), (CHECK, {}), Fails("unreadable", K.UNKNOWN)),
    ("credits hang", BALANCE, Sim(fault="hang"), (CHECK, {}), Fails("no_answer", K.UNKNOWN)),
    ("credits refused", BALANCE, Sim(closed=True), None, Fails("connect_failed", K.RETRYABLE)),
    ("credits HTTP 500", BALANCE, Sim(fault="http_500"), (CHECK, {}), Fails("http_500", K.UNKNOWN)),
    (
        "credits HTTP 503",
        BALANCE,
        Sim(fault="http_503"),
        (CHECK, {}),
        Fails("http_503", K.RETRYABLE),
    ),
    # --- keyword check --------------------------------------------------------------------
    (
        "keyword 1 available",
        Call("check_keyword", "NEWKW"),
        DEFAULT,
        (KW_CHECK, {"keyword": "NEWKW"}),
        Returns(True),
    ),
    (
        "keyword 0 taken",
        Call("check_keyword", "PIZZA"),
        DEFAULT,
        (KW_CHECK, {"keyword": "PIZZA"}),
        Returns(False),
    ),
    (
        "keyword -1 wrong password",
        Call("check_keyword", "NEWKW"),
        WRONG,
        (KW_CHECK, {"keyword": "NEWKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "keyword -2 below the minimum purchase",
        Call("check_keyword", "NEWKW"),
        Sim(prep=below_minimum_purchase),
        (KW_CHECK, {"keyword": "NEWKW"}),
        Fails("-2", K.REJECTED),
    ),
    (
        "keyword -10 blank keyword",
        Call("check_keyword", ""),
        DEFAULT,
        (KW_CHECK, {"keyword": ""}),
        Fails("-10", K.RETRYABLE),
    ),
    # --- buy credits ----------------------------------------------------------------------
    (
        "buy 1 succeeded",
        Call("buy_credits", CARD, 100),
        DEFAULT,
        (BUY, {**CARD_FIELDS, "credits": "100"}),
        Returns(None, credit=1100),
    ),
    (
        "buy 0 declined card",
        Call("buy_credits", DECLINED_CARD, 100),
        DEFAULT,
        (BUY, {**DECLINED_FIELDS, "credits": "100"}),
        Fails("0", K.REJECTED),
    ),
    (
        "buy -1 wrong password",
        Call("buy_credits", CARD, 100),
        WRONG,
        (BUY, {**CARD_FIELDS, "credits": "100"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "buy -10 blank card field",
        Call("buy_credits", replace(CARD, address=""), 100),
        DEFAULT,
        (BUY, {**CARD_FIELDS, "address": "", "credits": "100"}),
        Fails("-10", K.RETRYABLE),
    ),
    ("buy 0 credits", Call("buy_credits", CARD, 0), DEFAULT, None, Rule("credits")),
    (
        "buy card type",
        Call("buy_credits", replace(CARD, type="Amex"), 100),
        DEFAULT,
        None,
        Rule("card_type"),
    ),
    (
        "buy card expiry",
        Call("buy_credits", replace(CARD, exp_month="1"), 100),
        DEFAULT,
        None,
        Rule("card_expiry"),
    ),
    # --- rent a keyword -------------------------------------------------------------------
    (
        "rent 2 succeeded",
        Call("rent_keyword", CARD, "NEWKW"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "keyword": "NEWKW"}),
        Returns(None),
    ),
    (
        "rent 1 not available",
        Call("rent_keyword", CARD, "PIZZA"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "keyword": "PIZZA"}),
        Fails("1", K.REJECTED),
    ),
    (
        "rent 0 declined card",
        Call("rent_keyword", DECLINED_CARD, "NEWKW"),
        DEFAULT,
        (KW_RENT, {**DECLINED_FIELDS, "keyword": "NEWKW"}),
        Fails("0", K.REJECTED),
    ),
    (
        "rent -1 wrong password",
        Call("rent_keyword", CARD, "NEWKW"),
        WRONG,
        (KW_RENT, {**CARD_FIELDS, "keyword": "NEWKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "rent -10 blank card field",
        Call("rent_keyword", replace(CARD, city=""), "NEWKW"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "city": "", "keyword": "NEWKW"}),
        Fails("-10", K.RETRYABLE),
    ),
    # --- keyword setup --------------------------------------------------------------------
    (
        "setup 1 updated",
        Call("setup_keyword", "MYKW", **SETUP_ALL),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", **SETUP_ALL}),
        Returns(None),
    ),
    (
        "setup 1 keyword only",
        Call("setup_keyword", "MYKW"),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW"}),
        Returns(None),
    ),
    (
        "setup -1 wrong password",
        Call("setup_keyword", "MYKW"),
        replace(WRONG, prep=rented_mykw),
        (KW_SETUP, {"keyword": "MYKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "setup -2 keyword not rented",
        Call("setup_keyword", "OTHER"),
        RENTED,
        (KW_SETUP, {"keyword": "OTHER"}),
        Fails("-2", K.REJECTED),
    ),
    (
        "setup -3 invalid group",
        Call("setup_keyword", "MYKW", group="bad*group"),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "group": "bad*group"}),
        Fails("-3", K.REJECTED),
    ),
    (
        "setup -4 invalid email",
        Call("setup_keyword", "MYKW", email="not-an-email"),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "email": "not-an-email"}),
        Fails("-4", K.REJECTED),
    ),
    (
        "setup -5 invalid URL",
        Call("setup_keyword", "MYKW", url="ftp://example.com/x"),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "url": "ftp://example.com/x"}),
        Fails("-5", K.REJECTED),
    ),
    (
        "setup -7 (forced: the client checks the autoreply first)",
        Call("setup_keyword", "MYKW", autoreply="Thanks"),
        replace(RENTED, force="-7"),
        (KW_SETUP, {"keyword": "MYKW", "autoreply": "Thanks"}),
        Fails("-7", K.REJECTED),
    ),
    (
        "setup -10 (forced)",
        Call("setup_keyword", "MYKW"),
        replace(RENTED, force="-10"),
        (KW_SETUP, {"keyword": "MYKW"}),
        Fails("-10", K.RETRYABLE),
    ),
    (
        "setup autoreply 160",
        Call("setup_keyword", "MYKW", autoreply="a" * 160),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "autoreply": "a" * 160}),
        Returns(None),
    ),
    (
        "setup autoreply 161",
        Call("setup_keyword", "MYKW", autoreply="a" * 161),
        RENTED,
        None,
        Rule("length"),
    ),
    (
        "setup autoreply blank",
        Call("setup_keyword", "MYKW", autoreply="  "),
        RENTED,
        None,
        Rule("autoreply"),
    ),
    (
        "setup autoreply charset",
        Call("setup_keyword", "MYKW", autoreply="Merci é"),
        RENTED,
        None,
        Rule("charset"),
    ),
]


KNOWN_BUGS: dict[str, str] = {}  # label -> the bug it shows (the row must fail until fixed)


@pytest.mark.parametrize("row", cases(TABLE, KNOWN_BUGS))
def test_group_texting(sims: Any, row: Row) -> None:
    run(GROUP_TEXTING, sims, row)
