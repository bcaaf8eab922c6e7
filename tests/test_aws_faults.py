"""One AWS fault at a time on the send and callback paths, then redelivery until settled.

Every AWS call the real handlers make (DynamoDB, SQS, Secrets Manager, SSM, Scheduler; the
Powertools parameter providers' clients included) passes through botocore hooks registered on
the session every client is made from. A scenario first runs without a fault; that run lists
its calls. Then, for each call, the scenario runs again on a fresh message with that call
failing — *before* it is applied (a 500), or *after* it is applied with its answer lost (a read
timeout, although the write happened) — and is redelivered as SQS or the provider would (the
same queue message with its receive count; the same HTTP request until a 2xx) until it is
acknowledged or dead-lettered. Each faulted run must end exactly where the fault-free run did:

- the provider accepted the message at most once, and exactly as often as without the fault;
- the acknowledged record holds the same honest state (status, error code, no lease left) —
  `unknown` never appears where no request went out;
- a 2xx callback answer means every effect is stored; no opt-out or opt-in is lost or applied
  twice (the opt-outs table's stream shows the same changes as without the fault);
- the history holds each change once.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from conftest import CALLBACK_TOKEN, LambdaContext, _clear_caches, load_function
from sqs_source import receive_event

from smsgate.store import Transition
from smsgate_local.runtime import streams_client

MAX_RECEIVES = 5  # the template's maxReceiveCount
SUNDAY_NOON = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday, 12:00 in Paris


# --- the fault injector --------------------------------------------------------------------


@dataclass
class Faults:
    """botocore hooks on every client: while armed, each AWS call is recorded as
    `service.Operation#n` (its n-th occurrence in the run), and the targeted one fails."""

    armed: bool = False
    target: tuple[str, str] | None = None  # (call, "before" | "after")
    calls: list[str] = field(default_factory=list)
    fired: bool = False

    def start_run(self, target: tuple[str, str] | None) -> None:
        self.target, self.calls, self.fired = target, [], False

    def before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if not self.armed:
            return
        name = f"{model.service_model.service_name}.{model.name}"
        call = f"{name}#{sum(1 for c in self.calls if c.startswith(name + '#')) + 1}"
        self.calls.append(call)
        context["fault_call"] = call
        if self.target == (call, "before"):
            self.fired = True
            raise ClientError(
                {"Error": {"Code": "InternalServerError", "Message": "injected"}}, model.name
            )

    def after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.armed and self.target == (context.get("fault_call"), "after"):
            self.fired = True
            raise ReadTimeoutError(endpoint_url=f"injected://{model.name}")


@pytest.fixture
def faults(stack: Any) -> Iterator[Faults]:
    """The hooks on the default session, then every cached client made anew from it (botocore
    copies the session's hooks into a client when it is made)."""
    injector = Faults()
    events = boto3._get_default_session().events
    events.register("before-call", injector.before)
    events.register("after-call", injector.after)
    _clear_caches()
    yield injector
    events.unregister("before-call", injector.before)
    events.unregister("after-call", injector.after)


def forget_parameters() -> None:
    """Empty the Powertools providers' caches but keep the providers (their clients carry the
    hooks; `parameters.clear_caches()` would drop them for new ones on a new session)."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    for provider in DEFAULT_PROVIDERS.values():
        provider.clear_cache()


def fault_points(calls: list[str]) -> list[tuple[str, str]]:
    return [(call, when) for call in calls for when in ("before", "after")]


# --- what a run leaves -----------------------------------------------------------------------


def scan(table: str) -> list[dict[str, Any]]:
    from smsgate.store import from_item

    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return [from_item(i) for page in pages for i in page["Items"]]


def record(stack: Any, message_id: str) -> dict[str, Any]:
    from smsgate.store import from_item

    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["MessagesTable"], Key={"id": {"S": message_id}}
    )
    return from_item(item.get("Item", {}))


def history(stack: Any, message_id: str) -> list[str]:
    items = boto3.client("dynamodb").query(
        TableName=stack.tables["StatusTable"],
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": message_id}},
    )["Items"]
    return [i.get("status", i.get("raw", {"S": "?"}))["S"] for i in items]


def opted_out(stack: Any, phone: str) -> bool:
    item = boto3.client("dynamodb").get_item(
        TableName=stack.tables["OptOutsTable"], Key={"phone": {"S": phone}}
    )
    return "Item" in item


def opt_out_changes(stack: Any, phone: str) -> list[str]:
    """The `Opt-Out Changed` events the opt-outs table's stream gives for `phone` (the events
    function's own reading of each record): `out:<how>` or `in`."""
    from smsgate.events import opt_out_event

    streams = streams_client(boto3.Session())
    table = boto3.client("dynamodb").describe_table(TableName=stack.tables["OptOutsTable"])
    arn = table["Table"]["LatestStreamArn"]
    changes = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for r in streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]:
            if r["dynamodb"]["Keys"]["phone"]["S"] != phone:
                continue
            event = opt_out_event(r)
            if event is not None:
                detail = event.detail
                changes.append(f"out:{detail.how}" if detail.opted_out else "in")
    return changes


# --- the send path ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SendCase:
    """One message of a scenario: its body, the provider it should reach, its recipient."""

    body: dict[str, Any]
    provider: str
    to: str
    marker: str

    @property
    def id(self) -> str:
        return str(self.body.get("id") or "")


@dataclass
class SendRun:
    acknowledged: bool
    receives: int
    status: str
    error_code: str | None
    lease: str
    history: list[str]
    provider_requests: int
    opted_out: bool
    opt_out_changes: list[str]
    calls: list[str]
    extra: dict[str, Any]

    def outcome(self) -> dict[str, Any]:
        """What must not depend on the fault."""
        return {
            "acknowledged": self.acknowledged,
            "status": self.status,
            "error_code": self.error_code,
            "lease": self.lease,
            "history": self.history,
            "provider_requests": self.provider_requests,
            "opted_out": self.opted_out,
            "opt_out_changes": self.opt_out_changes,
            **self.extra,
        }


def stand_in_queue(url: str) -> Any:
    """moto's own queue behind `url`: its delayed messages can be counted and cleared, which
    SQS's API cannot do (and moto allows one PurgeQueue a minute, as SQS does)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].queues[url.rsplit("/", 1)[-1]]


def copies_on_queue(url: str, message_id: str) -> int:
    """Messages on the queue (delayed ones too) whose body is message `message_id`."""
    return sum(
        1 for m in stand_in_queue(url)._messages if json.loads(m.body).get("id") == message_id
    )


def provider_requests(sims: Any, provider: str, marker: str) -> int:
    """Send requests carrying `marker` (in the text) that reached the provider's simulator."""
    sim = sims.by_name[provider]
    paths = {"clubtexting": "/apisendmessage.php", "grouptexting": "/api/sending"}
    if provider == "textinghouse":
        found = [r for r in sim.requests if r.fields.get("cmd") == "sendsms"]
    else:
        found = sim.requests_to(paths[provider])
    return sum(1 for r in found if any(marker in v for v in r.fields.values()))


class SendHarness:
    """The send queue of the stack, the real handler, and Lambda's SQS event source."""

    def __init__(self, stack: Any, sims: Any, faults: Faults) -> None:
        self.stack, self.sims, self.faults = stack, sims, faults
        self.url, self.arn = stack.queues["SendQueue"], stack.queue_arns["SendQueue"]
        # The send queue, the providers' lanes and their dead-letter queues.
        self.queues = {
            k: v
            for k, v in stack.queues.items()
            if k.startswith(("Send", "ClubTexting", "GroupTexting", "TextingHouse"))
        }
        self.arns = {k: stack.queue_arns[k] for k in self.queues}
        self.sqs = boto3.client("sqs")
        self.handler = load_function("send").lambda_handler

    def service(self) -> Any:
        from smsgate import wiring

        return wiring.send_service()

    def forget_health(self) -> None:
        db, table = boto3.client("dynamodb"), self.stack.tables["HealthTable"]
        for item in db.scan(TableName=table)["Items"]:
            if item["slot"]["S"].startswith(("conn#", "spend#")):
                # connection slots keep their last release (the per-second window); the
                # month's spend adds up across runs
                continue
            db.delete_item(
                TableName=table, Key={"provider": item["provider"], "slot": item["slot"]}
            )

    def run(
        self,
        case: SendCase,
        target: tuple[str, str] | None,
        prepare: Callable[[SendCase], None] | None = None,
        inspect: Callable[[SendCase], dict[str, Any]] | None = None,
    ) -> SendRun:
        board = self.service().health
        if board is not None:
            # the previous run's health counts are written now, outside this run (before the
            # rules are forgotten: the flush reads them): every run then makes the same calls,
            # so a fault point names the same call in each
            board._written_at = 0.0
            board.flush()
        for url in self.queues.values():
            stand_in_queue(url)._messages.clear()  # each run starts from empty queues
        forget_parameters()  # the secret and the rules are read in every run
        self.forget_health()  # each run starts from healthy providers
        if prepare:
            prepare(case)
        board = self.service().health
        if board is not None:
            board._written_at = 0.0  # health counts are written by every run's batch
        # Without a budget the month's spend is written every few seconds, not every batch:
        # never inside a run, so that every run makes the same calls.
        self.service().ledger.written_at = time.monotonic()
        self.sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(case.body))
        self.faults.start_run(target)
        receives = 0
        # Lambda's event sources of the send queue and the lanes, each record redelivered at
        # once when it fails (the visibility the sender asked for is not waited out), until
        # no queue has a visible message or one went to a dead-letter queue.
        for _ in range(4 * MAX_RECEIVES):
            busy = False
            for queue, url in self.queues.items():
                if queue.endswith("DeadLetterQueue"):
                    continue
                event = receive_event(url, self.arns[queue], 1)
                if not event["Records"]:
                    continue
                busy, receives = True, receives + 1
                self.faults.armed = True
                try:
                    response = self.handler(event, LambdaContext(30_000))
                    failed = bool(response["batchItemFailures"])
                except Exception:  # the invocation failed: Lambda returns every record
                    failed = True
                finally:
                    self.faults.armed = False
                handle = event["Records"][0]["receiptHandle"]
                if failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                    )
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=handle)
            if not busy:
                break
        dead = sum(
            len(stand_in_queue(url)._messages)
            for queue, url in self.queues.items()
            if queue.endswith("DeadLetterQueue")
        )
        visible = sum(
            1
            for queue, url in self.queues.items()
            for m in stand_in_queue(url)._messages
            if not queue.endswith("DeadLetterQueue") and m.visible and not m.delayed
        )
        acknowledged = dead == 0 and visible == 0
        rec = record(self.stack, case.id)
        return SendRun(
            acknowledged=acknowledged,
            receives=receives,
            status=str(rec.get("status")),
            error_code=rec.get("error_code"),
            lease=str(rec.get("lease", "")),
            history=sorted(history(self.stack, case.id)),
            provider_requests=provider_requests(self.sims, case.provider, case.marker),
            opted_out=opted_out(self.stack, case.to),
            opt_out_changes=opt_out_changes(self.stack, case.to),
            calls=list(self.faults.calls),
            extra=inspect(case) if inspect else {},
        )


def run_send_scenario(
    harness: SendHarness,
    make_case: Callable[[int], SendCase],
    expected: dict[str, Any],
    prepare: Callable[[SendCase], None] | None = None,
    inspect: Callable[[SendCase], dict[str, Any]] | None = None,
) -> list[str]:
    """The scenario without a fault (which must give `expected`), then once per fault point;
    returns the calls the fault-free run made."""
    counter = itertools.count()
    baseline = harness.run(make_case(next(counter)), None, prepare, inspect)
    assert baseline.outcome() == {**baseline.outcome(), **expected}, baseline.outcome()
    assert baseline.calls, "the scenario made no AWS call"
    problems = []
    for point in fault_points(baseline.calls):
        case = make_case(next(counter))
        run = harness.run(case, point, prepare, inspect)
        if not harness.faults.fired:
            problems.append(f"{point}: the fault never fired (calls {run.calls})")
        elif run.outcome() != baseline.outcome():
            diff = {
                k: (v, baseline.outcome()[k])
                for k, v in run.outcome().items()
                if v != baseline.outcome()[k]
            }
            problems.append(f"{point}: got (this run, fault-free run) {diff}")
    assert not problems, "\n".join(problems)
    return baseline.calls


@pytest.fixture
def send_harness(stack: Any, sims: Any, faults: Faults) -> SendHarness:
    return SendHarness(stack, sims, faults)


def us(k: int) -> str:
    return f"+1212555{1000 + k:04d}"


def fr(k: int) -> str:
    return f"+3361234{k:04d}"


def case(name: str, k: int, carrier: str, to: str, **fields: Any) -> SendCase:
    """Message `k` of scenario `name`, expected to reach `carrier`; `fields` go in the body."""
    marker = f"fault-{name}-{k}"
    text = fields.pop("text", "")
    body = {"id": f"{name}-{k}", "to": to, "text": f"{marker} {text}".strip(), **fields}
    return SendCase(body, carrier, to, marker)


SENT = {"acknowledged": True, "status": "sent", "error_code": None, "lease": ""}


@pytest.mark.parametrize(
    ("provider", "number"),
    [("clubtexting", us), ("grouptexting", us), ("textinghouse", fr)],
)
def test_a_sent_message_survives_every_single_fault(
    send_harness: SendHarness, provider: str, number: Callable[[int], str]
) -> None:
    calls = run_send_scenario(
        send_harness,
        lambda k: case(f"sent-{provider[:2]}", k, provider, number(k), provider=provider),
        {**SENT, "history": ["queued", "sent"], "provider_requests": 1},
    )
    # The path this covers: secret, rules, opt-outs + health, claim, record, health counts.
    names = {c.split("#")[0] for c in calls}
    assert {
        "secretsmanager.GetSecretValue",
        "ssm.GetParameter",
        "dynamodb.BatchGetItem",
        "dynamodb.UpdateItem",
        "dynamodb.TransactWriteItems",
    } <= names


def test_a_provider_opt_out_is_stored_with_the_failure_through_every_fault(
    send_harness: SendHarness, sims: Any
) -> None:
    """Group Texting's -5 (on the account's opt-out list): `failed` with the code, and the number in
    the opt-outs table — both or neither, never `unknown`."""
    run_send_scenario(
        send_harness,
        lambda k: case("optout", k, "grouptexting", us(k), provider="grouptexting"),
        {
            "acknowledged": True,
            "status": "failed",
            "error_code": "-5",
            "lease": "",
            "history": ["failed", "queued"],
            "provider_requests": 1,
            "opted_out": True,
            "opt_out_changes": ["out:provider code -5"],
        },
        prepare=lambda c: sims.grouptexting.opt_out(c.to),
    )


def test_a_retryable_refusal_then_a_send_survives_every_fault(
    send_harness: SendHarness, sims: Any
) -> None:
    """TextingHouse refuses once (350, flood): the lease is given back and the redelivery
    sends it — never `unknown` because a release failed."""
    run_send_scenario(
        send_harness,
        lambda k: case("retry", k, "textinghouse", fr(k), provider="textinghouse"),
        {**SENT, "history": ["queued", "sent"], "provider_requests": 2},
        prepare=lambda c: sims.textinghouse.force_answer("ERR: 350 | Flood", times=1),
    )


def test_a_failover_survives_every_fault(send_harness: SendHarness, sims: Any) -> None:
    """Group Texting answers 503 (its rate limit); Club Texting carries the message, once."""
    rules = {
        "rules": [{"name": "us", "providers": {"grouptexting": 1, "clubtexting": 0}}],
    }
    boto3.client("ssm").put_parameter(
        Name=send_harness.stack.parameters["RoutingRulesParameter"],
        Value=json.dumps(rules),
        Type="String",
        Overwrite=True,
    )

    def prepare(c: SendCase) -> None:
        sims.grouptexting.force_answer("busy", status=503, times=1, path="/api/sending")

    def inspect(c: SendCase) -> dict[str, Any]:
        rec = record(send_harness.stack, c.id)
        return {
            "carrier": rec.get("provider"),
            "attempts": [(a["provider"], a["outcome"]) for a in rec["provider_attempts"]],
            "gt_requests": provider_requests(sims, "grouptexting", c.marker),
        }

    run_send_scenario(
        send_harness,
        lambda k: case("failover", k, "clubtexting", us(k)),
        {
            **SENT,
            "provider_requests": 1,
            "carrier": "clubtexting",
            "attempts": [("grouptexting", "retryable"), ("clubtexting", "sent")],
            "gt_requests": 1,
        },
        prepare,
        inspect,
    )


def test_protection_counts_each_message_once_through_every_fault(
    send_harness: SendHarness,
) -> None:
    """With velocity limits and a budget, a sent message adds one to its recipient's hour and
    day (in its `sent` transaction) and its cost to the month once (the batch's spend ADD, kept
    in the sender's ledger when its write fails, refused when it is replayed after its answer
    was lost)."""
    from smsgate.store.counters import recipient_key

    stack = send_harness.stack
    rules = {
        "prices": {"clubtexting": 0.05},
        "monthly_budgets": {"clubtexting": 1000},
        "velocity": {"per_hour": 3, "per_day": 5},
    }
    boto3.client("ssm").put_parameter(
        Name=stack.parameters["RoutingRulesParameter"],
        Value=json.dumps(rules),
        Type="String",
        Overwrite=True,
    )
    db, table = boto3.client("dynamodb"), stack.tables["HealthTable"]
    runs = itertools.count(1)

    def counted(partition: str) -> int:
        items = db.query(
            TableName=table,
            KeyConditionExpression="provider = :p",
            ExpressionAttributeValues={":p": {"S": partition}},
            ConsistentRead=True,
        )["Items"]
        return sum(int(i.get("messages", i.get("day", {"N": "0"}))["N"]) for i in items)

    def inspect(c: SendCase) -> dict[str, Any]:
        service = send_harness.service()
        service.ledger.written_at = 0.0
        service.flush_protection(service.new_guard([], datetime.now(UTC)))  # what is left
        return {
            "recipient_counted": counted(recipient_key(c.to)),
            "spend_counted_per_send": counted("clubtexting") == next(runs),
        }

    run_send_scenario(
        send_harness,
        lambda k: case("protect", k, "clubtexting", us(k), provider="clubtexting"),
        {
            **SENT,
            "history": ["queued", "sent"],
            "provider_requests": 1,
            "recipient_counted": 1,
            "spend_counted_per_send": True,
        },
        inspect=inspect,
    )


def test_a_recipient_place_taken_before_the_request_survives_every_fault(
    send_harness: SendHarness,
) -> None:
    """A number that already had a message this hour: the next takes its place in the
    recipient's counter with a conditional write before its request (a replay of that write,
    applied with its answer lost, finds its own token), and is counted once."""
    from smsgate.store.counters import Counters, recipient_key

    stack = send_harness.stack
    boto3.client("ssm").put_parameter(
        Name=stack.parameters["RoutingRulesParameter"],
        Value=json.dumps({"velocity": {"per_hour": 3, "per_day": 5}}),
        Type="String",
        Overwrite=True,
    )
    db, table = boto3.client("dynamodb"), stack.tables["HealthTable"]

    def prepare(c: SendCase) -> None:  # one message to the number earlier this hour
        earlier = Counters(table, db).recipient_write(c.to, datetime.now(UTC))
        db.update_item(**earlier["Update"])

    def inspect(c: SendCase) -> dict[str, Any]:
        items = db.query(
            TableName=table,
            KeyConditionExpression="provider = :p",
            ExpressionAttributeValues={":p": {"S": recipient_key(c.to)}},
            ConsistentRead=True,
        )["Items"]
        return {"recipient_counted": sum(int(i["day"]["N"]) for i in items)}

    calls = run_send_scenario(
        send_harness,
        lambda k: case("reserve", k, "clubtexting", us(k), provider="clubtexting"),
        {
            **SENT,
            "history": ["queued", "sent"],
            "provider_requests": 1,
            "recipient_counted": 2,
        },
        prepare,
        inspect,
    )
    assert sum(c.startswith("dynamodb.UpdateItem") for c in calls) >= 2  # claim, the place


def test_a_commercial_hold_survives_every_fault(send_harness: SendHarness) -> None:
    """A TextingHouse commercial message on a Sunday is held by one schedule: a schedule that
    already exists for it (CreateSchedule applied, its answer lost) is the hold succeeding."""
    group = send_harness.stack.env["HOLD_SCHEDULE_GROUP"]
    scheduler = boto3.client("scheduler")

    def prepare(c: SendCase) -> None:
        send_harness.service().clock = lambda: SUNDAY_NOON

    def inspect(c: SendCase) -> dict[str, Any]:
        names = [
            s["Name"]
            for s in scheduler.list_schedules(GroupName=group)["Schedules"]
            if s["Name"].startswith(f"hold-{c.id}-")
        ]
        return {
            "schedules": len(names),
            "not_before": record(send_harness.stack, c.id).get("not_before"),
        }

    run_send_scenario(
        send_harness,
        lambda k: case(
            "hold",
            k,
            "textinghouse",
            fr(k),
            provider="textinghouse",
            commercial=True,
            text="Soldes -20% ce week-end. STOP sms-s.top",
        ),
        {
            "acknowledged": True,
            "status": "scheduled",
            "error_code": None,
            "lease": "",
            "history": ["queued", "scheduled"],
            "provider_requests": 0,
            "schedules": 1,
            "not_before": "2026-11-23T07:00:00.000000Z",
        },
        prepare,
        inspect,
    )


def test_waiting_for_a_provider_survives_every_fault(send_harness: SendHarness) -> None:
    """TextingHouse is cooling down: the message waits `queued` with `provider_unavailable`
    and a delayed copy on the queue (a second copy when SendMessage's answer was lost: the
    claim lets only one of them send)."""
    url = send_harness.url

    def prepare(c: SendCase) -> None:
        send_harness.service().health.mark_unhealthy("textinghouse", "credit")

    def inspect(c: SendCase) -> dict[str, Any]:
        return {"copies_waiting": copies_on_queue(url, c.id) in (1, 2)}

    run_send_scenario(
        send_harness,
        lambda k: case("wait", k, "textinghouse", fr(k), provider="textinghouse"),
        {
            "acknowledged": True,
            "status": "queued",
            "error_code": "provider_unavailable",
            "lease": "",
            "history": [],
            "provider_requests": 0,
            "copies_waiting": True,
        },
        prepare,
        inspect,
    )


def test_an_opted_out_recipient_and_a_bad_body_survive_every_fault(
    send_harness: SendHarness,
) -> None:
    from smsgate import wiring

    run_send_scenario(
        send_harness,
        lambda k: case("stopped", k, "clubtexting", us(k), provider="clubtexting"),
        {
            "acknowledged": True,
            "status": "failed",
            "error_code": "opted_out",
            "lease": "",
            "history": ["failed", "queued"],
            "provider_requests": 0,
            "opted_out": True,
        },
        prepare=lambda c: wiring.store().add_opt_out(c.to, how="test"),
    )
    run_send_scenario(
        send_harness,
        lambda k: case("bad", k, "clubtexting", us(k), provider="clubtexting", comercial=True),
        {
            "acknowledged": True,
            "status": "failed",
            "error_code": "invalid_body",
            "history": ["failed"],
            "provider_requests": 0,
        },
    )


def test_a_message_that_dead_letters_says_why(send_harness: SendHarness, log_stream: Any) -> None:
    """Every receive in its lane fails (the opt-out read never answers): the record, made for
    it, and an ERROR line say why it goes to the lane's dead-letter queue; the line holds no
    number or text."""
    c = case("dlq", 0, "clubtexting", us(0), provider="clubtexting")
    lane_url = send_harness.stack.queues["ClubTextingLaneQueue"]
    lane_arn = send_harness.stack.queue_arns["ClubTextingLaneQueue"]
    send_harness.sqs.send_message(QueueUrl=lane_url, MessageBody=json.dumps(c.body))

    def fail_reads(model: Any, **_: Any) -> None:
        if model.name == "BatchGetItem":
            raise ClientError({"Error": {"Code": "InternalServerError"}}, model.name)

    events = boto3._get_default_session().events
    events.register("before-call.dynamodb.BatchGetItem", fail_reads)
    _clear_caches()
    harness = send_harness
    try:
        for _ in range(MAX_RECEIVES):
            event = receive_event(lane_url, lane_arn, 1)
            assert event["Records"]
            response = harness.handler(event, LambdaContext(30_000))
            assert len(response["batchItemFailures"]) == 1
            harness.sqs.change_message_visibility(
                QueueUrl=lane_url,
                ReceiptHandle=event["Records"][0]["receiptHandle"],
                VisibilityTimeout=0,
            )
    finally:
        events.unregister("before-call.dynamodb.BatchGetItem", fail_reads)
    rec = record(harness.stack, c.id)
    assert rec["status"] == "queued"
    assert rec["error_code"] == "internal_error"
    assert rec["dead_letter_reason"] == "InternalServerError (BatchGetItem)"
    assert rec["to"] == c.to and rec["expires_at"] > time.time()
    # SQS moves it to the dead-letter queue on the next receive.
    assert receive_event(lane_url, lane_arn, 1)["Records"] == []
    dlq = harness.stack.queues["ClubTextingLaneDeadLetterQueue"]
    assert len(harness.sqs.receive_message(QueueUrl=dlq).get("Messages", [])) == 1
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines() if line]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert [e["message"] for e in errors] == ["the message goes to the dead-letter queue"]
    assert errors[0]["message_id"] == c.id and errors[0]["receive_count"] == MAX_RECEIVES
    assert c.to not in log_stream.getvalue() and c.marker not in log_stream.getvalue()


# --- the callback path -----------------------------------------------------------------------


@dataclass(frozen=True)
class Callback:
    method: str
    path: str  # after /hooks/{token}
    body: dict[str, Any] | None
    phone: str  # E.164 of the number the callback concerns
    message_id: str = ""  # the outbound message a receipt is for


@dataclass
class CallbackRun:
    answers: list[int]
    body: str
    outcome: dict[str, Any]
    calls: list[str]


class CallbackHarness:
    """The real callbacks handler behind the template's routes, called as API Gateway would,
    and a provider that resends until it gets a 2xx."""

    def __init__(self, stack: Any, faults: Faults) -> None:
        from test_callbacks import template_routes

        from smsgate_local.apigw import LocalRestApi

        self.stack, self.faults = stack, faults
        self.api = LocalRestApi(load_function("callbacks").lambda_handler, template_routes())

    def run(
        self,
        callback: Callback,
        target: tuple[str, str] | None,
        inspect: Callable[[Callback], dict[str, Any]],
    ) -> CallbackRun:
        forget_parameters()  # the token and the keyword replies are read in every run
        data = json.dumps(callback.body).encode() if callback.body is not None else b""
        headers = {"Content-Type": "application/json"} if data else {}
        event, _ = self.api.event(
            callback.method, f"/hooks/{CALLBACK_TOKEN}{callback.path}", headers, data, "127.0.0.1"
        )
        assert event is not None, callback.path
        self.faults.start_run(target)
        answers, body = [], ""
        for _ in range(5):  # the provider resends until it gets a 2xx
            self.faults.armed = True
            try:
                answer = self.api.invoke(json.loads(json.dumps(event)))
                status, body = int(answer["statusCode"]), str(answer.get("body"))
            except Exception:  # the function failed: API Gateway answers 502
                status = 502
            finally:
                self.faults.armed = False
            answers.append(status)
            if status < 500:
                break
        return CallbackRun(answers, body, inspect(callback), list(self.faults.calls))


def inbound_effects(stack: Any, callback: Callback) -> dict[str, Any]:
    inbound = [
        m
        for m in scan(stack.tables["MessagesTable"])
        if m.get("direction") == "in" and m.get("from") == callback.phone
    ]
    return {
        "inbound_stored": len(inbound),
        "history": sorted(s for m in inbound for s in history(stack, m["id"])),
        "opted_out": opted_out(stack, callback.phone),
        "opt_out_changes": opt_out_changes(stack, callback.phone),
    }


def run_callback_scenario(
    harness: CallbackHarness,
    make: Callable[[int], Callback],
    expected: dict[str, Any],
    prepare: Callable[[Callback], None] | None = None,
    inspect: Callable[[Callback], dict[str, Any]] | None = None,
) -> None:
    look = inspect or (lambda c: inbound_effects(harness.stack, c))
    counter = itertools.count()

    def one(target: tuple[str, str] | None) -> CallbackRun:
        callback = make(next(counter))
        if prepare:
            prepare(callback)
        return harness.run(callback, target, look)

    baseline = one(None)
    assert baseline.answers == [200], baseline.answers
    # A JSON answer may say `duplicate` / `ignored` for a copy whose first answer was lost
    # (all 2xx to TextingHouse); a text reply is what the phone gets, so it must not change.
    text_reply = make(10_000).method == "GET"
    assert baseline.outcome == {**baseline.outcome, **expected}, baseline.outcome
    problems = []
    for point in fault_points(baseline.calls):
        run = one(point)
        if not harness.faults.fired:
            problems.append(f"{point}: the fault never fired (calls {run.calls})")
        elif run.answers[-1] != 200 or any(400 <= a < 500 for a in run.answers):
            problems.append(f"{point}: answers {run.answers}")
        elif run.outcome != baseline.outcome:
            problems.append(f"{point}: {run.outcome} != {baseline.outcome}")
        elif text_reply and run.body != baseline.body:  # the reply texted back
            problems.append(f"{point}: replied {run.body!r}, not {baseline.body!r}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def callback_harness(stack: Any, faults: Faults) -> CallbackHarness:
    return CallbackHarness(stack, faults)


def us10(k: int) -> tuple[str, str]:
    digits = f"212555{2000 + k:04d}"
    return digits, f"+1{digits}"


def test_a_stop_keyword_is_never_lost(callback_harness: CallbackHarness) -> None:
    """Club Texting keyword STOP: stored once, opted out once, the confirmation answered —
    whichever call fails, including the opt-out write and a stored message's lost answer."""

    def make(k: int) -> Callback:
        digits, phone = us10(k)
        return Callback(
            "GET", f"/clubtexting/keyword?PhoneNumber={digits}&Message=STOP", None, phone
        )

    run_callback_scenario(
        callback_harness,
        make,
        {"inbound_stored": 1, "opted_out": True, "opt_out_changes": ["out:STOP keyword"]},
    )


def test_a_start_reply_is_never_lost(callback_harness: CallbackHarness) -> None:
    """Group Texting inbox START from an opted-out number: opted back in exactly once."""
    from smsgate import wiring

    def make(k: int) -> Callback:
        digits, phone = us10(100 + k)
        return Callback("GET", f"/grouptexting/inbox?from={digits}&message=START", None, phone)

    run_callback_scenario(
        callback_harness,
        make,
        {"inbound_stored": 1, "opted_out": False, "opt_out_changes": ["out:test", "in"]},
        prepare=lambda c: wiring.store().add_opt_out(c.phone, how="test"),
    )


def test_a_textinghouse_stop_mo_is_never_lost(callback_harness: CallbackHarness) -> None:
    """A TextingHouse MO has no time window for its copies: every resend is a duplicate, so
    the opt-out must be stored with the message or not at all."""

    def make(k: int) -> Callback:
        phone = fr(200 + k)
        body = {
            "apimsgid": f"mo-{k}",
            "from": phone[1:],
            "txt": "STOP",
            "date": "2026-11-30T10:00:00Z",
        }
        return Callback("POST", "/textinghouse/mo", body, phone)

    run_callback_scenario(
        callback_harness,
        make,
        {"inbound_stored": 1, "opted_out": True, "opt_out_changes": ["out:STOP keyword"]},
    )


def test_a_keyword_reply_survives_every_fault(callback_harness: CallbackHarness) -> None:
    """A keyword with its reply from SSM: stored once, the same reply however it was reached."""
    boto3.client("ssm").put_parameter(
        Name=callback_harness.stack.env["KEYWORD_REPLIES_PARAMETER"],
        Value=json.dumps({"PIZZA": "Your code is PIZZA10."}),
        Overwrite=True,
    )

    def make(k: int) -> Callback:
        digits, phone = us10(300 + k)
        return Callback(
            "GET", f"/grouptexting/keyword?PhoneNumber={digits}&Message=PIZZA", None, phone
        )

    run_callback_scenario(
        callback_harness, make, {"inbound_stored": 1, "opted_out": False, "opt_out_changes": []}
    )


def test_a_delivery_receipt_is_applied_once_through_every_fault(
    callback_harness: CallbackHarness,
) -> None:
    from smsgate import wiring
    from smsgate.status import Status

    stack = callback_harness.stack

    def prepare(c: Callback) -> None:
        store = wiring.store()
        claim = store.claim(
            c.message_id, {"direction": "out", "provider": "textinghouse", "to": c.phone}, 30
        )
        store.advance(
            c.message_id,
            Transition(
                Status.SENT,
                source="send",
                attrs={"provider_message_id": f"api-{c.message_id}"},
                lease=claim.lease,
            ),
        )

    def make(k: int) -> Callback:
        message_id = f"dlr-{k}"
        body = {"apimsgid": f"api-{message_id}", "climsgid": message_id, "status": "3"}
        return Callback("POST", "/textinghouse/dlr", body, fr(400 + k), message_id)

    def inspect(c: Callback) -> dict[str, Any]:
        rec = record(stack, c.message_id)
        return {"status": rec["status"], "history": sorted(history(stack, c.message_id))}

    run_callback_scenario(
        callback_harness,
        make,
        {"status": "delivered", "history": ["delivered", "sent"]},
        prepare,
        inspect,
    )


def test_an_unmatched_receipt_is_kept_once_through_every_fault(
    callback_harness: CallbackHarness,
) -> None:
    """A receipt for a message we do not know is kept once: its resend finds the item its
    first delivery wrote, whether or not that delivery's answer arrived."""
    stack = callback_harness.stack

    def make(k: int) -> Callback:
        body = {"apimsgid": f"nobody-{k}", "climsgid": "", "status": "3"}
        return Callback("POST", "/textinghouse/dlr", body, fr(500 + k), f"nobody-{k}")

    def inspect(c: Callback) -> dict[str, Any]:
        kept = [
            i
            for i in scan(stack.tables["StatusTable"])
            if i["message_id"] == f"unmatched#textinghouse#{c.message_id}"
        ]
        return {"kept": len(kept), "raw": [i["raw"] for i in kept]}

    run_callback_scenario(callback_harness, make, {"kept": 1, "raw": ["3"]}, inspect=inspect)


def test_a_late_copy_of_a_stop_never_reverses_a_later_start(
    stack: Any, callback_harness: CallbackHarness
) -> None:
    """STOP, then START, then TextingHouse resends the first STOP (its answer was lost): the
    copy is recognised and the number stays opted in."""
    harness = callback_harness
    phone = fr(600)

    def mo(text: str, apimsgid: str) -> Callback:
        body = {
            "apimsgid": apimsgid,
            "from": phone[1:],
            "txt": text,
            "date": "2026-11-30T10:00:00Z",
        }
        return Callback("POST", "/textinghouse/mo", body, phone)

    def look(c: Callback) -> dict[str, Any]:
        return inbound_effects(stack, c)

    stop = mo("STOP", "mo-first")
    assert harness.run(stop, None, look).outcome["opted_out"] is True
    assert harness.run(mo("START", "mo-second"), None, look).outcome["opted_out"] is False
    again = harness.run(stop, None, look)
    assert again.answers == [200] and json.loads(again.body) == {"result": "duplicate"}
    assert again.outcome["opted_out"] is False
    assert again.outcome["inbound_stored"] == 2
    assert again.outcome["opt_out_changes"] == ["out:STOP keyword", "in"]
