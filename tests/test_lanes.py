"""Provider lanes: the send queue routed to one lane per provider, each lane sending its batch
concurrently within the provider's own limits, and Group Texting's two connections held by the
whole deployment.

The real send handler (routing and lanes), the credit-check handler and the CLI, against the
template's queues and tables in moto and the simulators over real HTTP. In-process moto does
not serialise conditional writes (it checks, then writes): every DynamoDB client here is
serialised, as DynamoDB itself would order them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import LambdaContext, load_function
from sqs_source import poll_queue_once, receive_event, send_bodies, to_event
from test_failover import record, use_rules

from smsgate_local.harness import Serialised

US, FR = "+12125551234", "+33612345678"
LANE_QUEUES = {
    "clubtexting": "ClubTextingLaneQueue",
    "grouptexting": "GroupTextingLaneQueue",
    "textinghouse": "TextingHouseLaneQueue",
}


@pytest.fixture
def send(stack: Any) -> Callable[..., Any]:
    from smsgate import wiring

    app = load_function("send")
    service = wiring.send_service()
    service.store.db = Serialised(service.store.db)
    service.health.db = service.store.db
    handler: Callable[..., Any] = app.lambda_handler
    return handler


def lane(stack: Any, provider: str) -> tuple[str, str]:
    name = LANE_QUEUES[provider]
    return stack.queues[name], stack.queue_arns[name]


def sent_texts(sims: Any, provider: str) -> list[str]:
    """The texts of the provider's accepted send requests."""
    sim = sims.by_name[provider]
    if provider == "textinghouse":
        found = [r for r in sim.requests if r.fields.get("cmd") == "sendsms" and r.status == 200]
        return [str(r.field("txt")) for r in found if r.body.startswith("ID")]
    path = {"clubtexting": "/apisendmessage.php", "grouptexting": "/api/sending"}[provider]
    return [str(r.field("message")) for r in sim.requests_to(path) if r.status == 200]


def drain(stack: Any, send: Any, providers: list[str], rounds: int = 20) -> None:
    for _ in range(rounds):
        busy = False
        for provider in providers:
            event, _ = poll_queue_once(*lane(stack, provider), send)
            busy = busy or bool(event["Records"])
        if not busy:
            return


# --- routing ---------------------------------------------------------------------------------


def test_the_router_puts_each_message_on_its_providers_lane_without_sending(
    stack: Any, sims: Any, send: Any
) -> None:
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(
        url,
        [
            {"id": "r-ct", "to": US, "text": "ct", "provider": "clubtexting"},
            {"id": "r-gt", "to": US, "text": "gt", "provider": "grouptexting"},
            {"id": "r-th", "to": FR, "text": "th"},  # DefaultProvider
            "not json",
        ],
    )
    event = receive_event(url, arn)
    assert send(event, LambdaContext()) == {"batchItemFailures": []}
    assert all(sim.requests == [] for sim in sims)  # routing sends nothing
    for provider, message_id in (
        ("clubtexting", "r-ct"),
        ("grouptexting", "r-gt"),
        ("textinghouse", "r-th"),
    ):
        (lane_record,) = receive_event(*lane(stack, provider))["Records"]
        assert json.loads(lane_record["body"])["id"] == message_id
        route = json.loads(lane_record["messageAttributes"]["smsgate-route"]["stringValue"])
        assert route["providers"] == [provider]
        assert record(stack, message_id) == {}  # claimed only in its lane
    bad = [
        m for m in boto3.client("dynamodb").scan(TableName=stack.tables["MessagesTable"])["Items"]
    ]
    assert [m["error_code"]["S"] for m in bad] == ["invalid_body"]  # recorded by the router


def test_a_message_already_on_the_send_queue_is_sent_through_its_lane(
    stack: Any, sims: Any, send: Any
) -> None:
    """An upgraded stack: bodies put on SendQueue before the lanes existed are the same bodies."""
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(url, [{"to": FR, "text": "from before the upgrade"}])
    poll_queue_once(url, arn, send)
    drain(stack, send, ["textinghouse"])
    assert sent_texts(sims, "textinghouse") == ["from before the upgrade"]


# --- one lane's batch, sent concurrently ----------------------------------------------------------


def lane_event(stack: Any, provider: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    records = [
        {
            "MessageId": f"00000000-0000-0000-0000-{n:012d}",
            "ReceiptHandle": f"rh-{n}",
            "Body": json.dumps(body),
            "MD5OfBody": "x",
            "Attributes": {"ApproximateReceiveCount": "1"},
        }
        for n, body in enumerate(bodies)
    ]
    return to_event(lane(stack, provider)[1], records)


def test_a_batch_is_sent_concurrently_and_each_message_exactly_once(
    stack: Any, sims: Any, send: Any
) -> None:
    """The messages of one TextingHouse batch in flight side by side (SendParallelism at
    most); the same batches delivered again and to a second consumer at the same time: each
    text accepted once."""
    sims.textinghouse.latency = 0.2
    events = [
        lane_event(
            stack,
            "textinghouse",
            [
                {"id": f"p{b}x{i}", "to": f"+336123{b:02d}{i:03d}", "text": f"t{b}x{i}"}
                for i in range(10)
            ],
        )
        for b in range(3)
    ]
    for event in events:
        assert send(event, LambdaContext()) == {"batchItemFailures": []}
    # Sent side by side (the serialised DynamoDB calls stagger them), never above the pool.
    from smsgate import wiring

    assert 3 <= sims.textinghouse.peak_in_flight <= wiring.settings().send_parallelism == 5
    threads = [
        threading.Thread(target=lambda: [send(e, LambdaContext()) for e in events])
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = sent_texts(sims, "textinghouse")
    assert sorted(texts) == sorted(f"t{b}x{i}" for b in range(3) for i in range(10))
    assert all(record(stack, f"p{b}x{i}")["status"] == "sent" for b in range(3) for i in range(10))


def test_a_hanging_provider_does_not_hold_up_another_lane(stack: Any, sims: Any, send: Any) -> None:
    """Group Texting hangs on every request (its lane waits out each read timeout); the
    TextingHouse lane, run beside it, has sent everything before Group Texting's lane is done."""
    sims.grouptexting.set_fault("hang", delay=5.0)
    gt = lane_event(
        stack,
        "grouptexting",
        [{"id": f"g{i}", "to": US, "text": f"g{i}", "provider": "grouptexting"} for i in range(3)],
    )
    th = lane_event(
        stack,
        "textinghouse",
        [{"id": f"h{i}", "to": f"+3361239{i:04d}", "text": f"h{i}"} for i in range(10)],
    )
    gt_lane = threading.Thread(target=send, args=(gt, LambdaContext()))
    gt_lane.start()
    time.sleep(0.1)  # its first request is out and hanging
    assert send(th, LambdaContext()) == {"batchItemFailures": []}
    assert len(sent_texts(sims, "textinghouse")) == 10
    assert gt_lane.is_alive()  # still waiting on Group Texting
    gt_lane.join()
    assert {record(stack, f"g{i}")["status"] for i in range(3)} == {"unknown"}


def test_failover_moves_the_message_to_the_next_lane_exactly_once(
    stack: Any, sims: Any, send: Any
) -> None:
    rules = {"rules": [{"name": "us", "providers": {"grouptexting": 1, "clubtexting": 0}}]}
    send = use_rules(stack, rules)
    sims.grouptexting.force_answer("busy", status=503, times=1, path="/api/sending")
    url, arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
    send_bodies(url, [{"id": "fo1", "to": US, "text": "over"}])
    poll_queue_once(url, arn, send)  # routed: the Group Texting lane, then Club Texting
    (routed,) = receive_event(*lane(stack, "grouptexting"))["Records"]
    route = json.loads(routed["messageAttributes"]["smsgate-route"]["stringValue"])
    assert route == {"providers": ["grouptexting", "clubtexting"], "rule": "us"}
    event = to_event(lane(stack, "grouptexting")[1], [_as_sqs(routed)])
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # handed on
    drain(stack, send, ["clubtexting"])
    assert sent_texts(sims, "clubtexting") == ["over"]
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # a late redelivery
    assert sent_texts(sims, "grouptexting") == []  # dropped: the message is sent
    rec = record(stack, "fo1")
    assert rec["status"] == "sent" and rec["provider"] == "clubtexting"
    assert [(a["provider"], a["outcome"]) for a in rec["provider_attempts"]] == [
        ("grouptexting", "retryable"),
        ("clubtexting", "sent"),
    ]


def _as_sqs(record: dict[str, Any]) -> dict[str, Any]:
    """A Lambda record back in ReceiveMessage's shape (to build a redelivery of it)."""
    return {
        "MessageId": record["messageId"],
        "ReceiptHandle": record["receiptHandle"],
        "Body": record["body"],
        "MD5OfBody": record["md5OfBody"],
        "Attributes": record["attributes"],
        "MessageAttributes": {
            k: {"StringValue": v["stringValue"], "DataType": v["dataType"]}
            for k, v in record["messageAttributes"].items()
        },
    }


# --- Group Texting's two connections --------------------------------------------------------


def test_group_texting_never_sees_more_than_two_connections(
    stack: Any, sims: Any, send: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two Group Texting lane senders busy, a credit check and the CLI's `credits` at the
    same time: never more than 2 simultaneous connections, no 503 caused by the gateway, and
    every message sent once."""
    from test_cli import runner, stack_file

    from smsgate import wiring
    from smsgate_cli.context import Context

    sims.grouptexting.latency = 0.05
    batches = [
        lane_event(
            stack,
            "grouptexting",
            [
                {
                    "id": f"b{b}x{i}",
                    "to": f"+1212555{b:02d}{i:02d}",
                    "text": f"gt {b} {i}",
                    "provider": "grouptexting",
                }
                for i in range(8)
            ],
        )
        for b in range(4)
    ]
    wiring.store().db = Serialised(wiring.store().db)
    credit_check = load_function("credit_check").lambda_handler
    real_client = Context.client
    monkeypatch.setattr(Context, "client", lambda self, name: Serialised(real_client(self, name)))
    cli = runner(stack_file(stack, sims, tmp_path / "stack.json"), monkeypatch)
    failures: list[Any] = []

    def lane_sender(mine: list[dict[str, Any]]) -> None:
        for event in mine:
            for _ in range(10):  # a record that found no free slot comes back
                response = send(event, LambdaContext())
                if not response["batchItemFailures"]:
                    break
                time.sleep(0.2)
            else:
                failures.append(response)

    workers = [
        threading.Thread(target=lane_sender, args=(batches[0::2],)),
        threading.Thread(target=lane_sender, args=(batches[1::2],)),
        threading.Thread(target=lambda: checks.append(credit_check({}, LambdaContext()))),
        threading.Thread(target=lambda: checks.append(cli("--json", "credits"))),
    ]
    checks: list[Any] = []
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    by_kind = {type(c).__name__: c for c in checks}
    assert isinstance(by_kind["dict"]["balances"]["grouptexting"], float)  # the credit check
    assert by_kind["Result"].code == 0, by_kind["Result"].err  # the CLI
    assert sims.grouptexting.peak_connections <= 2
    rate_limited = [r for r in sims.grouptexting.requests if r.fault == "rate_limited"]
    assert rate_limited == []
    assert sorted(sent_texts(sims, "grouptexting")) == sorted(
        f"gt {b} {i}" for b in range(4) for i in range(8)
    )
    balance_reads = [r for r in sims.grouptexting.requests if "credit" in r.path.lower()]
    assert len(balance_reads) == 2  # the credit check's and the CLI's


def test_a_slot_whose_holder_died_is_reclaimed(stack: Any) -> None:
    from smsgate.budget import ConnectionBudget

    budget = ConnectionBudget(
        boto3.client("dynamodb"), stack.tables["HealthTable"], "grouptexting", 2
    )
    # its holder dies (2 s: enough for the next two takes even on a loaded machine)
    assert budget.acquire("dead-1", 2.0) is not None
    assert budget.acquire("busy", 30) is not None
    assert budget.acquire("alive", 10) is None  # both held
    slot = budget.acquire("alive", 10, wait=5.0)  # the dead holder's time runs out
    assert slot is not None
    assert budget.acquire("other", 10) is None
    assert slot.index == 0
    budget.release(slot)
    assert budget.acquire("other", 10) is None  # a released slot rests for the window
    time.sleep(1.05)
    assert budget.acquire("other", 10) == type(slot)("grouptexting", 0, "other")


def test_a_take_whose_answer_was_lost_finds_its_own_slot(stack: Any) -> None:
    """The retried take of an applied take (its answer lost) gets the same slot, instead of
    leaving it taken until its time runs out with the fleet one connection short."""
    from smsgate.budget import ConnectionBudget

    budget = ConnectionBudget(
        boto3.client("dynamodb"), stack.tables["HealthTable"], "grouptexting", 2
    )
    assert budget._take(0, "sender-a", 30, False)  # applied; say its answer was lost
    assert budget._take(0, "sender-a", 30, False)  # the retry finds it its own
    assert not budget._take(0, "sender-b", 30, False)
    slot = budget.acquire("sender-b", 30)
    assert slot is not None and slot.index == 1  # the other slot is still there


def test_a_message_waiting_for_a_slot_never_walks_to_the_dead_letter_queue(
    stack: Any, sims: Any, send: Any
) -> None:
    """Both Group Texting slots busy (an account call, say) at a record's last receive: it is
    put back on its lane with a fresh receive count, unsent, instead of dead-lettered."""
    from smsgate.budget import ConnectionBudget

    budget = ConnectionBudget(
        boto3.client("dynamodb"), stack.tables["HealthTable"], "grouptexting", 2
    )
    held = [budget.acquire(f"cli-{i}", 60) for i in range(2)]
    assert all(held)
    url, arn = lane(stack, "grouptexting")
    send_bodies(url, [{"id": "slotless", "to": US, "text": "hi", "provider": "grouptexting"}])
    event = receive_event(url, arn)
    for r in event["Records"]:
        r["attributes"]["ApproximateReceiveCount"] = "4"  # the redrive allows 5
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # acknowledged
    assert sims.grouptexting.requests_to("/api/sending") == []
    assert record(stack, "slotless").get("status") in (None, "queued")  # not claimed, unsent
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"  # put back
    dlq = stack.queues["GroupTextingLaneDeadLetterQueue"]
    assert boto3.client("sqs").receive_message(QueueUrl=dlq).get("Messages") is None
    # an earlier receive simply comes back (the delay of its visibility timeout)
    send_bodies(url, [{"id": "slotless-2", "to": US, "text": "hi", "provider": "grouptexting"}])
    time.sleep(0.1)
    event = receive_event(url, arn)
    failures = send(event, LambdaContext())["batchItemFailures"]
    assert [f["itemIdentifier"] for f in failures] == [r["messageId"] for r in event["Records"]]


def test_an_account_call_waiting_for_a_slot_goes_before_the_senders(stack: Any) -> None:
    from smsgate.budget import ConnectionBudget

    db = Serialised(boto3.client("dynamodb"))
    budget = ConnectionBudget(db, stack.tables["HealthTable"], "grouptexting", 2)
    held = [budget.acquire(f"sender-{i}", 10) for i in range(2)]
    got: list[Any] = []
    waiting = threading.Thread(
        target=lambda: got.append(budget.acquire("credit-check", 10, priority=True, wait=5.0))
    )
    waiting.start()
    time.sleep(0.3)  # it has marked the slots wanted
    for slot in held:
        assert slot is not None
        budget.release(slot)
    time.sleep(1.05)  # the released slots have rested for the window
    assert budget.acquire("sender-3", 10) is None  # left to the account call that waits
    waiting.join()
    assert got and got[0] is not None and got[0].holder == "credit-check"
