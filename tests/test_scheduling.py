"""Scheduled sends, validity and cancelling, through the real send handler, moto (SQS,
DynamoDB, EventBridge Scheduler) and the simulators (docs/contract.md, The send queue body)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from conftest import LambdaContext
from sqs_source import receive_event, send_bodies
from test_events import bus, drain, handler, pump
from test_sender import FR, history, lane, message, run, send, sends, service

__all__ = ["bus", "handler", "pump", "send", "service"]  # fixtures shared with other tests

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, 11:00 in Paris


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def schedule_of(stack: Any, record: dict[str, Any]) -> dict[str, Any]:
    return boto3.client("scheduler").get_schedule(
        Name=record["schedule_name"], GroupName=stack.env["HOLD_SCHEDULE_GROUP"]
    )


def fire(stack: Any, send: Any, schedule: dict[str, Any]) -> dict[str, Any]:
    """What the schedule does when it fires: its input goes back on the send queue."""
    return run(stack, send, [json.loads(schedule["Target"]["Input"])])


# --- send_at ----------------------------------------------------------------------------------


def test_a_scheduled_message_is_held_fires_and_is_sent_once(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    service.clock = lambda: NOW
    later = NOW + timedelta(hours=20)
    body = {"id": "later1", "to": FR, "text": "Rappel: rendez-vous demain", "send_at": at(later)}
    assert run(stack, send, [body]) == {"batchItemFailures": []}
    record = message(stack, "later1")
    assert record["status"] == "scheduled"
    assert record["not_before"].startswith("2026-11-24T06:00:00")
    assert sends(sims, "textinghouse") == []
    schedule = schedule_of(stack, record)
    assert schedule["ScheduleExpression"] == "at(2026-11-24T06:00:00)"
    service.clock = lambda: later
    for _ in range(2):  # a schedule that fires twice sends once
        assert fire(stack, send, schedule) == {"batchItemFailures": []}
    assert len(sends(sims, "textinghouse")) == 1
    assert history(stack, "later1") == ["queued", "scheduled", "sent"]


# --- validity ---------------------------------------------------------------------------------


# validity_seconds counts from when smsgate first saw the message (its record's created_at, on
# the real clock): these tests wait for it rather than move the service's clock.


def test_a_retried_message_past_its_validity_is_never_sent(
    stack: Any, sims: Any, send: Any
) -> None:
    url, arn = lane(stack, "textinghouse")
    sims.textinghouse.force_answer("ERR: 300 | Error processing request")
    send_bodies(url, [{"id": "otp1", "to": FR, "text": "code 123456", "validity_seconds": 2}])
    event = receive_event(url, arn)
    assert send(event, LambdaContext())["batchItemFailures"]  # retryable: comes back
    time.sleep(2.2)
    assert send(event, LambdaContext()) == {"batchItemFailures": []}
    record = message(stack, "otp1")
    assert (record["status"], record["error_code"]) == ("failed", "expired")
    assert len(sends(sims, "textinghouse")) == 1  # the refused try only


def test_an_expired_message_says_so_in_its_event(
    stack: Any, sims: Any, send: Any, pump: Any, bus: Any
) -> None:
    url, arn = lane(stack, "textinghouse")
    sims.textinghouse.force_answer("ERR: 300 | Error processing request")
    send_bodies(url, [{"id": "ev-exp", "to": FR, "text": "code 1", "validity_seconds": 1}])
    event = receive_event(url, arn)
    send(event, LambdaContext())
    time.sleep(1.2)
    send(event, LambdaContext())
    pump()
    [final] = [e["detail"] for e in drain(bus) if e["detail"].get("new_status") == "failed"]
    assert (final["message_id"], final["error_code"]) == ("ev-exp", "expired")
    assert "validity" in final["error"]


def test_a_retry_comes_back_no_later_than_the_validity(stack: Any, sims: Any, send: Any) -> None:
    url, arn = lane(stack, "textinghouse")
    sims.textinghouse.force_answer("ERR: 300 | Error processing request")
    send_bodies(url, [{"id": "otp2", "to": FR, "text": "code 654321", "validity_seconds": 3}])
    assert send(receive_event(url, arn), LambdaContext())["batchItemFailures"]
    # the provider's refusal asks for a later retry than the validity allows: the message is
    # made visible again when the validity ends, to end `expired` then
    again = boto3.client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=8)
    assert again.get("Messages"), "the retry was not made visible at the deadline"


def test_a_held_message_whose_validity_ends_first_expires_now(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    sunday_noon = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    service.clock = lambda: sunday_noon  # the commercial window opens on Monday
    body = {
        "id": "promo-x",
        "to": FR,
        "text": "Soldes -20% ce week-end. STOP sms-s.top",
        "commercial": True,
        "valid_until": at(sunday_noon + timedelta(hours=3)),
    }
    run(stack, send, [body])
    record = message(stack, "promo-x")
    assert (record["status"], record["error_code"]) == ("failed", "expired")
    assert "schedule_name" not in record
    assert sends(sims, "textinghouse") == []


def test_a_scheduled_message_past_its_validity_when_it_fires_is_not_sent(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    service.clock = lambda: NOW
    body = {
        "id": "later2",
        "to": FR,
        "text": "x",
        "send_at": at(NOW + timedelta(hours=1)),
        "validity_seconds": 60,
    }
    run(stack, send, [body])
    schedule = schedule_of(stack, message(stack, "later2"))
    service.clock = lambda: NOW + timedelta(hours=1, minutes=5)  # the schedule fired late
    fire(stack, send, schedule)
    record = message(stack, "later2")
    assert (record["status"], record["error_code"]) == ("failed", "expired")
    assert sends(sims, "textinghouse") == []


def test_a_message_waiting_for_a_provider_expires(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    service.health.mark_unhealthy("textinghouse", "credit")
    url, arn = lane(stack, "textinghouse")
    body = {"id": "wait1", "to": FR, "text": "x", "validity_seconds": 2, "failover": False}
    send_bodies(url, [body])
    send(receive_event(url, arn), LambdaContext())
    assert message(stack, "wait1")["error_code"] == "provider_unavailable"
    time.sleep(2.2)
    send_bodies(url, [body])  # the re-queued copy comes back
    send(receive_event(url, arn), LambdaContext())
    record = message(stack, "wait1")
    assert (record["status"], record["error_code"]) == ("failed", "expired")
    assert sends(sims, "textinghouse") == []


# --- bad values -------------------------------------------------------------------------------

BAD_TIMES = [
    ({"send_at": "tomorrow"}, "send_at"),
    ({"send_at": "2026-11-24T09:00:00"}, "send_at"),  # no offset
    ({"send_at": 1795000000}, "send_at"),  # a number, not a date
    ({"send_at": at(NOW - timedelta(minutes=5))}, "send_at: is in the past"),
    ({"send_at": at(NOW + timedelta(seconds=20))}, "less than a minute ahead"),
    ({"send_at": at(NOW + timedelta(days=400))}, "more than 365 days ahead"),
    ({"valid_until": at(NOW - timedelta(seconds=1))}, "valid_until: is in the past"),
    ({"valid_until": at(NOW + timedelta(hours=1)), "validity_seconds": 60}, "not both"),
    ({"validity_seconds": -5}, "validity_seconds"),
    ({"validity_seconds": 0}, "validity_seconds"),
    (
        {"send_at": at(NOW + timedelta(hours=2)), "valid_until": at(NOW + timedelta(hours=1))},
        "valid_until is not after send_at",
    ),
]


@pytest.mark.parametrize(("fields", "reason"), BAD_TIMES, ids=[r for _, r in BAD_TIMES])
def test_bad_times_are_recorded_failed_and_never_retried(
    stack: Any, sims: Any, send: Any, service: Any, fields: dict[str, Any], reason: str
) -> None:
    service.clock = lambda: NOW
    body = {"id": "bad-time", "to": FR, "text": "x", **fields}
    assert run(stack, send, [body]) == {"batchItemFailures": []}
    record = message(stack, "bad-time")
    assert (record["status"], record["error_code"]) == ("failed", "invalid_body")
    assert reason in record["error"]
    assert sends(sims, "textinghouse") == []


# --- cancel -----------------------------------------------------------------------------------


def test_cancel_before_the_message_arrives(stack: Any, sims: Any, send: Any) -> None:
    assert run(stack, send, [{"cancel": "c1"}]) == {"batchItemFailures": []}
    assert message(stack, "c1")["error_code"] == "cancelled"
    run(stack, send, [{"id": "c1", "to": FR, "text": "too late to want"}])
    assert sends(sims, "textinghouse") == []
    assert message(stack, "c1")["status"] == "failed"


def test_cancel_a_scheduled_message_deletes_its_schedule(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    service.clock = lambda: NOW
    run(stack, send, [{"id": "c2", "to": FR, "text": "x", "send_at": at(NOW + timedelta(days=1))}])
    record = message(stack, "c2")
    schedule = schedule_of(stack, record)
    for _ in range(2):  # idempotent
        assert run(stack, send, [{"cancel": "c2"}]) == {"batchItemFailures": []}
    cancelled = message(stack, "c2")
    assert (cancelled["status"], cancelled["error_code"]) == ("failed", "cancelled")
    with pytest.raises(Exception, match="ResourceNotFound"):
        schedule_of(stack, record)
    service.clock = lambda: NOW + timedelta(days=1)
    fire(stack, send, schedule)  # had it fired anyway: never sent
    assert sends(sims, "textinghouse") == []
    assert history(stack, "c2") == ["queued", "scheduled", "failed"]


def test_cancel_after_the_send_changes_nothing(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    run(stack, send, [{"id": "c3", "to": FR, "text": "gone"}])
    before = message(stack, "c3")
    assert before["status"] in ("sent", "delivered")
    result = service.cancel("c3")
    assert (result.status, result.code) == (before["status"], "too_late")
    assert run(stack, send, [{"cancel": "c3"}]) == {"batchItemFailures": []}
    assert message(stack, "c3")["status"] == before["status"]
    assert len(sends(sims, "textinghouse")) == 1


def test_a_bad_cancel_body_is_refused_clearly(stack: Any, send: Any) -> None:
    for body in ({"cancel": "not an id!"}, {"cancel": "c4", "to": FR}, {"cancel": 5}):
        assert run(stack, send, [body]) == {"batchItemFailures": []}
    assert message(stack, "c4") == {}
