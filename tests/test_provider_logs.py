"""No credential, card number, CVV, full phone number or message text ever reaches a log line,
the console, or the str()/repr() of what the provider clients return or raise.

Every provider operation runs against the simulators with everything captured: the smsgate
(Powertools) logger's own stream (it binds its stream when created), the standard logging
records at DEBUG (urllib3 logs every request line there), and stdout/stderr.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from smsgate.observability import logger as smsgate_logger
from smsgate.providers import (
    Card,
    ClubTexting,
    GroupTexting,
    OutboundSms,
    ProviderError,
    RuleViolation,
    TextingHouse,
    Transport,
)
from smsgate_sim import unused_url

USER, PASS, WRONG_PASS = "smsgate", "local-secret", "wrong-secret-4242"
US, US10, FR, FR_DIGITS = "+12125551234", "2125551234", "+33612345678", "33612345678"
TEXT = "Meet me at the old mill at nine"
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
    exp_year="99",
)
DECLINED = dataclasses.replace(CARD, type="Visa", number="4000000000000002", code="5813")
SECRETS = [
    PASS,
    WRONG_PASS,
    CARD.number,
    DECLINED.number,
    CARD.code,
    DECLINED.code,
    US,
    US10,
    FR,
    FR_DIGITS,
    TEXT,
]
_PATTERNS = {s: re.compile(rf"(?<![0-9]){re.escape(s)}(?![0-9])") for s in SECRETS}


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """The smsgate logger's stream, at DEBUG; caplog at DEBUG for everything else."""
    buffer = io.StringIO()
    std = logging.getLogger(smsgate_logger.name)
    old_level = std.level
    std.setLevel(logging.DEBUG)
    old_streams = [h.setStream(buffer) for h in smsgate_logger.handlers]
    caplog.set_level(logging.DEBUG)
    try:
        yield buffer
    finally:
        for handler, stream in zip(smsgate_logger.handlers, old_streams, strict=True):
            handler.setStream(stream)
        std.setLevel(old_level)


def leaks(text: str) -> list[str]:
    return [secret for secret, pattern in _PATTERNS.items() if pattern.search(text)]


def attempt(call: Callable[[], Any], shown: list[object]) -> None:
    """Run one operation; keep its result or its exception for the str()/repr() check."""
    try:
        shown.append(call())
    except (ProviderError, RuleViolation) as exc:
        shown.append(exc)


def test_no_secret_reaches_logs_or_reprs(
    sims: Any, captured: io.StringIO, caplog: pytest.LogCaptureFixture, capsys: Any
) -> None:
    ct = ClubTexting(sims.clubtexting.url, USER, PASS)
    gt = GroupTexting(sims.grouptexting.url, USER, PASS)
    th = TextingHouse(sims.textinghouse.url, USER, PASS)
    gt_wrong = GroupTexting(sims.grouptexting.url, USER, WRONG_PASS)
    th_wrong = TextingHouse(sims.textinghouse.url, USER, WRONG_PASS)
    closed = unused_url()
    gt_closed = GroupTexting(closed, USER, PASS, Transport(closed, connect_timeout=0.5))
    clients = [ct, gt, th, gt_wrong, th_wrong, gt_closed]
    us_sms = OutboundSms("log-1", US, TEXT, subject="Hi")
    fr_sms = OutboundSms("log-2", FR, TEXT)
    shown: list[object] = [CARD, DECLINED, *clients]

    sims.grouptexting.opt_out(US10)
    ops: list[Callable[[], Any]] = [
        lambda: ct.send(us_sms),
        lambda: ct.send(dataclasses.replace(us_sms, text=TEXT + " 'now'")),  # quotes
        lambda: ct.send(dataclasses.replace(us_sms, to=FR)),  # not US
        lambda: gt.send(us_sms),  # -5 opted out
        lambda: gt_wrong.send(us_sms),  # -1
        lambda: gt.send(dataclasses.replace(us_sms, text=TEXT + " café")),  # charset
        lambda: gt.balance(),
        lambda: gt_wrong.balance(),
        lambda: gt.check_keyword("NEWKW"),
        lambda: gt.buy_credits(CARD, 100),
        lambda: gt.buy_credits(DECLINED, 100),
        lambda: gt_wrong.buy_credits(CARD, 100),
        lambda: gt.rent_keyword(CARD, "NEWKW"),
        lambda: gt.rent_keyword(DECLINED, "OTHERKW"),
        lambda: gt.setup_keyword("NEWKW", autoreply=TEXT, email="ops@example.com"),
        lambda: gt.setup_keyword("NEWKW", autoreply=TEXT + " é"),
        lambda: gt_closed.send(us_sms),
        lambda: gt_closed.balance(),
        lambda: th.send(fr_sms),
        lambda: th.send(dataclasses.replace(fr_sms, text=TEXT + " ж")),
        lambda: th_wrong.send(fr_sms),
        lambda: th.status(climsgid="log-2"),
        lambda: th.status(api_id="0" * 24),
        lambda: th_wrong.balance(),
        lambda: th.balance(),
    ]
    for op in ops:
        attempt(op, shown)
    sims.textinghouse.set_fault("garbage")
    attempt(lambda: th.send(dataclasses.replace(fr_sms, id="log-3")), shown)
    attempt(lambda: th.balance(), shown)
    for client in clients:
        client.transport.close()

    # The operations really ran: requests reached the simulators, with the secrets in them.
    assert sims.grouptexting.account().purchases, "the purchase did not go through"
    assert any(r.fields.get("pass") == PASS for r in sims.textinghouse.requests)
    assert len(shown) == 2 + len(clients) + len(ops) + 2

    out, err = capsys.readouterr()
    records = "\n".join(f"{r.getMessage()} {r.__dict__!r}" for r in caplog.records)
    assert caplog.records, "urllib3 logs its request lines at DEBUG: capture is working"
    for where, text in [
        ("smsgate logger", captured.getvalue()),
        ("log records", records),
        ("caplog text", caplog.text),
        ("stdout", out),
        ("stderr", err),
    ]:
        assert leaks(text) == [], f"{where} shows {leaks(text)}"
    for item in shown:
        for form in (str(item), repr(item)):
            assert leaks(form) == [], f"{type(item).__name__} shows {leaks(form)}: {form}"
