"""Club Texting (Club Texting's API document) through the real client, over real HTTP, against the
simulator.

One table: (label, input, simulator set-up, expected request, expected outcome). Every send code of
the document appears with its outcome class; every rule at its boundary and one past it (a
violation raises RuleViolation and no request reaches the simulator); every transport fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from smsgate.providers import (
    Category,
    ClubTexting,
    OutboundSms,
    OutcomeKind,
    RuleViolation,
    Transport,
)
from smsgate_sim import unused_url

USER, PASS = "smsgate", "local-secret"
PATH = "/apisendmessage.php"
US, US10 = "+12125551234", "2125551234"
GARBAGE_WORDS = ("maintenance", "right back", "html")  # the simulator's garbage page

K, C = OutcomeKind, Category


# ----------------------------------------------------------------------------- table helpers


@dataclass(frozen=True)
class Sim:
    """A row's simulator set-up (and how the client reaches it)."""

    password: str = PASS
    closed: bool = False  # the client's URL is a port nothing listens on
    fault: str | None = None  # a `set_fault` mode
    force: str | None = None  # `force_answer` body
    force_status: int = 200
    prep: Callable[[Any], None] | None = None

    @property
    def short_timeouts(self) -> bool:
        return self.closed or self.fault is not None


@dataclass(frozen=True)
class Out:
    """The expected Outcome class and code; `credit` is the account's credit afterwards."""

    kind: OutcomeKind
    category: Category
    code: str
    credit: float | None = None
    fail_when_spent: bool = False


@dataclass(frozen=True)
class Rule:
    """The expected RuleViolation (and no request)."""

    rule: str


def sms(text: str = "hello world", to: str = US, **kw: Any) -> OutboundSms:
    return OutboundSms(id="m1", to=to, text=text, **kw)


def req(message: str = "hello world", subject: str = "", express: str = "0") -> dict[str, str]:
    """The fields of the send request, credentials aside."""
    return {"phonenumber": US10, "subject": subject, "message": message, "express": express}


def no_credit(sim: Any) -> None:
    sim.account().credit = 0


def opted_out(sim: Any) -> None:
    sim.opt_out(US10)


OK = Out(K.SENT, C.ACCEPTED, "1", credit=999)
DEFAULT = Sim()

TABLE: list[tuple[str, OutboundSms, Sim, dict[str, str] | None, Out | Rule]] = [
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
    ("-2 no credit", sms(), Sim(prep=no_credit), req(), Out(K.RETRYABLE, C.CREDIT, "-2")),
    ("-5 opted out", sms(), Sim(prep=opted_out), req(), Out(K.REJECTED, C.OPT_OUT, "-5", 1000)),
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
    ("commercial is not an option", sms(commercial=True), DEFAULT, None, Rule("options")),
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


@pytest.mark.parametrize(
    ("label", "message", "setup", "request_fields", "expected"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_club_texting(
    sims: Any,
    label: str,
    message: OutboundSms,
    setup: Sim,
    request_fields: dict[str, str] | None,
    expected: Out | Rule,
) -> None:
    sim = sims.clubtexting
    url = unused_url() if setup.closed else sim.url
    transport = (
        Transport(url, connect_timeout=0.5, read_timeout=0.5) if setup.short_timeouts else None
    )
    client = ClubTexting(url, USER, setup.password, transport)
    if setup.prep:
        setup.prep(sim)
    if setup.fault:
        sim.set_fault(setup.fault, delay=3.0 if setup.fault == "hang" else None)
    if setup.force is not None:
        sim.force_answer(setup.force, status=setup.force_status)
    try:
        if isinstance(expected, Rule):
            with pytest.raises(RuleViolation) as info:
                client.send(message)
            assert (info.value.provider, info.value.rule) == ("clubtexting", expected.rule)
        else:
            outcome = client.send(message)
            assert (outcome.kind, outcome.category, outcome.code) == (
                expected.kind,
                expected.category,
                expected.code,
            ), outcome
            assert outcome.opt_out is (expected.category is C.OPT_OUT)
            assert outcome.fail_when_spent is expected.fail_when_spent
            assert not any(word in repr(outcome).lower() for word in GARBAGE_WORDS)
            if expected.credit is not None:
                assert sim.account().credit == expected.credit
    finally:
        client.transport.close()

    if request_fields is None:
        assert sim.requests == []
        return
    [sent] = sim.requests
    assert (sent.method, sent.path) == ("POST", PATH)
    assert sent.fields == {"user": USER, "pass": setup.password, **request_fields}
