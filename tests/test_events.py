"""Application events: each event comes from the table change that causes it.

The changes are made by the real code paths (the send function against the simulators, the
callbacks function over HTTP, the store, the CLI); their DynamoDB stream records are read
from moto's streams by the local stack's stream poller, in Lambda's event shape, and handed
to the events function; the bus is read through a rule -> SQS tap (smsgate_cli.bus). moto
cannot make EventBridge refuse one entry of a PutEvents call, so the partial-failure tests put
through a thin stand-in that refuses chosen entries and forwards the others to moto.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
from conftest import load_function
from sqs_source import poll_once, send_bodies
from test_callbacks import template_routes
from test_cli import stack_file

from smsgate import events as ev
from smsgate.status import Status
from smsgate.store import Store, Transition
from smsgate_cli.__main__ import main as cli_main
from smsgate_cli.bus import BusTap
from smsgate_local.harness import LambdaContext
from smsgate_local.runtime import Function, StreamPoller, streams_client
from smsgate_local.stack import ROOT, load_template, resources_of_type

FR, US = "+33612345678", "+12125551234"
SCHEMAS = ROOT / "events" / "schemas"
SAMPLES = ROOT / "events"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def handler(stack: Any) -> Any:
    from smsgate import wiring

    wiring.event_publisher.cache_clear()  # its client and bus belong to the previous test
    yield load_function("events").lambda_handler
    wiring.event_publisher.cache_clear()


class Pump:
    """Lambda's stream event sources of EventsFunction, run on demand: every new record of
    both tables' streams, in order, through the events function."""

    def __init__(self, stack: Any, handler: Any) -> None:
        template = load_template()
        function = Function("EventsFunction", "smsgate-test-EventsFunction", handler, 30, {},
                            threading.Lock())  # fmt: skip
        streams = streams_client(boto3.Session(region_name="us-east-1"))
        events = template["Resources"]["EventsFunction"]["Properties"]["Events"]
        self.pollers = []
        for event in events.values():
            table = event["Properties"]["Stream"]["Fn::GetAtt"][0]
            self.pollers.append(
                StreamPoller(streams, function, stack.streams[table], batch_size=100)
            )
        self.records = 0

    def __call__(self) -> int:
        """Run until both streams are drained; returns how many records were handled."""
        handled = 0
        while True:
            step = sum(p.poll_once() for p in self.pollers)
            if not step:
                self.records += handled
                return handled
            handled += step


@pytest.fixture
def api(stack: Any, sims: Any) -> Iterator[str]:
    """The callbacks function behind the local API Gateway, and the simulators calling it."""
    from conftest import CALLBACK_TOKEN

    from smsgate_local.apigw import LocalRestApi

    local = LocalRestApi(load_function("callbacks").lambda_handler, template_routes())
    hooks = f"{local.start()}/hooks/{CALLBACK_TOKEN}"
    sims.textinghouse.dlr_url = f"{hooks}/textinghouse/dlr"
    sims.textinghouse.mo_url = f"{hooks}/textinghouse/mo"
    sims.grouptexting.keyword_url = f"{hooks}/grouptexting/keyword"
    yield hooks
    local.stop()


@pytest.fixture
def pump(stack: Any, handler: Any) -> Pump:
    return Pump(stack, handler)


@pytest.fixture
def bus(stack: Any) -> Iterator[BusTap]:
    with BusTap(boto3.client("events"), boto3.client("sqs"), stack.buses["EventBus"]) as tap:
        yield tap


def drain(tap: BusTap) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while batch := tap.receive(wait=0):
        out.extend(batch)
    return out


@pytest.fixture
def store(stack: Any) -> Store:
    return Store(
        stack.tables["MessagesTable"], stack.tables["StatusTable"], stack.tables["OptOutsTable"]
    )


def schema_of(detail_type: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / ev.SCHEMA_FILES[detail_type]).read_text())


def check_schema(event: dict[str, Any]) -> None:
    """The EventBridge envelope smsgate promises, and the detail against its committed file."""
    assert event["source"] == "smsgate"
    assert event["detail"]["version"] == "1"
    jsonschema.validate(event["detail"], schema_of(event["detail-type"]))


def changes(events: list[dict[str, Any]], message_id: str) -> list[tuple[str | None, str]]:
    return [
        (e["detail"]["old_status"], e["detail"]["new_status"])
        for e in events
        if e["detail-type"] == ev.STATUS_CHANGED and e["detail"]["message_id"] == message_id
    ]


def send(stack: Any, *bodies: dict[str, Any]) -> None:
    send_bodies(stack.queues["SendQueue"], bodies)
    poll_once(
        stack.queues["SendQueue"],
        stack.queue_arns["SendQueue"],
        load_function("send").lambda_handler,
    )


# --------------------------------------------------------------------------- status


def wait_for(store: Store, mid: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while (store.get_message(mid) or {}).get("status") != status:
        assert time.monotonic() < deadline, f"{mid} never became {status}"
        time.sleep(0.05)


def test_send_then_receipt_is_exactly_queued_sent_delivered(
    stack: Any, store: Store, api: str, sims: Any, pump: Pump, bus: BusTap
) -> None:
    mid = f"ev-{uuid.uuid4().hex[:8]}"
    send(stack, {"id": mid, "to": FR, "text": "Bonjour", "provider": "textinghouse"})
    wait_for(store, mid, "delivered")  # the simulator's receipt, over HTTP to the callbacks
    (sent,) = [m for m in sims.textinghouse.messages if m.climsgid == mid]
    pump()
    events = drain(bus)
    assert changes(events, mid) == [("queued", "sent"), ("sent", "delivered")]
    assert len(events) == 2
    for event in events:
        check_schema(event)
        detail = event["detail"]
        assert detail["provider"] == "textinghouse" and detail["error_code"] is None
        # status events carry no number and no text
        assert FR not in json.dumps(event) and "Bonjour" not in json.dumps(event)

    # the same receipt again, and a late `sent` receipt: rejected by the store, no event
    assert sims.textinghouse.send_dlr(sent.api_id, 3)[0] == 200
    assert sims.textinghouse.send_dlr(sent.api_id, 1)[0] == 200
    assert pump() == 0, "a rejected receipt writes nothing, so the stream has nothing"
    assert drain(bus) == []


def test_an_unsendable_body_is_created_failed(stack: Any, pump: Pump, bus: BusTap) -> None:
    mid = f"bad-{uuid.uuid4().hex[:8]}"
    send(stack, {"id": mid, "to": FR, "text": "x", "provider": "textinghouse", "oops": 1})
    pump()
    (event,) = drain(bus)
    check_schema(event)
    assert changes([event], mid) == [(None, "failed")]
    assert event["detail"]["error_code"] == "invalid_body"


def test_undelivered_receipt_carries_no_stale_error(
    stack: Any, store: Store, pump: Pump, bus: BusTap
) -> None:
    store.claim("m-und", {"direction": "out", "provider": "textinghouse", "to": FR}, 30)
    store.advance("m-und", Transition(Status.UNKNOWN, source="send", attrs={"error_code": "timeout",
                  "error": "no answer"}))  # fmt: skip
    store.advance("m-und", Transition(Status.DELIVERED, source="dlr", raw="3"))
    pump()
    events = drain(bus)
    assert changes(events, "m-und") == [("queued", "unknown"), ("unknown", "delivered")]
    unknown, delivered = (e["detail"] for e in events)
    assert (unknown["error_code"], unknown["error"]) == ("timeout", "no answer")
    assert (delivered["error_code"], delivered["error"]) == (None, None)


def test_an_undelivered_receipt_event_says_why(
    stack: Any, store: Store, pump: Pump, bus: BusTap
) -> None:
    """The receipt's code and the document's meaning reach the event, as the status table
    promises for `undelivered` and `failed`."""
    from smsgate.callbacks import CallbackService
    from smsgate.providers.textinghouse.inbound import receipt

    store.claim("m-why", {"direction": "out", "provider": "textinghouse", "to": FR}, 30)
    dlr = receipt({"apimsgid": "", "climsgid": "m-why", "status": "4"})
    CallbackService(store, dict, "").receipt(dlr)
    pump()
    [event] = [e["detail"] for e in drain(bus)]
    assert (event["new_status"], event["error_code"], event["error"]) == (
        "undelivered",
        "4",
        "expired or out of reach",
    )


def test_rejected_and_status_keeping_writes_give_no_event(
    stack: Any, store: Store, pump: Pump, bus: BusTap
) -> None:
    claim = store.claim("m-rej", {"direction": "out", "provider": "textinghouse", "to": FR}, 30)
    store.release("m-rej", claim.lease, {"error_code": "http_503", "error": "rate limited"})
    claim = store.claim("m-rej", {}, 30)
    assert store.advance("m-rej", Transition(Status.SENT, source="send", lease=claim.lease))
    assert store.release("m-rej", claim.lease, {"segments": 2}) is False  # lease released
    assert store.advance("m-rej", Transition(Status.DELIVERED, source="dlr", raw="3"))
    pump()
    assert changes(drain(bus), "m-rej") == [("queued", "sent"), ("sent", "delivered")]
    # duplicate, regressing, wrong provider (a failed conditional write), final already
    assert not store.advance("m-rej", Transition(Status.DELIVERED, source="dlr", raw="3"))
    assert not store.advance("m-rej", Transition(Status.SENT, source="dlr", raw="1"))
    assert not store.advance(
        "m-rej", Transition(Status.UNDELIVERED, source="dlr", expect_provider="x")
    )
    assert not store.claim("m-rej", {}, 30).won
    assert pump() == 0
    assert drain(bus) == []
    # and the stream is still read: the next accepted change is there (moto rebuilt the table
    # when it rolled the rejected transactions back)
    store.claim("m-rej2", {"direction": "out", "provider": "textinghouse", "to": FR}, 30)
    assert store.advance("m-rej2", Transition(Status.FAILED, source="cancel", raw="cancelled"))
    assert pump() > 0
    assert changes(drain(bus), "m-rej2") == [("queued", "failed")]


# --------------------------------------------------------------------------- inbound, opt-outs


def test_inbound_reply_and_stop_then_start(
    stack: Any, store: Store, api: str, sims: Any, pump: Pump, bus: BusTap
) -> None:
    mid = f"ev-{uuid.uuid4().hex[:8]}"
    send(stack, {"id": mid, "to": FR, "text": "Bonjour", "provider": "textinghouse"})
    wait_for(store, mid, "delivered")  # the simulator's own receipt
    pump()
    assert changes(drain(bus), mid) == [("queued", "sent"), ("sent", "delivered")]
    digits = FR.lstrip("+")
    assert sims.textinghouse.inject_mo(from_=digits, txt="STOP")[0] == 200
    pump()
    events = sorted(drain(bus), key=lambda e: e["detail-type"])
    assert [e["detail-type"] for e in events] == [ev.INBOUND_RECEIVED, ev.OPT_OUT_CHANGED]
    for event in events:
        check_schema(event)
    inbound, optout = (e["detail"] for e in events)
    assert inbound["from"] == FR and inbound["text"] == "STOP" and inbound["keyword"] == "STOP"
    assert (inbound["provider"], inbound["kind"]) == ("textinghouse", "mo")
    assert inbound["in_reply_to"] == mid  # TextingHouse names the message it answers
    assert inbound["message_id"].startswith("in-")
    assert optout["phone"] == FR and optout["opted_out"] is True
    assert (optout["how"], optout["provider"]) == ("STOP keyword", "textinghouse")

    # a second STOP is stored (an inbound event) but changes no opt-out
    again = sims.textinghouse.inject_mo(from_=digits, txt="STOP", date="2026-01-01 10:00:00")
    assert again[0] == 200
    pump()
    assert [e["detail-type"] for e in drain(bus)] == [ev.INBOUND_RECEIVED]

    assert sims.textinghouse.inject_mo(from_=digits, txt="START")[0] == 200
    pump()
    events = sorted(drain(bus), key=lambda e: e["detail-type"])
    assert [e["detail-type"] for e in events] == [ev.INBOUND_RECEIVED, ev.OPT_OUT_CHANGED]
    back = events[1]["detail"]
    check_schema(events[1])
    assert (back["phone"], back["opted_out"], back["how"], back["provider"]) == (
        FR,
        False,
        None,
        None,
    )
    assert back["event_id"] != optout["event_id"]


def test_keyword_callback_gives_an_inbound_event(
    stack: Any, api: str, sims: Any, pump: Pump, bus: BusTap
) -> None:
    status, _ = sims.grouptexting.inject_keyword(phone="2125551234", message="PIZZA extra")
    assert status == 200
    pump()
    (event,) = drain(bus)
    check_schema(event)
    detail = event["detail"]
    assert (detail["from"], detail["keyword"], detail["text"]) == (US, "PIZZA", "PIZZA extra")
    assert (detail["in_reply_to"], detail["in_reply_to_provider_id"]) == (None, None)


def test_manual_opt_out_cycles_get_their_own_ids(
    stack: Any, store: Store, pump: Pump, bus: BusTap
) -> None:
    store.add_opt_out(US, "manual")
    store.add_opt_out(US, "manual")  # rewritten: no change
    assert store.remove_opt_out(US)
    store.add_opt_out(US, "manual")
    pump()
    events = drain(bus)
    assert [(e["detail"]["opted_out"], e["detail"]["how"]) for e in events] == [
        (True, "manual"),
        (False, None),
        (True, "manual"),
    ]
    assert len({e["detail"]["event_id"] for e in events}) == 3


# --------------------------------------------------------------------------- delivery


def test_a_redelivered_batch_gives_the_same_event_ids(
    stack: Any, store: Store, handler: Any, bus: BusTap
) -> None:
    store.claim("m-dup", {"direction": "out", "provider": "grouptexting", "to": US}, 30)
    store.advance("m-dup", Transition(Status.SENT, source="send"))
    store.add_opt_out(US, "manual")
    event = {"Records": read_all(stack)}
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    first = drain(bus)
    assert handler(event, LambdaContext()) == {"batchItemFailures": []}
    second = drain(bus)
    assert len(first) == 2
    assert [e["detail"] for e in second] == [e["detail"] for e in first]


def read_all(stack: Any) -> list[dict[str, Any]]:
    """Every record of both streams so far, in Lambda's shape, messages first."""
    records: list[dict[str, Any]] = []

    def keep(event: dict[str, Any], context: Any) -> dict[str, Any]:
        records.extend(event["Records"])
        return {"batchItemFailures": []}

    Pump(stack, keep)()
    return records


class Refusing:
    """EventBridge that refuses the entries `refuse` picks (as it does when throttled: an
    ErrorCode per entry, the others taken) and puts the rest on moto's bus."""

    def __init__(self, refuse: Callable[[dict[str, Any]], bool]) -> None:
        self.real, self.refuse = boto3.client("events"), refuse
        self.calls: list[int] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(len(Entries))
        taken = [e for e in Entries if not self.refuse(e)]
        ids = iter(self.real.put_events(Entries=taken)["Entries"]) if taken else iter([])
        results = [
            {"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}
            if self.refuse(e)
            else next(ids)
            for e in Entries
        ]
        return {"FailedEntryCount": sum(1 for r in results if "ErrorCode" in r), "Entries": results}


def status_records(store: Store, stack: Any, n: int) -> list[dict[str, Any]]:
    for i in range(n):
        store.claim(f"m{i:02}", {"direction": "out", "provider": "textinghouse", "to": FR}, 30)
        store.advance(f"m{i:02}", Transition(Status.SENT, source="send"))
    return read_all(stack)


def test_a_refused_entry_fails_its_record_and_every_later_one(
    stack: Any, store: Store, handler: Any, bus: BusTap
) -> None:
    from smsgate import wiring

    records = status_records(store, stack, 14)  # 14 events: chunks of 10 and 4
    publisher = wiring.event_publisher()
    refusing = Refusing(lambda e: json.loads(e["Detail"])["message_id"] == "m03")
    publisher.client = refusing
    response = handler({"Records": records}, LambdaContext())
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    first_bad = next(
        i
        for i, r in enumerate(records)
        if ev.message_event(r) and r["dynamodb"]["Keys"]["id"]["S"] == "m03"
    )
    assert failed == seqs[first_bad:], "that record and every later one, in order"
    assert refusing.calls == [10], "nothing after the refused chunk is put"
    # EventBridge took the chunk's other entries (before and after m03)
    taken = {e["detail"]["message_id"]: e["detail"]["event_id"] for e in drain(bus)}
    assert sorted(taken) == [f"m{i:02}" for i in range(10) if i != 3]

    # Lambda retries from the lowest failed sequence number; now EventBridge takes them all
    refusing.refuse = lambda e: False
    retry = {"Records": records[first_bad:]}
    assert handler(retry, LambdaContext()) == {"batchItemFailures": []}
    again = {e["detail"]["message_id"]: e["detail"]["event_id"] for e in drain(bus)}
    assert sorted(again) == [f"m{i:02}" for i in range(3, 14)]
    # m04..m09 went out twice, with the ids they had the first time: consumers drop them
    repeated = sorted(set(taken) & set(again))
    assert repeated == [f"m{i:02}" for i in range(4, 10)]
    assert all(taken[m] == again[m] for m in repeated)


def test_put_events_failing_returns_every_record_from_the_first_event(
    stack: Any, store: Store, handler: Any, bus: BusTap
) -> None:
    from smsgate import wiring

    records = status_records(store, stack, 2)
    publisher = wiring.event_publisher()
    publisher.bus = "no-such-bus"  # moto answers ResourceNotFoundException for the call
    response = handler({"Records": records}, LambdaContext())
    seqs = [r["dynamodb"]["SequenceNumber"] for r in records]
    first = next(i for i, r in enumerate(records) if ev.message_event(r) is not None)
    assert first > 0, "the claim's records come first and have no event"
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == seqs[first:]
    assert drain(bus) == []


def test_logs_hold_no_number_and_no_text(
    stack: Any, store: Store, handler: Any, log_stream: Any
) -> None:
    from smsgate import wiring

    store.claim("m-log", {"direction": "out", "provider": "textinghouse", "to": FR,
                          "text": "Secret words"}, 30)  # fmt: skip
    store.advance("m-log", Transition(Status.SENT, source="send"))
    store.add_opt_out(US, "manual")
    records = read_all(stack)
    handler({"Records": records}, LambdaContext())
    wiring.event_publisher().bus = "no-such-bus"  # the failure path logs too
    handler({"Records": records}, LambdaContext())
    logged = log_stream.getvalue()
    assert "events not published" in logged
    for needle in (FR, FR.lstrip("+"), US, US.lstrip("+"), "Secret words"):
        assert needle not in logged


# --------------------------------------------------------------------------- schemas, samples


def test_committed_schemas_are_the_models() -> None:
    files = {p.name for p in SCHEMAS.glob("*.json")}
    assert files == set(ev.SCHEMA_FILES.values())
    for name, schema in ev.schemas().items():
        assert json.loads((SCHEMAS / name).read_text()) == schema, (
            f"{name} is stale: run `python -m smsgate.events events/schemas`"
        )
        jsonschema.Draft202012Validator.check_schema(schema)


def test_schemas_refuse_what_the_contract_forbids() -> None:
    sample = json.loads((SAMPLES / "bus_message_status_changed.json").read_text())["detail"]
    schema = schema_of(ev.STATUS_CHANGED)
    jsonschema.validate(sample, schema)
    for broken in (
        {**sample, "to": FR},  # no extra fields (a number must not slip in)
        {**sample, "new_status": "lost"},
        {k: v for k, v in sample.items() if k != "event_id"},
        {**sample, "version": "2"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def stream_sample(stack: Any) -> dict[str, Any]:
    text = (SAMPLES / "events_stream.json").read_text()
    for lid in ("MessagesTable", "OptOutsTable"):
        text = text.replace(f"table/smsgate-{lid}/", f"table/{stack.tables[lid]}/")
    return json.loads(text)


def test_the_stream_sample_gives_the_bus_samples(stack: Any, handler: Any, bus: BusTap) -> None:
    assert handler(stream_sample(stack), LambdaContext()) == {"batchItemFailures": []}
    got = {e["detail-type"]: e for e in drain(bus)}
    names = {
        ev.STATUS_CHANGED: "bus_message_status_changed",
        ev.INBOUND_RECEIVED: "bus_inbound_message_received",
        ev.OPT_OUT_CHANGED: "bus_opt_out_changed",
    }
    assert set(got) == set(names)  # the lease-only change of the sample has none
    for kind, name in names.items():
        sample = json.loads((SAMPLES / f"{name}.json").read_text())
        check_schema(sample)
        assert sample["detail-type"] == kind and sample["source"] == "smsgate"
        assert got[kind]["detail"] == sample["detail"], name


# --------------------------------------------------------------------------- template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def test_streams_feed_the_events_function(template: dict[str, Any]) -> None:
    r = template["Resources"]
    for lid in ("MessagesTable", "OptOutsTable"):
        spec = r[lid]["Properties"]["StreamSpecification"]
        assert spec == {"StreamViewType": "NEW_AND_OLD_IMAGES"}, lid  # old and new status
    assert "StreamSpecification" not in r["StatusTable"]["Properties"]
    fn = r["EventsFunction"]["Properties"]
    assert fn["CodeUri"] == "functions/events/"
    assert fn["Environment"]["Variables"] == {"EVENT_BUS_NAME": {"Ref": "EventBus"}}
    sources = {
        e["Properties"]["Stream"]["Fn::GetAtt"][0]: e["Properties"]
        for e in fn["Events"].values()
        if e["Type"] == "DynamoDB"
    }
    assert set(sources) == {"MessagesTable", "OptOutsTable"}
    for table, p in sources.items():
        assert p["Stream"] == {"Fn::GetAtt": [table, "StreamArn"]}
        assert p["FunctionResponseTypes"] == ["ReportBatchItemFailures"], table
        assert p["BisectBatchOnFunctionError"] is True
        assert p["StartingPosition"] == "TRIM_HORIZON"
        assert 0 < p["MaximumRetryAttempts"] <= 10_000  # not infinite: the DLQ gets it
        assert p["DestinationConfig"]["OnFailure"] == {
            "Type": "SQS",
            "Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]},
        }
        assert p.get("ParallelizationFactor", 1) == 1  # per-shard order
    # its own role: the streams it reads, its dead-letter queue, the bus (tests/test_privileges)
    assert fn["Role"] == {"Fn::GetAtt": ["EventsFunctionRole", "Arn"]}
    (policy,) = r["EventsFunctionRole"]["Properties"]["Policies"]
    by_sid = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}
    assert by_sid["PublishEvents"]["Action"] == "events:PutEvents"
    assert by_sid["PublishEvents"]["Resource"] == {"Fn::GetAtt": ["EventBus", "Arn"]}
    assert by_sid["ReadTableStreams"]["Resource"] == [
        {"Fn::Sub": "${MessagesTable.Arn}/stream/*"},
        {"Fn::Sub": "${OptOutsTable.Arn}/stream/*"},
    ]
    assert by_sid["FailedBatches"]["Resource"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    dlq = r["EventsDeadLetterQueue"]["Properties"]
    assert dlq["KmsMasterKeyId"] == r["SendDeadLetterQueue"]["Properties"]["KmsMasterKeyId"]
    alarm = r["EventsDeadLetterQueueNotEmpty"]["Properties"]
    assert alarm["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"]}
    assert {"Ref": "EventsFunctionRole"} in r["DataKeyPolicy"]["Properties"]["Roles"]
    outputs = template["Outputs"]
    assert outputs["EventBusName"]["Value"] == {"Ref": "EventBus"}
    assert outputs["EventBusArn"]["Value"] == {"Fn::GetAtt": ["EventBus", "Arn"]}


def test_the_webhook_is_optional_retried_and_dead_lettered(template: dict[str, Any]) -> None:
    r = template["Resources"]
    assert template["Parameters"]["StatusWebhookUrl"]["Default"] == ""
    assert template["Conditions"]["HasStatusWebhook"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "StatusWebhookUrl"}, ""]}]
    }
    webhook = {lid for lid in r if lid.startswith("Webhook")}
    assert webhook == {
        "WebhookKeySecret",
        "WebhookConnection",
        "WebhookDestination",
        "WebhookDeadLetterQueue",
        "WebhookDeadLetterQueuePolicy",
        "WebhookRole",
        "WebhookRule",
        "WebhookDeadLetterQueueNotEmpty",
    }
    for lid in webhook:
        assert r[lid]["Condition"] == "HasStatusWebhook", lid
    conn = r["WebhookConnection"]["Properties"]
    assert conn["AuthorizationType"] == "API_KEY"
    key = conn["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyValue"]
    assert key == {"Fn::Sub": "{{resolve:secretsmanager:${WebhookKeySecret}}}"}  # no plain text
    rule = r["WebhookRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "EventBus"}
    assert rule["EventPattern"] == {"source": ["smsgate"], "detail-type": [ev.STATUS_CHANGED]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["WebhookDestination", "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}}
    (statement,) = r["WebhookRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "events:InvokeApiDestination"
    assert statement["Resource"] == {"Fn::GetAtt": ["WebhookDestination", "Arn"]}
    (allow,) = r["WebhookDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    rule_arn = {"Fn::GetAtt": ["WebhookRule", "Arn"]}
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}
    secret_outputs = json.dumps(template["Outputs"])
    assert "resolve:secretsmanager" not in secret_outputs
    assert resources_of_type(template, "AWS::Events::EventBus") == {"EventBus": r["EventBus"]}


def test_build_stack_makes_the_bus_and_the_streams(stack: Any) -> None:
    assert stack.env["EVENT_BUS_NAME"] == stack.buses["EventBus"] == "smsgate-test-events"
    assert boto3.client("events").describe_event_bus(Name="smsgate-test-events")["Arn"]
    assert set(stack.streams) == {"MessagesTable", "OptOutsTable"}
    streams = streams_client(boto3.Session(region_name="us-east-1"))
    for arn in stack.streams.values():
        description = streams.describe_stream(StreamArn=arn)["StreamDescription"]
        assert description["StreamViewType"] == "NEW_AND_OLD_IMAGES"


# --------------------------------------------------------------------------- the CLI


def test_cli_events_shows_what_arrives_then_removes_its_tap(
    stack: Any, sims: Any, store: Store, pump: Pump, tmp_path: Path
) -> None:
    config = stack_file(stack, sims, tmp_path / "stack.json")
    events_client = boto3.client("events")
    bus_name = stack.buses["EventBus"]

    def run(*argv: str) -> tuple[int, str, str]:
        import io

        out, err = io.StringIO(), io.StringIO()
        code = cli_main(["--config", str(config), *argv], out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    results: dict[str, Any] = {}
    for mode in ("json", "human"):
        argv = ["events", "--limit", "2", "--wait", "15"] + (["--json"] if mode == "json" else [])
        worker = threading.Thread(target=lambda a=argv, m=mode: results.update({m: run(*a)}))
        worker.start()
        deadline = time.monotonic() + 10
        while not events_client.list_rules(EventBusName=bus_name)["Rules"]:
            assert time.monotonic() < deadline, "the CLI never subscribed"
            time.sleep(0.05)
        store.add_opt_out(US, "manual")
        assert store.remove_opt_out(US)
        pump()
        worker.join(20)
        assert not worker.is_alive()
        code, out, err = results[mode]
        assert code == 0, err
        if mode == "json":
            lines = [json.loads(line) for line in out.splitlines()]
            assert [e["detail"]["opted_out"] for e in lines] == [True, False]
            assert all(e["detail"]["phone"] == US for e in lines)
        else:
            assert len(out.splitlines()) == 2
            assert "opted out (manual)" in out and "opted back in" in out
            assert US not in out  # people see numbers masked
        # the rule, its target and the queue are gone
        assert events_client.list_rules(EventBusName=bus_name)["Rules"] == []
        queues = boto3.client("sqs").list_queues().get("QueueUrls", [])
        assert not [q for q in queues if "smsgate-tap" in q]


def test_cli_events_needs_a_bus(stack: Any, tmp_path: Path) -> None:
    import io

    config = tmp_path / "stack.json"
    config.write_text(
        json.dumps(
            {
                "send_queue_url": stack.queues["SendQueue"],
                "messages_table": stack.tables["MessagesTable"],
                "status_table": stack.tables["StatusTable"],
                "optouts_table": stack.tables["OptOutsTable"],
                "secret_arn": stack.secret_arn,
            }
        )
    )
    err = io.StringIO()
    code = cli_main(["--config", str(config), "events", "--wait", "1"], out=io.StringIO(), err=err)
    assert code == 1 and "EventBusName" in err.getvalue()
