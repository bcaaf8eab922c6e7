"""Protection (docs/protection.md): destinations, recipient velocity and monthly budgets, through
the real send handler, moto and the simulators. Every refused message is refused before its
provider request and says which rule refused it."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from conftest import LambdaContext
from sqs_source import poll_queue_once, receive_event, send_bodies
from test_events import bus, drain, handler, pump
from test_failover import US_RULES, record, run, sends, use_rules
from test_sender import FR, US, lane

__all__ = ["bus", "handler", "pump"]  # fixtures

NOW = datetime(2026, 12, 2, 10, 30, tzinfo=UTC)


def rules(**protection: Any) -> dict[str, Any]:
    return {**US_RULES, **protection}


def service() -> Any:
    from smsgate import wiring

    return wiring.send_service()


def at(moment: datetime) -> Any:
    svc = service()
    svc.clock = lambda: moment
    return svc


def body(message_id: str, to: str = US, **extra: Any) -> dict[str, Any]:
    return {"id": message_id, "to": to, "text": f"text of {message_id}", **extra}


def outcome(stack: Any, message_id: str) -> tuple[str, str]:
    r = record(stack, message_id)
    return r.get("status", ""), r.get("error_code", "")


def counter(stack: Any, phone: str, moment: datetime) -> dict[str, Any]:
    from smsgate.store import from_item
    from smsgate.store.counters import recipient_key

    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["HealthTable"],
        Key={
            "provider": {"S": recipient_key(phone)},
            "slot": {"S": f"day#{moment:%Y-%m-%d}"},
        },
        ConsistentRead=True,
    )
    return from_item(item.get("Item", {}))


def spend(stack: Any, provider: str, amount: str, month: str = "2026-12") -> None:
    boto3.client("dynamodb").put_item(
        TableName=stack.tables["HealthTable"],
        Item={
            "provider": {"S": provider},
            "slot": {"S": f"spend#{month}"},
            "spend": {"N": amount},
            "messages": {"N": "1"},
        },
    )


def spent(stack: Any, provider: str, month: str = "2026-12") -> Decimal:
    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["HealthTable"],
        Key={"provider": {"S": provider}, "slot": {"S": f"spend#{month}"}},
        ConsistentRead=True,
    )
    return Decimal(item.get("Item", {}).get("spend", {}).get("N", "0"))


# --- destinations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("destinations", "to", "sent"),
    [
        ({"allow": ["US", "FR"]}, FR, True),  # allowed
        ({"block": ["FR"]}, FR, False),  # blocked
        ({"allow": ["US"]}, FR, False),  # unlisted, with an allow-list
        ({"allow": ["FR"], "block": ["+3361"]}, FR, False),  # a prefix beats its country
        ({"block": ["FR"], "allow": ["+33612"]}, FR, True),  # ... either way
        ({"block": ["+33"], "allow": ["+336123"]}, FR, True),  # a longer prefix beats a shorter
        ({"allow": ["+3361"], "block": ["+3361"]}, FR, False),  # a tie: the block
        ({}, FR, True),  # the default: nothing refused
    ],
)
def test_destinations(
    stack: Any, sims: Any, destinations: dict[str, Any], to: str, sent: bool
) -> None:
    handler = use_rules(stack, rules(destinations=destinations))
    assert run(stack, handler, [body("d1", to)]) == {"batchItemFailures": []}
    if sent:
        assert outcome(stack, "d1") == ("sent", "")
    else:
        assert outcome(stack, "d1") == ("failed", "destination_blocked")
        assert "destination refused" in record(stack, "d1")["error"]
        assert sum(sends(sims, p) for p in ("clubtexting", "grouptexting", "textinghouse")) == 0


def test_per_provider_destinations_steer_the_routing(stack: Any, sims: Any) -> None:
    # the US rule's first provider may not text New York numbers: its failover provider does
    document = rules(destinations={"providers": {"clubtexting": {"block": ["+1212"]}}})
    handler = use_rules(stack, document)
    run(stack, handler, [body("steer1"), body("steer2", "+14155550123")])
    assert record(stack, "steer1")["provider"] == "grouptexting"
    assert record(stack, "steer2")["provider"] == "clubtexting"
    assert (sends(sims, "clubtexting"), sends(sims, "grouptexting")) == (1, 1)


def test_a_message_no_provider_may_carry_there_fails_blocked(stack: Any, sims: Any) -> None:
    blocked = {"block": ["US"]}
    document = rules(destinations={"providers": {"clubtexting": blocked, "grouptexting": blocked}})
    handler = use_rules(stack, document)
    run(stack, handler, [body("nowhere")])
    assert outcome(stack, "nowhere") == ("failed", "destination_blocked")
    assert sends(sims, "clubtexting") + sends(sims, "grouptexting") == 0


def test_the_test_number_is_exempt(stack: Any, sims: Any) -> None:
    from smsgate.providers import PROVIDERS

    test_number = PROVIDERS["textinghouse"].test_number
    handler = use_rules(stack, {"destinations": {"allow": ["FR"]}, "velocity": {"per_hour": 1}})
    bodies = [body(f"t{i}", test_number, provider="textinghouse") for i in range(3)]
    run(stack, handler, bodies)
    assert [outcome(stack, f"t{i}")[0] for i in range(3)] == ["sent"] * 3


# --- velocity -------------------------------------------------------------------------------


def test_velocity_per_hour_at_and_one_past_the_limit(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 3, "per_day": 5}))
    at(NOW)
    run(stack, handler, [body(f"h{i}") for i in range(3)])
    assert [outcome(stack, f"h{i}") for i in range(3)] == [("sent", "")] * 3
    run(stack, handler, [body("h3")])
    assert outcome(stack, "h3") == ("failed", "velocity_exceeded")
    assert "3 messages this hour" in record(stack, "h3")["error"]
    assert counter(stack, US, NOW)["h10"] == 3
    # the next hour frees it; the day's limit (5) holds across hours
    at(NOW + timedelta(hours=1))
    run(stack, handler, [body("h4"), body("h5")])
    assert [outcome(stack, i)[0] for i in ("h4", "h5")] == ["sent", "sent"]
    run(stack, handler, [body("h6")])
    assert outcome(stack, "h6") == ("failed", "velocity_exceeded")
    assert "today" in record(stack, "h6")["error"]
    # another number is its own
    run(stack, handler, [body("other", "+14155550123")])
    assert outcome(stack, "other") == ("sent", "")
    assert sends(sims, "clubtexting") == 6


def test_velocity_within_one_batch_counts_every_message(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 4}))
    at(NOW)
    run(stack, handler, [body(f"b{i}") for i in range(7)])
    statuses = sorted(outcome(stack, f"b{i}")[0] for i in range(7))
    assert statuses == ["failed"] * 3 + ["sent"] * 4
    assert sends(sims, "clubtexting") == 4


def test_velocity_hold_waits_until_the_window_frees(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 1, "when_exceeded": "hold"}))
    at(NOW)
    run(stack, handler, [body("v1")])
    run(stack, handler, [body("v2")])
    r = record(stack, "v2")
    assert (r["status"], r["not_before"][:19]) == ("scheduled", "2026-12-02T11:00:00")


def test_velocity_per_country_hour(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_country_hour": {"US": 2}}))
    at(NOW)
    numbers = ["+12125550100", "+12125550101", "+12125550102"]
    run(stack, handler, [body(f"c{i}", n) for i, n in enumerate(numbers)])
    assert sorted(outcome(stack, f"c{i}")[0] for i in range(3)) == ["failed", "sent", "sent"]
    # counted for the next batch too
    run(stack, handler, [body("c3", "+12125550103")])
    assert outcome(stack, "c3") == ("failed", "velocity_exceeded")


def lane_events(stack: Any, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`bodies` on Club Texting's lane, received as its event source would (10 a batch)."""
    url, arn = lane(stack, "clubtexting")
    send_bodies(url, bodies)
    events = []
    while (event := receive_event(url, arn))["Records"]:
        events.append(event)
    return events


def concurrently(handler: Any, events: list[dict[str, Any]]) -> list[BaseException]:
    """Each event through `handler` on its own thread, all at once: what any of them raised."""
    errors: list[BaseException] = []

    def deliver(event: dict[str, Any]) -> None:
        try:
            handler(event, LambdaContext())
        except BaseException as exc:  # pragma: no cover - the caller's assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(e,)) for e in events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_senders_count_each_message_once(stack: Any, sims: Any) -> None:
    """Two lane senders at once, each batch delivered twice: every message is counted once,
    none lost."""
    handler = use_rules(stack, rules(velocity={"per_hour": 1000, "per_day": 1000}))
    at(NOW)
    events = lane_events(stack, [body(f"k{i}") for i in range(40)])
    assert concurrently(handler, events + events) == []
    assert sends(sims, "clubtexting") == 40
    item = counter(stack, US, NOW)
    assert (item["day"], item["h10"]) == (40, 40)


def test_concurrent_senders_never_pass_a_limit_together(stack: Any, sims: Any) -> None:
    """A batch with several messages to one number takes each one's place in the number's
    counter with a conditional write before its request: two such batches at once send the
    limit, not more."""
    handler = use_rules(stack, rules(velocity={"per_hour": 5, "per_day": 50}))
    at(NOW)
    events = lane_events(stack, [body(f"x{i}") for i in range(20)])
    assert len(events) == 2
    assert concurrently(handler, events) == []
    sent = sends(sims, "clubtexting")
    assert sent == 5
    assert counter(stack, US, NOW)["h10"] == sent  # every one counted, once
    refused = [i for i in range(20) if outcome(stack, f"x{i}") == ("failed", "velocity_exceeded")]
    assert len(refused) == 20 - sent


def test_a_place_taken_for_a_message_that_did_not_go_is_given_back(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 3}))
    at(NOW)
    run(stack, handler, [body("g1")])  # the first: counted in its sent transaction
    assert counter(stack, US, NOW)["h10"] == 1
    # the second takes its place before its request; the provider refuses it (retryable)
    sims.clubtexting.force_answer("busy", status=503)
    url, arn = lane(stack, "clubtexting")
    send_bodies(url, [body("g2", provider="clubtexting", failover=False)])
    event = receive_event(url, arn)
    assert handler(event, LambdaContext())["batchItemFailures"]
    assert counter(stack, US, NOW)["h10"] == 1  # given back
    handler(event, LambdaContext())  # its redelivery goes
    assert outcome(stack, "g2") == ("sent", "")
    assert counter(stack, US, NOW)["h10"] == 2


def test_redelivery_after_a_sent_answer_was_lost_counts_once(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 2}))
    at(NOW)
    url, arn = lane(stack, "clubtexting")
    send_bodies(url, [body("once")])
    event = receive_event(url, arn)
    for _ in range(3):
        handler(event, LambdaContext())
    assert counter(stack, US, NOW)["h10"] == 1
    run(stack, handler, [body("second")])
    assert outcome(stack, "second") == ("sent", "")


# --- budgets --------------------------------------------------------------------------------

BUDGETED = {
    **US_RULES,
    "prices": {"clubtexting": 0.1, "grouptexting": 0.1, "textinghouse": 0.1},
    "monthly_budgets": {"clubtexting": 10.0},
}


def metric_values(records: list[dict[str, Any]], name: str) -> list[tuple[str, float]]:
    out = []
    for line in records:
        if name in line and "_aws" in line:
            out.append((line.get("Provider", ""), float(line[name][0])))
    return out


def emf(capsys: Any) -> list[dict[str, Any]]:
    lines = []
    for line in capsys.readouterr().out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


@pytest.mark.parametrize(("before", "used"), [("7.8", 79.0), ("7.9", 80.0)])
def test_budget_below_and_at_its_warning(
    stack: Any, sims: Any, capsys: Any, before: str, used: float
) -> None:
    handler = use_rules(stack, BUDGETED)
    at(NOW)
    spend(stack, "clubtexting", before)
    capsys.readouterr()
    run(stack, handler, [body("b1")])
    assert outcome(stack, "b1") == ("sent", "")
    assert spent(stack, "clubtexting") == Decimal(before) + Decimal("0.1")
    figures = metric_values(emf(capsys), "SpendBudgetUsed")
    assert ("clubtexting", used) in figures
    assert ("", used) in figures  # the alarm's figure (template: SpendBudgetWarning, >= 80)


def test_an_exhausted_budget_fails_over_to_a_provider_with_budget(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, BUDGETED)
    at(NOW)
    spend(stack, "clubtexting", "9.95")
    run(stack, handler, [body("over1")])
    r = record(stack, "over1")
    assert (r["status"], r["provider"]) == ("sent", "grouptexting")
    assert sends(sims, "clubtexting") == 0


def test_with_no_budget_left_the_message_waits(stack: Any, sims: Any) -> None:
    document = {**BUDGETED, "monthly_budgets": {"total": 5.0}}
    handler = use_rules(stack, document)
    at(NOW)
    spend(stack, "clubtexting", "3")
    spend(stack, "grouptexting", "2")
    run(stack, handler, [body("wait1")])
    r = record(stack, "wait1")
    assert (r["status"], r["error_code"]) == ("queued", "budget_exhausted")
    assert "total monthly budget" in r["error"]
    assert sends(sims, "clubtexting") + sends(sims, "grouptexting") == 0
    # re-queued on the send queue (a fresh receive count: never dead-lettered for it)
    waiting = boto3.client("sqs").receive_message(
        QueueUrl=stack.queues["SendQueue"], WaitTimeSeconds=0, VisibilityTimeout=0
    )
    assert waiting.get("Messages") is None  # delayed, not visible yet
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queues["SendQueue"], AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_the_next_month_starts_afresh(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, BUDGETED)
    spend(stack, "clubtexting", "10", month="2026-11")
    at(datetime(2026, 11, 30, 23, 0, tzinfo=UTC))
    run(stack, handler, [body("nov", provider="clubtexting")])
    assert outcome(stack, "nov") == ("queued", "budget_exhausted")
    at(NOW)
    run(stack, handler, [body("dec", provider="clubtexting")])
    assert outcome(stack, "dec") == ("sent", "")
    assert spent(stack, "clubtexting") == Decimal("0.1")


# --- the document ---------------------------------------------------------------------------


def test_an_invalid_document_keeps_the_last_good_one(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(destinations={"block": ["FR"]}))
    run(stack, handler, [body("good", FR)])
    assert outcome(stack, "good") == ("failed", "destination_blocked")
    boto3.client("ssm").put_parameter(
        Name=stack.parameters["RoutingRulesParameter"],
        Value=json.dumps(rules(destinations={"block": ["France"]})),
        Type="String",
        Overwrite=True,
    )
    parameters.clear_caches()
    run(stack, handler, [body("still", FR)])
    assert outcome(stack, "still") == ("failed", "destination_blocked")


def test_refusals_carry_their_rule_in_their_events(
    stack: Any, sims: Any, pump: Any, bus: Any
) -> None:
    handler = use_rules(stack, rules(destinations={"block": ["FR"]}, velocity={"per_hour": 1}))
    at(NOW)
    run(stack, handler, [body("e1", FR), body("e2"), body("e3")])
    pump()
    failed = {
        e["detail"]["message_id"]: e["detail"]["error_code"]
        for e in drain(bus)
        if e["detail"].get("new_status") == "failed"
    }
    assert failed["e1"] == "destination_blocked"
    assert sorted(failed.get(i, "") for i in ("e2", "e3")) == ["", "velocity_exceeded"]


def counting(db: Any, *operations: str) -> list[str]:
    """Record the calls of `operations` made through `db` (the service's client)."""
    calls: list[str] = []
    for operation in operations:
        original = getattr(db, operation)

        def counted(*args: Any, _op: str = operation, _call: Any = original, **kw: Any) -> Any:
            calls.append(_op)
            return _call(*args, **kw)

        setattr(db, operation, counted)
    return calls


def test_a_lane_batch_to_ten_numbers_makes_no_request_of_its_own(stack: Any, sims: Any) -> None:
    """Protection adds no request per message for a number's first message: the counters are
    read in the batch's one BatchGetItem, the recipients counted in each sent transaction;
    the budget's spend is one UpdateItem for the batch."""
    handler = use_rules(stack, BUDGETED)
    at(NOW)
    svc = service()
    calls = counting(svc.store.db, "batch_get_item", "update_item", "transact_write_items")
    svc.health._written_at = 1e18  # its counts are written later: not this batch's figure
    url, arn = lane(stack, "clubtexting")
    send_bodies(url, [body(f"r{i}", f"+1212555{i:04d}") for i in range(10)])
    poll_queue_once(url, arn, handler)
    assert sends(sims, "clubtexting") == 10
    assert calls.count("batch_get_item") == 1
    assert calls.count("transact_write_items") == 10  # each message's sent record
    assert calls.count("update_item") == 10 + 1  # each claim, and the batch's spend
    assert spent(stack, "clubtexting") == Decimal("1.0")


def test_a_second_message_to_a_number_takes_its_place_first(stack: Any, sims: Any) -> None:
    handler = use_rules(stack, rules(velocity={"per_hour": 10}))
    at(NOW)
    svc = service()
    run(stack, handler, [body("first")])
    calls = counting(svc.store.db, "update_item")
    svc.health._written_at = 1e18
    url, arn = lane(stack, "clubtexting")
    send_bodies(url, [body("again", provider="clubtexting")])
    poll_queue_once(url, arn, handler)
    assert outcome(stack, "again") == ("sent", "")
    assert calls.count("update_item") == 2  # the claim, the recipient's place
    assert counter(stack, US, NOW)["h10"] == 2


def test_a_spend_add_replayed_after_its_answer_was_lost_counts_once(stack: Any) -> None:
    from botocore.exceptions import ReadTimeoutError

    from smsgate.store.counters import Counters

    db = boto3.client("dynamodb")

    class AnswerLost:
        """The first UpdateItem is applied, then its answer is lost."""

        lost = False

        def __getattr__(self, name: str) -> Any:
            return getattr(db, name)

        def update_item(self, **request: Any) -> Any:
            answer = db.update_item(**request)
            if not self.lost:
                self.lost = True
                raise ReadTimeoutError(endpoint_url="lost://answer")
            return answer

    counters = Counters(stack.tables["HealthTable"], AnswerLost())
    counters.add_spend("clubtexting", Decimal("0.5"), 2, NOW)
    counters.add_spend("clubtexting", Decimal("0.25"), 1, NOW)
    assert counters.month(["clubtexting"], "2026-12") == {"clubtexting": (0.75, 3)}
