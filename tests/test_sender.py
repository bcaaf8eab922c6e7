"""The sender: SQS batch -> providers, never twice, never lost, never to an opt-out.

AWS is moto (tables and queue from template.yaml), the providers are the simulators over real
HTTP; the handler is the real functions/send/app.py with Powertools' batch processor.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from conftest import LambdaContext, load_function
from sqs_source import lanes, poll_once, poll_queue_once, receive_event, send_bodies

from smsgate_local.harness import Serialised

TH_SEND = "sendsms"


@pytest.fixture
def send(stack: Any) -> Any:
    """The send function's handler, with its service's DynamoDB calls serialised."""
    from smsgate import wiring

    app = load_function("send")
    service = wiring.send_service()
    service.store.db = Serialised(service.store.db)
    if service.health is not None:  # the health board shares the store's client
        service.health.db = service.store.db
    return app.lambda_handler


@pytest.fixture
def service(send: Any) -> Any:
    from smsgate import wiring

    return wiring.send_service()


def queue(stack: Any) -> tuple[str, str]:
    return stack.queues["SendQueue"], stack.queue_arns["SendQueue"]


LANES = {
    "clubtexting": "ClubTexting",
    "grouptexting": "GroupTexting",
    "textinghouse": "TextingHouse",
}


def lane(stack: Any, provider: str) -> tuple[str, str]:
    """A provider's lane queue: a message put there directly is sent by that lane's sender
    (the tests of one sender's behaviour skip the router)."""
    name = f"{LANES[provider]}LaneQueue"
    return stack.queues[name], stack.queue_arns[name]


def run(stack: Any, send: Any, bodies: list[Any], remaining_ms: int = 30_000) -> dict[str, Any]:
    url, arn = queue(stack)
    send_bodies(url, bodies)
    _, response = poll_once(url, arn, send, remaining_ms)
    return response


def message(stack: Any, message_id: str) -> dict[str, Any]:
    from smsgate.store import from_item

    item = (
        boto3.client("dynamodb")
        .get_item(TableName=stack.tables["MessagesTable"], Key={"id": {"S": message_id}})
        .get("Item")
    )
    return from_item(item) if item else {}


def history(stack: Any, message_id: str) -> list[str]:
    items = boto3.client("dynamodb").query(
        TableName=stack.tables["StatusTable"],
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": message_id}},
    )["Items"]
    return [i["status"]["S"] for i in items]


def sends(sims: Any, provider: str) -> list[Any]:
    sim = sims.by_name[provider]
    if provider == "textinghouse":
        return [r for r in sim.requests if r.fields.get("cmd") == TH_SEND]
    path = {"clubtexting": "/apisendmessage.php", "grouptexting": "/api/sending"}[provider]
    return sim.requests_to(path)


# --- each outcome class, per provider ------------------------------------------------------

US, FR = "+12125551234", "+33612345678"
OUTCOMES = [
    # (label, provider, to, forced answer (body, http status) or None, status, error_code)
    ("ct sent", "clubtexting", US, None, "sent", None),
    ("ct opt-out -5", "clubtexting", US, ("-5", 200), "failed", "-5"),
    ("ct invalid -7", "clubtexting", US, ("-7", 200), "failed", "-7"),
    ("ct auth -1 retried", "clubtexting", US, ("-1", 200), "queued", "-1"),
    ("ct credit -2 retried", "clubtexting", US, ("-2", 200), "queued", "-2"),
    ("ct unknown error -10 retried", "clubtexting", US, ("-10", 200), "queued", "-10"),
    (
        "ct garbage -> unknown",
        "clubtexting",
        US,
        ("<html>oops</html>", 200),
        "unknown",
        "unreadable",
    ),
    ("gt sent", "grouptexting", US, None, "sent", None),
    ("gt global opt-out -104", "grouptexting", US, ("-104", 200), "failed", "-104"),
    ("gt bad number -106", "grouptexting", US, ("-106", 200), "failed", "-106"),
    ("gt rate limited 503", "grouptexting", US, ("busy", 503), "queued", "http_503"),
    (
        "gt server error 500 -> unknown",
        "grouptexting",
        US,
        ("<h1>500</h1>", 500),
        "unknown",
        "http_500",
    ),
    ("th sent", "textinghouse", FR, None, "sent", None),
    ("th auth 101", "textinghouse", FR, ("ERR: 101 | Authentication failed", 200), "queued", "101"),
    ("th credit 104", "textinghouse", FR, ("ERR: 104 | Insufficient credit", 200), "queued", "104"),
    (
        "th stop mention 400",
        "textinghouse",
        FR,
        ("ERR: 400 | STOP mention missing", 200),
        "failed",
        "400",
    ),
    ("th processing 300", "textinghouse", FR, ("ERR: 300 | Error", 200), "queued", "300"),
]


@pytest.mark.parametrize(
    ("label", "provider", "to", "forced", "status", "code"), OUTCOMES, ids=[o[0] for o in OUTCOMES]
)
def test_outcome_classes(
    stack: Any,
    sims: Any,
    send: Any,
    label: str,
    provider: str,
    to: str,
    forced: tuple[str, int] | None,
    status: str,
    code: str | None,
) -> None:
    if forced:
        sims.by_name[provider].force_answer(forced[0], status=forced[1], times=1)
    response = run(
        stack, send, [{"id": "m1", "to": to, "text": "Hello there", "provider": provider}]
    )
    record = message(stack, "m1")
    assert record["status"] == status, label
    assert record.get("error_code") == code
    assert len(sends(sims, provider)) == 1
    retried = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert bool(retried) == (status == "queued")
    if status == "queued":
        assert record["lease"] == ""  # released: a redelivery may send it
    if code in ("-5", "-104"):
        optouts = boto3.client("dynamodb").get_item(
            TableName=stack.tables["OptOutsTable"], Key={"phone": {"S": to}}
        )
        assert optouts["Item"]["how"]["S"] == f"provider code {code}"


def test_sent_record_and_history(stack: Any, sims: Any, send: Any) -> None:
    response = run(
        stack, send, [{"id": "abc_1", "to": FR, "text": "Bonjour", "provider": "textinghouse"}]
    )
    assert response == {"batchItemFailures": []}
    record = message(stack, "abc_1")
    assert record["status"] == "sent"
    assert record["provider"] == "textinghouse"
    assert record["provider_message_id"] == sims.textinghouse.messages[0].api_id
    assert record["segments"] == 1
    assert record["direction"] == "out"
    assert history(stack, "abc_1") == ["queued", "sent"]
    request = sends(sims, "textinghouse")[0]
    assert request.fields["climsgid"] == "abc_1"  # our id, so getstatus can find it
    assert request.fields["to"] == "33612345678"
    assert request.fields["iscom"] == "N"


def test_default_provider_and_sqs_id(stack: Any, sims: Any, send: Any) -> None:
    url, arn = queue(stack)
    [sqs_id] = send_bodies(url, [{"to": "+33612345678", "text": "no id given"}])
    poll_once(url, arn, send)
    record = message(stack, sqs_id.replace("-", ""))
    assert record["status"] == "sent" and record["provider"] == "textinghouse"


# --- bad bodies never fail their neighbours ------------------------------------------------

BAD_BODIES = [
    ("not json", "this is not json", "body is not JSON"),
    ("not an object", "[1, 2]", "body is not a JSON object"),
    ("missing to", {"text": "hi"}, "to: Field required"),
    ("missing text", {"to": FR}, "text: Field required"),
    ("text wrong type", {"to": FR, "text": 42}, "text: Input should be a valid string"),
    (
        "unknown provider",
        {"to": FR, "text": "hi", "provider": "twilio"},
        "provider: Input should be",
    ),
    ("bad id", {"to": FR, "text": "hi", "id": "has spaces!"}, "id: String should match pattern"),
    (
        "express not bool",
        {"to": FR, "text": "hi", "express": "yes"},
        "express: Input should be a valid boolean",
    ),
    (
        "unknown field",
        {"to": FR, "text": "hi", "colour": "red"},
        "colour: Extra inputs are not permitted",
    ),
    ("bad number", {"to": "+1999", "text": "hi"}, "to: phone number"),
]


def test_poison_records_among_good_ones(stack: Any, sims: Any, send: Any) -> None:
    url, arn = queue(stack)
    good = [{"id": f"good{i}", "to": f"+3361234567{i}", "text": f"hello {i}"} for i in range(3)]
    bodies = [b for _, b, _ in BAD_BODIES[:7]] + good
    ids = send_bodies(url, bodies)
    _, response = poll_once(url, arn, send)
    assert response == {"batchItemFailures": []}  # nothing retried: bad bodies are final
    for (label, _, reason), sqs_id in zip(BAD_BODIES[:7], ids, strict=False):
        record = message(stack, sqs_id.replace("-", ""))
        assert record["status"] == "failed", label
        assert record["error_code"] == "invalid_body"
        assert reason in record["error"], (label, record["error"])
    for g in good:
        assert message(stack, g["id"])["status"] == "sent"
    assert len(sends(sims, "textinghouse")) == 3


@pytest.mark.parametrize(
    ("label", "body", "reason"), BAD_BODIES[7:], ids=[b[0] for b in BAD_BODIES[7:]]
)
def test_more_bad_bodies(
    stack: Any, sims: Any, send: Any, label: str, body: Any, reason: str
) -> None:
    url, arn = queue(stack)
    [sqs_id] = send_bodies(url, [body])
    poll_once(url, arn, send)
    record = message(stack, sqs_id.replace("-", ""))
    assert record["status"] == "failed" and reason in record["error"], record
    assert not sends(sims, "textinghouse")


def test_bad_body_never_overwrites_an_existing_message(stack: Any, sims: Any, send: Any) -> None:
    run(stack, send, [{"id": "keep", "to": FR, "text": "first"}])
    run(stack, send, [{"id": "keep", "to": FR, "text": 7}])  # same id, broken body
    record = message(stack, "keep")
    assert record["status"] == "sent" and record["text"] == "first"


@pytest.mark.parametrize(
    ("provider", "body", "rule"),
    [
        ("clubtexting", {"to": US, "text": "x" * 131}, "rule:length"),
        ("clubtexting", {"to": FR, "text": "hi"}, "rule:number"),
        ("grouptexting", {"to": US, "text": "héllo"}, "rule:charset"),
        ("textinghouse", {"to": FR, "text": "hi", "sender": "TooLongSender1"}, "rule:sender"),
        ("textinghouse", {"to": FR, "text": "promo", "commercial": True}, "rule:stop_mention"),
    ],
)
def test_provider_rules_fail_without_a_request(
    stack: Any, sims: Any, send: Any, provider: str, body: dict[str, Any], rule: str
) -> None:
    run(stack, send, [{**body, "id": "r1", "provider": provider}])
    record = message(stack, "r1")
    assert (record["status"], record["error_code"]) == ("failed", rule)
    assert sims.by_name[provider].requests == []


def test_unconfigured_provider_fails_with_that_reason(stack: Any, sims: Any, send: Any) -> None:
    from aws_lambda_powertools.utilities import parameters

    secret = {"textinghouse": {"user": "smsgate", "pass": "local-secret"}, "callback_token": "x"}
    boto3.client("secretsmanager").put_secret_value(
        SecretId=stack.secret_arn, SecretString=json.dumps(secret)
    )
    parameters.clear_caches()
    run(stack, send, [{"id": "nc", "to": US, "text": "hi", "provider": "clubtexting"}])
    record = message(stack, "nc")
    assert (record["status"], record["error_code"]) == ("failed", "provider_not_configured")


# --- never to an opted-out number ----------------------------------------------------------


def test_opted_out_number_is_never_texted(stack: Any, sims: Any, send: Any) -> None:
    from smsgate import wiring

    wiring.store().add_opt_out(FR, how="STOP")
    run(
        stack,
        send,
        [{"id": "o1", "to": FR, "text": "hi"}, {"id": "o2", "to": "+33612345679", "text": "hi"}],
    )
    assert (message(stack, "o1")["status"], message(stack, "o1")["error_code"]) == (
        "failed",
        "opted_out",
    )
    assert message(stack, "o2")["status"] == "sent"
    assert [r.fields["to"] for r in sends(sims, "textinghouse")] == ["33612345679"]


def test_opt_outs_are_read_once_per_batch(stack: Any, sims: Any, send: Any) -> None:
    calls: list[str] = []
    client = boto3.client("dynamodb")
    from smsgate import wiring

    store = wiring.store()
    store.db = client
    client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    run(stack, send, [{"id": f"b{i}", "to": f"+3361234567{i}", "text": "x"} for i in range(8)])
    assert calls.count("BatchGetItem") == 1
    assert "GetItem" not in calls


# --- never twice ---------------------------------------------------------------------------


def test_redelivered_record_sends_once(stack: Any, sims: Any, send: Any) -> None:
    url, arn = lane(stack, "textinghouse")
    send_bodies(url, [{"id": "r1", "to": FR, "text": "once"}])
    event = receive_event(url, arn)
    for _ in range(3):
        assert send(event, LambdaContext()) == {"batchItemFailures": []}
    assert len(sends(sims, "textinghouse")) == 1
    assert history(stack, "r1") == ["queued", "sent"]


def test_producer_retry_with_same_id_sends_once(stack: Any, sims: Any, send: Any) -> None:
    run(stack, send, [{"id": "dup", "to": FR, "text": "x"}, {"id": "dup", "to": FR, "text": "x"}])
    run(stack, send, [{"id": "dup", "to": FR, "text": "x"}])
    assert len(sends(sims, "textinghouse")) == 1


def _conflicts(stack: Any, message_id: str) -> list[dict[str, Any]]:
    from smsgate.store import from_item

    items = boto3.client("dynamodb").query(
        TableName=stack.tables["StatusTable"],
        KeyConditionExpression="message_id = :m",
        ExpressionAttributeValues={":m": {"S": message_id}},
    )["Items"]
    return [e for e in map(from_item, items) if str(e["at"]).startswith("conflict#")]


def test_a_reused_id_with_another_body_is_never_sent_and_is_recorded(
    stack: Any, sims: Any, send: Any, capsys: Any
) -> None:
    run(stack, send, [{"id": "order-1", "to": FR, "text": "Votre commande est partie"}])
    capsys.readouterr()
    other = {"id": "order-1", "to": "+33698765432", "text": "Autre chose"}
    for _ in range(2):  # the same other body twice: recorded once
        assert run(stack, send, [other]) == {"batchItemFailures": []}
    assert len(sends(sims, "textinghouse")) == 1  # the first message only, never the other
    record = message(stack, "order-1")
    assert record["to"] == FR and record["status"] == "sent"
    [conflict] = _conflicts(stack, "order-1")
    assert conflict["fields"] == ["to", "text"] and conflict["source"] == "send"
    out = capsys.readouterr().out
    metrics = [json.loads(line) for line in out.splitlines() if '"IdConflict"' in line]
    assert [m["IdConflict"] for m in metrics if m.get("Provider")] == [[1.0]]
    assert "98765432" not in out and "Autre chose" not in out  # no values in the log
    run(stack, send, [{"id": "order-1", "to": FR, "text": "Votre commande est partie"}])
    assert len(_conflicts(stack, "order-1")) == 1  # the same body again is a plain duplicate


def test_another_body_under_the_id_of_a_waiting_message_leaves_it_to_its_own(
    stack: Any, sims: Any, send: Any
) -> None:
    url, arn = lane(stack, "textinghouse")
    sims.textinghouse.force_answer("ERR: 300 | Error processing request")
    send_bodies(url, [{"id": "w1", "to": FR, "text": "first"}])
    first = receive_event(url, arn)
    assert send(first, LambdaContext())["batchItemFailures"]  # queued, to be retried
    send_bodies(url, [{"id": "w1", "to": FR, "text": "second"}])
    assert send(receive_event(url, arn), LambdaContext()) == {"batchItemFailures": []}
    assert len(sends(sims, "textinghouse")) == 1  # the refused try of the first only
    assert message(stack, "w1")["lease"] == ""  # the other body gave the claim back
    assert send(first, LambdaContext()) == {"batchItemFailures": []}  # the first's retry
    [retried, sent] = sends(sims, "textinghouse")
    assert retried.fields["txt"] == sent.fields["txt"] == "first"
    assert message(stack, "w1")["status"] == "sent"


def test_concurrent_copies_send_once(stack: Any, sims: Any, send: Any) -> None:
    url, arn = lane(stack, "textinghouse")
    send_bodies(url, [{"id": f"c{i}", "to": f"+3361234500{i}", "text": "x"} for i in range(5)])
    event = receive_event(url, arn)
    sims.textinghouse.set_fault("slow", delay=0.05)  # widen the window where both are in flight
    responses: list[dict[str, Any]] = []
    threads = [
        threading.Thread(target=lambda: responses.append(send(event, LambdaContext())))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sends(sims, "textinghouse")) == 5
    # a copy that found the other in flight asks to come back later, never drops the message
    ids = {r["messageId"]: json.loads(r["body"])["id"] for r in event["Records"]}
    for response in responses:
        for failure in response["batchItemFailures"]:
            assert message(stack, ids[failure["itemIdentifier"]])["status"] in ("queued", "sent")
    sims.textinghouse.clear_faults()
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # the redelivery: all final
    assert len(sends(sims, "textinghouse")) == 5


def test_redelivery_300_messages_three_times_concurrently(stack: Any, sims: Any, send: Any) -> None:
    """Acceptance: 300 messages, each delivered 3 times (once alone, twice concurrently)
    -> exactly 300 provider send requests, and every message final or retryable."""
    from sqs_source import to_event

    events = []
    for chunk in range(30):
        records = [
            {
                "MessageId": f"00000000-0000-0000-0000-{chunk:04d}{i:08d}",
                "ReceiptHandle": f"rh-{chunk}-{i}",
                "Body": json.dumps(
                    {"id": f"m{chunk}x{i}", "to": f"+336{chunk:02d}{i:06d}", "text": "hello"}
                ),
                "MD5OfBody": "x",
                "Attributes": {"ApproximateReceiveCount": "1"},
            }
            for i in range(10)
        ]
        events.append(to_event(lane(stack, "textinghouse")[1], records))
    retried: list[dict[str, Any]] = []

    def deliver(batch: list[dict[str, Any]]) -> None:
        for event in batch:
            response = send(event, LambdaContext())
            if response["batchItemFailures"]:
                retried.append(event)

    deliver(events)  # first delivery
    threads = [threading.Thread(target=deliver, args=(events,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert retried == []
    assert len(sends(sims, "textinghouse")) == 300
    statuses = {message(stack, f"m{c}x{i}")["status"] for c in range(30) for i in range(10)}
    assert statuses == {"sent"}


def test_no_answer_is_unknown_and_never_resent(stack: Any, sims: Any, send: Any) -> None:
    sims.grouptexting.set_fault("hang", delay=2.0)  # accepts the request, answers too late
    url, arn = lane(stack, "grouptexting")
    send_bodies(url, [{"id": "h1", "to": US, "text": "hello", "provider": "grouptexting"}])
    event = receive_event(url, arn)
    assert send(event, LambdaContext()) == {"batchItemFailures": []}
    record = message(stack, "h1")
    assert (record["status"], record["error_code"]) == ("unknown", "no_answer")
    sims.grouptexting.clear_faults()
    send(event, LambdaContext())  # redelivery
    assert len(sends(sims, "grouptexting")) == 1
    assert sims.grouptexting.account("smsgate").credit == 999  # the provider did take it


def test_textinghouse_no_answer_is_settled_by_getstatus(stack: Any, sims: Any, send: Any) -> None:
    sims.textinghouse.set_fault("drop", count=1)  # processes the send, closes without answer
    run(stack, send, [{"id": "t1", "to": FR, "text": "hello"}])
    record = message(stack, "t1")
    assert record["status"] in ("sent", "delivered")
    lookups = [r for r in sims.textinghouse.requests if r.fields.get("cmd") == "getstatus"]
    assert [r.fields["climsgid"] for r in lookups] == ["t1"]
    assert len(sends(sims, "textinghouse")) == 1


def test_textinghouse_request_that_never_arrived_is_resent(
    stack: Any, sims: Any, send: Any
) -> None:
    # The send gets no usable answer and TextingHouse has no record of our id (202): the
    # message never arrived, so it is safe to send again.
    sims.textinghouse.force_answer("<html>proxy error</html>", status=502, times=1)
    response = run(stack, send, [{"id": "t2", "to": FR, "text": "hello"}])
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert message(stack, "t2")["status"] == "queued"


def test_connect_failure_is_retried(
    stack: Any, sims: Any, send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from smsgate import config, wiring

    monkeypatch.setenv("CLUBTEXTING_URL", "http://127.0.0.1:9")  # nothing listens there
    config.settings.cache_clear()
    wiring.send_service.cache_clear()
    wiring.send_service().store.db = Serialised(wiring.send_service().store.db)
    response = run(stack, send, [{"id": "n1", "to": US, "text": "hi", "provider": "clubtexting"}])
    assert len(response["batchItemFailures"]) == 1
    record = message(stack, "n1")
    assert (record["status"], record["error_code"]) == ("queued", "connect_failed")


# --- never lost ----------------------------------------------------------------------------


def test_a_retried_message_once_sent_keeps_no_stale_error(stack: Any, sims: Any, send: Any) -> None:
    url, arn = lane(stack, "textinghouse")
    sims.textinghouse.force_answer("ERR: 300 | Error processing request")
    send_bodies(url, [{"id": "s1", "to": FR, "text": "hello"}])
    event = receive_event(url, arn)
    assert send(event, LambdaContext())["batchItemFailures"]
    assert message(stack, "s1")["error_code"] == "300"
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # the redelivery
    record = message(stack, "s1")
    assert record["status"] == "sent"
    assert "error_code" not in record and "error" not in record


NOT_SENT_EVERY_TIME = [
    # (provider, to, forced answer, code): definite "not sent" answers that may pass later
    ("textinghouse", FR, "ERR: 300 | Error processing request", "300"),
    ("clubtexting", US, "-3", "-3"),  # a negative code the document does not list
    ("grouptexting", US, "-42", "-42"),
]


@pytest.mark.parametrize(
    ("provider", "to", "forced", "code"),
    NOT_SENT_EVERY_TIME,
    ids=[r[0] for r in NOT_SENT_EVERY_TIME],
)
def test_a_refusal_on_every_try_ends_failed_with_its_code(
    stack: Any, sims: Any, send: Any, provider: str, to: str, forced: str, code: str
) -> None:
    """Retried while it may pass; on the last receive the message is `failed` with the
    provider's code and reason (the user sees why), not left `queued` in a dead-letter queue."""
    url, arn = lane(stack, provider)
    sims.by_name[provider].force_answer(forced, times=2)
    send_bodies(url, [{"id": "r300", "to": to, "text": "hello", "provider": provider}])
    event = receive_event(url, arn)
    assert send(event, LambdaContext())["batchItemFailures"]
    assert (message(stack, "r300")["status"], message(stack, "r300")["error_code"]) == (
        "queued",
        code,
    )
    for record in event["Records"]:  # SQS's count on the last receive the redrive allows
        record["attributes"]["ApproximateReceiveCount"] = "5"
    assert send(event, LambdaContext()) == {"batchItemFailures": []}
    record = message(stack, "r300")
    assert (record["status"], record["error_code"]) == ("failed", code)
    assert "every try" in record["error"]
    assert len(sends(sims, provider)) == 2
    assert history(stack, "r300")[-1] == "failed"


def test_flood_is_retried_after_ten_seconds(stack: Any, sims: Any, send: Any) -> None:
    run(stack, send, [{"id": "f1", "to": FR, "text": "same"}])
    response = run(stack, send, [{"id": "f2", "to": FR, "text": "same"}])
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert message(stack, "f2")["error_code"] == "350"
    # the record's visibility timeout was set to >= 10 s: it is not back yet
    lane_url, lane_arn = lane(stack, "textinghouse")
    assert receive_event(lane_url, lane_arn)["Records"] == []
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=lane_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_the_same_text_to_one_number_in_one_batch_is_sent_once_now(
    stack: Any, sims: Any, send: Any
) -> None:
    """TextingHouse refuses a text to a number it had within 10 s (350): of such repeats in
    one batch only the first goes now, the other comes back after 10 s, never refused."""
    response = run(
        stack,
        send,
        [{"id": "f3", "to": FR, "text": "same"}, {"id": "f4", "to": FR, "text": "same"}],
    )
    assert len(response["batchItemFailures"]) == 1
    assert len(sends(sims, "textinghouse")) == 1
    assert sends(sims, "textinghouse")[0].body.startswith("ID")
    statuses = sorted(message(stack, i).get("status", "none") for i in ("f3", "f4"))
    assert statuses == ["none", "sent"]  # the deferred one was not even claimed
    lane_url, _ = lane(stack, "textinghouse")
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=lane_url, AttributeNames=["All"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"


def test_retry_delay_never_below_the_outcome_minimum() -> None:
    from smsgate.send import backoff

    assert all(backoff(10, 1) >= 10 for _ in range(100))
    assert all(backoff(0, 20) <= 1080 for _ in range(100))


def test_deadline_guard_returns_untouched_records(stack: Any, sims: Any, send: Any) -> None:
    url, arn = lane(stack, "textinghouse")
    send_bodies(url, [{"id": f"d{i}", "to": f"+3361234567{i}", "text": "x"} for i in range(4)])
    event = receive_event(url, arn)
    response = send(event, LambdaContext(remaining_ms=2_000))  # less than one provider call
    assert len(response["batchItemFailures"]) == 4
    assert sims.textinghouse.requests == []
    assert all(message(stack, f"d{i}") == {} for i in range(4))


def test_auth_failures_are_counted_for_the_alarm(
    stack: Any, sims: Any, send: Any, capsys: Any
) -> None:
    sims.clubtexting.force_answer("-1")
    run(stack, send, [{"id": "a1", "to": US, "text": "hi", "provider": "clubtexting"}])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    auth = [m for m in lines if "ProviderAuthFailed" in m]
    assert {m.get("Provider") for m in auth} == {"clubtexting", None}
    assert all(m["ProviderAuthFailed"] == [1.0] for m in auth)


# --- commercial hours ----------------------------------------------------------------------

SUNDAY_NOON = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday, 12:00 in Paris
CHRISTMAS = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)  # Friday, a French public holiday
PROMO = "Soldes -20% ce week-end. STOP sms-s.top"


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        (SUNDAY_NOON, "2026-11-23T07:00:00"),  # Monday 08:00 Paris
        (CHRISTMAS, "2026-12-26T09:00:00"),  # Saturday 10:00 Paris
    ],
    ids=["sunday", "french-holiday"],
)
def test_commercial_message_is_held_until_its_window(
    stack: Any, sims: Any, send: Any, service: Any, now: datetime, opens: str
) -> None:
    service.clock = lambda: now
    sims.textinghouse.set_clock(now)  # TextingHouse judges its slots by the same moment
    body = {"id": "promo1", "to": FR, "text": PROMO, "commercial": True}
    assert run(stack, send, [body]) == {"batchItemFailures": []}
    record = message(stack, "promo1")
    assert record["status"] == "scheduled"
    assert record["not_before"].startswith(opens)
    assert sims.textinghouse.requests == []
    scheduler = boto3.client("scheduler")
    schedule = scheduler.get_schedule(
        Name=record["schedule_name"], GroupName=stack.env["HOLD_SCHEDULE_GROUP"]
    )
    assert schedule["ScheduleExpression"] == f"at({opens})"
    assert schedule["Target"]["Arn"] == stack.queue_arns["SendQueue"]
    # The schedule fires at the window: its input comes back through the queue and is sent.
    service.clock = lambda: datetime.fromisoformat(opens + "+00:00")
    sims.textinghouse.set_clock(datetime.fromisoformat(opens + "+00:00"))
    assert run(stack, send, [json.loads(schedule["Target"]["Input"])]) == {"batchItemFailures": []}
    assert message(stack, "promo1")["status"] == "sent"
    sent = sends(sims, "textinghouse")
    assert len(sent) == 1 and sent[0].fields["iscom"] == "Y"
    # TextingHouse would retain one outside its slots, uncancellable: it never got one
    assert sims.textinghouse.retained() == []
    assert history(stack, "promo1") == ["queued", "scheduled", "sent"]


def test_held_message_can_be_cancelled(stack: Any, sims: Any, send: Any, service: Any) -> None:
    service.clock = lambda: SUNDAY_NOON
    run(stack, send, [{"id": "promo2", "to": FR, "text": PROMO, "commercial": True}])
    schedule_name = message(stack, "promo2")["schedule_name"]
    assert service.cancel("promo2")
    assert message(stack, "promo2")["status"] == "failed"
    with pytest.raises(Exception, match="ResourceNotFound"):
        boto3.client("scheduler").get_schedule(
            Name=schedule_name, GroupName=stack.env["HOLD_SCHEDULE_GROUP"]
        )
    run(stack, send, [{"id": "promo2", "to": FR, "text": PROMO, "commercial": True}])
    assert sims.textinghouse.requests == []


def test_commercial_message_inside_window_goes_now(
    stack: Any, sims: Any, send: Any, service: Any
) -> None:
    service.clock = lambda: datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday 11:00 Paris
    run(stack, send, [{"id": "promo3", "to": FR, "text": PROMO, "commercial": True}])
    assert message(stack, "promo3")["status"] == "sent"


# --- logs ----------------------------------------------------------------------------------


def test_no_number_text_or_secret_in_logs(stack: Any, sims: Any, send: Any, capsys: Any) -> None:
    from smsgate.observability import logger

    stream = io.StringIO()
    for handler in logger.handlers:
        handler.setStream(stream)  # type: ignore[attr-defined]
    secret_text = "Secret message body 4111111111111111"
    sims.grouptexting.set_fault("hang", delay=1.5, count=1)
    bodies = [
        {"id": "l1", "to": FR, "text": secret_text},
        {"id": "l2", "to": "+12125550199", "text": secret_text, "provider": "grouptexting"},
        {"id": "l3", "to": "+12125550198", "text": secret_text + "'", "provider": "clubtexting"},
        {"to": "+33612345670", "text": 5},
    ]
    sims.textinghouse.force_answer("ERR: 101 | Authentication failed")
    run(stack, send, bodies)
    logged = stream.getvalue() + capsys.readouterr().out
    assert "message" in logged  # the logs were captured
    for needle in (
        "33612345678",
        "2125550199",
        "2125550198",
        "33612345670",
        "Secret message",
        "4111111111111111",
        "local-secret",
    ):
        assert needle not in logged, needle
    assert "+3361****678" in logged


def test_sample_event_is_a_real_sqs_event(stack: Any, sims: Any, send: Any) -> None:
    from pathlib import Path

    event = json.loads((Path(__file__).parent.parent / "events" / "send.json").read_text())
    assert {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "eventSource",
        "eventSourceARN",
    } <= set(event["Records"][0])
    event["Records"][0]["eventSourceARN"] = queue(stack)[1]  # the stack's own send queue
    event["Records"][1]["eventSourceARN"] = queue(stack)[1]
    assert send(event, LambdaContext()) == {"batchItemFailures": []}  # routed to the lanes
    for url, arn in lanes().values():
        _, response = poll_queue_once(url, arn, send)
        assert response == {"batchItemFailures": []}
    assert len(sends(sims, "textinghouse")) + len(sends(sims, "grouptexting")) == 2


def test_failed_sends_are_counted_by_reason(stack: Any, sims: Any, send: Any, capsys: Any) -> None:
    from smsgate import wiring

    wiring.store().add_opt_out(FR, how="STOP")
    bodies = [
        {"id": "x1", "to": FR, "text": "hi"},
        {"id": "x2", "to": US, "text": "x" * 131, "provider": "clubtexting"},
        {"id": "x3", "to": US, "text": "hi", "provider": "grouptexting"},
        "not json",
    ]
    sims.grouptexting.force_answer("-106")
    run(stack, send, bodies)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    reasons = {
        (m.get("Provider"), m["Reason"]) for m in lines if "MessagesFailed" in m and "Reason" in m
    }
    assert reasons == {
        ("textinghouse", "opted_out"),
        ("clubtexting", "rule"),
        ("grouptexting", "provider_refused"),
    }
    # One figure per invocation: the router's (the bad body) and the lanes' (the others).
    totals = [
        m["MessagesFailed"][0] for m in lines if "MessagesFailed" in m and "Provider" not in m
    ]
    assert sum(totals) == 4


# --- quiet hours: commercial messages on every provider -------------------------------------

MONDAY_2330_NYC = datetime(2026, 11, 24, 4, 30, tzinfo=UTC)  # 23:30 in New York (UTC-5)
TUESDAY_10_NYC = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
MONDAY_11_PARIS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
QUIET = [
    # (provider, to, text, outside quiet hours, when they end (UTC), inside them)
    ("clubtexting", US, "Sale today", MONDAY_2330_NYC, "2026-11-24T13:00:00", TUESDAY_10_NYC),
    ("grouptexting", US, "Sale today", MONDAY_2330_NYC, "2026-11-24T13:00:00", TUESDAY_10_NYC),
    ("textinghouse", FR, PROMO, SUNDAY_NOON, "2026-11-23T07:00:00", MONDAY_11_PARIS),
]


@pytest.mark.parametrize(
    ("provider", "to", "text", "outside", "opens", "inside"), QUIET, ids=[q[0] for q in QUIET]
)
def test_commercial_messages_keep_quiet_hours_on_every_provider(
    stack: Any,
    sims: Any,
    send: Any,
    service: Any,
    provider: str,
    to: str,
    text: str,
    outside: datetime,
    opens: str,
    inside: datetime,
) -> None:
    body = {"to": to, "text": text, "commercial": True, "provider": provider}
    service.clock = lambda: outside
    sims.textinghouse.set_clock(outside)
    assert run(stack, send, [{**body, "id": "quiet1"}]) == {"batchItemFailures": []}
    record = message(stack, "quiet1")
    assert record["status"] == "scheduled" and record["not_before"].startswith(opens), record
    assert sends(sims, provider) == []
    service.clock = lambda: inside
    sims.textinghouse.set_clock(inside)
    assert run(stack, send, [{**body, "id": "quiet2"}]) == {"batchItemFailures": []}
    assert message(stack, "quiet2")["status"] == "sent"
    assert len(sends(sims, provider)) == 1
