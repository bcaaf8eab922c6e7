"""Logs never hold personal data: every handler path runs with the Powertools log
stream and stdout captured, and no full number (E.164 or a provider's form), message text,
token, password or card number may appear. Numbers are logged masked (`smsgate.phones.mask`,
re-exported by `smsgate.observability`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from conftest import CALLBACK_TOKEN, SIM_PASS, LambdaContext, load_function
from sqs_source import poll_once, send_bodies
from test_callbacks import template_routes

FR, FR2, US, US2, US3 = (
    "+33612345678",
    "+33698765432",
    "+12125550111",
    "+12125550122",
    "+12125550133",
)
TEXT = "Tres secret 4111111111111111 texte"
SUNDAY_NOON = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
EVENTS = Path(__file__).parent.parent / "events"


def forbidden() -> list[str]:
    numbers = [FR, FR2, US, US2, US3]
    return [
        *numbers,
        *(n.lstrip("+") for n in numbers),  # TextingHouse: international digits
        *(n[2:] for n in numbers if n.startswith("+1")),  # Club/Group Texting: 10 digits
        "Tres secret",
        "4111111111111111",
        CALLBACK_TOKEN,
        SIM_PASS,
    ]


def check(logged: str) -> None:
    assert logged.strip(), "nothing was captured"
    for needle in forbidden():
        assert needle not in logged, needle


@pytest.fixture
def send(stack: Any) -> Any:
    return load_function("send").lambda_handler


def run(stack: Any, send: Any, bodies: list[Any]) -> None:
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(url, bodies)
    poll_once(url, arn, send, 30_000)


def test_send_paths(stack: Any, sims: Any, send: Any, log_stream: Any, capsys: Any) -> None:
    from smsgate import wiring

    wiring.store().add_opt_out(FR2, "manual")
    sims.clubtexting.force_answer("-1")  # failed
    sims.grouptexting.set_fault("hang", delay=2.0, count=1)  # unknown
    run(stack, send, [
        {"id": "s1", "to": FR, "text": TEXT},  # sent
        {"id": "s2", "to": US, "text": TEXT, "provider": "clubtexting"},
        {"id": "s3", "to": US2, "text": TEXT, "provider": "grouptexting"},
        {"id": "s4", "to": FR2, "text": TEXT},  # opted out
        {"to": US3, "text": 5},  # invalid body
    ])  # fmt: skip
    sims.textinghouse.force_answer("<html>proxy error</html>", status=502, times=1)
    run(stack, send, [{"id": "s5", "to": FR, "text": TEXT}])  # retry
    wiring.send_service().clock = lambda: SUNDAY_NOON
    run(stack, send, [{"id": "s6", "to": FR, "text": TEXT + " STOP sms-s.top",
                       "commercial": True}])  # held  # fmt: skip
    check(log_stream.getvalue() + capsys.readouterr().out)
    assert "+3361****678" in log_stream.getvalue()


def test_protection_paths(stack: Any, sims: Any, log_stream: Any, capsys: Any) -> None:
    """A blocked destination, a recipient past its velocity (and the conditional write that
    takes a second message's place), a budget exhausted: masked numbers only."""
    from test_failover import use_rules

    document = {
        "destinations": {"block": ["+3369"]},
        "velocity": {"per_hour": 2},
        "prices": {"clubtexting": 0.5, "grouptexting": 0.5, "textinghouse": 0.5},
        "monthly_budgets": {"grouptexting": 0.6},
    }
    handler = use_rules(stack, document)
    run(stack, handler, [
        {"id": "p1", "to": FR2, "text": TEXT},  # blocked
        {"id": "p2", "to": FR, "text": TEXT},
        {"id": "p3", "to": FR, "text": TEXT + " 2"},  # its place taken first
        {"id": "p4", "to": FR, "text": TEXT + " 3"},  # past its velocity
        {"id": "p5", "to": US, "text": TEXT, "provider": "grouptexting"},
        {"id": "p6", "to": US2, "text": TEXT, "provider": "grouptexting"},  # budget
    ])  # fmt: skip
    check(log_stream.getvalue() + capsys.readouterr().out)
    logged = log_stream.getvalue()
    for code in ("destination_blocked", "velocity_exceeded", "budget_exhausted"):
        assert code in logged


@pytest.fixture
def hooks(stack: Any, sims: Any) -> Iterator[str]:
    from smsgate_local.apigw import LocalRestApi

    local = LocalRestApi(load_function("callbacks").lambda_handler, template_routes())
    base = local.start()
    yield f"{base}/hooks/{CALLBACK_TOKEN}"
    local.stop()


def test_callback_routes(stack: Any, hooks: str, log_stream: Any, capsys: Any) -> None:
    from smsgate import wiring

    store = wiring.store()
    claim = store.claim("o1", {"direction": "out", "provider": "textinghouse", "to": FR,
                               "text": TEXT}, 30)  # fmt: skip
    from smsgate.status import Status
    from smsgate.store import Transition

    store.advance("o1", Transition(Status.SENT, source="send", lease=claim.lease,
                                   attrs={"provider_message_id": "api1"}))  # fmt: skip
    for provider in ("clubtexting", "grouptexting"):
        for kind, fields in (("keyword", {"PhoneNumber": US[2:], "Message": "STOP"}),
                             ("inbox", {"from": US2[2:], "message": TEXT})):  # fmt: skip
            answer = requests.get(f"{hooks}/{provider}/{kind}", params=fields, timeout=10)
            assert answer.status_code == 200, answer.text
    mo = {"apimsgid": "api1", "climsgid": "o1", "from": FR.lstrip("+"), "txt": TEXT,
          "date": "2026-11-22 12:00:00"}  # fmt: skip
    assert requests.post(f"{hooks}/textinghouse/mo", json=mo, timeout=10).ok
    stop = {**mo, "from": FR2.lstrip("+"), "txt": "STOP"}
    assert requests.post(f"{hooks}/textinghouse/mo", json=stop, timeout=10).ok
    dlr = {"apimsgid": "api1", "climsgid": "o1", "status": "3"}
    assert requests.post(f"{hooks}/textinghouse/dlr", json=dlr, timeout=10).ok
    bad = requests.post(f"{hooks[: -len(CALLBACK_TOKEN)]}wrong/textinghouse/dlr", json=dlr,
                        timeout=10)  # fmt: skip
    assert bad.status_code == 403
    assert store.opted_out([US, FR2]) == {US, FR2}
    check(log_stream.getvalue() + capsys.readouterr().out)


def test_credit_check_and_reconcile(stack: Any, sims: Any, log_stream: Any, capsys: Any) -> None:
    from smsgate import wiring
    from smsgate.status import Status
    from smsgate.store import Transition

    store = wiring.store()
    claim = store.claim("r1", {"direction": "out", "provider": "textinghouse", "to": FR,
                               "text": TEXT}, 30)  # fmt: skip
    store.advance("r1", Transition(Status.UNKNOWN, source="send", lease=claim.lease))
    boto3.client("dynamodb").update_item(  # make it old enough to reconcile
        TableName=stack.tables["MessagesTable"], Key={"id": {"S": "r1"}},
        UpdateExpression="SET pending_at = :old",
        ExpressionAttributeValues={":old": {"S": "2020-01-01T00:00:00.000000Z"}},
    )  # fmt: skip
    event = json.loads((EVENTS / "credit_check.json").read_text())
    load_function("credit_check").lambda_handler(event, LambdaContext())
    wiring.reconcile_service.cache_clear()
    event = json.loads((EVENTS / "reconcile.json").read_text())
    load_function("reconcile").lambda_handler(event, LambdaContext())
    wiring.reconcile_service.cache_clear()
    check(log_stream.getvalue() + capsys.readouterr().out)
