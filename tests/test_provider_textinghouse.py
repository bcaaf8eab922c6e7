"""TextingHouse (TextingHouse API SMS PRO) through the real client, over real HTTP, against the
simulator.

One table: (label, input, simulator set-up, expected request, expected outcome). Every answer of
the document's sendsms, getstatus (each status code, mapped to smsgate's Status, and each error)
and getcredit appears with its outcome; every rule at its boundary and one past it (a violation
raises RuleViolation and no request reaches the simulator); billed parts against the simulator's
billing; every transport fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smsgate.providers import (
    Category,
    OutboundSms,
    OutcomeKind,
    ProviderError,
    RuleViolation,
    TextingHouse,
    Transport,
)
from smsgate.status import Status
from smsgate_sim import unused_url

USER, PASS = "smsgate", "local-secret"
PATH = "/http/v1/do"
FR, FR_DIGITS = "+33612345678", "33612345678"
STOP = "STOP sms-s.top"
GARBAGE_WORDS = ("maintenance", "right back", "html")  # the simulator's garbage page
EXTENSION = "{}[]~^|€\\"  # GSM 03.38 extension characters: 9 characters, 18 septets
UNKNOWN_API_ID = "0" * 24

K, C = OutcomeKind, Category


# ----------------------------------------------------------------------------- the inputs


@dataclass(frozen=True)
class Send:
    sms: OutboundSms

    def __call__(self, client: TextingHouse, ctx: dict[str, str]) -> Any:
        prepared = client.check(self.sms)
        return prepared, client.send(self.sms, prepared)


@dataclass(frozen=True)
class GetStatus:
    """`getstatus` by `api_id` or `climsgid`; a value of `Ctx` is taken from the set-up."""

    api_id: Any = None
    climsgid: Any = None

    def __call__(self, client: TextingHouse, ctx: dict[str, str]) -> Any:
        return client.status(api_id=resolve(self.api_id, ctx), climsgid=resolve(self.climsgid, ctx))


@dataclass(frozen=True)
class Credit:
    def __call__(self, client: TextingHouse, ctx: dict[str, str]) -> Any:
        return client.balance()


@dataclass(frozen=True)
class Ctx:
    """A value known only once the set-up ran (the api_id TextingHouse gave)."""

    key: str


def resolve(value: Any, ctx: dict[str, str]) -> Any:
    return ctx[value.key] if isinstance(value, Ctx) else value


# ----------------------------------------------------------------------------- set-up, outcomes


@dataclass(frozen=True)
class Sim:
    """A row's simulator set-up (and how the client reaches it). `prep` may return values the
    input and the expected request refer to (`Ctx`)."""

    password: str = PASS
    closed: bool = False  # the client's URL is a port nothing listens on
    fault: str | None = None  # a `set_fault` mode
    force: str | None = None  # `force_answer` body
    prep: Callable[[Any, TextingHouse], dict[str, str] | None] | None = None

    @property
    def short_timeouts(self) -> bool:
        return self.closed or self.fault is not None


@dataclass(frozen=True)
class Out:
    """A send's expected Outcome class and code, billed parts (`segments`) and the account's
    credit afterwards (the simulator bills 1 per part; 999 is free)."""

    kind: OutcomeKind
    category: Category
    code: str
    segments: int | None = None
    credit: float | None = None
    fail_when_spent: bool = False


@dataclass(frozen=True)
class Found:
    """A `getstatus` answer: TextingHouse's code and smsgate's Status for it."""

    code: str
    status: Status


@dataclass(frozen=True)
class NotFound:
    code: str


@dataclass(frozen=True)
class Returns:
    value: Any


@dataclass(frozen=True)
class Fails:
    """An account operation's expected ProviderError."""

    code: str
    kind: OutcomeKind


@dataclass(frozen=True)
class Rule:
    """The expected RuleViolation (and no request)."""

    rule: str


def sms(text: str = "hello world", to: str = FR, id: str = "m1", **kw: Any) -> OutboundSms:
    return OutboundSms(id=id, to=to, text=text, **kw)


def sent(
    txt: str = "hello world",
    to: str = FR_DIGITS,
    climsgid: str = "m1",
    iscom: str = "N",
    **more: str,
) -> dict[str, str]:
    return {"cmd": "sendsms", "to": to, "txt": txt, "climsgid": climsgid, "iscom": iscom, **more}


def credit_to(value: float) -> Callable[[Any, TextingHouse], None]:
    def prep(sim: Any, client: TextingHouse) -> None:
        sim.account().credit = value

    return prep


def opted_out(sim: Any, client: TextingHouse) -> None:
    sim.opt_out(FR_DIGITS)


def sent_once(sim: Any, client: TextingHouse) -> None:
    """The same text to the same number a moment ago: the next one is a flood (350)."""
    assert client.send(sms()).kind is K.SENT


def message_in_status(code: int) -> Callable[[Any, TextingHouse], dict[str, str]]:
    """Send a message whose status ends in `code` (the simulator's natural course: 3 by
    default, 7 for an opted-out number, else `set_number_outcome`); wait until it is there."""

    def prep(sim: Any, client: TextingHouse) -> dict[str, str]:
        if code == 7:
            sim.opt_out(FR_DIGITS)
        elif code != 3:
            sim.set_number_outcome(FR_DIGITS, code)
        outcome = client.send(sms(id="status-m1"))
        assert outcome.kind is K.SENT, outcome
        api_id = outcome.provider_message_id
        deadline = time.monotonic() + 3
        while sim.message(api_id).status != code:
            assert time.monotonic() < deadline, f"status {code} never reached"
            time.sleep(0.01)
        return {"api_id": api_id}

    return prep


def ok(segments: int = 1, credit: float | None = None) -> Out:
    return Out(K.SENT, C.ACCEPTED, "ID", segments, 1000 - segments if credit is None else credit)


DEFAULT = Sim()
WRONG = Sim(password="not-the-password")
NO_ANSWER = Out(K.UNKNOWN, C.NO_ANSWER, "no_answer")
BY_API_ID = GetStatus(api_id=Ctx("api_id"))
STATUS_REQ = {"cmd": "getstatus", "api_id": Ctx("api_id")}
CREDIT_REQ = {"cmd": "getcredit"}

Row = tuple[str, Any, Sim, dict[str, Any] | None, Any]
TABLE: list[Row] = [
    # --- sendsms: every answer of the document ----------------------------------------------
    ("ID: accepted", Send(sms()), DEFAULT, sent(), ok()),
    ("ID: with sender", Send(sms(sender="Acme")), DEFAULT, sent(**{"from": "Acme"}), ok()),
    (
        "ERR 100 (forced: the client never omits a parameter)",
        Send(sms()),
        Sim(force="ERR: 100 | Missing parameter"),
        sent(),
        Out(K.REJECTED, C.INVALID, "100"),
    ),
    ("ERR 101 wrong password", Send(sms()), WRONG, sent(), Out(K.RETRYABLE, C.AUTH, "101")),
    (
        "ERR 104 no credit",
        Send(sms()),
        Sim(prep=credit_to(0)),
        sent(),
        Out(K.RETRYABLE, C.CREDIT, "104", credit=0),
    ),
    (
        "ERR 104 credit for 1 part, message of 2",
        Send(sms("a" * 161)),
        Sim(prep=credit_to(1)),
        sent("a" * 161),
        Out(K.RETRYABLE, C.CREDIT, "104", segments=2, credit=1),
    ),
    (
        "credit for exactly 2 parts",
        Send(sms("a" * 161)),
        Sim(prep=credit_to(2)),
        sent("a" * 161),
        ok(2, credit=0),
    ),
    (
        "ERR 300 (forced: the client checks every value first)",
        Send(sms()),
        Sim(force="ERR: 300 | Error processing request"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "300", fail_when_spent=True),
    ),
    (
        "ERR 350 flood: same text, same number, within 10 s",
        Send(sms()),
        Sim(prep=sent_once),
        sent(),
        Out(K.RETRYABLE, C.FLOOD, "350", credit=999),
    ),
    (
        "ERR 400 (forced: the client checks the STOP mention first)",
        Send(sms(f"Sale! {STOP}", commercial=True)),
        Sim(force="ERR: 400 | STOP mention missing"),
        sent(f"Sale! {STOP}", iscom="Y"),
        Out(K.REJECTED, C.INVALID, "400"),
    ),
    (
        "undocumented ERR code",
        Send(sms()),
        Sim(force="ERR: 999 | Something new"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "999"),
    ),
    # --- sendsms: rules at the boundary and one past ---------------------------------------
    (
        "GSM accents and symbols",
        Send(sms("Été à Paris: 5€ @ £3 ¿ñ?")),
        DEFAULT,
        sent("Été à Paris: 5€ @ £3 ¿ñ?"),
        ok(),
    ),
    ("· (document's pattern, not GSM 03.38)", Send(sms("a·b")), DEFAULT, sent("a·b"), ok()),
    ("non-GSM ж", Send(sms("привет жук")), DEFAULT, None, Rule("charset")),
    ("non-GSM emoji", Send(sms("hello 😀")), DEFAULT, None, Rule("charset")),
    ("160 → 1 part", Send(sms("a" * 160)), DEFAULT, sent("a" * 160), ok(1)),
    ("161 → 2 parts", Send(sms("a" * 161)), DEFAULT, sent("a" * 161), ok(2)),
    ("306 → 2 parts", Send(sms("a" * 306)), DEFAULT, sent("a" * 306), ok(2)),
    ("307 → 3 parts", Send(sms("a" * 307)), DEFAULT, sent("a" * 307), ok(3)),
    ("extension characters", Send(sms(EXTENSION)), DEFAULT, sent(EXTENSION), ok(1)),
    ("80 € = 160 septets → 1 part", Send(sms("€" * 80)), DEFAULT, sent("€" * 80), ok(1)),
    ("80 € + 1 = 161 → 2 parts", Send(sms("€" * 80 + "a")), DEFAULT, sent("€" * 80 + "a"), ok(2)),
    ("153 € = 306 → 2 parts", Send(sms("€" * 153)), DEFAULT, sent("€" * 153), ok(2)),
    (
        "153 € + 1 = 307 → 3 parts",
        Send(sms("€" * 153 + "a")),
        DEFAULT,
        sent("€" * 153 + "a"),
        ok(3),
    ),
    (
        "156 + {} = 160 → 1 part",
        Send(sms("a" * 156 + "{}")),
        DEFAULT,
        sent("a" * 156 + "{}"),
        ok(1),
    ),
    (
        "157 + [] = 161 → 2 parts",
        Send(sms("a" * 157 + "[]")),
        DEFAULT,
        sent("a" * 157 + "[]"),
        ok(2),
    ),
    (
        "999 test number: 0 segments, free",
        Send(sms(to="999")),
        DEFAULT,
        sent(to="999"),
        ok(0, credit=1000),
    ),
    (
        "999 is free even without credit",
        Send(sms(to="999")),
        Sim(prep=credit_to(0)),
        sent(to="999"),
        ok(0, credit=0),
    ),
    ("sender 11", Send(sms(sender="Acme1234567")), DEFAULT, sent(**{"from": "Acme1234567"}), ok()),
    ("sender 12", Send(sms(sender="Acme12345678")), DEFAULT, None, Rule("sender")),
    ("sender not alphanumeric", Send(sms(sender="Acme-Shop")), DEFAULT, None, Rule("sender")),
    ("sender accented", Send(sms(sender="Café")), DEFAULT, None, Rule("sender")),
    ("climsgid 32", Send(sms(id="c" * 32)), DEFAULT, sent(climsgid="c" * 32), ok()),
    ("climsgid 33", Send(sms(id="c" * 33)), DEFAULT, None, Rule("climsgid")),
    (
        "commercial ending with STOP sms-s.top",
        Send(sms(f"Sale -20% today. {STOP}", commercial=True)),
        DEFAULT,
        sent(f"Sale -20% today. {STOP}", iscom="Y"),
        ok(),
    ),
    (
        "commercial with STOP sms-s.top and trailing space",
        Send(sms(f"Sale -20% today. {STOP} ", commercial=True)),
        DEFAULT,
        sent(f"Sale -20% today. {STOP} ", iscom="Y"),
        ok(),
    ),
    (
        "commercial without STOP",
        Send(sms("Sale -20% today", commercial=True)),
        DEFAULT,
        None,
        Rule("stop_mention"),
    ),
    (
        "commercial with STOP not at the end",
        Send(sms(f"{STOP} Sale -20% today", commercial=True)),
        DEFAULT,
        None,
        Rule("stop_mention"),
    ),
    (
        "service message without STOP",
        Send(sms("Your code is 1234")),
        DEFAULT,
        sent("Your code is 1234"),
        ok(),
    ),
    ("recipient not digits", Send(sms(to="+33abc")), DEFAULT, None, Rule("number")),
    ("empty text", Send(sms("")), DEFAULT, None, Rule("empty")),
    ("subject is not an option", Send(sms(subject="News")), DEFAULT, None, Rule("options")),
    ("express is not an option", Send(sms(express=True)), DEFAULT, None, Rule("options")),
    # --- sendsms: transport faults ----------------------------------------------------------
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
    # --- getstatus: every status code, mapped; every error ----------------------------------
    (
        "status 0 processing",
        BY_API_ID,
        Sim(prep=message_in_status(0)),
        STATUS_REQ,
        Found("0", Status.SENT),
    ),
    (
        "status 1 sent",
        BY_API_ID,
        Sim(prep=message_in_status(1)),
        STATUS_REQ,
        Found("1", Status.SENT),
    ),
    (
        "status 3 received",
        BY_API_ID,
        Sim(prep=message_in_status(3)),
        STATUS_REQ,
        Found("3", Status.DELIVERED),
    ),
    (
        "status 4 expired",
        BY_API_ID,
        Sim(prep=message_in_status(4)),
        STATUS_REQ,
        Found("4", Status.UNDELIVERED),
    ),
    (
        "status 5 not subscribed",
        BY_API_ID,
        Sim(prep=message_in_status(5)),
        STATUS_REQ,
        Found("5", Status.UNDELIVERED),
    ),
    (
        "status 6 not received",
        BY_API_ID,
        Sim(prep=message_in_status(6)),
        STATUS_REQ,
        Found("6", Status.UNDELIVERED),
    ),
    (
        "status 7 prohibited (opted out)",
        BY_API_ID,
        Sim(prep=message_in_status(7)),
        STATUS_REQ,
        Found("7", Status.FAILED),
    ),
    (
        "status 20 insufficient credit",
        BY_API_ID,
        Sim(prep=message_in_status(20)),
        STATUS_REQ,
        Found("20", Status.FAILED),
    ),
    (
        "status by climsgid",
        GetStatus(climsgid="status-m1"),
        Sim(prep=message_in_status(3)),
        {"cmd": "getstatus", "climsgid": "status-m1"},
        Found("3", Status.DELIVERED),
    ),
    (
        "status ERR 100 (forced)",
        GetStatus(api_id=UNKNOWN_API_ID),
        Sim(force="ERR: 100 | Missing parameter"),
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        Fails("100", K.REJECTED),
    ),
    (
        "status ERR 101 wrong password",
        GetStatus(api_id=UNKNOWN_API_ID),
        WRONG,
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        Fails("101", K.RETRYABLE),
    ),
    (
        "status ERR 201 unknown api_id",
        GetStatus(api_id=UNKNOWN_API_ID),
        DEFAULT,
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        NotFound("201"),
    ),
    (
        "status ERR 202 unknown climsgid",
        GetStatus(climsgid="nobody"),
        DEFAULT,
        {"cmd": "getstatus", "climsgid": "nobody"},
        NotFound("202"),
    ),
    (
        "status ERR 300 (forced)",
        GetStatus(api_id=UNKNOWN_API_ID),
        Sim(force="ERR: 300 | Error processing request"),
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        Fails("300", K.RETRYABLE),
    ),
    (
        "status undocumented code",
        GetStatus(api_id=UNKNOWN_API_ID),
        Sim(force="2"),
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        Fails("unreadable", K.UNKNOWN),
    ),
    (
        "status garbage",
        GetStatus(api_id=UNKNOWN_API_ID),
        Sim(fault="garbage"),
        {"cmd": "getstatus", "api_id": UNKNOWN_API_ID},
        Fails("unreadable", K.UNKNOWN),
    ),
    # --- getcredit ------------------------------------------------------------------------
    ("credit 1000", Credit(), DEFAULT, CREDIT_REQ, Returns(1000.0)),
    ("credit 0", Credit(), Sim(prep=credit_to(0)), CREDIT_REQ, Returns(0.0)),
    ("credit 12.5", Credit(), Sim(prep=credit_to(12.5)), CREDIT_REQ, Returns(12.5)),
    ("credit ERR 101 wrong password", Credit(), WRONG, CREDIT_REQ, Fails("101", K.RETRYABLE)),
    ("credit garbage", Credit(), Sim(fault="garbage"), CREDIT_REQ, Fails("unreadable", K.UNKNOWN)),
    ("credit hang", Credit(), Sim(fault="hang"), CREDIT_REQ, Fails("no_answer", K.UNKNOWN)),
    ("credit refused", Credit(), Sim(closed=True), None, Fails("connect_failed", K.RETRYABLE)),
    (
        "credit HTTP 503",
        Credit(),
        Sim(fault="http_503"),
        CREDIT_REQ,
        Fails("http_503", K.RETRYABLE),
    ),
]


@pytest.mark.parametrize(
    ("label", "operation", "setup", "expected_request", "expected"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_textinghouse(
    sims: Any,
    label: str,
    operation: Callable[[TextingHouse, dict[str, str]], Any],
    setup: Sim,
    expected_request: dict[str, Any] | None,
    expected: Any,
) -> None:
    sim = sims.textinghouse
    url = unused_url() if setup.closed else sim.url
    transport = (
        Transport(url, connect_timeout=0.5, read_timeout=0.5) if setup.short_timeouts else None
    )
    client = TextingHouse(url, USER, setup.password, transport)
    # A set-up that sends first does so with the right password.
    setup_client = TextingHouse(sim.url, USER, PASS) if setup.prep else None
    try:
        ctx = (setup.prep(sim, setup_client) if setup.prep and setup_client else None) or {}
    finally:
        if setup_client:
            setup_client.transport.close()
    if setup.fault:
        sim.set_fault(setup.fault, delay=3.0 if setup.fault == "hang" else None)
    if setup.force is not None:
        sim.force_answer(setup.force)
    before = len(sim.requests)
    try:
        check(operation, client, ctx, expected, sim)
    finally:
        client.transport.close()

    new = sim.requests[before:]
    if expected_request is None:
        assert new == []
        return
    [request] = new
    assert (request.method, request.path) == ("POST", PATH)
    fields = {key: resolve(value, ctx) for key, value in expected_request.items()}
    # Case-sensitive names, exactly these: nothing else is sent.
    assert request.fields == {"user": USER, "pass": setup.password, **fields}


def check(
    operation: Callable[[TextingHouse, dict[str, str]], Any],
    client: TextingHouse,
    ctx: dict[str, str],
    expected: Any,
    sim: Any,
) -> None:
    if isinstance(expected, Rule):
        with pytest.raises(RuleViolation) as rule:
            operation(client, ctx)
        assert (rule.value.provider, rule.value.rule) == ("textinghouse", expected.rule)
    elif isinstance(expected, Fails):
        with pytest.raises(ProviderError) as error:
            operation(client, ctx)
        assert (error.value.code, error.value.kind) == (expected.code, expected.kind)
        assert not any(word in str(error.value).lower() for word in GARBAGE_WORDS)
    elif isinstance(expected, Out):
        prepared, outcome = operation(client, ctx)
        assert (outcome.kind, outcome.category, outcome.code) == (
            expected.kind,
            expected.category,
            expected.code,
        ), outcome
        assert outcome.fail_when_spent is expected.fail_when_spent
        assert not any(word in repr(outcome).lower() for word in GARBAGE_WORDS)
        if expected.segments is not None:
            assert prepared.segments == expected.segments
        if expected.credit is not None:
            assert sim.account().credit == expected.credit
        if outcome.kind is K.SENT and prepared.segments:  # the simulator's billed parts
            assert sim.message(outcome.provider_message_id).parts == prepared.segments
    elif isinstance(expected, Found | NotFound):
        lookup = operation(client, ctx)
        found = isinstance(expected, Found)
        assert (lookup.found, lookup.code) == (found, expected.code)
        assert lookup.status == (expected.status if found else None)
    else:
        assert operation(client, ctx) == expected.value
