"""TextingHouse (TextingHouse API SMS PRO) through the real client, over real HTTP, against the
simulator.

One table, run by the provider harness (tests/provider_harness.py): every answer of the
document's sendsms, getstatus (each status code, mapped to smsgate's Status, and each error)
and getcredit appears with its outcome; every rule at its boundary and one past it (a violation
raises RuleViolation and no request reaches the simulator); billed parts against the simulator's
billing; every transport fault.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from provider_harness import (
    Call,
    Ctx,
    Fails,
    Found,
    NotFound,
    Out,
    Provider,
    Returns,
    Row,
    Rule,
    Sim,
    cases,
    credit_to,
    run,
)

from smsgate.providers import (
    Category,
    OutboundSms,
    Outcome,
    OutcomeKind,
    Prepared,
    ProviderClient,
    TextingHouse,
)
from smsgate.status import Status

PATH = "/http/v1/do"
FR, FR_DIGITS = "+33612345678", "33612345678"
STOP = "STOP sms-s.top"
EXTENSION = "{}[]~^|€\\"  # GSM 03.38 extension characters: 9 characters, 18 septets
UNKNOWN_API_ID = "0" * 24

K, C = OutcomeKind, Category


def sms(text: str = "hello world", to: str = FR, id: str = "m1", **kw: Any) -> OutboundSms:
    return OutboundSms(id=id, to=to, text=text, **kw)


def do(**fields: Any) -> tuple[str, dict[str, Any]]:
    """A request: every command goes to the one path."""
    return PATH, fields


def sent(
    txt: str = "hello world",
    to: str = FR_DIGITS,
    climsgid: str = "m1",
    iscom: str = "N",
    **more: str,
) -> tuple[str, dict[str, Any]]:
    return do(cmd="sendsms", to=to, txt=txt, climsgid=climsgid, iscom=iscom, **more)


def sent_once(sim: Any, client: ProviderClient) -> None:
    """The same text to the same number a moment ago: the next one is a flood (350)."""
    assert client.send(sms()).kind is K.SENT


def message_in_status(code: int) -> Callable[[Any, ProviderClient], dict[str, str]]:
    """Send a message whose status ends in `code` (the simulator's natural course: 3 by
    default, 7 for an opted-out number, else `set_number_outcome`); wait until it is there."""

    def prep(sim: Any, client: ProviderClient) -> dict[str, str]:
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
    """Accepted, `segments` parts billed (1 each) out of 1000 unless `credit` says otherwise."""
    return Out(
        K.SENT,
        C.ACCEPTED,
        "ID",
        credit=1000 - segments if credit is None else credit,
        segments=segments,
    )


def billed_parts(sim: Any, prepared: Prepared, outcome: Outcome) -> None:
    """The simulator billed as many parts as the client counted."""
    if outcome.kind is K.SENT and prepared.segments:
        assert sim.message(outcome.provider_message_id).parts == prepared.segments


TEXTINGHOUSE = Provider("textinghouse", TextingHouse, check_sent=billed_parts)
DEFAULT = Sim()
WRONG = Sim(password="not-the-password")
NO_ANSWER = Out(K.UNKNOWN, C.NO_ANSWER, "no_answer")
BY_API_ID = Call("status", api_id=Ctx("api_id"))
STATUS_REQ = do(cmd="getstatus", api_id=Ctx("api_id"))
CREDIT_REQ = do(cmd="getcredit")
CREDIT = Call("balance")

TABLE: list[Row] = [
    # --- sendsms: every answer of the document ----------------------------------------------
    ("ID: accepted", sms(), DEFAULT, sent(), ok()),
    ("ID: with sender", sms(sender="Acme"), DEFAULT, sent(**{"from": "Acme"}), ok()),
    (
        "ERR 100 (forced: the client never omits a parameter)",
        sms(),
        Sim(force="ERR: 100 | Missing parameter"),
        sent(),
        Out(K.REJECTED, C.INVALID, "100"),
    ),
    ("ERR 101 wrong password", sms(), WRONG, sent(), Out(K.RETRYABLE, C.AUTH, "101")),
    (
        "ERR 104 no credit",
        sms(),
        Sim(prep=credit_to(0)),
        sent(),
        Out(K.RETRYABLE, C.CREDIT, "104", credit=0),
    ),
    (
        "ERR 104 credit for 1 part, message of 2",
        sms("a" * 161),
        Sim(prep=credit_to(1)),
        sent("a" * 161),
        Out(K.RETRYABLE, C.CREDIT, "104", segments=2, credit=1),
    ),
    (
        "credit for exactly 2 parts",
        sms("a" * 161),
        Sim(prep=credit_to(2)),
        sent("a" * 161),
        ok(2, credit=0),
    ),
    (
        "ERR 300 (forced: the client checks every value first)",
        sms(),
        Sim(force="ERR: 300 | Error processing request"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "300", fail_when_spent=True),
    ),
    (
        "ERR 350 flood: same text, same number, within 10 s",
        sms(),
        Sim(prep=sent_once),
        sent(),
        Out(K.RETRYABLE, C.FLOOD, "350", credit=999),
    ),
    (
        "ERR 400 (forced: the client checks the STOP mention first)",
        sms(f"Sale! {STOP}", commercial=True),
        Sim(force="ERR: 400 | STOP mention missing"),
        sent(f"Sale! {STOP}", iscom="Y"),
        Out(K.REJECTED, C.INVALID, "400"),
    ),
    (
        "undocumented ERR code",
        sms(),
        Sim(force="ERR: 999 | Something new"),
        sent(),
        Out(K.RETRYABLE, C.PROVIDER_ERROR, "999"),
    ),
    # --- sendsms: rules at the boundary and one past ---------------------------------------
    (
        "GSM accents and symbols",
        sms("Été à Paris: 5€ @ £3 ¿ñ?"),
        DEFAULT,
        sent("Été à Paris: 5€ @ £3 ¿ñ?"),
        ok(),
    ),
    ("· (document's pattern, not GSM 03.38)", sms("a·b"), DEFAULT, sent("a·b"), ok()),
    ("non-GSM ж", sms("привет жук"), DEFAULT, None, Rule("charset")),
    ("non-GSM emoji", sms("hello 😀"), DEFAULT, None, Rule("charset")),
    ("160 → 1 part", sms("a" * 160), DEFAULT, sent("a" * 160), ok(1)),
    ("161 → 2 parts", sms("a" * 161), DEFAULT, sent("a" * 161), ok(2)),
    ("306 → 2 parts", sms("a" * 306), DEFAULT, sent("a" * 306), ok(2)),
    ("307 → 3 parts", sms("a" * 307), DEFAULT, sent("a" * 307), ok(3)),
    ("extension characters", sms(EXTENSION), DEFAULT, sent(EXTENSION), ok(1)),
    ("80 € = 160 septets → 1 part", sms("€" * 80), DEFAULT, sent("€" * 80), ok(1)),
    ("80 € + 1 = 161 → 2 parts", sms("€" * 80 + "a"), DEFAULT, sent("€" * 80 + "a"), ok(2)),
    ("153 € = 306 → 2 parts", sms("€" * 153), DEFAULT, sent("€" * 153), ok(2)),
    ("153 € + 1 = 307 → 3 parts", sms("€" * 153 + "a"), DEFAULT, sent("€" * 153 + "a"), ok(3)),
    ("156 + {} = 160 → 1 part", sms("a" * 156 + "{}"), DEFAULT, sent("a" * 156 + "{}"), ok(1)),
    ("157 + [] = 161 → 2 parts", sms("a" * 157 + "[]"), DEFAULT, sent("a" * 157 + "[]"), ok(2)),
    (
        "999 test number: 0 segments, free",
        sms(to="999"),
        DEFAULT,
        sent(to="999"),
        ok(0, credit=1000),
    ),
    (
        "999 is free even without credit",
        sms(to="999"),
        Sim(prep=credit_to(0)),
        sent(to="999"),
        ok(0, credit=0),
    ),
    ("sender 11", sms(sender="Acme1234567"), DEFAULT, sent(**{"from": "Acme1234567"}), ok()),
    ("sender 12", sms(sender="Acme12345678"), DEFAULT, None, Rule("sender")),
    ("sender not alphanumeric", sms(sender="Acme-Shop"), DEFAULT, None, Rule("sender")),
    ("sender accented", sms(sender="Café"), DEFAULT, None, Rule("sender")),
    ("climsgid 32", sms(id="c" * 32), DEFAULT, sent(climsgid="c" * 32), ok()),
    ("climsgid 33", sms(id="c" * 33), DEFAULT, None, Rule("climsgid")),
    (
        "commercial ending with STOP sms-s.top",
        sms(f"Sale -20% today. {STOP}", commercial=True),
        DEFAULT,
        sent(f"Sale -20% today. {STOP}", iscom="Y"),
        ok(),
    ),
    (
        "commercial with STOP sms-s.top and trailing space",
        sms(f"Sale -20% today. {STOP} ", commercial=True),
        DEFAULT,
        sent(f"Sale -20% today. {STOP} ", iscom="Y"),
        ok(),
    ),
    (
        "commercial without STOP",
        sms("Sale -20% today", commercial=True),
        DEFAULT,
        None,
        Rule("stop_mention"),
    ),
    (
        "commercial with STOP not at the end",
        sms(f"{STOP} Sale -20% today", commercial=True),
        DEFAULT,
        None,
        Rule("stop_mention"),
    ),
    (
        "service message without STOP",
        sms("Your code is 1234"),
        DEFAULT,
        sent("Your code is 1234"),
        ok(),
    ),
    ("recipient not digits", sms(to="+33abc"), DEFAULT, None, Rule("number")),
    ("empty text", sms(""), DEFAULT, None, Rule("empty")),
    ("subject is not an option", sms(subject="News"), DEFAULT, None, Rule("options")),
    ("express is not an option", sms(express=True), DEFAULT, None, Rule("options")),
    # --- sendsms: transport faults ----------------------------------------------------------
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
        Call("status", climsgid="status-m1"),
        Sim(prep=message_in_status(3)),
        do(cmd="getstatus", climsgid="status-m1"),
        Found("3", Status.DELIVERED),
    ),
    (
        "status ERR 100 (forced)",
        Call("status", api_id=UNKNOWN_API_ID),
        Sim(force="ERR: 100 | Missing parameter"),
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        Fails("100", K.REJECTED),
    ),
    (
        "status ERR 101 wrong password",
        Call("status", api_id=UNKNOWN_API_ID),
        WRONG,
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        Fails("101", K.RETRYABLE),
    ),
    (
        "status ERR 201 unknown api_id",
        Call("status", api_id=UNKNOWN_API_ID),
        DEFAULT,
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        NotFound("201"),
    ),
    (
        "status ERR 202 unknown climsgid",
        Call("status", climsgid="nobody"),
        DEFAULT,
        do(cmd="getstatus", climsgid="nobody"),
        NotFound("202"),
    ),
    (
        "status ERR 300 (forced)",
        Call("status", api_id=UNKNOWN_API_ID),
        Sim(force="ERR: 300 | Error processing request"),
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        Fails("300", K.RETRYABLE),
    ),
    (
        "status undocumented code",
        Call("status", api_id=UNKNOWN_API_ID),
        Sim(force="2"),
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        Fails("unreadable", K.UNKNOWN),
    ),
    (
        "status garbage",
        Call("status", api_id=UNKNOWN_API_ID),
        Sim(fault="garbage"),
        do(cmd="getstatus", api_id=UNKNOWN_API_ID),
        Fails("unreadable", K.UNKNOWN),
    ),
    # --- getcredit ------------------------------------------------------------------------
    ("credit 1000", CREDIT, DEFAULT, CREDIT_REQ, Returns(1000.0)),
    ("credit 0", CREDIT, Sim(prep=credit_to(0)), CREDIT_REQ, Returns(0.0)),
    ("credit 12.5", CREDIT, Sim(prep=credit_to(12.5)), CREDIT_REQ, Returns(12.5)),
    ("credit ERR 101 wrong password", CREDIT, WRONG, CREDIT_REQ, Fails("101", K.RETRYABLE)),
    ("credit garbage", CREDIT, Sim(fault="garbage"), CREDIT_REQ, Fails("unreadable", K.UNKNOWN)),
    ("credit hang", CREDIT, Sim(fault="hang"), CREDIT_REQ, Fails("no_answer", K.UNKNOWN)),
    ("credit refused", CREDIT, Sim(closed=True), None, Fails("connect_failed", K.RETRYABLE)),
    ("credit HTTP 503", CREDIT, Sim(fault="http_503"), CREDIT_REQ, Fails("http_503", K.RETRYABLE)),
]


@pytest.mark.parametrize("row", cases(TABLE))
def test_textinghouse(sims: Any, row: Row) -> None:
    run(TEXTINGHOUSE, sims, row)
