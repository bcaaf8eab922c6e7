"""Group Texting (Group Texting's HTTP SMS API) through the real client, over real HTTP, against
the simulator.

One table: (label, input, simulator set-up, expected request, expected outcome). Every code of the
document's send, credit check, keyword check, credit purchase, keyword rental and keyword setup
appears with its outcome; every rule at its boundary and one past it (a violation raises
RuleViolation and no request reaches the simulator); every transport fault.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import requests

from smsgate.providers import (
    Card,
    Category,
    GroupTexting,
    OutboundSms,
    OutcomeKind,
    ProviderError,
    RuleViolation,
    Transport,
)
from smsgate_sim import KeywordConfig, unused_url

USER, PASS = "smsgate", "local-secret"
US, US10 = "+12125551234", "2125551234"
SEND, CHECK, BUY = "/api/sending", "/api/credits/check/", "/api/credits/buy/"
KW_CHECK, KW_RENT, KW_SETUP = "/api/keyword/check/", "/api/keyword/rent/", "/api/keyword/setup/"
GARBAGE_WORDS = ("maintenance", "right back", "html")  # the simulator's garbage page
NEXT_YEAR = f"{(dt.date.today().year + 1) % 100:02d}"
DOUBLES = "~@#%+=/\\"  # 8 characters that count 16

K, C = OutcomeKind, Category

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


# ----------------------------------------------------------------------------- the inputs


@dataclass(frozen=True)
class Send:
    sms: OutboundSms

    def __call__(self, client: GroupTexting) -> Any:
        return client.send(self.sms)


@dataclass(frozen=True)
class Balance:
    def __call__(self, client: GroupTexting) -> Any:
        return client.balance()


@dataclass(frozen=True)
class CheckKeyword:
    keyword: str

    def __call__(self, client: GroupTexting) -> Any:
        return client.check_keyword(self.keyword)


@dataclass(frozen=True)
class Buy:
    card: Card
    credits: int

    def __call__(self, client: GroupTexting) -> Any:
        return client.buy_credits(self.card, self.credits)


@dataclass(frozen=True)
class Rent:
    card: Card
    keyword: str

    def __call__(self, client: GroupTexting) -> Any:
        return client.rent_keyword(self.card, self.keyword)


@dataclass(frozen=True)
class Setup:
    keyword: str
    options: dict[str, str] = field(default_factory=dict)

    def __call__(self, client: GroupTexting) -> Any:
        return client.setup_keyword(self.keyword, **self.options)


# ----------------------------------------------------------------------------- set-up, outcomes


@dataclass(frozen=True)
class Sim:
    """A row's simulator set-up (and how the client reaches it)."""

    password: str = PASS
    closed: bool = False  # the client's URL is a port nothing listens on
    fault: str | None = None  # a `set_fault` mode
    force: str | None = None  # `force_answer` body
    prep: Callable[[Any], None] | None = None

    @property
    def short_timeouts(self) -> bool:
        return self.closed or self.fault is not None


@dataclass(frozen=True)
class Out:
    """A send's expected Outcome class and code; `credit`: the account's credit afterwards."""

    kind: OutcomeKind
    category: Category
    code: str
    credit: float | None = None
    fail_when_spent: bool = False


@dataclass(frozen=True)
class Returns:
    """An account operation's expected return value."""

    value: Any
    credit: float | None = None


@dataclass(frozen=True)
class Fails:
    """An account operation's expected ProviderError."""

    code: str
    kind: OutcomeKind


@dataclass(frozen=True)
class Rule:
    """The expected RuleViolation (and no request)."""

    rule: str


def sms(text: str = "hello world", subject: str = "", to: str = US, **kw: Any) -> OutboundSms:
    return OutboundSms(id="m1", to=to, text=text, subject=subject, **kw)


def sent(message: str = "hello world", subject: str = "") -> tuple[str, dict[str, str]]:
    return SEND, {"phonenumber": US10, "subject": subject, "message": message}


def no_credit(sim: Any) -> None:
    sim.account().credit = 0


def credit_12_5(sim: Any) -> None:
    sim.account().credit = 12.5


def opted_out(sim: Any) -> None:
    sim.opt_out(US10)


def globally_opted_out(sim: Any) -> None:
    sim.global_opt_out(US10)


def below_minimum_purchase(sim: Any) -> None:
    sim.account().min_purchase_declined = True


def rented_mykw(sim: Any) -> None:
    sim.account().keywords["MYKW"] = KeywordConfig("MYKW")


def two_other_connections(sim: Any) -> None:
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
NO_ANSWER = Out(K.UNKNOWN, C.NO_ANSWER, "no_answer")
SETUP_ALL = {
    "group": "Fans",
    "autoreply": "Thanks for joining! Reply STOP to end.",
    "email": "ops@example.com",
    "url": "https://example.com/hook",
}

Row = tuple[str, Any, Sim, tuple[str, dict[str, str]] | None, Out | Returns | Fails | Rule]
TABLE: list[Row] = [
    # --- send: every code of the document -----------------------------------------------
    ("send 1 sent", Send(sms()), DEFAULT, sent(), OK),
    ("send 1 with subject", Send(sms(subject="News")), DEFAULT, sent(subject="News"), OK),
    ("send -1 wrong password", Send(sms()), WRONG, sent(), Out(K.RETRYABLE, C.AUTH, "-1", 1000)),
    (
        "send -2 no credit",
        Send(sms()),
        Sim(prep=no_credit),
        sent(),
        Out(K.RETRYABLE, C.CREDIT, "-2"),
    ),
    (
        "send -5 local opt-out",
        Send(sms()),
        Sim(prep=opted_out),
        sent(),
        Out(K.REJECTED, C.OPT_OUT, "-5", 1000),
    ),
    # The client checks every rule behind -7 first, so only a forced answer reaches it.
    (
        "send -7 invalid message (forced)",
        Send(sms()),
        Sim(force="-7"),
        sent(),
        Out(K.REJECTED, C.INVALID, "-7"),
    ),
    ("send blank message", Send(sms("   ")), DEFAULT, None, Rule("empty")),
    (
        "send -104 global opt-out",
        Send(sms()),
        Sim(prep=globally_opted_out),
        sent(),
        Out(K.REJECTED, C.OPT_OUT, "-104", 1000),
    ),
    (
        "send -106 (forced: the client only sends 10 digits)",
        Send(sms()),
        Sim(force="-106"),
        sent(),
        Out(K.REJECTED, C.INVALID, "-106"),
    ),
    (
        "send -10 (forced: no natural trigger)",
        Send(sms()),
        Sim(force="-10"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-10"),
    ),
    (
        "send HTTP 503 rate limit (third connection within a second)",
        Send(sms()),
        Sim(prep=two_other_connections),
        sent(),
        Out(K.RETRYABLE, C.RATE_LIMIT, "http_503", 1000),
    ),
    # "Any negative codes represent unsuccessful attempts": an unlisted one is a refusal
    (
        "send undocumented negative code: not sent, retried then failed",
        Send(sms()),
        Sim(force="-3"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "-3", fail_when_spent=True),
    ),
    (
        "send undocumented positive code is unreadable",
        Send(sms()),
        Sim(force="3"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    # --- send: rules at the boundary and one past -----------------------------------------
    ("subject 13", Send(sms("hi", "S" * 13)), DEFAULT, sent("hi", "S" * 13), OK),
    ("subject 14", Send(sms("hi", "S" * 14)), DEFAULT, None, Rule("subject")),
    ("message 160", Send(sms("a" * 160)), DEFAULT, sent("a" * 160), OK),
    ("message 161", Send(sms("a" * 161)), DEFAULT, None, Rule("length")),
    ("subject+message 160", Send(sms("a" * 156, "Sale")), DEFAULT, sent("a" * 156, "Sale"), OK),
    ("subject+message 161", Send(sms("a" * 157, "Sale")), DEFAULT, None, Rule("length")),
    (
        "double-count characters 160",
        Send(sms(DOUBLES + "a" * 144)),
        DEFAULT,
        sent(DOUBLES + "a" * 144),
        OK,
    ),
    ("double-count characters 161", Send(sms(DOUBLES + "a" * 145)), DEFAULT, None, Rule("length")),
    (
        "double-count subject 160",
        Send(sms("a" * 151, "50%+off")),
        DEFAULT,
        sent("a" * 151, "50%+off"),
        OK,
    ),
    ("double-count subject 161", Send(sms("a" * 152, "50%+off")), DEFAULT, None, Rule("length")),
    (
        "LF counts 2 and goes out as CRLF (160)",
        Send(sms("a" * 79 + "\n" + "a" * 79)),
        DEFAULT,
        sent("a" * 79 + "\r\n" + "a" * 79),
        OK,
    ),
    ("LF 161", Send(sms("a" * 80 + "\n" + "a" * 79)), DEFAULT, None, Rule("length")),
    (
        "CRLF counts 2, not 4 (160)",
        Send(sms("a" * 79 + "\r\n" + "a" * 79)),
        DEFAULT,
        sent("a" * 79 + "\r\n" + "a" * 79),
        OK,
    ),
    ("CRLF 161", Send(sms("a" * 80 + "\r\n" + "a" * 79)), DEFAULT, None, Rule("length")),
    ("lone CR goes out as CRLF", Send(sms("a\rb")), DEFAULT, sent("a\r\nb"), OK),
    (
        # Subject and message are separate fields: a CR ending the subject and an LF starting
        # the message are two line breaks to Group Texting (2 + 2), not one CRLF (2).
        "CR ending the subject + LF starting the message count 4 (162)",
        Send(sms("\n" + "a" * 156, "Hi\r")),
        DEFAULT,
        None,
        Rule("length"),
    ),
    (
        "every allowed special character",
        Send(sms(".,:;!?()~=+-_\\/@$#&% ok")),
        DEFAULT,
        sent(".,:;!?()~=+-_\\/@$#&% ok"),
        OK,
    ),
    ("charset: é", Send(sms("café")), DEFAULT, None, Rule("charset")),
    ("charset: *", Send(sms("5 * 3")), DEFAULT, None, Rule("charset")),
    ("charset: '", Send(sms("it's")), DEFAULT, None, Rule("charset")),
    ('charset: "', Send(sms('say "hi"')), DEFAULT, None, Rule("charset")),
    ("charset: tab", Send(sms("a\tb")), DEFAULT, None, Rule("charset")),
    ("charset in subject", Send(sms("hi", "Café")), DEFAULT, None, Rule("charset")),
    ("non-US number", Send(sms(to="+33612345678")), DEFAULT, None, Rule("number")),
    ("empty message", Send(sms("")), DEFAULT, None, Rule("empty")),
    ("express is not an option", Send(sms(express=True)), DEFAULT, None, Rule("options")),
    # --- send: transport faults ---------------------------------------------------------
    (
        "send connection refused",
        Send(sms()),
        Sim(closed=True),
        None,
        Out(K.RETRYABLE, C.NETWORK, "connect_failed"),
    ),
    ("send hang past the read timeout", Send(sms()), Sim(fault="hang"), sent(), NO_ANSWER),
    ("send connection dropped", Send(sms()), Sim(fault="drop"), sent(), NO_ANSWER),
    (
        "send garbage answer",
        Send(sms()),
        Sim(fault="garbage"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "unreadable"),
    ),
    (
        "send HTTP 500",
        Send(sms()),
        Sim(fault="http_500"),
        sent(),
        Out(K.UNKNOWN, C.NO_ANSWER, "http_500"),
    ),
    (
        "send HTTP 503",
        Send(sms()),
        Sim(fault="http_503"),
        sent(),
        Out(K.RETRYABLE, C.RATE_LIMIT, "http_503"),
    ),
    # --- credits check --------------------------------------------------------------------
    ("credits 1000", Balance(), DEFAULT, (CHECK, {}), Returns(1000.0)),
    ("credits 0 (non-negative)", Balance(), Sim(prep=no_credit), (CHECK, {}), Returns(0.0)),
    ("credits 12.5", Balance(), Sim(prep=credit_12_5), (CHECK, {}), Returns(12.5)),
    ("credits -1 wrong password", Balance(), WRONG, (CHECK, {}), Fails("-1", K.REJECTED)),
    ("credits -10 (forced)", Balance(), Sim(force="-10"), (CHECK, {}), Fails("-10", K.RETRYABLE)),
    ("credits undocumented -3", Balance(), Sim(force="-3"), (CHECK, {}), Fails("-3", K.UNKNOWN)),
    (
        "credits garbage",
        Balance(),
        Sim(fault="garbage"),
        (CHECK, {}),
        Fails("unreadable", K.UNKNOWN),
    ),
    ("credits hang", Balance(), Sim(fault="hang"), (CHECK, {}), Fails("no_answer", K.UNKNOWN)),
    ("credits refused", Balance(), Sim(closed=True), None, Fails("connect_failed", K.RETRYABLE)),
    (
        "credits HTTP 500",
        Balance(),
        Sim(fault="http_500"),
        (CHECK, {}),
        Fails("http_500", K.UNKNOWN),
    ),
    (
        "credits HTTP 503",
        Balance(),
        Sim(fault="http_503"),
        (CHECK, {}),
        Fails("http_503", K.RETRYABLE),
    ),
    # --- keyword check --------------------------------------------------------------------
    (
        "keyword 1 available",
        CheckKeyword("NEWKW"),
        DEFAULT,
        (KW_CHECK, {"keyword": "NEWKW"}),
        Returns(True),
    ),
    (
        "keyword 0 taken",
        CheckKeyword("PIZZA"),
        DEFAULT,
        (KW_CHECK, {"keyword": "PIZZA"}),
        Returns(False),
    ),
    (
        "keyword -1 wrong password",
        CheckKeyword("NEWKW"),
        WRONG,
        (KW_CHECK, {"keyword": "NEWKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "keyword -2 below the minimum purchase",
        CheckKeyword("NEWKW"),
        Sim(prep=below_minimum_purchase),
        (KW_CHECK, {"keyword": "NEWKW"}),
        Fails("-2", K.REJECTED),
    ),
    (
        "keyword -10 blank keyword",
        CheckKeyword(""),
        DEFAULT,
        (KW_CHECK, {"keyword": ""}),
        Fails("-10", K.RETRYABLE),
    ),
    # --- buy credits ----------------------------------------------------------------------
    (
        "buy 1 succeeded",
        Buy(CARD, 100),
        DEFAULT,
        (BUY, {**CARD_FIELDS, "credits": "100"}),
        Returns(None, credit=1100),
    ),
    (
        "buy 0 declined card",
        Buy(DECLINED_CARD, 100),
        DEFAULT,
        (BUY, {**DECLINED_FIELDS, "credits": "100"}),
        Fails("0", K.REJECTED),
    ),
    (
        "buy -1 wrong password",
        Buy(CARD, 100),
        WRONG,
        (BUY, {**CARD_FIELDS, "credits": "100"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "buy -10 blank card field",
        Buy(replace(CARD, address=""), 100),
        DEFAULT,
        (BUY, {**CARD_FIELDS, "address": "", "credits": "100"}),
        Fails("-10", K.RETRYABLE),
    ),
    ("buy 0 credits", Buy(CARD, 0), DEFAULT, None, Rule("credits")),
    ("buy card type", Buy(replace(CARD, type="Amex"), 100), DEFAULT, None, Rule("card_type")),
    ("buy card expiry", Buy(replace(CARD, exp_month="1"), 100), DEFAULT, None, Rule("card_expiry")),
    # --- rent a keyword -------------------------------------------------------------------
    (
        "rent 2 succeeded",
        Rent(CARD, "NEWKW"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "keyword": "NEWKW"}),
        Returns(None),
    ),
    (
        "rent 1 not available",
        Rent(CARD, "PIZZA"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "keyword": "PIZZA"}),
        Fails("1", K.REJECTED),
    ),
    (
        "rent 0 declined card",
        Rent(DECLINED_CARD, "NEWKW"),
        DEFAULT,
        (KW_RENT, {**DECLINED_FIELDS, "keyword": "NEWKW"}),
        Fails("0", K.REJECTED),
    ),
    (
        "rent -1 wrong password",
        Rent(CARD, "NEWKW"),
        WRONG,
        (KW_RENT, {**CARD_FIELDS, "keyword": "NEWKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "rent -10 blank card field",
        Rent(replace(CARD, city=""), "NEWKW"),
        DEFAULT,
        (KW_RENT, {**CARD_FIELDS, "city": "", "keyword": "NEWKW"}),
        Fails("-10", K.RETRYABLE),
    ),
    # --- keyword setup --------------------------------------------------------------------
    (
        "setup 1 updated",
        Setup("MYKW", SETUP_ALL),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", **SETUP_ALL}),
        Returns(None),
    ),
    ("setup 1 keyword only", Setup("MYKW"), RENTED, (KW_SETUP, {"keyword": "MYKW"}), Returns(None)),
    (
        "setup -1 wrong password",
        Setup("MYKW"),
        replace(WRONG, prep=rented_mykw),
        (KW_SETUP, {"keyword": "MYKW"}),
        Fails("-1", K.REJECTED),
    ),
    (
        "setup -2 keyword not rented",
        Setup("OTHER"),
        RENTED,
        (KW_SETUP, {"keyword": "OTHER"}),
        Fails("-2", K.REJECTED),
    ),
    (
        "setup -3 invalid group",
        Setup("MYKW", {"group": "bad*group"}),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "group": "bad*group"}),
        Fails("-3", K.REJECTED),
    ),
    (
        "setup -4 invalid email",
        Setup("MYKW", {"email": "not-an-email"}),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "email": "not-an-email"}),
        Fails("-4", K.REJECTED),
    ),
    (
        "setup -5 invalid URL",
        Setup("MYKW", {"url": "ftp://example.com/x"}),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "url": "ftp://example.com/x"}),
        Fails("-5", K.REJECTED),
    ),
    (
        "setup -7 (forced: the client checks the autoreply first)",
        Setup("MYKW", {"autoreply": "Thanks"}),
        replace(RENTED, force="-7"),
        (KW_SETUP, {"keyword": "MYKW", "autoreply": "Thanks"}),
        Fails("-7", K.REJECTED),
    ),
    (
        "setup -10 (forced)",
        Setup("MYKW"),
        replace(RENTED, force="-10"),
        (KW_SETUP, {"keyword": "MYKW"}),
        Fails("-10", K.RETRYABLE),
    ),
    (
        "setup autoreply 160",
        Setup("MYKW", {"autoreply": "a" * 160}),
        RENTED,
        (KW_SETUP, {"keyword": "MYKW", "autoreply": "a" * 160}),
        Returns(None),
    ),
    ("setup autoreply 161", Setup("MYKW", {"autoreply": "a" * 161}), RENTED, None, Rule("length")),
    ("setup autoreply blank", Setup("MYKW", {"autoreply": "  "}), RENTED, None, Rule("autoreply")),
    (
        "setup autoreply charset",
        Setup("MYKW", {"autoreply": "Merci é"}),
        RENTED,
        None,
        Rule("charset"),
    ),
]


KNOWN_BUGS: dict[str, str] = {}
CASES = [
    pytest.param(
        *row,
        id=row[0],
        marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[row[0]])]
        if row[0] in KNOWN_BUGS
        else [],
    )
    for row in TABLE
]


@pytest.mark.parametrize(("label", "operation", "setup", "expected_request", "expected"), CASES)
def test_group_texting(
    sims: Any,
    label: str,
    operation: Callable[[GroupTexting], Any],
    setup: Sim,
    expected_request: tuple[str, dict[str, str]] | None,
    expected: Out | Returns | Fails | Rule,
) -> None:
    sim = sims.grouptexting
    url = unused_url() if setup.closed else sim.url
    transport = (
        Transport(url, connect_timeout=0.5, read_timeout=0.5) if setup.short_timeouts else None
    )
    client = GroupTexting(url, USER, setup.password, transport)
    if setup.prep:
        setup.prep(sim)
    if setup.fault:
        sim.set_fault(setup.fault, delay=3.0 if setup.fault == "hang" else None)
    if setup.force is not None:
        sim.force_answer(setup.force)
    before = len(sim.requests)
    try:
        if isinstance(expected, Rule):
            with pytest.raises(RuleViolation) as rule:
                operation(client)
            assert (rule.value.provider, rule.value.rule) == ("grouptexting", expected.rule)
        elif isinstance(expected, Fails):
            with pytest.raises(ProviderError) as error:
                operation(client)
            assert (error.value.code, error.value.kind) == (expected.code, expected.kind)
            assert not any(word in str(error.value).lower() for word in GARBAGE_WORDS)
        elif isinstance(expected, Out):
            outcome = operation(client)
            assert (outcome.kind, outcome.category, outcome.code) == (
                expected.kind,
                expected.category,
                expected.code,
            ), outcome
            assert outcome.opt_out is (expected.category is C.OPT_OUT)
            assert outcome.fail_when_spent is expected.fail_when_spent
            assert not any(word in repr(outcome).lower() for word in GARBAGE_WORDS)
        else:
            assert operation(client) == expected.value
        credit = getattr(expected, "credit", None)
        if credit is not None:
            assert sim.account().credit == credit
    finally:
        client.transport.close()

    new = sim.requests[before:]
    if expected_request is None:
        assert new == []
        return
    [request] = new
    path, fields = expected_request
    assert (request.method, request.path) == ("POST", path)
    assert request.fields == {"user": USER, "pass": setup.password, **fields}
